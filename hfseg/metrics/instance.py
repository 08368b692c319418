"""Instance metrics for nuclei/gland-style segmentation: panoptic quality (PQ) and aggregated Jaccard index (AJI).

Instance maps are integer arrays, 0 = background, each other value one instance (ids need not be contiguous).
Semantic (binary) masks become instance maps with `connected_instances` (`instance_metrics` does it for you).

- **PQ** (Kirillov et al., "Panoptic Segmentation", CVPR 2019): a predicted and a true instance match when their
  IoU > 0.5, which makes matches unique. PQ = sum of matched IoUs / (TP + FP/2 + FN/2) = SQ * RQ, with
  SQ = mean matched IoU and RQ = TP / (TP + FP/2 + FN/2).
- **AJI** (Kumar et al., IEEE TMI 2017): each true instance takes the predicted instance of largest IoU (ties:
  lowest id; a prediction may be taken by several true instances, as in the original definition, unlike AJI+);
  AJI = sum of their intersections / (sum of their unions + areas of predictions never taken). A true instance
  overlapping no prediction adds its own area to the union (as in the HoVer-Net reference code).

Empty policy: no instance on either side -> `empty_value` (NaN by default: undefined, excluded from nanmeans).
With instances on one side only, PQ = RQ = AJI = 0. SQ is NaN whenever nothing matched (mean of an empty set).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

NAN = float("nan")


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def connected_instances(binary_mask: np.ndarray | torch.Tensor, connectivity: int | None = None) -> np.ndarray:
    """Label the connected components of a binary mask: an instance map (int32, 0 = background, 1..N).

    Args:
        binary_mask: boolean (or 0/1) array, any number of dimensions.
        connectivity (`int`, *optional*): neighbours that connect pixels, as in `skimage.measure.label`: 1 = faces
            only (4-neighbourhood in 2D), `ndim` = faces, edges and corners (8 in 2D). Defaults to `ndim`.
    """
    mask = _to_numpy(binary_mask).astype(bool, copy=False)
    connectivity = mask.ndim if connectivity is None else connectivity
    if not 1 <= connectivity <= mask.ndim:
        raise ValueError(f"connectivity must be in [1, {mask.ndim}] for a {mask.ndim}-D mask, got {connectivity}.")
    labels, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, connectivity))
    return labels.astype(np.int32, copy=False)


def _relabel(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Map instance ids to 1..N (0 stays background); returns the map and N."""
    ids = np.unique(instances)
    ids = ids[ids != 0]
    dense = np.searchsorted(ids, instances) + 1
    return np.where(instances != 0, dense, 0), len(ids)


class _Overlap(NamedTuple):
    """The overlapping (true, predicted) pairs of two instance maps, as parallel arrays, and every area."""

    true: np.ndarray  # index (0..T-1) of the true instance of each pair
    pred: np.ndarray  # index (0..P-1) of the predicted instance of each pair
    inter: np.ndarray  # intersection of each pair (> 0)
    union: np.ndarray  # union of each pair
    true_area: np.ndarray  # (T,)
    pred_area: np.ndarray  # (P,)


def _overlap(pred_instances: np.ndarray | torch.Tensor, true_instances: np.ndarray | torch.Tensor) -> _Overlap:
    """Only pairs that overlap are listed (sparse), so noisy maps with thousands of instances stay cheap."""
    pred, true = _to_numpy(pred_instances), _to_numpy(true_instances)
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} instance maps must have the same shape.")
    pred, n_pred = _relabel(pred)
    true, n_true = _relabel(true)
    true_area = np.bincount(true.ravel(), minlength=n_true + 1)[1:]
    pred_area = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:]
    both = (true > 0) & (pred > 0)
    keys, inter = np.unique(true[both] * (n_pred + 1) + pred[both], return_counts=True)
    t, p = keys // (n_pred + 1) - 1, keys % (n_pred + 1) - 1
    return _Overlap(t, p, inter, true_area[t] + pred_area[p] - inter, true_area, pred_area)


def panoptic_quality(
    pred_instances: np.ndarray | torch.Tensor,
    true_instances: np.ndarray | torch.Tensor,
    match_iou: float = 0.5,
    empty_value: float = NAN,
) -> dict[str, float]:
    """PQ, SQ, RQ and the match counts of two instance maps (see the module docstring).

    Args:
        pred_instances, true_instances: integer instance maps of the same shape, 0 = background.
        match_iou (`float`, *optional*, defaults to 0.5): a pair matches when IoU > this; must be >= 0.5 so that
            matches are unique.
        empty_value (`float`, *optional*, defaults to NaN): pq/sq/rq when neither map has an instance.

    Returns:
        `dict` with `pq`, `sq`, `rq`, `tp`, `fp`, `fn` and `iou_sum` (sum of matched IoUs, for pooling images).
    """
    if match_iou < 0.5:
        raise ValueError(f"match_iou must be >= 0.5 for unique matching (Kirillov et al.), got {match_iou}.")
    return _panoptic(_overlap(pred_instances, true_instances), match_iou, empty_value)


def _panoptic(overlap: _Overlap, match_iou: float, empty_value: float) -> dict[str, float]:
    iou = overlap.inter / overlap.union
    matched = iou > match_iou
    tp = int(matched.sum())
    fp, fn = len(overlap.pred_area) - tp, len(overlap.true_area) - tp
    iou_sum = float(iou[matched].sum())
    return {**pq_from_counts(tp, fp, fn, iou_sum, empty_value), "tp": tp, "fp": fp, "fn": fn, "iou_sum": iou_sum}


