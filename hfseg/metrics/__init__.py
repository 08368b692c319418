"""Metrics medical segmentation papers report, as fast torch/numpy functions and as `evaluate` modules.

- `overlap`: confusion matrix -> Dice, IoU, precision, recall, specificity, pixel accuracy (torch, any device).
- `surface`: Hausdorff distance, HD95, average symmetric surface distance (scipy, CPU, 2D/3D, with spacing).
- `instance`: panoptic quality and aggregated Jaccard index of instance maps or connected components.
- `segmentation`: `SegmentationMetrics`, the accumulator the training loop calls every batch.
- `classification`: accuracy, confidence, confusion matrix, per-class F1; `ClassificationMetrics`.
- `load("segmentation" | "classification")`: the same numbers as an `evaluate.EvaluationModule`, loaded offline
  from the scripts shipped in `hfseg/metrics/modules/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .classification import (
    ClassificationMetrics,
    accuracy,
    confusion_table,
    mean_confidence,
    per_class_scores,
    probabilities,
)
from .instance import (
    aggregated_jaccard_index,
    connected_instances,
    instance_metrics,
    panoptic_quality,
    pq_from_counts,
)
from .overlap import class_means, confusion_matrix, overlap_from_confusion
from .segmentation import SegmentationMetrics
from .surface import (
    average_surface_distance,
    directed_average_surface_distance,
    hausdorff95,
    hausdorff_distance,
    surface_distances,
    surface_metrics,
)

if TYPE_CHECKING:
    import evaluate

MODULES_DIR = Path(__file__).resolve().parent / "modules"
EVALUATE_MODULES = {"segmentation": "hfseg_segmentation", "classification": "hfseg_classification"}


def module_path(name: str) -> Path:
    """Path of the script of an `evaluate` module shipped with hfseg (`"segmentation"` or `"classification"`)."""
    folder = EVALUATE_MODULES.get(name, name)
    path = MODULES_DIR / folder / f"{folder}.py"
    if folder not in EVALUATE_MODULES.values() or not path.is_file():
        raise ValueError(f"Unknown hfseg metric {name!r}; available: {', '.join(EVALUATE_MODULES)}.")
    return path


def load(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """`evaluate.load` of a metric shipped with hfseg, by local path: no Hub access, works with HF_HUB_OFFLINE=1.

    `kwargs` go to `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id=...`).
    """
    import evaluate  # slow to import: only when an evaluate module is asked for

    return evaluate.load(str(module_path(name)), **kwargs)


__all__ = [
    "ClassificationMetrics",
    "EVALUATE_MODULES",
    "SegmentationMetrics",
    "accuracy",
    "aggregated_jaccard_index",
    "average_surface_distance",
    "class_means",
    "confusion_matrix",
    "confusion_table",
    "connected_instances",
    "directed_average_surface_distance",
    "hausdorff95",
    "hausdorff_distance",
    "instance_metrics",
    "load",
    "mean_confidence",
    "module_path",
    "overlap_from_confusion",
    "panoptic_quality",
    "per_class_scores",
    "pq_from_counts",
    "probabilities",
    "surface_distances",
    "surface_metrics",
]
