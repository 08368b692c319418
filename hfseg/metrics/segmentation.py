"""`SegmentationMetrics`: accumulate predicted label maps batch by batch, then report both reductions papers use.

- **dataset** (pooled, "micro"): one confusion matrix over every pixel of every image, then the ratios. These are
  the numbers of the transformers semantic-segmentation recipe (`mean_iou`). Keys without prefix: `mean_dice`,
  `mean_foreground_dice`, `mean_iou`, `pixel_accuracy`, per-class lists `dice`, `iou`, ...
- **image** (per case): each metric per image, each class averaged over the images where it is defined (NaN
  skipped, see the empty policy in `overlap.py`), then averaged over classes like the dataset numbers. This is the
  per-case mean most medical papers report. Keys prefixed `image_`: `image_mean_dice`, `image_dice`, ...

Optional per-image extras, computed on CPU at `update`: surface distances (`surface=True`: `image_hd`,
`image_hd95`, `image_assd` and their `image_mean_*` over foreground classes; see `surface.py`) and instance
metrics of each foreground class's connected components (`instance=True`: per image `image_pq`, `image_sq`,
`image_rq`, `image_aji`; pooled over the dataset `pq`, `sq`, `rq`, `aji`; with `mean_*` over foreground classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from .instance import instance_metrics, pq_from_counts
from .overlap import PER_CLASS, as_label_tensor, class_means, confusion_matrix, overlap_from_confusion
from .surface import surface_metrics

SURFACE = ("hd", "hd95", "assd")
INSTANCE = ("pq", "sq", "rq", "aji")
_POOLED = ("tp", "fp", "fn", "iou_sum", "aji_intersection", "aji_union")


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """`np.nanmean` without the all-NaN warning (all-NaN slices give NaN)."""
    count = (~np.isnan(x)).sum(axis)
    total = np.nansum(x, axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class SegmentationMetrics:
    """Overlap metrics (and optionally surface and instance metrics) over batches of predicted label maps.

    Args:
        num_classes (`int`): K, including the background class 0 (2 for binary segmentation).
        ignore_index (`int`, *optional*): target value of pixels to leave out of every metric (e.g. 255).
        id2label (`Mapping[int, str]`, *optional*): names for the `per_class` entry (defaults to "0", "1", ...).
        empty_score (`float`, *optional*): score of a class absent from both target and prediction (default:
            undefined, NaN, skipped in means); see `overlap.py`.
        surface (`bool`, *optional*, defaults to `False`): also compute HD, HD95 and ASSD per image and class.
        instance (`bool`, *optional*, defaults to `False`): also compute PQ and AJI per image and class.
        spacing (`Sequence[float]`, *optional*): pixel size per axis for surface distances (default 1 per axis).
        surface_empty_value (`float`, *optional*, defaults to NaN): surface distance when exactly one of the two
            masks is empty (both empty -> 0).
        hd_mode (`str`, *optional*, defaults to `"union"`): HD95 convention, `"union"` (medpy) or `"max"` (MONAI).
        connectivity (`int`, *optional*): connectivity of instances (defaults to full, 8 in 2D).

    Example:
        ```python
        >>> metrics = SegmentationMetrics(num_classes=3, ignore_index=255, id2label={0: "bg", 1: "liver", 2: "tumour"})
        >>> for batch in loader:  # doctest: +SKIP
        ...     metrics.update(model(batch["pixel_values"]).logits.argmax(1), batch["labels"])
        >>> metrics.compute()["mean_foreground_dice"]  # doctest: +SKIP

        ```
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        id2label: Mapping[int, str] | None = None,
        empty_score: float | None = None,
        surface: bool = False,
        instance: bool = False,
        spacing: Sequence[float] | None = None,
        surface_empty_value: float = float("nan"),
        hd_mode: Literal["union", "max"] = "union",
        connectivity: int | None = None,
    ):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        labels = {int(k): str(v) for k, v in (id2label or {}).items()}
        self.names = [labels.get(i, str(i)) for i in range(self.num_classes)]
        self.empty_score = empty_score
        self.surface, self.instance = surface, instance
        self.spacing, self.surface_empty_value, self.hd_mode = spacing, surface_empty_value, hd_mode
        self.connectivity = connectivity
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._cms: list[torch.Tensor] = []
        self._surface: dict[str, list[np.ndarray]] = {name: [] for name in SURFACE}
        self._instance: dict[str, list[np.ndarray]] = {name: [] for name in INSTANCE + _POOLED}

    @torch.no_grad()
    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
               spacing: Sequence[float] | Sequence[Sequence[float]] | None = None) -> None:
        """Add a batch: `pred` and `target` (B, H, W) (or (B, D, H, W)) class ids, `pred` already argmaxed.

        `spacing` overrides the constructor's for this batch: one per-axis tuple, or one per image.
        """
        target = as_label_tensor(target, "target")
        pred = as_label_tensor(pred, "pred").to(target.device)
        if target.dim() < 2:
            raise ValueError(f"Expected a batch of label maps (B, H, W), got shape {tuple(target.shape)}.")
        self._cms.append(confusion_matrix(pred, target, self.num_classes, self.ignore_index, per_image=True))
        if not (self.surface or self.instance):
            return
        pred_np, target_np = pred.cpu().numpy(), target.cpu().numpy()
        spacings = self._spacings(spacing, len(target_np))
        for i in range(len(target_np)):
            if self.surface:
                result = surface_metrics(pred_np[i], target_np[i], self.num_classes, spacings[i], self.ignore_index,
                                         empty_value=self.surface_empty_value, mode=self.hd_mode)
                for name in SURFACE:
                    self._surface[name].append(result[name])
            if self.instance:
                self._add_instances(pred_np[i], target_np[i])

    def _spacings(self, spacing: Any, batch: int) -> list[Sequence[float] | None]:
        spacing = self.spacing if spacing is None else spacing
        if spacing is not None and np.asarray(spacing).ndim == 2:
            if len(spacing) != batch:
                raise ValueError(f"Got {len(spacing)} spacings for a batch of {batch} images.")
            return list(spacing)
        return [spacing] * batch

    def _add_instances(self, pred: np.ndarray, target: np.ndarray) -> None:
        keep = target != self.ignore_index if self.ignore_index is not None else np.ones(target.shape, dtype=bool)
        values = {name: np.full(self.num_classes, np.nan) for name in INSTANCE + _POOLED}
        for c in range(1, self.num_classes):
            result = instance_metrics((pred == c) & keep, (target == c) & keep, self.connectivity)
            for name in INSTANCE + _POOLED:
                values[name][c] = result[name]
        for name, value in values.items():
            self._instance[name].append(value)

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image, per-class values (N, K) of every metric computed, e.g. for box plots or statistical tests."""
        if not self._cms:
            return {}
        cms = torch.cat([cm.cpu() for cm in self._cms])
        scores = overlap_from_confusion(cms, self.empty_score)
        out = {name: scores[name].numpy() for name in PER_CLASS}
        out["pixel_accuracy"] = scores["pixel_accuracy"].numpy()
        out.update({name: np.stack(v) for name, v in self._surface.items() if v})
        out.update({name: np.stack(self._instance[name]) for name in INSTANCE if self._instance[name]})
        return out

    def compute(self) -> dict[str, Any]:
        """Both reductions as one flat dict: floats (means), lists (one value per class) and `per_class`
        (`{class name: {metric: value}}`); see the module docstring for the keys. Undefined values are NaN."""
        if not self._cms:
            raise RuntimeError("SegmentationMetrics.compute() called before any update().")
        cms = torch.cat([cm.cpu() for cm in self._cms])
        per_class: dict[str, np.ndarray] = {}
        scalars: dict[str, float] = {"num_images": int(cms.shape[0])}

        dataset = overlap_from_confusion(cms.sum(0), self.empty_score)
        per_class.update({name: dataset[name].numpy() for name in PER_CLASS})
        scalars.update({k: float(v) for k, v in dataset.items() if v.dim() == 0})

        images = self.per_image()
        image_per_class = {name: torch.from_numpy(_nanmean(images[name], 0)) for name in PER_CLASS}
        per_class.update({f"image_{name}": v.numpy() for name, v in image_per_class.items()})
        scalars["image_pixel_accuracy"] = float(_nanmean(images["pixel_accuracy"], 0))
        scalars.update({f"image_{k}": float(v) for k, v in class_means(image_per_class).items()})

        for name in SURFACE + INSTANCE:
            if name in images:
                per_class[f"image_{name}"] = _nanmean(images[name], 0)
                scalars[f"image_mean_{name}"] = float(_nanmean(per_class[f"image_{name}"][1:], 0))
        if self.instance:
            per_class.update(self._pooled_instances())
            scalars.update({f"mean_{name}": float(_nanmean(per_class[name][1:], 0)) for name in INSTANCE})

        out: dict[str, Any] = dict(scalars)
        out.update({name: [float(v) for v in values] for name, values in per_class.items()})
        out["per_class"] = {label: {name: float(values[c]) for name, values in per_class.items()}
                            for c, label in enumerate(self.names)}
        return out

    def _pooled_instances(self) -> dict[str, np.ndarray]:
        """PQ/SQ/RQ and AJI per class from counts summed over all images (COCO-style pooling)."""
        sums = {name: np.nansum(np.stack(self._instance[name]), 0) for name in _POOLED}
        out = {name: np.full(self.num_classes, np.nan) for name in INSTANCE}
        for c in range(1, self.num_classes):
            pq = pq_from_counts(int(sums["tp"][c]), int(sums["fp"][c]), int(sums["fn"][c]), sums["iou_sum"][c])
            for name in ("pq", "sq", "rq"):
                out[name][c] = pq[name]
            union = sums["aji_union"][c]
            out["aji"][c] = sums["aji_intersection"][c] / union if union else np.nan
        return out
