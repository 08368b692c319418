"""Overlays as RGB arrays: a class mask over the image with a legend, TP/FP/FN errors against ground truth, and a CAM
(or attention) heatmap.

Class colours are `hfseg.viz.PALETTE` (the run panels' colours); the background class is left
transparent. A legend is a white strip below the image with one swatch (the exact colour) and name per entry,
wrapped to the image's width (widened for an entry longer than it). The image itself stays at rows `[:H]` and
columns `[:W]` of the result, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ..viz import PALETTE
from .display import to_display

# Error colours: true positive green, false positive red, false negative blue, a foreground pixel given another
# foreground class yellow.
ERROR_COLORS: dict[str, tuple[int, int, int]] = {
    "TP": (0, 200, 0),
    "FP": (255, 40, 40),
    "FN": (40, 120, 255),
    "wrong class": (255, 220, 0),
}
_SWATCH, _PAD, _ROW = 10, 4, 16


def class_color(index: int) -> tuple[int, int, int]:
    """The colour of class `index` (`PALETTE`, cycling)."""
    return tuple(int(v) for v in PALETTE[int(index) % len(PALETTE)])


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType support
        return ImageFont.load_default()


def legend_strip(entries: Sequence[tuple[tuple[int, int, int], str]], width: int) -> np.ndarray:
    """A white (h, w, 3) uint8 strip with a swatch and a label per entry, wrapped to `width` (widened for an entry
    longer than that)."""
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
        draw.rectangle((x, top, x + _SWATCH - 1, top + _SWATCH - 1), fill=tuple(color), outline=None)
        draw.text((x + _SWATCH + _PAD, y + 1), text, fill="black", font=font)
    return np.asarray(strip)


def with_legend(image: np.ndarray, entries: Sequence[tuple[tuple[int, int, int], str]]) -> np.ndarray:
    """`image` (H, W, 3) above its legend strip; the image is padded with white on the right if the strip is wider."""
    if not entries:
        return image
    strip = legend_strip(entries, image.shape[1])
    if strip.shape[1] > image.shape[1]:
        image = np.pad(image, ((0, 0), (0, strip.shape[1] - image.shape[1]), (0, 0)), constant_values=255)
    return np.concatenate([image, strip], axis=0)


def _blend(base: np.ndarray, color: np.ndarray, where: np.ndarray, alpha: float) -> np.ndarray:
    out = base.astype(np.float32)
    out[where] = (1 - alpha) * out[where] + alpha * color[where].astype(np.float32)
    return np.round(out).clip(0, 255).astype(np.uint8)


def label_array(array: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 class indices from a PIL image, array or tensor ((1, H, W) too), checked against `shape`."""
    if isinstance(array, Image.Image):
        array = np.asarray(array)
    elif isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape} but the image is {shape}: give (H, W) class indices at the "
                         "image's size.")
    return array.astype(np.int64)


def _names(id2label: Mapping[Any, str] | None, present: Iterable[int]) -> dict[int, str]:
    if id2label:
        return {int(k): str(v) for k, v in id2label.items()}
    return {int(c): f"class {int(c)}" for c in sorted(set(present))}


def overlay_mask(image: Any, mask: Any, id2label: Mapping[Any, str] | None = None, alpha: float = 0.45,
                 legend: bool = True, background: int | None = 0) -> np.ndarray:
    """Classes coloured over the image, with a legend strip (one swatch and name per class) below it.

    Args:
        image: anything `to_display` takes (or an (H, W, 3) uint8 RGB array, used as it is).
        mask: (H, W) class indices at the image's size.
        id2label (`dict`, *optional*): class names; without it the classes present are named `class <i>`.
        alpha (`float`, *optional*, defaults to 0.45): opacity of the class colours.
        legend (`bool`, *optional*, defaults to `True`): add the legend strip (the result is then taller).
        background (`int`, *optional*, defaults to 0): the class left uncoloured and out of the legend (`None`
            colours every class). Values not in `id2label` (e.g. an ignore index 255) are not coloured either.

    Returns:
        `np.ndarray` (H', W', 3) uint8: the overlay in rows `[:H]`, columns `[:W]`, the legend below.
    """
    base = to_display(image)
    labels = label_array(mask, "mask", base.shape[:2])
    names = _names(id2label, np.unique(labels))
    shown = [c for c in sorted(names) if c != background]
    where = np.isin(labels, shown)
    out = _blend(base, PALETTE[labels % len(PALETTE)], where, alpha)
    return with_legend(out, [(class_color(c), names[c]) for c in shown]) if legend else out


