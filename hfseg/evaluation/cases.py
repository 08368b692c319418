"""Metrics per case: the slices of one volume (one `case_id`) pooled and scored as a 3D volume, the unit BraTS and
CHAOS report, with the voxel spacing (slice thickness, row, column) the dataset gives; whole volumes predicted by a
3D (or slice-wise) model, with their class volumes in mL (`CaseMetrics(None, ...).add_volume`); and the per-case
table."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from ..metrics import SegmentationMetrics, class_means

CASE_COLUMN = "case_id"
ORDER_COLUMNS = ("slice_index", "slice")  # the first one the split has orders a case's slices
CASE_METRICS = ("dice", "iou", "precision", "recall", "hd", "hd95", "assd")
_SURFACE = ("hd", "hd95", "assd")


def region_masks(pred: np.ndarray, label: np.ndarray, ids: tuple[int, ...], ignore_index: int | None):
    target = np.isin(label, ids).astype(np.int64)
    if ignore_index is not None:
        target[label == ignore_index] = ignore_index
    return np.isin(pred, ids).astype(np.int64), target


def _nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    count = (~np.isnan(x)).sum(axis)
    return np.where(count > 0, np.nansum(x, axis) / np.maximum(count, 1), np.nan)


def _nanstd(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample standard deviation (ddof 1) skipping NaN; NaN with fewer than two defined values."""
    count = (~np.isnan(x)).sum(axis)
    deviation = np.where(np.isnan(x), 0.0, x - np.expand_dims(_nanmean(x, axis), axis))
    variance = (deviation**2).sum(axis) / np.maximum(count - 1, 1)
    return np.where(count > 1, np.sqrt(variance), np.nan)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values).ravel()]


def _compact(mask: np.ndarray) -> np.ndarray:
    """Class ids in the smallest integer type holding them (uint8 for most), to keep whole cases in memory."""
    if mask.size == 0:
        return mask
    return mask.astype(np.result_type(np.min_scalar_type(mask.min()), np.min_scalar_type(mask.max())))


def _stack(slices: list[np.ndarray], fill: int) -> tuple[np.ndarray, bool]:
    """(D, H, W) of the slices, smaller ones padded at the bottom and right with `fill`; whether any was padded."""
    height, width = max(s.shape[0] for s in slices), max(s.shape[1] for s in slices)
    padded = any(s.shape != (height, width) for s in slices)
    if not padded:
        return np.stack(slices), False
    out = np.full((len(slices), height, width), fill, dtype=np.result_type(np.min_scalar_type(fill), *slices))
    for volume_slice, s in zip(out, slices):
        volume_slice[: s.shape[0], : s.shape[1]] = s
    return out, True


def _column(data: datasets.Dataset, name: str) -> list[Any] | None:
    return list(data[name]) if name in data.column_names else None


def _case_spacings(data: datasets.Dataset, spacing: Sequence[float] | None) -> tuple[list[tuple[float, ...]],
                                                                                    dict[str, str]]:
    """(slice, row, col) spacing of every item and where each part came from."""
    n = len(data)
    full = _column(data, "spacing")
    full = full if full is not None and all(v is not None and len(v) == 3 for v in full) else None
    thickness = _column(data, "slice_thickness")
    if thickness is not None:
        slices, slice_source = [float(v) for v in thickness], "slice_thickness column"
    elif full is not None:
        slices, slice_source = [float(v[0]) for v in full], "spacing column"
    else:
        slices, slice_source = [1.0] * n, "1 (unknown)"
    pixel = _column(data, "pixel_spacing")
    if spacing is not None:
        rows_cols, source = [tuple(float(v) for v in spacing)] * n, "spacing argument"
    elif pixel is not None:
        rows_cols, source = [tuple(float(v) for v in p) for p in pixel], "pixel_spacing column"
    elif full is not None:
        rows_cols, source = [tuple(float(x) for x in v[1:]) for v in full], "spacing column"
    else:
        rows_cols, source = [(1.0, 1.0)] * n, "1 (pixels)"
    return [(z, *rc) for z, rc in zip(slices, rows_cols)], {"slice": slice_source, "row_col": source}


def _slice_ranks(data: datasets.Dataset) -> tuple[list[int], str]:
    """Each item's rank in slice order (`ORDER_COLUMNS`, ties and unsortable values in split order)."""
    for column in ORDER_COLUMNS:
        values = _column(data, column)
        if values is None:
            continue
        try:
            order = sorted(range(len(values)), key=lambda i: (values[i], i))
        except TypeError:  # mixed or missing values
            continue
        ranks = [0] * len(order)
        for rank, i in enumerate(order):
            ranks[i] = rank
        return ranks, f"{column} column"
    return list(range(len(data))), "split order"


