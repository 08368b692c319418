"""A comparison report of several models on one split: Markdown and CSV tables, a Dice bar chart, TP/FP/FN overlays.

The table follows the CHAOS study's: one row per model, one Dice column per foreground class, then mean foreground
Dice, mIoU (over all classes, background included, as transformers' `mean_iou`), HD95 and ASSD (mean over
foreground classes; mm with a pixel spacing, else pixels), PQ/AJI when computed (object-level, from the result's
`instances` entry, when evaluated with `instances=`), and BraTS-style region Dice/HD95 (`Dice foreground` with
`instances=`).
`reduction="image"` (default) reports per-image means (the `image_*` metrics); `"case"` the per-case means, each
case's slices scored as one volume (the `case_*` metrics, the unit BraTS and CHAOS report; `report.md` adds this
table whenever the results have cases); `"dataset"` the pooled ones (one confusion matrix over all pixels, what
training logs; surface distances exist per image and per case only). Classifiers get accuracy, balanced accuracy, macro/weighted F1 and per-class F1.

Overlays (the cancer study's figure, drawn by `hfseg.viz.overlay_errors` in its `ERROR_COLORS`): over the image,
true positives green, false positives red, false negatives blue, for one class (`overlay_class`) or, by default,
class 1 of a binary task and every foreground class otherwise (a foreground pixel given another foreground class
yellow).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from ..viz import overlay_errors

REDUCTIONS = ("image", "dataset", "case")
_LOWER_IS_BETTER = ("HD", "ASSD")


# -- files -------------------------------------------------------------------------------------------------------
def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """`data` as indented JSON; NaN/inf become null, tensors and numpy scalars plain numbers."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None  # JSON has no NaN; an undefined metric is null
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, torch.Tensor):
            return clean(value.tolist())
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    path.write_text(json.dumps(clean(dict(data)), indent=2))


# -- tables ------------------------------------------------------------------------------------------------------
def _task(results: Mapping[str, Mapping[str, Any]]) -> str:
    tasks = {r.get("task", "classification" if "accuracy" in r else "segmentation") for r in results.values()}
    if len(tasks) != 1:
        raise ValueError(f"Cannot compare segmentation and classification results in one table, got {sorted(tasks)}.")
    return tasks.pop()


def _class_names(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for result in results.values():
        names += [n for n in result.get("per_class", {}) if n not in names]
    return names


def _value(result: Mapping[str, Any], key: str, index: int | None = None) -> float:
    value = result.get(key)
    if index is not None:
        value = value[index] if isinstance(value, Sequence) and index < len(value) else None
    return float(value) if isinstance(value, (int, float)) else float("nan")


def comparison_table(results: Mapping[str, Mapping[str, Any]], reduction: Literal["image", "dataset", "case"] = "image",
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """`(columns, rows)`: one row `{column: value}` per model (floats, NaN where undefined); see the module docstring.

    `results` is `{model name: evaluate_model(...) result}`.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}.")
    if not results:
        raise ValueError("No results to report.")
    rows = [{"model": name} for name in results]
    if _task(results) == "classification":
        names = _class_names(results)
        for row, result in zip(rows, results.values()):
            row.update({"accuracy": _value(result, "accuracy"), "balanced acc": _value(result, "balanced_accuracy"),
                        "macro F1": _value(result, "macro_f1"), "weighted F1": _value(result, "weighted_f1")})
            labels = list(result.get("labels", names))
            row.update({f"F1 {n}": _value(result, "f1", labels.index(n)) if n in labels else float("nan")
                        for n in names})
        return list(rows[0]), rows
    p = {"image": "image_", "case": "case_"}.get(reduction, "")
    names = _class_names(results)
    for row, result in zip(rows, results.values()):
        order = list(result.get("per_class", {}))
        for name in names[1:]:  # class 0 is the background
            row[f"Dice {name}"] = _value(result, f"{p}dice", order.index(name)) if name in order else float("nan")
        row["mean fg Dice"] = _value(result, f"{p}mean_foreground_dice")
        row["mIoU"] = _value(result, f"{p}mean_iou")
    surface = "case_" if reduction == "case" else "image_"
    optional = {"HD95": f"{surface}mean_hd95", "ASSD": f"{surface}mean_assd", "PQ": f"{p}mean_pq",
                "AJI": f"{p}mean_aji"}
    for column, key in optional.items():
        if any(key in r or "instances" in r for r in results.values()):
            for row, result in zip(rows, results.values()):
                row[column] = _object_value(result, column.lower(), reduction) if "instances" in result \
                    else _value(result, key)
    regions: list[str] = []
    for result in results.values():
        regions += [n for n in result.get("regions", {}) if n not in regions]
    for region in regions:
        for row, result in zip(rows, results.values()):
            scores = result.get("regions", {}).get(region, {})
            row[f"Dice {region}"] = _value(scores, f"{p}dice")
            if f"{surface}hd95" in scores:
                row[f"HD95 {region}"] = _value(scores, f"{surface}hd95")
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns, rows


def _object_value(result: Mapping[str, Any], metric: str, reduction: str) -> float:
    """PQ/AJI of a result's object-level `instances` entry: pooled for `"dataset"`, the per-image mean otherwise
    (objects are scored per image, also for the `"case"` table)."""
    return _value(result["instances"], metric if reduction == "dataset" else f"image_{metric}")


def _best(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    best = {}
    for column in columns[1:]:
        values = [row.get(column) for row in rows]
        values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
        if len(rows) > 1 and values and min(values) < max(values):
            best[column] = min(values) if column.startswith(_LOWER_IS_BETTER) else max(values)
    return best


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], digits: int = 3,
                   bold_best: bool = True) -> str:
    """A GitHub Markdown table; NaN is `n/a`, and with several rows the best value of each column is bold (the
    lowest for HD/ASSD columns, the highest otherwise)."""
    best = _best(columns, rows) if bold_best else {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
    for row in rows:
        cells = []
        for column in columns:
            text = _cell(row.get(column, float("nan")), digits)
            cells.append(f"**{text}**" if column in best and row.get(column) == best[column] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: str | Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """The table with full-precision values; undefined (NaN) values are empty cells."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if isinstance(row.get(c), float) and not math.isfinite(row[c]) else row.get(c, "")
                             for c in columns})


