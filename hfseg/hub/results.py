"""A run's validation metrics as the model card's results: `EvalResult`s for the `model-index` and table rows.

Which metrics are reported, per task: `(key in metrics.json, model-index metric type, display name)`. Keys absent
from a run, and undefined values (NaN, written as `null`), are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import EvalResult

PIPELINE_TAGS = {"segmentation": "image-segmentation", "classification": "image-classification"}
TASK_NAMES = {"segmentation": "Semantic segmentation", "classification": "Image classification"}

HEADLINE: dict[str, tuple[tuple[str, str, str], ...]] = {
    "segmentation": (
        ("mean_foreground_dice", "dice", "Mean foreground Dice"),
        ("image_mean_foreground_dice", "dice", "Mean foreground Dice (per image)"),
        ("mean_dice", "dice", "Mean Dice"),
        ("mean_iou", "mean_iou", "mIoU"),
        ("mean_foreground_iou", "mean_iou", "Mean foreground IoU"),
        ("pixel_accuracy", "accuracy", "Pixel accuracy"),
        ("image_mean_hd95", "hd95", "Mean HD95 (per image, pixels)"),
    ),
    "classification": (
        ("accuracy", "accuracy", "Accuracy"),
        ("balanced_accuracy", "balanced_accuracy", "Balanced accuracy"),
        ("macro_f1", "f1", "Macro F1"),
        ("weighted_f1", "f1", "Weighted F1"),
        ("mean_max_probability", "mean_max_probability", "Mean max probability"),
    ),
}
# Per-class lists in the model-index (key, metric type, display name); the card's table shows more columns.
PER_CLASS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "segmentation": (("dice", "dice", "Dice"), ("iou", "iou", "IoU")),
    "classification": (("f1", "f1", "F1"),),
}
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "segmentation": (("dice", "Dice"), ("iou", "IoU"), ("precision", "Precision"), ("recall", "Recall"),
                     ("image_dice", "Dice (per image)")),
    "classification": (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), ("support", "Support")),
}


def number(value: Any) -> float | int | None:
    """`value` if it is a finite number (an int stays an int, e.g. a support count), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value
    return float(value) if math.isfinite(value) else None


def class_names(metrics: Mapping[str, Any], id2label: Mapping[int, str] | None) -> list[str]:
    """Class names in id order: the metrics' `per_class` keys (or `labels`), else the model's `id2label`."""
    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        return [str(name) for name in per_class]
    if isinstance(metrics.get("labels"), Sequence) and not isinstance(metrics.get("labels"), str):
        return [str(name) for name in metrics["labels"]]
    id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
    return [id2label[i] for i in sorted(id2label)]


def headline(task: str, metrics: Mapping[str, Any], selection_metric: str | None = None,
             ) -> list[tuple[str, str, str, float]]:
    """`(key, metric type, display name, value)` of the run's summary metrics, the selection metric included."""
    rows = [(key, kind, name, number(metrics.get(key))) for key, kind, name in HEADLINE[task]]
    if selection_metric and selection_metric not in {key for key, *_ in rows}:
        rows.insert(0, (selection_metric, selection_metric, selection_metric, number(metrics.get(selection_metric))))
    return [(key, kind, name, value) for key, kind, name, value in rows if value is not None]


def per_class(task: str, metrics: Mapping[str, Any], names: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """`{column key: {class name: value}}` for the card's per-class table (the per-class lists of metrics.json)."""
    table: dict[str, dict[str, float | None]] = {}
    for key, _ in TABLE_COLUMNS[task]:
        values = metrics.get(key)
        if isinstance(values, Sequence) and not isinstance(values, str) and len(values) == len(names):
            table[key] = {name: number(v) for name, v in zip(names, values)}
    return table


def eval_results(task: str, metrics: Mapping[str, Any], names: Sequence[str], *, dataset_type: str,
                 dataset_name: str, split: str, selection_metric: str | None = None) -> list[EvalResult]:
    """The validation metrics as `EvalResult`s (one `model-index` entry: this task, dataset and split).

    Args:
        task (`str`): `"segmentation"` or `"classification"`.
        metrics (`Mapping`): a metrics.json of the run (`best/metrics.json`).
        names (`Sequence[str]`): class names in id order, for the per-class results.
        dataset_type, dataset_name (`str`): the dataset's id and display name.
        split (`str`): the evaluated split.
        selection_metric (`str`, *optional*): the run's `train.metric`, reported even if not a headline metric.
    """
    common = dict(task_type=PIPELINE_TAGS[task], task_name=TASK_NAMES[task], dataset_type=dataset_type,
                  dataset_name=dataset_name, dataset_split=split)
    results = [EvalResult(metric_type=kind, metric_name=name, metric_value=value, **common)
               for _, kind, name, value in headline(task, metrics, selection_metric)]
    table = per_class(task, metrics, names)
    for key, kind, label in PER_CLASS[task]:
        for name, value in table.get(key, {}).items():
            if value is not None:
                results.append(EvalResult(metric_type=kind, metric_name=f"{label} ({name})", metric_config=name,
                                          metric_value=value, **common))
    return results
