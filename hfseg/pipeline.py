"""Segment, then classify: the cancer-histology study's pipeline as one call.

The segmenter's mask emphasizes the regions it finds (the rest of the image is dimmed, blanked or cropped away), the
classifier grades the emphasized image, and GradCAM explains both answers::

    result = segment_then_classify(image, "runs/oral_ag/best", "runs/oral_grade/best", explain=True)
    result.label_name, result.probabilities, result.save("out/")

The same `emphasize` runs inside the classification recipe when `data.emphasis` names a segmenter, so a classifier is
trained on exactly the images it will see here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

EMPHASIS_MODES = ("dim", "mask", "crop")


def _as_array(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image)
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    return np.asarray(image)


def region_mask(mask: np.ndarray | torch.Tensor, classes: Sequence[int] | None = None) -> np.ndarray:
    """Boolean (H, W) region: pixels whose class is in `classes` (default: every class but 0, the background)."""
    mask = _as_array(mask)
    if classes is None:
        return mask > 0
    return np.isin(mask, np.asarray(list(classes)))


def emphasize(image: Any, region: np.ndarray, mode: str = "dim", background: float = 0.3,
              margin: int = 8) -> np.ndarray:
    """The image with `region` emphasized, in the image's own value range and layout ((H, W) or (H, W, C)).

    Args:
        image: PIL image or array (H, W) / (H, W, C), any dtype.
        region (`np.ndarray`): boolean (H, W), e.g. `region_mask(predicted_mask)`.
        mode (`str`, *optional*, defaults to `"dim"`): `dim` keeps the region and moves every other pixel towards the
            image's minimum (per channel) by the factor `background`; `mask` is `dim` with `background=0` (the rest
            becomes the minimum); `crop` keeps the bounding box of the region plus `margin` pixels. An empty region
            leaves the image unchanged (the classifier then sees the whole image, as without a segmenter).
        background (`float`, *optional*, defaults to 0.3): fraction of the contrast kept outside the region (`dim`).
        margin (`int`, *optional*, defaults to 8): pixels around the region's bounding box (`crop`).

    Returns:
        `np.ndarray` float32 (`dim`/`mask`) or the original dtype (`crop`).
    """
    if mode not in EMPHASIS_MODES:
        raise ValueError(f"Unknown emphasis mode {mode!r}; choose one of {', '.join(EMPHASIS_MODES)}.")
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background must be in [0, 1] (the fraction of contrast kept outside the region), got "
                         f"{background}.")
    array = _as_array(image)
    region = np.asarray(region, dtype=bool)
    if region.shape != array.shape[:2]:
        raise ValueError(f"The region is {region.shape[0]}x{region.shape[1]} but the image is "
                         f"{array.shape[0]}x{array.shape[1]}: segment the image at its native size.")
    if not region.any():
        return array.astype(np.float32) if mode != "crop" else array
    if mode == "crop":
        rows, cols = np.nonzero(region)
        top, bottom = max(rows.min() - margin, 0), min(rows.max() + margin + 1, array.shape[0])
        left, right = max(cols.min() - margin, 0), min(cols.max() + margin + 1, array.shape[1])
        return array[top:bottom, left:right].copy()
    factor = 0.0 if mode == "mask" else background
    values = array.astype(np.float32)
    low = values.min(axis=(0, 1), keepdims=True)
    keep = region if values.ndim == 2 else region[..., None]
    return np.where(keep, values, low + (values - low) * factor).astype(np.float32)


def _load(model: Any) -> tuple[torch.nn.Module, Any]:
    """A `(model, processor)` pair from a pair, or from a folder / Hub id through `load_model`."""
    from .inference import load_model

    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if isinstance(model, tuple) and len(model) == 2:
        return model
    raise TypeError("Pass a model as a folder / Hub id, or as a (model, processor) pair as load_model returns; got "
                    f"{type(model).__name__}.")


def class_ids(id2label: dict[int, str], classes: Sequence[int | str] | None) -> list[int] | None:
    """Class ids from ids or names of `id2label`; None stays None (every foreground class)."""
    if classes is None:
        return None
    by_name = {name: i for i, name in id2label.items()}
    unknown = [c for c in classes if (c not in id2label if isinstance(c, int) else c not in by_name)]
    if unknown:
        raise ValueError(f"Unknown segmenter class(es) {unknown}; the segmenter has {', '.join(by_name)}.")
    return [c if isinstance(c, int) else by_name[c] for c in classes]


class SegmenterEmphasis:
    """A picklable per-image callable: segment the image with a saved segmenter and `emphasize` its region.

    What the classification recipe applies to every image when `data.emphasis` names a segmenter, so a classifier
    is trained on the images `segment_then_classify` will give it. The model loads on first use in each process
    (DataLoader workers get the path, not the weights) on the CPU unless `device` says otherwise.
    """

    def __init__(self, segmenter: str | os.PathLike, mode: str = "dim", background: float = 0.3,
                 classes: Sequence[int | str] | None = None, margin: int = 8, device: str = "cpu") -> None:
        from .inference import is_classifier

        emphasize(np.zeros((1, 1)), np.ones((1, 1), dtype=bool), mode=mode, background=background)  # validate
        self.segmenter, self.mode, self.background, self.margin, self.device = (
            os.fspath(segmenter), mode, float(background), int(margin), device)
        model, _ = self._pair()
        if is_classifier(model):
            raise ValueError(f"data.emphasis.segmenter={self.segmenter!r} is an image classifier; it must be a "
                             "segmentation model (a segmentation run's best/ folder).")
        self.classes = class_ids({int(k): str(v) for k, v in model.config.id2label.items()}, classes)

    def _pair(self) -> tuple[torch.nn.Module, Any]:
        if getattr(self, "_loaded", None) is None:
            from .inference import load_model

            self._loaded = load_model(self.segmenter, device=self.device)
        return self._loaded

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from .inference import predict_mask

        model, processor = self._pair()
        mask = predict_mask(model, processor, image).numpy()
        return emphasize(image, region_mask(mask, self.classes), mode=self.mode, background=self.background,
                         margin=self.margin)


@dataclass
class SegmentThenClassifyResult:
    """What the pipeline saw and answered; `save(folder)` writes its pictures and arrays."""

    image: np.ndarray  # the input at native size
    mask: np.ndarray  # (H, W) segmenter classes at native size
    region: np.ndarray  # (H, W) bool: the emphasized region
    emphasized: np.ndarray  # the image the classifier graded
    probabilities: np.ndarray  # (K,) classifier probabilities
    label: int
    label_name: str
    segmenter_id2label: dict[int, str]
    classifier_id2label: dict[int, str]
    # "segmenter" / "classifier" -> hfseg.explain.Explanation
    explanations: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """`mask.png` (overlay with legend), `emphasized.png`, the explanations' PNGs in sub-folders, `result.npz`."""
        from .explain import overlay_mask, to_display

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, picture in (("emphasized", to_display(self.emphasized)),
                              ("mask", overlay_mask(self.image, self.mask, self.segmenter_id2label))):
            path = folder / f"{name}.png"
            Image.fromarray(picture).save(path)
            paths.append(path)
        for name, explanation in self.explanations.items():
            paths.extend(explanation.save(folder / name))
        np.savez_compressed(folder / "result.npz", mask=self.mask, region=self.region, emphasized=self.emphasized,
                            probabilities=self.probabilities, label=self.label)
        paths.append(folder / "result.npz")
        return paths


