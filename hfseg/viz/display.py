"""Any image the hfseg loaders give as a displayable uint8 array: an (H, W, 3) RGB view (`to_display`) or one grey
channel (`grey`), non-uint8 intensities windowed by percentiles (`scale_to_uint8`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image


def _as_array(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        if image.mode in ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
            image = image.convert("RGB")
        elif image.mode == "1":
            image = image.convert("L")
        return np.asarray(image)
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()  # numpy has no bfloat16
        array = tensor.numpy()
        if array.ndim == 3 and array.shape[0] <= 4 < array.shape[-1]:
            array = np.moveaxis(array, 0, -1)  # tensors are (C, H, W)
        return array
    if isinstance(image, np.ndarray):
        return image
    raise TypeError(f"Expected a PIL image, numpy array or torch tensor, got {type(image).__name__}.")


def _channels_last(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[..., None]
    if array.ndim == 3:
        if array.shape[-1] <= 4:
            return array
        if array.shape[0] <= 4:
            return np.moveaxis(array, 0, -1)
    raise ValueError(f"Cannot display an image of shape {array.shape}: expected (H, W), (H, W, C) or (C, H, W) "
                     "with at most 4 channels.")


def _shown_channels(image: Any, channel: int | None) -> np.ndarray:
    """(H, W, 1) or (H, W, 3): the chosen channel, else the RGB channels of a 3-channel image, else the first."""
    array = _channels_last(_as_array(image))
    count = array.shape[-1]
    if channel is not None:
        if not -count <= channel < count:
            raise ValueError(f"channel {channel} does not exist: the image has {count} channel(s).")
        return array[..., [channel]]
    return array if count == 3 else array[..., :1]


def scale_to_uint8(array: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Intensities clipped to their `percentiles` (the min and max when those coincide) and scaled to 0..255.

    NaN counts as 0; a constant array is all 0. `(0, 100)` is plain min-max scaling.
    """
    values = np.nan_to_num(np.asarray(array).astype(np.float64))
    low, high = np.percentile(values, percentiles)
    if high <= low:
        low, high = values.min(), values.max()
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((np.clip(values, low, high) - low) / (high - low) * 255).astype(np.uint8)


def to_display(image: Any, channel: int | None = None, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """An (H, W, 3) uint8 RGB view of an image.

    Args:
        image: a PIL image (grey, RGB, palette, 16-bit `I;16`, 32-bit `I`/`F`), or an array / tensor (H, W),
            (H, W, C) or (C, H, W) (tensors with C <= 4 first are read as (C, H, W)).
        channel (`int`, *optional*): the channel to show as grey; defaults to the RGB channels of a 3-channel image
            and to the first channel otherwise (a BraTS (H, W, 4) stack shows its first modality).
        percentiles (`tuple[float, float]`, *optional*, defaults to `(1, 99)`): the intensity window of non-uint8
            images (uint8 is shown as it is, booleans as 0 / 255).
    """
    array = _shown_channels(image, channel)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = scale_to_uint8(array, percentiles)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def grey(image: Any, channel: int | None = None, percentiles: tuple[float, float] = (0.0, 100.0)) -> np.ndarray:
    """An (H, W) uint8 grey view of an image, always rescaled (uint8 too).

    Args:
        image: anything `to_display` takes.
        channel (`int`, *optional*): the channel shown; defaults to the mean of a 3-channel (RGB) image and to the
            first channel otherwise.
        percentiles (`tuple[float, float]`, *optional*, defaults to `(0, 100)`): the intensity window (the default
            is min-max scaling).
    """
    array = _shown_channels(image, channel).astype(np.float64)
    return scale_to_uint8(array.mean(axis=-1), percentiles)
