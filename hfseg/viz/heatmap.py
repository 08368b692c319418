"""Heatmaps: a CAM or attention map (values in [0, 1]) in the colours of a matplotlib colormap, blended over the
image."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .display import to_display
from .overlay import blend


def heatmap_colors(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] (clipped; NaN is 0) as (H, W, 3) uint8 colours of a matplotlib colormap."""
    import matplotlib

    rgba = matplotlib.colormaps[colormap](np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0, 1))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def resize_map(values: Any, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) map (array or tensor, on any device) as float32 (H, W) = `size`, resized bilinearly if needed."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().float().cpu()
    else:
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if tensor.dim() != 2:
        raise ValueError(f"cam must be an (h, w) map, got shape {tuple(tensor.shape)}.")
    if tuple(tensor.shape) != tuple(size):
        tensor = F.interpolate(tensor[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return tensor.numpy()


def overlay_heatmap(image: Any, cam: Any, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """A CAM or attention map (values in [0, 1], resized bilinearly to the image if needed) blended over the image.

    Args:
        image: anything `to_display` takes.
        cam: an (h, w) array or tensor.
        alpha (`float`, *optional*, defaults to 0.5): opacity of the heatmap.
        colormap (`str`, *optional*, defaults to `"jet"`): a matplotlib colormap name.

    Returns:
        `np.ndarray` (H, W, 3) uint8: `(1 - alpha) * image + alpha * colormap(cam)`.
    """
    base = to_display(image)
    return blend(base, heatmap_colors(resize_map(cam, base.shape[:2]), colormap), alpha=alpha)