# -- figures -----------------------------------------------------------------------------------------------------
def plot_scores(path: str | Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
                prefix: str = "Dice ") -> None:
    """Grouped bar chart: one group per `prefix` column (per-class Dice, or F1 for classifiers), one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [c for c in columns if c.startswith(prefix)]
    if "mean fg Dice" in columns:
        groups.append("mean fg Dice")
    fig, ax = plt.subplots(figsize=(max(6.0, 1 + len(groups) * (0.6 + 0.4 * len(rows))), 4))
    width = 0.8 / max(len(rows), 1)
    positions = np.arange(len(groups))
    for i, row in enumerate(rows):
        values = [row.get(g, float("nan")) for g in groups]
        ax.bar(positions + (i - (len(rows) - 1) / 2) * width, np.nan_to_num(values, nan=0.0), width,
               label=str(row["model"]))
    ax.set_xticks(positions, [g.removeprefix(prefix) for g in groups], rotation=20, ha="right")
    ax.set(ylim=(0, 1), ylabel=prefix.strip() or "score", title=f"{prefix.strip()} per class")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def overlay(image: Any, target: np.ndarray, pred: np.ndarray, cls: int | None = None, alpha: float = 0.5,
            ignore_index: int | None = 255) -> np.ndarray:
    """(H, W, 3) uint8: `hfseg.viz.overlay_errors` of `pred` against `target`, without a legend (the report names
    the colours).

    `cls` picks the class scored; by default every foreground class (> 0) is, and a foreground pixel predicted as
    another foreground class is yellow. Pixels whose target is `ignore_index` keep the image's colour.
    """
    return overlay_errors(image, pred, target, classes=None if cls is None else [cls], ignore_index=ignore_index,
                          alpha=alpha, legend=False)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _default_class(result: Mapping[str, Any]) -> int | None:
    return 1 if len(result.get("per_class", {})) == 2 else None


# -- the report --------------------------------------------------------------------------------------------------
def write_metrics(results: Mapping[str, Mapping[str, Any]], output_dir: str | Path) -> dict[str, Path]:
    """`<output_dir>/<model>/metrics.json` per model (without the `examples` arrays); NaN is written as null."""
    paths = {}
    for name, result in results.items():
        folder = Path(output_dir) / _safe(name)
        folder.mkdir(parents=True, exist_ok=True)
        paths[name] = folder / "metrics.json"
        write_json(paths[name], {k: v for k, v in result.items() if k != "examples"})
    return paths


def write_report(
    results: Mapping[str, Mapping[str, Any]],
    output_dir: str | Path,
    reduction: Literal["image", "dataset", "case"] = "image",
    overlay_class: int | None = None,
    num_overlays: int = 4,
    digits: int = 3,
    title: str | None = None,
) -> dict[str, Any]:
    """Write `report.md`, `report.csv`, `dice.png` (F1 for classifiers) and `overlays/<model>/*.png` (from the
    results' `examples`, see `evaluate_model(examples=N)`).

    Returns:
        `dict`: `markdown` (the table), `columns`, `rows`, `paths` (`report`, `csv`, `chart`, `overlays`: list of
        PNG paths) and `overlays` (`{model: [(H, W, 3) uint8 arrays]}`).
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    columns, rows = comparison_table(results, reduction)
    table = markdown_table(columns, rows, digits)
    write_csv(output / "report.csv", columns, rows)
    classification = _task(results) == "classification"
    chart = output / "dice.png"
    plot_scores(chart, columns, rows, prefix="F1 " if classification else "Dice ")

    overlays: dict[str, list[np.ndarray]] = {}
    overlay_paths: list[Path] = []
    for name, result in results.items():
        examples = result.get("examples") or []
        if not examples or num_overlays <= 0:
            continue
        folder = output / "overlays" / _safe(name)
        folder.mkdir(parents=True, exist_ok=True)
        cls = overlay_class if overlay_class is not None else _default_class(result)
        overlays[name] = []
        for i, example in enumerate(examples[:num_overlays]):
            array = overlay(example["image"], example["label"], example["pred"], cls)
            path = folder / f"{i:03d}_{_safe(str(example.get('case_id', i)))}.png"
            Image.fromarray(array).save(path)
            overlays[name].append(array)
            overlay_paths.append(path)

    first = next(iter(results.values()))
    lines = [f"# {title or 'Model comparison'}", ""]
    lines.append(f"Dataset `{first.get('dataset')}`, split `{first.get('split')}`, "
                 f"{first.get('num_images', first.get('num_samples', '?'))} items.")
    options = {k: first.get(k) for k in ("tta_flip", "sliding_window") if first.get(k) not in (None, False)}
    if "sliding_window" in options:
        options["overlap"] = first.get("overlap")
    if options:
        lines.append("Inference: " + ", ".join(f"{k}={v}" for k, v in options.items()) + ".")
    if not classification:
        what = {"image": "per-image means", "dataset": "pooled over all pixels", "case": "per-case (volume) means"}
        lines.append(f"Reduction: {what[reduction]}; "
                     "mIoU over all classes; HD95/ASSD mean over foreground classes.")
    lines += ["", table, "", "![scores per class](dice.png)", ""]
    if reduction != "case" and any(r.get("num_cases") for r in results.values()):
        case_columns, case_rows = comparison_table(results, "case")
        spacing = (first.get("cases") or {}).get("spacing") or {}
        values = spacing.get("values") or []
        where = f" at voxel spacing {' / '.join('x'.join(f'{v:g}' for v in sp) for sp in values)}" if values else ""
        lines += [f"Per case ({first.get('num_cases')} cases): each case's slices scored as one volume{where}, then "
                  "averaged over cases (the unit BraTS and CHAOS report); per_case.csv has every case.", "",
                  markdown_table(case_columns, case_rows, digits), ""]
    if overlay_paths:
        what = f"class {overlay_class}" if overlay_class is not None else "the foreground"
        several = overlay_class is None and any(_default_class(r) is None for r in results.values())
        colours = "TP green, FP red, FN blue" + (", another foreground class yellow" if several else "")
        lines += [f"Overlays of {what}: {colours}.", ""]
        lines += [f"![{p.parent.name} {p.stem}]({p.relative_to(output).as_posix()})" for p in overlay_paths]
        lines.append("")
    (output / "report.md").write_text("\n".join(lines))
    paths = {"report": output / "report.md", "csv": output / "report.csv", "chart": chart, "overlays": overlay_paths}
    return {"markdown": table, "columns": columns, "rows": rows, "paths": paths, "overlays": overlays}
