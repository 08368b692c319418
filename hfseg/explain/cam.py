"""Class activation maps (GradCAM and relatives, through pytorch-grad-cam) for segmentation models and classifiers,
on images and, for 3-D models, on volumes.

`compute_cam(model, pixel_values, target)` wraps the model so that pytorch-grad-cam sees plain logits
(`LogitsModel`): segmentation logits upsampled to the input size (Segformer and BEiT predict at 1/4), classifier
logits as they are. The CAM target is

- **segmentation**: `SemanticSegmentationTarget(target, region)`, the sum of the class's logits over the region: the
  pixels (voxels) predicted as that class, or a given `mask`. A class predicted nowhere uses the whole image (where
  would the model look for it) with a warning. A binary model (one logit l) is seen as the two logits (-l, l), so
  class 1 is the foreground and class 0 the background.
- **classification**: `ClassifierOutputTarget(target)`, the class's logit; by default the predicted class. A
  one-logit classifier is seen as (-l, l) too.

The target layer is chosen per family (see `hfseg.explain.layers`) or by name; token-shaped activations are folded to
maps. EigenCAM and EigenGradCAM are pytorch-grad-cam's with a thin SVD (`first_component`): the library's
`np.linalg.svd(..., full_matrices=True)` builds a (pixels x pixels) matrix, 1 GiB for a 128x128 map.

The returned map is (h, w) float32 in [0, 1] at the input's size, or (X, Y, Z) for a volume. An hfseg U-Net input
whose size is not a multiple of the encoder's stride (per axis) is zero-padded here exactly as the model pads it
internally, and the map cropped back, so the map stays aligned with the image.

**Volumes.** A 3-D model (`config.spatial_dims == 3`) takes one (C, X, Y, Z) or (1, C, X, Y, Z) volume. The methods
of `CAM_METHODS` are subclasses of pytorch-grad-cam's with `supports_volumes = True` (`VolumeCAM`), which

- compute GradCAM++ and XGradCAM weights over every spatial axis (pytorch-grad-cam 1.5.4 sums over the first two
  only);
- upsample each layer's map trilinearly with voxel centres aligned (as `cv2.resize` does in 2-D), where
  pytorch-grad-cam would use a corner-aligned cubic-spline `scipy.ndimage.zoom`.

On images they are pytorch-grad-cam's methods unchanged. Any other method put in `CAM_METHODS` is refused on volumes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytorch_grad_cam as grad_cam
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget
from torch import nn

from ..models.outputs import logits_at
from .layers import reshape_transform_for, resolve_target_layers, tap_layers


def first_component(activations: np.ndarray) -> np.ndarray:
    """(B, C, h, w) (or (B, C, X, Y, Z)) activations projected on their first principal component: (B, h, w)
    (or (B, X, Y, Z)) float32.

    As pytorch-grad-cam's `get_2d_projection` (NaNs set to 0, the (positions, C) matrix centred per channel, projected
    on `VT[0]`), with a thin SVD: memory positions x C instead of positions^2.
    """
    batch = np.nan_to_num(np.asarray(activations, dtype=np.float32), nan=0.0)
    projections = []
    for maps in batch:
        matrix = maps.reshape(maps.shape[0], -1).T
        matrix = matrix - matrix.mean(axis=0)
        _, _, vt = np.linalg.svd(matrix, full_matrices=False)
        projections.append((matrix @ vt[0]).reshape(maps.shape[1:]))
    return np.float32(projections)


def _normalized(cams: np.ndarray) -> np.ndarray:
    """Each map minus its minimum, over its maximum (pytorch-grad-cam's `scale_cam_image` without resizing)."""
    low = cams.min(axis=tuple(range(1, cams.ndim)), keepdims=True)
    cams = cams - low
    return cams / (1e-7 + cams.max(axis=tuple(range(1, cams.ndim)), keepdims=True))


def resize_volume_maps(cams: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """(B, x, y, z) maps resized trilinearly (voxel centres aligned, `align_corners=False`) to `size`: float32."""
    if tuple(cams.shape[1:]) == tuple(size):
        return np.float32(cams)
    tensor = torch.from_numpy(np.ascontiguousarray(cams, dtype=np.float32))[:, None]
    return F.interpolate(tensor, size=tuple(size), mode="trilinear", align_corners=False)[:, 0].numpy()


class VolumeCAM:
    """Mixin for a pytorch-grad-cam method (put before it in the bases): on a volume (a 5-D input), each target
    layer's map is min-max normalised, then resized by `resize_volume_maps`; on images the library's
    `compute_cam_per_layer` runs unchanged. `supports_volumes` marks the methods `compute_cam` runs on volumes."""

    supports_volumes = True

    def compute_cam_per_layer(self, input_tensor: torch.Tensor, targets: Any, eigen_smooth: bool) -> list[np.ndarray]:
        if input_tensor.dim() != 5:
            return super().compute_cam_per_layer(input_tensor, targets, eigen_smooth)
        store = self.activations_and_grads
        activations = [a.cpu().data.numpy() for a in store.activations]
        grads = [g.cpu().data.numpy() for g in store.gradients]
        size = tuple(input_tensor.shape[2:])
        maps = []
        for i, layer in enumerate(self.target_layers):
            cam = self.get_cam_image(input_tensor, layer, targets, activations[i] if i < len(activations) else None,
                                     grads[i] if i < len(grads) else None, eigen_smooth)
            maps.append(resize_volume_maps(_normalized(np.maximum(cam, 0)), size)[:, None])
        return maps


def _spatial_sums(values: np.ndarray) -> np.ndarray:
    """Sums over every spatial axis of (B, C, *spatial), kept as size-1 axes for broadcasting."""
    return values.sum(axis=tuple(range(2, values.ndim)), keepdims=True)


def gradcam_plusplus_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """GradCAM++ channel weights (Chattopadhay et al. 2018, eq. 19) over any number of spatial axes: (B, C)."""
    grads_2, grads_3 = grads**2, grads**3
    alpha = grads_2 / (2 * grads_2 + _spatial_sums(activations) * grads_3 + 1e-6)
    alpha = np.where(grads != 0, alpha, 0)
    return _spatial_sums(np.maximum(grads, 0) * alpha).reshape(grads.shape[:2])


def xgradcam_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """XGradCAM channel weights (Fu et al. 2020) over any number of spatial axes: (B, C)."""
    return _spatial_sums(grads * activations / (_spatial_sums(activations) + 1e-7)).reshape(grads.shape[:2])


class GradCAM(VolumeCAM, grad_cam.GradCAM):
    """GradCAM (Selvaraju et al. 2017): channel weights = the spatial mean of the gradients."""


class GradCAMPlusPlus(VolumeCAM, grad_cam.GradCAMPlusPlus):
    """GradCAM++: weights from higher-order gradient terms."""

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        if activations.ndim == 4:
            return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        return gradcam_plusplus_weights(activations, grads)


class HiResCAM(VolumeCAM, grad_cam.HiResCAM):
    """HiResCAM: the sum over channels of gradients x activations."""


class XGradCAM(VolumeCAM, grad_cam.XGradCAM):
    """XGradCAM: gradients weighted by the normalised activations."""

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        if activations.ndim == 4:
            return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        return xgradcam_weights(activations, grads)


class LayerCAM(VolumeCAM, grad_cam.LayerCAM):
    """LayerCAM: activations weighted by their positive gradients, per position."""


class GradCAMElementWise(VolumeCAM, grad_cam.GradCAMElementWise):
    """GradCAM with the ReLU applied to gradients x activations per position."""


class EigenCAM(VolumeCAM, grad_cam.EigenCAM):
    """EigenCAM (Muhammad and Yeasin 2020): the first principal component of the activations; no gradients."""

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool) -> np.ndarray:
        return first_component(activations)


class EigenGradCAM(VolumeCAM, grad_cam.EigenGradCAM):
    """EigenCAM of activations x gradients (class-specific)."""

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool) -> np.ndarray:
        return first_component(grads * activations)


