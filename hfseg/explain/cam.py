"""Class activation maps (GradCAM and relatives, through pytorch-grad-cam) for segmentation models and classifiers.

`compute_cam(model, pixel_values, target)` wraps the model so that pytorch-grad-cam sees plain logits
(`LogitsModel`): segmentation logits upsampled to the input size (Segformer and BEiT predict at 1/4), classifier
logits as they are. The CAM target is

- **segmentation**: `SemanticSegmentationTarget(target, region)`, the sum of the class's logits over the region: the
  pixels predicted as that class, or a given `mask`. A class predicted nowhere uses the whole image (where would the
  model look for it) with a warning. A binary model (one logit l) is seen as the two logits (-l, l), so class 1 is
  the foreground and class 0 the background.
- **classification**: `ClassifierOutputTarget(target)`, the class's logit; by default the predicted class. A
  one-logit classifier is seen as (-l, l) too.

The target layer is chosen per family (see `hfseg.explain.layers`) or by name; token-shaped activations are folded to
maps. EigenCAM and EigenGradCAM are pytorch-grad-cam's with a thin SVD (`first_component`): the library's
`np.linalg.svd(..., full_matrices=True)` builds a (pixels x pixels) matrix, 1 GiB for a 128x128 map.

The returned map is (h, w) float32 in [0, 1] at the input's size. An hfseg U-Net input whose size is not a multiple of
the encoder's stride is zero-padded here exactly as the model pads it internally, and the map cropped back, so the map
stays aligned with the image.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM as _LibraryEigenCAM
from pytorch_grad_cam import EigenGradCAM as _LibraryEigenGradCAM
from pytorch_grad_cam import GradCAM, GradCAMElementWise, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget
from torch import nn

from ..models.outputs import logits_at
from .layers import reshape_transform_for, resolve_target_layers, tap_layers


def first_component(activations: np.ndarray) -> np.ndarray:
    """(B, C, h, w) activations projected on their first principal component: (B, h, w) float32.

    As pytorch-grad-cam's `get_2d_projection` (NaNs set to 0, the (h*w, C) matrix centred per channel, projected on
    `VT[0]`), with a thin SVD: memory (h*w) x C instead of (h*w)^2.
    """
    batch = np.nan_to_num(np.asarray(activations, dtype=np.float32), nan=0.0)
    projections = []
    for maps in batch:
        matrix = maps.reshape(maps.shape[0], -1).T
        matrix = matrix - matrix.mean(axis=0)
        _, _, vt = np.linalg.svd(matrix, full_matrices=False)
        projections.append((matrix @ vt[0]).reshape(maps.shape[1:]))
    return np.float32(projections)


class EigenCAM(_LibraryEigenCAM):
    """EigenCAM (Muhammad and Yeasin 2020): the first principal component of the activations; no gradients."""

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool) -> np.ndarray:
        return first_component(activations)


class EigenGradCAM(_LibraryEigenGradCAM):
    """EigenCAM of activations x gradients (class-specific)."""

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool) -> np.ndarray:
        return first_component(grads * activations)


# Methods that work for every family: gradient- or activation-based, one forward (and one backward) pass each.
CAM_METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "gradcam-elementwise": GradCAMElementWise,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
}


class LogitsModel(nn.Module):
    """`forward(x)` -> logits: (B, K, H, W) at x's size for segmentation, (B, K) for a classifier; a one-logit
    binary model gives the two logits (-l, l). The model is called as `model(pixel_values=x)`.

    Args:
        model (`nn.Module`): a model whose output has `.logits`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits
        if logits.dim() == 4:
            logits = logits_at(logits, tuple(x.shape[-2:]))
        return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


def _unet_stride(model: nn.Module) -> int:
    stride = getattr(getattr(model, "unet", None), "stride", None)
    return int(stride) if isinstance(stride, int) else 1


def default_segmentation_target(pred: np.ndarray | torch.Tensor, num_classes: int) -> int:
    """The predicted foreground class (not 0) with the largest area; 0 when only background is predicted
    (a binary model has the classes 0 and 1)."""
    counts = np.bincount(np.asarray(pred).ravel().astype(np.int64), minlength=max(num_classes, 2))
    counts[0] = 0
    return int(counts.argmax()) if counts.max() > 0 else 0