def pq_from_counts(tp: int, fp: int, fn: int, iou_sum: float, empty_value: float = NAN) -> dict[str, float]:
    """PQ, SQ and RQ from (possibly pooled over images) match counts and summed matched IoU."""
    if tp + fp + fn == 0:
        return {"pq": float(empty_value), "sq": float(empty_value), "rq": float(empty_value)}
    denominator = tp + 0.5 * fp + 0.5 * fn
    return {"pq": iou_sum / denominator, "sq": iou_sum / tp if tp else NAN, "rq": tp / denominator}


def aji_terms(pred_instances: np.ndarray | torch.Tensor, true_instances: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """The AJI numerator (summed intersections) and denominator (summed unions plus unused predictions)."""
    return _aji_terms(_overlap(pred_instances, true_instances))


def _aji_terms(overlap: _Overlap) -> tuple[int, int]:
    iou = overlap.inter / overlap.union
    # for each true instance, its best pair: sort by true index, then IoU descending, then predicted index (ties)
    order = np.lexsort((overlap.pred, -iou, overlap.true))
    true_sorted = overlap.true[order]
    best = order[np.unique(true_sorted, return_index=True)[1]]
    paired = np.zeros(len(overlap.true_area), dtype=bool)
    paired[overlap.true[best]] = True
    used = np.zeros(len(overlap.pred_area), dtype=bool)
    used[overlap.pred[best]] = True
    intersection = int(overlap.inter[best].sum())
    total = int(overlap.union[best].sum() + overlap.true_area[~paired].sum() + overlap.pred_area[~used].sum())
    return intersection, total


def aggregated_jaccard_index(
    pred_instances: np.ndarray | torch.Tensor,
    true_instances: np.ndarray | torch.Tensor,
    empty_value: float = NAN,
) -> float:
    """AJI of two instance maps (Kumar et al. 2017; see the module docstring); `empty_value` if both are empty."""
    intersection, total = aji_terms(pred_instances, true_instances)
    return intersection / total if total else float(empty_value)


def instance_metrics(
    pred_mask: np.ndarray | torch.Tensor,
    target_mask: np.ndarray | torch.Tensor,
    connectivity: int | None = None,
    empty_value: float = NAN,
) -> dict[str, float]:
    """PQ (with sq, rq, tp, fp, fn, iou_sum) and AJI (with aji_intersection, aji_union) of two binary masks.

    Connected components of each mask are labelled first (`connected_instances`).
    """
    overlap = _overlap(connected_instances(pred_mask, connectivity), connected_instances(target_mask, connectivity))
    intersection, total = _aji_terms(overlap)
    return {**_panoptic(overlap, 0.5, empty_value), "aji": intersection / total if total else float(empty_value),
            "aji_intersection": intersection, "aji_union": total}


class InstanceMetrics:
    """PQ and AJI of instance maps accumulated image by image, reported pooled and per image.

    `update(pred_instances, true_instances)` adds one image (or volume); `compute()` gives the pooled values
    (`pq`, `sq`, `rq` from the summed match counts, `aji` from the summed AJI terms, COCO-style), the means over
    images (`image_pq`, `image_sq`, `image_rq`, `image_aji`; images without any instance on either side skipped),
    the summed `tp`, `fp`, `fn`, and `num_true` / `num_pred` instances. A pixel where `ignore` is true (e.g. the
    label's ignore index) is left out of both maps.
    """

    def __init__(self, match_iou: float = 0.5) -> None:
        if match_iou < 0.5:
            raise ValueError(f"match_iou must be >= 0.5 for unique matching (Kirillov et al.), got {match_iou}.")
        self.match_iou = match_iou
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._rows: list[dict[str, float]] = []

    def update(self, pred_instances: np.ndarray | torch.Tensor, true_instances: np.ndarray | torch.Tensor,
               ignore: np.ndarray | None = None) -> dict[str, float]:
        """Add one image's instance maps; returns its own values (`pq`, ..., `aji`)."""
        pred, true = _to_numpy(pred_instances), _to_numpy(true_instances)
        if ignore is not None:
            pred, true = np.where(ignore, 0, pred), np.where(ignore, 0, true)
        overlap = _overlap(pred, true)
        intersection, total = _aji_terms(overlap)
        row = {**_panoptic(overlap, self.match_iou, NAN), "aji": intersection / total if total else NAN,
               "aji_intersection": intersection, "aji_union": total, "num_true": len(overlap.true_area),
               "num_pred": len(overlap.pred_area)}
        self._rows.append(row)
        return row

    def compute(self) -> dict[str, float]:
        """Pooled and per-image values (see the class docstring); NaN where undefined."""
        if not self._rows:
            raise RuntimeError("InstanceMetrics.compute() called before any update().")
        total = {key: sum(row[key] for row in self._rows)
                 for key in ("tp", "fp", "fn", "iou_sum", "aji_intersection", "aji_union", "num_true", "num_pred")}
        out: dict[str, float] = dict(pq_from_counts(int(total["tp"]), int(total["fp"]), int(total["fn"]),
                                                    total["iou_sum"]))
        out["aji"] = total["aji_intersection"] / total["aji_union"] if total["aji_union"] else NAN
        for key in ("pq", "sq", "rq", "aji"):
            values = np.array([row[key] for row in self._rows], dtype=np.float64)
            out[f"image_{key}"] = float(np.nanmean(values)) if np.isfinite(values).any() else NAN
        out.update({key: int(total[key]) for key in ("tp", "fp", "fn", "num_true", "num_pred")})
        out["num_images"] = len(self._rows)
        return out
