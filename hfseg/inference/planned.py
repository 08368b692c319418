"""Whole-volume prediction with a planned model (a 3D U-Net, or a 2D one of nnU-Net's 2d configuration).

The image processor saved with such a model carries its plan (`spatial_dims`, `target_spacing`, `patch_size`,
`channel_normalization`, `mirror_axes`, ...). A volume is predicted as nnU-Net does:

1. `processor.preprocess_volume`: crop to the non-zero region, normalize each channel, resample to the plan's
   target spacing;
2. Gaussian sliding windows of the plan's patch size (`sliding_window`, step 0.5 by default), with mirror TTA over
   the plan's `mirror_axes` when asked; a 2d plan predicts each slice along its `slice_axis`;
3. `processor.postprocess_volume`: probabilities resampled back to the original grid (outside the crop:
   background), then the class of highest probability.

The mask has the input array's shape, on its grid: written with `hfseg.io.write_mask(mask, like=image, ...)` it is
aligned with the scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..io import MedicalImage
from .sliding import sliding_window


def is_planned(processor: Any) -> bool:
    """Whether `processor` belongs to a planned volume model (3D, or a 2d plan with a `slice_axis`)."""
    return (getattr(processor, "spatial_dims", 2) == 3 or getattr(processor, "slice_axis", None) is not None
            or getattr(processor, "target_spacing", None) is not None)


def channels_first_volume(array: np.ndarray, num_channels: int | None, name: str = "The volume") -> np.ndarray:
    """(C, X, Y, Z) from a volume array: (X, Y, Z) is one channel, (X, Y, Z, C) (a 4D NIfTI) channels last, and an
    array already channels first is kept."""
    array = np.asarray(array)
    if array.ndim == 3:
        return array[None]
    if array.ndim == 4:
        if num_channels is not None and array.shape[0] == num_channels and array.shape[-1] != num_channels:
            return array
        if num_channels is None or array.shape[-1] == num_channels:
            return np.moveaxis(array, -1, 0)
        raise ValueError(f"{name} has shape {array.shape} but the model takes {num_channels} channels: give a 3D "
                         f"volume per channel stacked as (X, Y, Z, {num_channels}).")
    raise ValueError(f"{name} has shape {array.shape}; a planned volume model takes a 3D volume (X, Y, Z) or "
                     "(X, Y, Z, C).")


def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _logits_2d(model: nn.Module, volume: torch.Tensor, slice_axis: int, patch: Sequence[int], step: float,
               batch_size: int, mirror_axes: Sequence[int], device: torch.device, progress: bool) -> torch.Tensor:
    """(K, X, Y, Z) logits of a 2D model applied to every slice of `volume` (C, X, Y, Z) along `slice_axis`."""
    moved = volume.movedim(1 + slice_axis, 1)  # (C, S, h, w)
    out = None
    for s in tqdm(range(moved.shape[1]), desc="slices", unit="slice", leave=False, disable=not progress):
        logits = sliding_window(model, moved[:, s], patch, step=step, batch_size=batch_size,
                                mirror_axes=mirror_axes, device=device)
        if out is None:
            out = torch.empty((logits.shape[0], moved.shape[1], *logits.shape[1:]), dtype=logits.dtype,
                              device=logits.device)
        out[:, s] = logits
    return out.movedim(1, 1 + slice_axis)


def volume_probabilities(
    model: nn.Module,
    processor: Any,
    volume: np.ndarray,
    spacing: Sequence[float],
    tta: bool = False,
    step: float = 0.5,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Class probabilities (K, X, Y, Z) of a (C, X, Y, Z) volume on its own grid (see the module docstring)."""
    if spacing is None or len(spacing) != 3:
        raise ValueError(f"A planned volume model needs the voxel spacing (3 values in mm), got {spacing!r}; the file "
                         "states none: set it in the header, or pass spacing=.")
    prepared = processor.preprocess_volume(volume, spacing)
    device = _model_device(model, device)
    x = prepared["pixel_values"]
    patch = list(processor.patch_size)
    mirror = tuple(processor.mirror_axes or ()) if tta else ()
    if getattr(processor, "spatial_dims", 3) == 2:
        logits = _logits_2d(model, x, processor.slice_axis, patch, step, batch_size, mirror, device, progress)
    else:
        logits = sliding_window(model, x, patch, step=step, batch_size=batch_size, mirror_axes=mirror,
                                device=device, progress=progress)
    return processor.postprocess_volume(logits.float().cpu(), prepared["geometry"], return_probabilities=True,
                                        score_type="logits")


def predict_planned(
    model: nn.Module,
    processor: Any,
    image: MedicalImage | np.ndarray,
    spacing: Sequence[float] | None = None,
    tta: bool = False,
    step: float = 0.5,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Labels (X, Y, Z) of a volume (a `MedicalImage`, or an array with `spacing`), on the volume's own grid."""
    name = getattr(image, "name", "The volume")
    if isinstance(image, MedicalImage):
        spacing = image.spacing if spacing is None else spacing
        array = image.array
    else:
        array = np.asarray(image)
    volume = channels_first_volume(array, getattr(processor, "num_channels", None), name)
    probabilities = volume_probabilities(model, processor, volume, spacing, tta=tta, step=step,
                                         batch_size=batch_size, device=device, progress=progress)
    if probabilities.shape[0] == 1:
        labels = (probabilities[0] > 0.5).numpy()
    else:
        labels = probabilities.argmax(0).numpy()
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    return labels.astype(dtype)
