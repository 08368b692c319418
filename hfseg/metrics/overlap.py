"""Overlap metrics from a confusion matrix: Dice, IoU, precision, recall, specificity, pixel accuracy.

Everything is computed from a (K, K) confusion matrix (rows = target, columns = prediction), built with one
`torch.bincount` on the tensors' own device, so it is cheap enough for every validation batch.

Empty policy (explicit, the same for every ratio): a ratio whose denominator is 0 is undefined and is NaN.
For Dice and IoU that happens only when the class is absent from both target and prediction; a class absent
from the target but predicted has Dice = IoU = 0 (defined: all false positives). Likewise the precision of a class
never predicted and the recall of a class absent from the target are NaN (their Dice, 0, still records the miss). Means use `nanmean`:
**absent classes are excluded from means, not counted as 1 or 0**. Pass `empty_score` (e.g. 1.0, as some papers
do) to count a class absent from both sides as that score instead (Dice, IoU, precision, recall; FNR = 1 - it).
"""

from __future__ import annotations

import numpy as np
import torch

PER_CLASS = ("dice", "iou", "precision", "recall", "specificity", "fpr", "fnr")
MEANS = ("dice", "iou", "precision", "recall", "specificity")


def as_label_tensor(x: torch.Tensor | np.ndarray, name: str = "labels") -> torch.Tensor:
    """Integer class ids as a long tensor (numpy arrays of any strides, lists, tensors on any device)."""
    x = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"`{name}` must hold integer class ids, got {x.dtype}; argmax the logits first.")
    return x.long()


def _check_range(values: torch.Tensor, valid: torch.Tensor | None, num_classes: int, name: str, extra: str = ""
                 ) -> None:
    bad = (values < 0) | (values >= num_classes)
    bad = bad & valid if valid is not None else bad
    if bool(bad.any()):
        found = torch.unique(values[bad]).tolist()
        raise ValueError(f"`{name}` has values {found[:10]} outside [0, {num_classes}){extra}; "
                         "fix num_classes or the labels.")


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = None,
    per_image: bool = False,
) -> torch.LongTensor:
    """Counts of (target class, predicted class) pairs; rows = target, columns = prediction.

    Args:
        pred (`torch.Tensor`): predicted class ids, any shape, e.g. (B, H, W); any integer dtype and device.
        target (`torch.Tensor`): true class ids, same shape as `pred`.
        num_classes (`int`): K; ids must lie in [0, K).
        ignore_index (`int`, *optional*): pixels whose **target** equals it are dropped from both sides (they are
            never counted as false positives or negatives), whatever their prediction.
        per_image (`bool`, *optional*, defaults to `False`): return one matrix per item of the first dimension,
            shape (B, K, K), instead of the pooled (K, K).

    Raises:
        ValueError: target (or prediction) values outside [0, K) other than `ignore_index`, or mismatched shapes.
    """
    target = as_label_tensor(target, "target")
    pred = as_label_tensor(pred, "pred").to(target.device)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
    k = int(num_classes)
    keep = target != ignore_index if ignore_index is not None else None
    _check_range(target, keep, k, "target", f" (ignore_index={ignore_index})" if keep is not None else "")
    _check_range(pred, keep, k, "pred")
    index = target * k + pred
    batches = 1
    if per_image:
        batches = target.shape[0] if target.dim() > 0 else 1
        offsets = torch.arange(batches, device=target.device).view(-1, *([1] * (target.dim() - 1)))
        index = index + offsets * (k * k)
    size = batches * k * k
    if keep is not None:  # ignored pixels go to one extra bin, dropped below (no boolean indexing, no host sync)
        index = torch.where(keep, index, size)
    counts = torch.bincount(index.reshape(-1), minlength=size + 1)[:size]
    return counts.view(batches, k, k) if per_image else counts.view(k, k)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    defined = den > 0
    return torch.where(defined, num / torch.where(defined, den, torch.ones_like(den)), float("nan"))


def _nanmean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last dimension ignoring NaN; NaN when nothing is defined (also for an empty dimension)."""
    if x.shape[-1] == 0:
        return torch.full(x.shape[:-1], float("nan"), dtype=x.dtype, device=x.device)
    return torch.nanmean(x, dim=-1)


def overlap_from_confusion(cm: torch.Tensor | np.ndarray, empty_score: float | None = None) -> dict[str, torch.Tensor]:
    """Per-class overlap metrics and their means from a confusion matrix (rows = target, columns = prediction).

    Args:
        cm (`torch.Tensor`): (K, K) counts, or (..., K, K) for several at once (e.g. one per image).
        empty_score (`float`, *optional*): score for a class absent from both target and prediction. By default
            `None`: undefined, NaN, excluded from means.

    Returns:
        `dict[str, torch.Tensor]` of float64 tensors:
        - per class, shape (..., K): `dice` (= F1), `iou` (Jaccard), `precision`, `recall` (= sensitivity),
          `specificity`, `fpr` (= 1 - specificity), `fnr` (= 1 - recall);
        - shape (...): `pixel_accuracy` (correct / counted pixels), `mean_pixel_accuracy` (mPA, mean per-class
          recall), and for each of dice, iou, precision, recall, specificity `mean_<name>` (all classes) and
          `mean_foreground_<name>` (classes other than 0, the background).
        Means skip NaN classes (see the module docstring).
    """
    cm = torch.as_tensor(cm).to(torch.float64)
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)
    fn = cm.sum(-1) - tp
    fp = cm.sum(-2) - tp
    total = cm.sum((-2, -1)).unsqueeze(-1)
    tn = total - tp - fp - fn
    out = {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "fpr": _ratio(fp, tn + fp),
        "fnr": _ratio(fn, tp + fn),
    }
    if empty_score is not None:
        absent = (tp + fp + fn) == 0
        for name in ("dice", "iou", "precision", "recall"):
            out[name] = torch.where(absent, torch.full_like(tp, empty_score), out[name])
        out["fnr"] = torch.where(absent, torch.full_like(tp, 1.0 - empty_score), out["fnr"])
    out["pixel_accuracy"] = _ratio(tp.sum(-1), total.squeeze(-1))
    return {**out, **class_means(out)}


def class_means(per_class: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`mean_pixel_accuracy` (mean recall) and `mean_<name>` / `mean_foreground_<name>` (classes 1..K-1) for each
    of dice, iou, precision, recall, specificity found in `per_class` (tensors (..., K)); NaN classes are skipped."""
    out = {"mean_pixel_accuracy": _nanmean(per_class["recall"])} if "recall" in per_class else {}
    for name in MEANS:
        if name in per_class:
            out[f"mean_{name}"] = _nanmean(per_class[name])
            out[f"mean_foreground_{name}"] = _nanmean(per_class[name][..., 1:])
    return out
