"""Overlays as RGB arrays: a class mask over the image (`overlay_mask`) and the TP/FP/FN errors of a prediction
against the ground truth (`overlay_errors`), each with an optional legend strip below.

Class colours are `PALETTE`; the background class is left transparent. Error colours are `ERROR_COLORS`, the one set
every hfseg error picture uses (the evaluation report's overlays, `hfseg.explain`'s `errors.png`). The image itself
stays at rows `[:H]` and columns `[:W]` of the result, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .display import to_display
from .legend import with_legend
from .palette import PALETTE, class_color

# True positive green, false positive red, false negative blue, a foreground pixel given another foreground class
# yellow.
ERROR_COLORS: dict[str, tuple[int, int, int]] = {
    "TP": (0, 200, 0),
    "FP": (255, 40, 40),
    "FN": (40, 120, 255),
    "wrong class": (255, 220, 0),
}


def blend(base: np.ndarray, color: Any, where: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """`(1 - alpha) * base + alpha * color` at the `where` pixels (all by default), rounded to uint8.

    Args:
        base (`np.ndarray`): (H, W, 3) uint8.
        color: one RGB colour or an (H, W, 3) array of them.
        where (`np.ndarray`, *optional*): (H, W) booleans; the other pixels keep `base`.
        alpha (`float`, *optional*, defaults to 0.5): opacity of `color` (1: pure colour).
    """
    out = base.astype(np.float32)
    color = np.broadcast_to(np.asarray(color, dtype=np.float32), out.shape)
    where = np.ones(out.shape[:2], dtype=bool) if where is None else np.asarray(where, dtype=bool)
    out[where] = (1 - alpha) * out[where] + alpha * color[where]
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
    if array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape} but the image is {tuple(shape)}: give (H, W) class indices "
                         "at the image's size.")
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
    out = blend(base, PALETTE[labels % len(PALETTE)], np.isin(labels, shown), alpha)
    return with_legend(out, [(class_color(c), names[c]) for c in shown]) if legend else out


def error_masks(pred: Any, truth: Any, classes: Sequence[int] | None = None,
                ignore_index: int | None = 255) -> dict[str, np.ndarray]:
    """Boolean (H, W) masks `TP`, `FP`, `FN` and `wrong class` of the foreground `classes` (default: every class but 0).

    TP: predicted and true class equal and in `classes`; FP: a class of `classes` predicted where the truth has none
    of them; FN: a class of `classes` missed (none of them predicted); wrong class: both in `classes` but different
    (never with one class). Pixels whose truth is `ignore_index` belong to none.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} must have the same shape.")
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
    """`ERROR_COLORS` over the image: true positives green, false positives red, false negatives blue, another
    foreground class yellow (see `error_masks`); ignored pixels (`truth == ignore_index`) and true negatives keep the
    image's colour.

    Args:
        image: anything `to_display` takes.
        pred, truth: (H, W) class indices at the image's size.
        classes (`list[int]`, *optional*): the foreground classes scored (default: every class but 0).
        ignore_index (`int`, *optional*, defaults to 255): the truth's "don't care" value.
        alpha (`float`, *optional*, defaults to 0.6): opacity of the error colours (1: pure colours).
        legend (`bool`, *optional*, defaults to `True`): add the legend strip below the image (without "wrong
            class" when one class is scored).

    Returns:
        `np.ndarray` (H', W', 3) uint8: the overlay in rows `[:H]`, columns `[:W]`, the legend below.
    """
    base = to_display(image)
    pred = label_array(pred, "pred", base.shape[:2])
    truth = label_array(truth, "truth", base.shape[:2])
    masks = error_masks(pred, truth, classes, ignore_index)
    color = np.zeros_like(base)
    for name, where in masks.items():
        color[where] = ERROR_COLORS[name]
    out = blend(base, color, np.logical_or.reduce(list(masks.values())), alpha)
    if not legend:
        return out
    names = [n for n in ERROR_COLORS if n != "wrong class" or classes is None or len(classes) > 1]
    return with_legend(out, [(ERROR_COLORS[n], n) for n in names])