# Methods that work for every family, on images and volumes: gradient- or activation-based, one forward (and one
# backward) pass each.
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


def volume_methods() -> list[str]:
    """The keys of `CAM_METHODS` whose method runs on volumes (`supports_volumes`)."""
    return [name for name, method in CAM_METHODS.items() if getattr(method, "supports_volumes", False)]


class LogitsModel(nn.Module):
    """`forward(x)` -> logits: (B, K, H, W) (or (B, K, X, Y, Z)) at x's size for segmentation, (B, K) for a
    classifier; a one-logit binary model gives the two logits (-l, l). The model is called as
    `model(pixel_values=x)`.

    Args:
        model (`nn.Module`): a model whose output has `.logits`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits
        if logits.dim() in (4, 5):
            logits = logits_at(logits, tuple(x.shape[2:]))
        return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


def spatial_dims(model: nn.Module, pixel_values: torch.Tensor) -> int:
    """3 for a volume model (`config.spatial_dims == 3`), 2 for an image model; a model without the field is taken
    as 3-D when given a 5-D input."""
    dims = getattr(getattr(model, "config", None), "spatial_dims", None)
    if isinstance(dims, int) and dims in (2, 3):
        return dims
    return 3 if pixel_values.dim() == 5 else 2


def _unet_strides(model: nn.Module, dims: int) -> tuple[int, ...]:
    """The total stride per spatial axis an hfseg U-Net pads its input to (1 on every axis for other models)."""
    unet = getattr(model, "unet", None)
    per_axis = getattr(unet, "stride_per_axis", None)
    if isinstance(per_axis, tuple) and len(per_axis) == dims:
        return tuple(int(s) for s in per_axis)
    stride = getattr(unet, "stride", None)
    return (int(stride),) * dims if isinstance(stride, int) else (1,) * dims


def default_segmentation_target(pred: np.ndarray | torch.Tensor, num_classes: int) -> int:
    """The predicted foreground class (not 0) with the largest area; 0 when only background is predicted
    (a binary model has the classes 0 and 1)."""
    counts = np.bincount(np.asarray(pred).ravel().astype(np.int64), minlength=max(num_classes, 2))
    counts[0] = 0
    return int(counts.argmax()) if counts.max() > 0 else 0


def _inside(size: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in size)


def _region(logits: torch.Tensor, target: int, mask: Any, size: tuple[int, ...]) -> np.ndarray:
    """Float32 region of a segmentation target at the logits' (padded) spatial size, zero outside the input's
    `size` ((h, w) or (X, Y, Z)): `mask` (nonzero = inside, resized nearest to `size` if needed) or the positions
    predicted as `target`.
    """
    padded = tuple(logits.shape[2:])
    inside = _inside(size)
    what = "image" if len(size) == 2 else "volume"
    if mask is not None:
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        values = torch.as_tensor(np.asarray(mask) != 0).float()
        if values.dim() == len(size) + 1 and values.shape[0] == 1:
            values = values[0]
        if values.dim() != len(size):
            axes = "(h, w)" if len(size) == 2 else "(X, Y, Z)"
            raise ValueError(f"mask must be an {axes} region, got shape {tuple(values.shape)}.")
        if tuple(values.shape) != size:
            values = F.interpolate(values[None, None], size=size, mode="nearest")[0, 0]
        region = np.zeros(padded, dtype=np.float32)
        region[inside] = values.numpy()
        if region.sum() == 0:
            warnings.warn("The mask given for the CAM is empty: the map will be all zeros.", stacklevel=3)
        return region
    region = np.zeros(padded, dtype=np.float32)
    region[inside] = (logits[0].argmax(0) == target).float().cpu().numpy()[inside]
    if region.sum() == 0:
        warnings.warn(f"Class {target} is predicted nowhere in this {what}: its CAM uses the whole {what} as the "
                      "region (pass mask= to choose one).", stacklevel=3)
        region[inside] = 1.0
    return region


def _one_input(pixel_values: torch.Tensor, dims: int) -> torch.Tensor:
    """(1, C, *spatial) from one image (volume), with or without its batch axis."""
    rank = dims + 2
    x = pixel_values if pixel_values.dim() == rank else pixel_values[None]
    if x.dim() != rank or x.shape[0] != 1:
        if dims == 2:
            hint = " A volume needs a 3-D model (config.spatial_dims=3)." if pixel_values.dim() == 5 else ""
            raise ValueError(f"pixel_values must be one image, (1, C, h, w) or (C, h, w); got "
                             f"{tuple(pixel_values.shape)}.{hint}")
        raise ValueError(f"pixel_values must be one volume, (1, C, X, Y, Z) or (C, X, Y, Z), for this 3-D model; got "
                         f"{tuple(pixel_values.shape)}.")
    return x


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
    """A class activation map of one image, or of one volume for a 3-D model.

    Args:
        model (`nn.Module`): a segmentation model (`model(pixel_values=x).logits` is (B, K, h, w), or
            (B, K, X, Y, Z) for a 3-D model, `config.spatial_dims == 3`) or an image classifier (logits (B, K)).
        pixel_values (`torch.Tensor`): (1, C, h, w) or (C, h, w); for a 3-D model (1, C, X, Y, Z) or (C, X, Y, Z).
            Already normalized as the model expects.
        target (`int`, *optional*): the class. Segmentation: defaults to the predicted foreground class with the
            largest area; classification: to the predicted class.
        mask (`np.ndarray`, *optional*): segmentation only: the (h, w) (or (X, Y, Z)) region whose class logits are
            summed (nonzero = inside); defaults to the positions predicted as `target`.
        method (`str`, *optional*, defaults to `"gradcam"`): a key of `CAM_METHODS` (on volumes: of
            `volume_methods()`, all eight built-in methods).
        target_layers (`list[str]`, *optional*): module names (or modules) of `model`; defaults to
            `default_target_layers(model)`.

    Returns:
        `np.ndarray` of shape (h, w), or (X, Y, Z) for a volume, float32 in [0, 1] (all zeros where the method finds
        no positive evidence).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}.")
    dims = spatial_dims(model, pixel_values)
    if dims == 3 and not getattr(CAM_METHODS[method], "supports_volumes", False):
        raise ValueError(f"The CAM method {method!r} works on 2D images only; for a volume (a 3-D model) choose one "
                         f"of {', '.join(volume_methods())}.")
    x = _one_input(pixel_values, dims)
    size = tuple(int(n) for n in x.shape[2:])
    device, dtype = _device_dtype(model)
    pads = [(-n) % s for n, s in zip(size, _unet_strides(model, dims))]
    x = F.pad(x, [p for pad in reversed(pads) for p in (0, pad)]) if any(pads) else x
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
                logits[0].argmax(0)[_inside(size)].cpu(), logits.shape[1])
        target = int(target)
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"target {target} is not a class of this model (0..{logits.shape[1] - 1}).")
        if classifier:
            cam_target: Any = ClassifierOutputTarget(target)
        else:
            cam_target = SemanticSegmentationTarget(target, _region(logits, target, mask, size))
        reshape = reshape_transform_for(model, tuple(x.shape[-2:]))
        with tap_layers(layers) as taps:
            cam = CAM_METHODS[method](wrapper, taps, reshape_transform=reshape)
            try:
                result = cam(input_tensor=x, targets=[cam_target])[0]
            finally:
                cam.activations_and_grads.release()
    result = np.nan_to_num(np.asarray(result, dtype=np.float32))[_inside(size)]
    if any(pads):
        low, high = result.min(), result.max()
        result = (result - low) / (high - low) if high > low else np.zeros_like(result)
    return np.clip(result, 0.0, 1.0).astype(np.float32)