class CaseMetrics:
    """Per-case accumulator: collects each case's slices as they are predicted, scores a case as one volume as soon
    as its last slice arrives (one `SegmentationMetrics.update` per case), then reports means and spreads."""

    def __init__(self, data, id2label, regions, ignore_index, surface, spacing):
        """`data`: the split of slices (with its `case_id` column), or None to add whole volumes (`add_volume`)."""
        self.volumes = data is None
        self.ids = [] if data is None else [str(c) for c in data[CASE_COLUMN]]
        self.first = {case: i for i, case in reversed(list(enumerate(self.ids)))}
        if data is None:
            self.ranks, self.order_source = [], "volumes"
            self.spacings, self.spacing_source = [], {"volume": "each case's spacing"}
        else:
            self.ranks, self.order_source = _slice_ranks(data)
            self.spacings, self.spacing_source = _case_spacings(data, spacing)
        self.remaining = Counter(self.ids)
        self.pending: dict[str, list[tuple[int, int, np.ndarray, np.ndarray]]] = {}
        self.regions, self.ignore_index = regions, ignore_index
        common = dict(ignore_index=ignore_index, surface=surface)
        self.metrics = SegmentationMetrics(len(id2label), id2label=id2label, **common)
        self.region_metrics = {region: SegmentationMetrics(2, id2label={0: "background", 1: region}, **common)
                               for region in regions}
        self.done: list[str] = []
        self.info: dict[str, dict[str, Any]] = {}

    def add(self, index: int, pred: np.ndarray, label: np.ndarray) -> None:
        case = self.ids[index]
        self.pending.setdefault(case, []).append((self.ranks[index], index, _compact(pred), _compact(label)))
        self.remaining[case] -= 1
        if self.remaining[case] == 0:
            self._finish(case, sorted(self.pending.pop(case), key=lambda s: s[0]))

    def _finish(self, case: str, slices: list[tuple[int, int, np.ndarray, np.ndarray]]) -> None:
        fill = self.ignore_index if self.ignore_index is not None else 0
        pred, _ = _stack([s[2] for s in slices], 0)
        label, padded = _stack([s[3] for s in slices], fill)
        if padded:
            warnings.warn(f"Case {case!r} has slices of different sizes: they are padded to "
                          f"{label.shape[1:]} ({'ignored' if self.ignore_index is not None else 'background'}) to "
                          "stack them, so its 3D surface distances mix unaligned slices.", stacklevel=4)
        spacings = {self.spacings[s[1]] for s in slices}
        spacing = self.spacings[slices[0][1]]
        if len(spacings) > 1:
            warnings.warn(f"Case {case!r} has slices of {len(spacings)} spacings; its volume uses the first slice's "
                          f"{spacing}.", stacklevel=4)
        self._score(case, pred, label, spacing, {"num_slices": len(slices)})

    def add_volume(self, case: str, pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> None:
        """Score one whole case: `pred` and `label` (X, Y, Z) class ids on the same grid, `spacing` in mm per axis.

        Its entry also gets `shape` and the class volumes in mL of the truth (`volume_ml`) and of the prediction
        (`predicted_volume_ml`), one per class."""
        if not self.volumes:
            raise RuntimeError("add_volume needs a CaseMetrics made for volumes (data=None).")
        case = str(case)
        if case in self.info:
            raise ValueError(f"Case {case!r} was already scored.")
        self.first[case] = len(self.first)
        pred, label = _compact(np.asarray(pred)), _compact(np.asarray(label))
        if pred.shape != label.shape:
            raise ValueError(f"Case {case!r}: prediction {pred.shape} and label {label.shape} differ in shape.")
        spacing = tuple(float(s) for s in spacing)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        classes = range(len(self.metrics.names))
        valid = label != self.ignore_index if self.ignore_index is not None else np.ones(label.shape, bool)
        info = {"shape": list(pred.shape),
                "volume_ml": [float(((label == c) & valid).sum()) * voxel_ml for c in classes],
                "predicted_volume_ml": [float((pred == c).sum()) * voxel_ml for c in classes]}
        self._score(case, pred, label, spacing, info)

    def _score(self, case: str, pred: np.ndarray, label: np.ndarray, spacing: tuple[float, ...],
               info: dict[str, Any]) -> None:
        self.metrics.update(pred[None], label[None], spacing=spacing)
        for region, acc in self.region_metrics.items():
            region_pred, region_target = region_masks(pred, label, self.regions[region], self.ignore_index)
            acc.update(region_pred[None], region_target[None], spacing=spacing)
        self.done.append(case)
        self.info[case] = {**info, "spacing": list(spacing)}

    def _entry(self, j: int, values: Mapping[str, np.ndarray], regions: Mapping[str, Mapping[str, np.ndarray]]
               ) -> dict[str, Any]:
        case = self.done[j]
        row = {name: values[name][j] for name in CASE_METRICS if name in values}
        entry: dict[str, Any] = {**self.info[case], **{name: _floats(v) for name, v in row.items()}}
        means = class_means({name: torch.from_numpy(row[name]) for name in ("dice", "iou") if name in row})
        entry.update({key: float(value) for key, value in means.items()})
        entry.update({f"mean_{name}": float(_nanmean(row[name][1:])) for name in _SURFACE if name in row})
        if regions:
            entry["regions"] = {region: {name: float(v[j]) for name, v in scores.items()}
                                for region, scores in regions.items()}
        return entry

    def merge_into(self, result: dict[str, Any]) -> None:
        """Add `num_cases`, the `case_*` keys (also in `per_class` and `regions`) and `cases` to `result`."""
        if self.pending:  # every item was predicted, so every case is complete
            raise RuntimeError(f"Cases {sorted(self.pending)[:5]} are incomplete.")
        computed, values = self.metrics.compute(), self.metrics.per_image()
        regions = {region: {name: v[:, 1] for name, v in acc.per_image().items() if name in CASE_METRICS}
                   for region, acc in self.region_metrics.items()}  # (cases,) of the region's class 1
        order = sorted(range(len(self.done)), key=lambda j: self.first[self.done[j]])
        per_case = {self.done[j]: self._entry(j, values, regions) for j in order}
        mean = {key.removeprefix("image_"): value for key, value in computed.items() if key.startswith("image_")}
        std: dict[str, Any] = {name: _floats(_nanstd(values[name])) for name in CASE_METRICS if name in values}
        scalars = [key for key, value in next(iter(per_case.values())).items()
                   if key.startswith("mean_") and isinstance(value, float)]
        std.update({key: float(_nanstd(np.array([entry[key] for entry in per_case.values()]))) for key in scalars})
        names = [name for name in CASE_METRICS if name in values]
        per_class: dict[str, dict[str, float]] = {}
        for c, label in enumerate(self.metrics.names):
            per_class[label] = {}
            for name in names:
                per_class[label][name], per_class[label][f"{name}_std"] = mean[name][c], std[name][c]
        unique = list(dict.fromkeys(tuple(entry["spacing"]) for entry in per_case.values()))
        cases: dict[str, Any] = {
            "num_cases": len(per_case), "slice_order": self.order_source,
            "spacing": {"axes": ["axis 0", "axis 1", "axis 2"] if self.volumes else ["slice", "row", "col"],
                        **self.spacing_source, "values": [list(v) for v in unique]},
            "per_case": per_case, "mean": mean, "std": std, "per_class": per_class,
        }
        result["num_cases"] = len(per_case)
        result.update({f"case_{key}": value for key, value in mean.items()})
        for label, scores in result.get("per_class", {}).items():
            scores.update({f"case_{name}": per_class[label][name] for name in names})
        if regions:
            cases["regions"] = {region: _summary(scores) for region, scores in regions.items()}
            for region, scores in regions.items():
                result.setdefault("regions", {}).setdefault(region, {}).update(
                    {f"case_{name}": cases["regions"][region][name] for name in scores})
        result["cases"] = cases


def _summary(values: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`{name: mean, name_std: sample std}` of per-case values, NaN skipped."""
    out = {}
    for name, v in values.items():
        out[name], out[f"{name}_std"] = float(_nanmean(v)), float(_nanstd(v))
    return out


def case_table(results: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """`(columns, rows)`: one row per (model, case) of `{model name: evaluate_model(...) result}` with `cases`:
    `model`, `case_id`, `num_slices` (slices stacked) or `shape` (whole volumes), `spacing` (`"slice x row x col"`,
    or per array axis for volumes), per foreground class `dice_<class>`, `iou_<class>` (and `hd95_<class>`,
    `assd_<class>` with surface distances; `volume_ml_<class>` / `predicted_volume_ml_<class>` for volumes),
    `mean_foreground_dice`,
    `mean_foreground_iou`, `mean_hd95`, `mean_assd`, and per region `dice_<region>` / `hd95_<region>`. Models
    without per-case results give no rows."""
    columns, rows = ["model", "case_id"], []
    for model, result in results.items():
        names = list(result.get("per_class", {}))
        for case, entry in result.get("cases", {}).get("per_case", {}).items():
            row: dict[str, Any] = {"model": model, "case_id": case}
            if "num_slices" in entry:
                row["num_slices"] = entry["num_slices"]
            if "shape" in entry:
                row["shape"] = " x ".join(str(v) for v in entry["shape"])
            row["spacing"] = " x ".join(f"{v:g}" for v in entry["spacing"])
            for metric in ("dice", "iou", "hd95", "assd"):
                for c, name in list(enumerate(names))[1:]:
                    if metric in entry:
                        row[f"{metric}_{name}"] = entry[metric][c]
            for key in ("volume_ml", "predicted_volume_ml"):
                for c, name in list(enumerate(names))[1:]:
                    if key in entry:
                        row[f"{key}_{name}"] = entry[key][c]
            for key in ("mean_foreground_dice", "mean_foreground_iou", "mean_hd95", "mean_assd"):
                if key in entry:
                    row[key] = entry[key]
            for region, scores in entry.get("regions", {}).items():
                row.update({f"{metric}_{region}": scores[metric] for metric in ("dice", "hd95") if metric in scores})
            rows.append(row)
            columns += [c for c in row if c not in columns]
    return columns, rows