def segment_then_classify(
    image: Any,
    segmenter: Any,
    classifier: Any,
    *,
    classes: Sequence[int | str] | None = None,
    mode: str = "dim",
    background: float = 0.3,
    explain: bool = False,
    method: str = "gradcam",
    output_dir: str | os.PathLike | None = None,
) -> SegmentThenClassifyResult:
    """Segment `image`, emphasize the segmented regions, classify the emphasized image; optionally explain both.

    Args:
        image: PIL image or array at native size, as the dataset gives it.
        segmenter, classifier: a folder / Hub id (loaded with `hfseg.evaluation.load_model`) or a `(model,
            processor)` pair.
        classes (*optional*): segmenter classes (ids or names) forming the region; default every non-background class.
        mode, background: see `emphasize`.
        explain (`bool`, *optional*): GradCAM for the segmenter (target: the region's largest class) and for the
            classifier (target: its answer), in `result.explanations`.
        method (`str`, *optional*): the CAM method (`hfseg.explain.CAM_METHODS`).
        output_dir (*optional*): where to `save` the result.
    """
    from .inference import classify_logits, predict_mask
    from .metrics.classification import probabilities

    seg_model, seg_processor = _load(segmenter)
    cls_model, cls_processor = _load(classifier)
    seg_labels = {int(k): str(v) for k, v in seg_model.config.id2label.items()}
    cls_labels = {int(k): str(v) for k, v in cls_model.config.id2label.items()}
    ids = class_ids(seg_labels, classes)
    array = _as_array(image)
    mask = predict_mask(seg_model, seg_processor, array).numpy()
    region = region_mask(mask, ids)
    emphasized = emphasize(array, region, mode=mode, background=background)
    probs = probabilities(classify_logits(cls_model, cls_processor, emphasized)[None])[0].numpy()
    label = int(probs.argmax())
    result = SegmentThenClassifyResult(image=array, mask=mask, region=region, emphasized=emphasized,
                                       probabilities=probs, label=label, label_name=cls_labels.get(label, str(label)),
                                       segmenter_id2label=seg_labels, classifier_id2label=cls_labels)
    if explain:
        from .explain import explain as explain_one

        present = [int(c) for c in np.unique(mask[region])] if region.any() else []
        target = max(present, key=lambda c: int((mask == c).sum())) if present else None
        result.explanations["segmenter"] = explain_one(seg_model, array, seg_processor, target=target, method=method)
        result.explanations["classifier"] = explain_one(cls_model, emphasized, cls_processor, target=label,
                                                        method=method)
    if output_dir is not None:
        result.save(output_dir)
    return result