def error_masks(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int] | None = None,
                ignore_index: int | None = 255) -> dict[str, np.ndarray]:
    """Boolean (H, W) masks `TP`, `FP`, `FN` and `wrong class` of the foreground `classes` (default: every class but 0).

    TP: predicted and true class equal and in `classes`; FP: a class of `classes` predicted where the truth has none
    of them; FN: a class of `classes` missed (none of them predicted); wrong class: both in `classes` but different.
    Pixels whose truth is `ignore_index` belong to none.
    """
    valid = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, dtype=bool)
    if classes is None:
        pred_in, truth_in = pred != 0, truth != 0
    else:
        pred_in, truth_in = np.isin(pred, list(classes)), np.isin(truth, list(classes))
    pred_in, truth_in = pred_in & valid, truth_in & valid
    same = pred == truth
    return {"TP": pred_in & truth_in & same, "FP": pred_in & ~truth_in, "FN": truth_in & ~pred_in,
            "wrong class": pred_in & truth_in & ~same}


def overlay_errors(image: Any, pred: Any, truth: Any, classes: Sequence[int] | None = None,
                   ignore_index: int | None = 255, alpha: float = 0.6, legend: bool = True) -> np.ndarray:
    """True positives green, false positives red, false negatives blue (another foreground class: yellow) over the
    image, with a legend; ignored pixels (`truth == ignore_index`) and true negatives keep the image's colour.

    Args:
        image: anything `to_display` takes.
        pred, truth: (H, W) class indices at the image's size.
        classes (`list[int]`, *optional*): the foreground classes scored (default: every class but 0).
        ignore_index (`int`, *optional*, defaults to 255): the truth's "don't care" value.
        alpha (`float`, *optional*, defaults to 0.6): opacity of the error colours.
        legend (`bool`, *optional*, defaults to `True`): add the legend strip below the image.
    """
    base = to_display(image)
    pred = label_array(pred, "pred", base.shape[:2])
    truth = label_array(truth, "truth", base.shape[:2])
    masks = error_masks(pred, truth, classes, ignore_index)
    color = np.zeros_like(base)
    for name, where in masks.items():
        color[where] = ERROR_COLORS[name]
    out = _blend(base, color, np.logical_or.reduce(list(masks.values())), alpha)
    if not legend:
        return out
    names = [n for n in ERROR_COLORS if n != "wrong class" or classes is None or len(classes) > 1]
    return with_legend(out, [(ERROR_COLORS[n], n) for n in names])


def heatmap_colors(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] as (H, W, 3) uint8 colours of a matplotlib colormap."""
    import matplotlib

    rgba = matplotlib.colormaps[colormap](np.clip(np.nan_to_num(values), 0, 1))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def overlay_heatmap(image: Any, cam: Any, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """A CAM or attention map (values in [0, 1], resized bilinearly to the image if needed) blended over the image.

    Returns:
        `np.ndarray` (H, W, 3) uint8: `(1 - alpha) * image + alpha * colormap(cam)`.
    """
    base = to_display(image)
    values = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    if values.dim() != 2:
        raise ValueError(f"cam must be an (h, w) map, got shape {tuple(values.shape)}.")
    if tuple(values.shape) != base.shape[:2]:
        values = F.interpolate(values[None, None], size=base.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    heat = heatmap_colors(values.numpy(), colormap)
    return _blend(base, heat, np.ones(base.shape[:2], dtype=bool), alpha)