def _region(logits: torch.Tensor, target: int, mask: Any, size: tuple[int, int]) -> np.ndarray:
    """(H', W') float32 region of a segmentation target at the logits' (padded) size, zero outside the image's
    `size` (h, w): `mask` (nonzero = inside, resized nearest to `size` if needed) or the pixels predicted as `target`.
    """
    padded = tuple(logits.shape[-2:])
    if mask is not None:
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        values = torch.as_tensor(np.asarray(mask) != 0).float()
        if values.dim() == 3 and values.shape[0] == 1:
            values = values[0]
        if values.dim() != 2:
            raise ValueError(f"mask must be an (h, w) region, got shape {tuple(values.shape)}.")
        if tuple(values.shape) != size:
            values = F.interpolate(values[None, None], size=size, mode="nearest")[0, 0]
        region = np.zeros(padded, dtype=np.float32)
        region[: size[0], : size[1]] = values.numpy()
        if region.sum() == 0:
            warnings.warn("The mask given for the CAM is empty: the map will be all zeros.", stacklevel=3)
        return region
    region = np.zeros(padded, dtype=np.float32)
    region[: size[0], : size[1]] = (logits[0].argmax(0) == target).float().cpu().numpy()[: size[0], : size[1]]
    if region.sum() == 0:
        warnings.warn(f"Class {target} is predicted nowhere in this image: its CAM uses the whole image as the "
                      "region (pass mask= to choose one).", stacklevel=3)
        region[: size[0], : size[1]] = 1.0
    return region


class _Frozen:
    """Parameters without gradients while the CAM runs (only activations need them), restored afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: list[tuple[nn.Parameter, bool]] = []

    def __enter__(self) -> None:
        self.training = self.model.training
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.flags:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.model.train(self.training)


def compute_cam(
    model: nn.Module,
    pixel_values: torch.Tensor,
    target: int | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    method: str = "gradcam",
    target_layers: list[str | nn.Module] | str | None = None,
) -> np.ndarray:
    """A class activation map of one image.

    Args:
        model (`nn.Module`): a segmentation model (`model(pixel_values=x).logits` is (B, K, h, w)) or an image
            classifier (logits (B, K)).
        pixel_values (`torch.Tensor`): (1, C, h, w) or (C, h, w), already normalized as the model expects.
        target (`int`, *optional*): the class. Segmentation: defaults to the predicted foreground class with the
            largest area; classification: to the predicted class.
        mask (`np.ndarray`, *optional*): segmentation only: the (h, w) region whose class logits are summed
            (nonzero = inside); defaults to the pixels predicted as `target`.
        method (`str`, *optional*, defaults to `"gradcam"`): a key of `CAM_METHODS`.
        target_layers (`list[str]`, *optional*): module names (or modules) of `model`; defaults to
            `default_target_layers(model)`.

    Returns:
        `np.ndarray` of shape (h, w), float32 in [0, 1] (all zeros where the method finds no positive evidence).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}.")
    x = pixel_values if pixel_values.dim() == 4 else pixel_values[None]
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"pixel_values must be one image, (1, C, h, w) or (C, h, w); got {tuple(pixel_values.shape)}.")
    height, width = x.shape[-2:]
    device, dtype = _device_dtype(model)
    stride = _unet_stride(model)
    pad_h, pad_w = (-height) % stride, (-width) % stride
    x = F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
    x = x.detach().to(device=device, dtype=dtype).requires_grad_(True)
    wrapper = LogitsModel(model)
    layers = resolve_target_layers(model, target_layers)
    with _Frozen(model):
        model.eval()
        with torch.no_grad():
            logits = wrapper(x)
        classifier = logits.dim() == 2
        if classifier and mask is not None:
            raise ValueError("mask is for segmentation models; this model is a classifier (logits (B, K)).")
        if target is None:
            target = int(logits[0].argmax()) if classifier else default_segmentation_target(
                logits[0].argmax(0)[:height, :width].cpu(), logits.shape[1])
        target = int(target)
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"target {target} is not a class of this model (0..{logits.shape[1] - 1}).")
        if classifier:
            cam_target: Any = ClassifierOutputTarget(target)
        else:
            cam_target = SemanticSegmentationTarget(target, _region(logits, target, mask, (height, width)))
        reshape = reshape_transform_for(model, tuple(x.shape[-2:]))
        with tap_layers(layers) as taps:
            cam = CAM_METHODS[method](wrapper, taps, reshape_transform=reshape)
            try:
                result = cam(input_tensor=x, targets=[cam_target])[0]
            finally:
                cam.activations_and_grads.release()
    result = np.nan_to_num(np.asarray(result, dtype=np.float32))[:height, :width]
    if pad_h or pad_w:
        low, high = result.min(), result.max()
        result = (result - low) / (high - low) if high > low else np.zeros_like(result)
    return np.clip(result, 0.0, 1.0).astype(np.float32)
