"""Panels: pictures tiled in a grid with white gutters, and the training run's prediction panel (image | ground
truth | prediction | attention map, one row per validation image)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .display import to_display
from .heatmap import overlay_heatmap
from .palette import colorize

_TITLE = 14  # px above a titled panel


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 tiles in rows, each tile framed by `pad` white pixels (so `2 * pad` between tiles).

    Tiles of a row must have one height, and the rows one width.
    """
    strips = []
    for tiles in rows:
        heights = {t.shape[0] for t in tiles}
        if len(heights) != 1:
            raise ValueError(f"The tiles of a grid row must have one height, got {sorted(heights)}.")
        strips.append(np.concatenate([np.pad(t, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
                                      for t in tiles], axis=1))
    widths = {s.shape[1] for s in strips}
    if len(widths) != 1:
        raise ValueError(f"The rows of a grid must have one width, got {sorted(widths)}.")
    return np.concatenate(strips, axis=0)


def with_title(panel: Image.Image, title: str) -> Image.Image:
    """`panel` below a white band with `title` in black (the panel as it is when `title` is empty)."""
    if not title:
        return panel
    canvas = Image.new("RGB", (panel.width, panel.height + _TITLE), "white")
    canvas.paste(panel, (0, _TITLE))
    ImageDraw.Draw(canvas).text((2, 1), title, fill="black")
    return canvas


def _channels_last(image: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) image's RGB channels (C = 3) or first channel, as (H, W, C)."""
    return (image[:3] if image.shape[0] == 3 else image[:1]).permute(1, 2, 0)


def prediction_panel(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor,
                     attentions: torch.Tensor | None = None, title: str = "") -> Image.Image:
    """Rows of image | ground truth | prediction (| attention map over the image) for a few validation images.

    Args:
        images (`torch.Tensor`): (B, C, H, W), shown by `to_display` (the RGB channels of 3, else the first).
        labels, preds (`torch.Tensor`): (B, H, W) class indices in `PALETTE` colours (negative labels as 0).
        attentions (`torch.Tensor`, *optional*): (B, h, w) maps in [0, 1], resized to the image as heatmaps.
        title (`str`, *optional*): written above the panel.
    """
    rows = []
    for i in range(images.shape[0]):
        base = to_display(_channels_last(images[i]))
        tiles = [base, colorize(labels[i].cpu().numpy().clip(0)), colorize(preds[i].cpu().numpy())]
        if attentions is not None:
            tiles.append(overlay_heatmap(base, attentions[i], alpha=0.5))
        rows.append(tiles)
    return with_title(Image.fromarray(grid(rows)), title)
