"""Evaluation of a planned volume model (3D, or nnU-Net's 2d configuration) on a volume dataset: every case
predicted whole (`hfseg.inference.predict_planned`), on its own grid, and scored per case in 3D with its spacing
(`CaseMetrics.add_volume`: Dice, IoU, HD95 and ASSD in mm, class volumes in mL).

The result has the keys of `evaluate_model`'s: the pooled metrics of all cases' voxels (`mean_foreground_dice`, ...,
`image_*` per case), the `case_*` means and `cases`, so the comparison report and `per_case.csv` take it as they
take a slice dataset's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.volumes import case_arrays
from ..inference.planned import predict_planned
from .cases import CaseMetrics


class PredictedCase(NamedTuple):
    """One case's prediction: its row `index`, `case_id`, `pred` and `label` (X, Y, Z), `spacing`, and its image
    (C, X, Y, Z) when kept for pictures (else None)."""

    index: int
    case_id: str
    pred: np.ndarray
    label: np.ndarray
    spacing: list[float]
    image: np.ndarray | None


def is_volume_dataset(data: datasets.Dataset) -> bool:
    """Whether `data` holds whole volumes (`hfseg.data.volumes` rows: an image with a spacing and an affine)."""
    return {"image", "label", "spacing", "affine"} <= set(data.column_names)


def predict_cases(model: torch.nn.Module, processor: Any, data: datasets.Dataset, indices: Iterable[int],
                  tta: bool = False, keep_images: int = 0, device: torch.device | str | None = None,
                  progress: bool = True, desc: str = "cases") -> list[PredictedCase]:
    """The labelled cases among `indices`, each predicted whole; the first `keep_images` rows keep their image."""
    indices = list(indices)
    out = []
    for i in tqdm(indices, desc=desc, unit="case", leave=False, disable=not progress):
        case = case_arrays(data, i)
        if case.label is None:
            continue
        pred = predict_planned(model, processor, case.image, spacing=case.spacing, tta=tta, device=device)
        out.append(PredictedCase(i, str(case.case_id), pred, case.label, list(case.spacing),
                                 case.image if i < keep_images else None))
    return out


def score_cases(cases: Sequence[PredictedCase], id2label: Mapping[int, str],
                regions: Mapping[str, tuple[int, ...]] | None = None, ignore_index: int | None = None,
                surface: bool = True) -> dict[str, Any]:
    """Metrics of predicted cases (in row order): pooled over all voxels, per case, and the `case_*` means."""
    if not cases:
        raise ValueError("No labelled case to score.")
    names = dict(id2label) if len(id2label) > 1 else {0: "background", 1: "foreground"}
    metrics = CaseMetrics(None, names, dict(regions or {}), ignore_index, surface, None)
    for case in sorted(cases, key=lambda c: c.index):
        metrics.add_volume(case.case_id, case.pred, case.label, case.spacing)
    result = metrics.metrics.compute()
    if regions:
        from .evaluate import _region_results

        result["regions"] = _region_results(metrics.region_metrics)
    metrics.merge_into(result)
    return result


def shown_slice(case: PredictedCase) -> dict[str, Any]:
    """The case's slice (along its last axis) with the most foreground, as a 2D example for the report."""
    foreground = (case.label > 0).sum(axis=(0, 1))
    k = int(np.argmax(foreground)) if foreground.any() else case.label.shape[-1] // 2
    return {"case_id": case.case_id, "image": np.asarray(case.image[0, :, :, k]), "label": case.label[:, :, k],
            "pred": case.pred[:, :, k].astype(np.int64)}


def evaluate_volumes(model: torch.nn.Module, processor: Any, data: datasets.Dataset, id2label: Mapping[int, str],
                     regions: Mapping[str, tuple[int, ...]] | None = None, ignore_index: int | None = 255,
                     surface: bool = True, tta: bool = False, examples: int = 0, name: str = "model"
                     ) -> dict[str, Any]:
    """`evaluate_model`'s result for a planned model on a volume split (see the module docstring)."""
    cases = predict_cases(model, processor, data, range(len(data)), tta=tta, keep_images=examples, desc=name)
    result = score_cases(cases, id2label, regions, ignore_index, surface)
    if examples:
        result["examples"] = [shown_slice(case) for case in cases if case.image is not None]
    return result
