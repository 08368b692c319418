"""Explain one prediction with one call: prediction, CAM, attention gates and their overlays, saved as PNGs.

`explain(model, image)` runs at the image's native size: the prediction comes from
`hfseg.inference.predict_mask` (segmentation) or `classify_logits` (classification), with the same
preprocessing as evaluation; the CAM and the attention-gate maps are computed on the image as the network sees it
(normalized, resized to the processor's `size` when it resizes) and resized back bilinearly to the native size.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..inference import (
    as_unet_processor,
    classify_logits,
    is_classifier,
    load_model,
    normalize,
    predict_mask,
    processor_size,
)
from ..models.unet.image_processing_unet import UNetImageProcessor
from .attention import attention_maps
from .cam import compute_cam, default_segmentation_target
from ..viz import to_display
from .layers import resolve_target_layers
from ..viz import label_array, overlay_errors, overlay_heatmap, overlay_mask


@dataclass
class Explanation:
    """What `explain` computed for one image, at the image's native size (H, W).

    Attributes:
        image (`np.ndarray`): (H, W, 3) uint8, the image as displayed (`to_display`).
        pred (`np.ndarray`): segmentation: (H, W) int64 class indices; classification: (K,) float32 probabilities.
        target (`int`): the explained class; `target_name` its name.
        cam (`np.ndarray`): (H, W) float32 in [0, 1].
        attentions (`list[np.ndarray]`): attention-gate maps, (H, W) each, coarse to fine (empty without gates).
        overlays (`dict[str, np.ndarray]`): RGB uint8 overlays: `"mask"` (segmentation), `"cam"`, `"errors"` (with a
            ground-truth label), `"attention_<i>"`.
        id2label (`dict[int, str]`): the class names (a binary model's classes 0 and 1).
        method (`str`): the CAM method; `target_layers` the layers it read.
        label (`np.ndarray`, *optional*): the ground-truth (H, W) mask given.
    """

    image: np.ndarray
    pred: np.ndarray
    target: int
    target_name: str
    cam: np.ndarray
    attentions: list[np.ndarray]
    overlays: dict[str, np.ndarray]
    id2label: dict[int, str]
    method: str = "gradcam"
    target_layers: list[str] = field(default_factory=list)
    label: np.ndarray | None = None

    @property
    def is_classification(self) -> bool:
        return self.pred.ndim == 1

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write `<overlay name>.png` for each overlay and `explanation.npz` (arrays `image`, `pred`, `cam`,
        `attentions` (n, H, W), `target`, `label` when given, and `meta`, a JSON string with the target's name,
        method, layers and id2label) into `folder` (created); returns the paths written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, array in self.overlays.items():
            path = folder / f"{name}.png"
            Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
            paths.append(path)
        height, width = self.cam.shape
        arrays: dict[str, Any] = {
            "image": self.image, "pred": self.pred, "cam": self.cam, "target": np.int64(self.target),
            "attentions": np.stack(self.attentions) if self.attentions else np.zeros((0, height, width), np.float32),
            "meta": np.array(json.dumps({"target_name": self.target_name, "method": self.method,
                                         "target_layers": self.target_layers,
                                         "id2label": {str(k): v for k, v in self.id2label.items()}})),
        }
        if self.label is not None:
            arrays["label"] = self.label
        path = folder / "explanation.npz"
        np.savez_compressed(path, **arrays)
        paths.append(path)
        return paths


def _normalize_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


def class_names(model: nn.Module, num_logits: int, classification: bool) -> dict[int, str]:
    """`config.id2label` with int keys; a one-logit model gets two classes (0: background / not <name>, 1: name)."""
    config = getattr(model, "config", None)
    raw = getattr(config, "id2label", None) or {}
    names = {int(k): str(v) for k, v in raw.items()}
    if num_logits == 1:
        positive = names.get(0, "foreground")
        return {0: f"not {positive}" if classification else "background", 1: positive}
    return {i: names.get(i, f"class {i}") for i in range(num_logits)}


def resolve_target(target: int | str | None, names: Mapping[int, str]) -> int | None:
    """A class id from an id or a name (case, spaces, `_` and `-` ignored: "Grey matter" finds "grey_matter")."""
    if target is None:
        return None
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.strip().isdigit()):
        index = int(target)
        if index not in names:
            raise ValueError(f"target {index} is not a class of this model; classes: {dict(names)}.")
        return index
    wanted = _normalize_name(str(target))
    for index, name in names.items():
        if _normalize_name(name) == wanted:
            return index
    raise ValueError(f"Unknown target {target!r}; give a class id or one of: {', '.join(map(repr, names.values()))}.")


def _resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) map in [0, 1] resized bilinearly (antialiased when shrinking) to `size`."""
    if tuple(values.shape) == tuple(size):
        return values.astype(np.float32)
    tensor = torch.as_tensor(values, dtype=torch.float32)[None, None]
    out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp(0, 1).numpy().astype(np.float32)


def _require_image_model(model: nn.Module) -> None:
    if getattr(getattr(model, "config", None), "spatial_dims", 2) == 3:
        raise ValueError("explain() predicts and draws one 2D image, and this model is 3-D (config.spatial_dims=3). "
                         "For a volume, compute the map on the grid the model sees: x = processor.preprocess_volume("
                         "volume, spacing)['pixel_values'], then hfseg.explain.compute_cam(model, x) gives an "
                         "(X, Y, Z) map in [0, 1] on that grid.")


def _processor_for(model: nn.Module, processor: Any) -> Any:
    if processor is not None:
        return as_unet_processor(processor)
    warnings.warn("explain() got a model without a processor: using UNetImageProcessor(normalization='zscore') at "
                  "native resolution; pass the processor the model was trained with (load_model(path) returns it).",
                  stacklevel=3)
    return UNetImageProcessor(normalization="zscore", num_channels=getattr(model.config, "num_channels", None))


def explain(
    model: nn.Module | str | os.PathLike,
    image: Any,
    processor: Any = None,
    target: int | str | None = None,
    label: Any = None,
    method: str = "gradcam",
    target_layers: list[str] | str | None = None,
    output_dir: str | os.PathLike | None = None,
    **predict_kwargs: Any,
) -> Explanation:
    """Predict, explain and draw one image (2-D models; for a 3-D model use `compute_cam` on a volume).

    Args:
        model: a loaded model, or a `save_pretrained` folder / Hub id (loaded with
            `hfseg.inference.load_model`, which also gives the processor).
        image: a PIL image, array or tensor at its native size (anything the processor takes).
        processor (*optional*): the image processor; defaults to the one saved with the model.
        target (`int` or `str`, *optional*): the class to explain, by id or name. Default: segmentation, the
            predicted foreground class with the largest area; classification, the predicted class.
        label (*optional*): the (H, W) ground-truth mask, for the `"errors"` overlay (TP/FP/FN).
        method (`str`, *optional*, defaults to `"gradcam"`): a key of `CAM_METHODS`.
        target_layers (`list[str]`, *optional*): module names; default per family (`default_target_layers`).
        output_dir (*optional*): save the overlays and arrays there (`Explanation.save`).
        **predict_kwargs: passed to `predict_mask` (`tta_flip`, `sliding_window`, ...) or `classify_logits`
            (`tta_flip`); they change the prediction, not the CAM (computed at the processor's size).
    """
    if isinstance(model, (str, os.PathLike)):
        model, loaded = load_model(model)
        _require_image_model(model)
        processor = loaded if processor is None else as_unet_processor(processor)
    else:
        _require_image_model(model)
        processor = _processor_for(model, processor)
    model.eval()
    x = normalize(processor, image)
    native = tuple(x.shape[-2:])
    network = processor_size(processor)
    if network is not None and network != native:
        x = F.interpolate(x, size=network, mode="bilinear", antialias=True, align_corners=False)
    display = to_display(image)
    if display.shape[:2] != native:  # an array layout to_display reads differently: show the network's input
        display = to_display(normalize(processor, image)[0])
    layers = [name for name, _ in resolve_target_layers(model, target_layers)]
    classification = is_classifier(model)
    if classification:
        if label is not None:
            raise ValueError("label is a ground-truth segmentation mask; this model is an image classifier.")
        logits = classify_logits(model, processor, image, **predict_kwargs)
        names = class_names(model, logits.shape[-1], classification=True)
        probs = torch.sigmoid(logits) if logits.shape[-1] == 1 else logits.softmax(-1)
        pred = (torch.cat([1 - probs, probs]) if logits.shape[-1] == 1 else probs).numpy().astype(np.float32)
        index = resolve_target(target, names)
        index = int(pred.argmax()) if index is None else index
        truth = None
    else:
        pred = predict_mask(model, processor, image, **predict_kwargs).numpy()
        names = class_names(model, int(model.config.num_labels), classification=False)
        index = resolve_target(target, names)
        index = default_segmentation_target(pred, len(names)) if index is None else index
        truth = label_array(label, "label", native) if label is not None else None
    cam = _resize_map(compute_cam(model, x, target=index, method=method, target_layers=layers), native)
    attentions = [_resize_map(a, native) for a in attention_maps(model, x)]
    overlays: dict[str, np.ndarray] = {}
    if not classification:
        overlays["mask"] = overlay_mask(display, pred, names)
    overlays["cam"] = overlay_heatmap(display, cam)
    if truth is not None:
        ignore = getattr(model.config, "semantic_loss_ignore_index", 255)
        overlays["errors"] = overlay_errors(display, pred, truth, ignore_index=ignore)
    for i, attention in enumerate(attentions):
        overlays[f"attention_{i}"] = overlay_heatmap(display, attention)
    result = Explanation(image=display, pred=pred, target=index, target_name=names[index], cam=cam,
                         attentions=attentions, overlays=overlays, id2label=names, method=method,
                         target_layers=layers, label=truth)
    if output_dir is not None:
        result.save(output_dir)
    return result
