"""Legends: a white strip of colour swatches and names, put below a picture.

Each entry is a 10 px swatch (the exact colour) and its name; entries fill rows 16 px high, with 4 px padding around
the strip, wrapped to the picture's width (widened for an entry longer than it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
_SWATCH, _PAD, _ROW = 10, 4, 16


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType support
        return ImageFont.load_default()


def legend_strip(entries: Sequence[tuple[Color, str]], width: int) -> np.ndarray:
    """A white (h, w, 3) uint8 strip with a swatch and a label per `(colour, name)` entry, wrapped to `width`
    (widened for an entry longer than that); `h` is 24 px for one row and 16 px more per extra row."""
    font = _font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = [_PAD + _SWATCH + _PAD + int(draw.textlength(text, font=font)) + _PAD for _, text in entries]
    width = max([width, *(s + _PAD for s in sizes)])
    positions, x, y = [], _PAD, _PAD
    for size in sizes:
        if x > _PAD and x + size > width:
            x, y = _PAD, y + _ROW
        positions.append((x, y))
        x += size
    strip = Image.new("RGB", (width, y + _ROW + _PAD), "white")
    draw = ImageDraw.Draw(strip)
    for (color, text), (x, y) in zip(entries, positions, strict=True):
        top = y + (_ROW - _SWATCH) // 2
        draw.rectangle((x, top, x + _SWATCH - 1, top + _SWATCH - 1), fill=tuple(int(c) for c in color), outline=None)
        draw.text((x + _SWATCH + _PAD, y + 1), text, fill="black", font=font)
    return np.asarray(strip)


def with_legend(image: np.ndarray, entries: Sequence[tuple[Color, str]]) -> np.ndarray:
    """`image` (H, W, 3) above its legend strip, padded with white on the right if the strip is wider; the image
    itself unchanged when there are no entries."""
    if not entries:
        return image
    strip = legend_strip(entries, image.shape[1])
    if strip.shape[1] > image.shape[1]:
        image = np.pad(image, ((0, 0), (0, strip.shape[1] - image.shape[1]), (0, 0)), constant_values=255)
    return np.concatenate([image, strip], axis=0)
