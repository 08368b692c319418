"""Evaluate trained models: native-resolution inference, metrics over a dataset split, comparison reports.

- `inference`: `load_model(path)` -> (model, processor); `predict_logits(model, processor, image)` -> (K, H, W)
  logits at the image's own size, with resizing or a Gaussian-weighted sliding window and flip TTA.
- `evaluate`: `evaluate_model(path, "demo")` -> metrics dict (`SegmentationMetrics` / `ClassificationMetrics`),
  per image and, with a `case_id` column, per case (a volume); `evaluate_models([...])` -> `{name: metrics}` on the
  same items; `case_table(results)` -> one row per (model, case).
- `report`: `write_report(results, output_dir)` -> report.md, report.csv, dice.png, TP/FP/FN overlays.

The command line is `recipes/evaluate.py`.
"""

from .cases import case_table
from .evaluate import evaluate_model, evaluate_models, load_split, resolve_regions
from ..inference import classify_logits, load_model, predict_logits, predict_mask
from .report import comparison_table, markdown_table, overlay, write_metrics, write_report

__all__ = [
    "case_table",
    "classify_logits",
    "comparison_table",
    "evaluate_model",
    "evaluate_models",
    "load_model",
    "load_split",
    "markdown_table",
    "overlay",
    "predict_logits",
    "predict_mask",
    "resolve_regions",
    "write_metrics",
    "write_report",
]
