"""Run-length encoding of binary masks in the Kaggle format: `"start length start length ..."`.

Starts are 1-indexed positions in the flattened mask; lengths count pixels. An empty string, `None` or NaN (what
pandas reads for an empty CSV field) is an empty mask. The flattening order is a parameter:

- `order="C"` (row-major: along a row, then the next row) is what the public UW-Madison GI code does
  (`np.zeros(H * W)`, fill runs, `reshape(H, W)`);
- `order="F"` (column-major: top to bottom, then left to right) is what some competitions' submission text
  describes.

`rle_decode(rle, (H, W), "F")` equals `rle_decode(rle, (W, H), "C").T`. Runs may come in any order (Kaggle's are
sorted), but overlapping runs, runs past the last pixel, non-integer tokens, an odd count of numbers, a start
below 1 or a length below 1 raise an `RLEError` (a `DatasetFormatError`, hence a `ValueError`).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import numpy as np

from .common import DatasetFormatError

Order = Literal["C", "F"]
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class RLEError(DatasetFormatError):
    """A run-length string that is not a valid Kaggle RLE for the given mask shape."""


def _check_order(order: str) -> None:
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' (row-major) or 'F' (column-major), got {order!r}.")


def _is_empty(rle: object) -> bool:
    if rle is None:
        return True
    if isinstance(rle, float) and math.isnan(rle):
        return True
    if isinstance(rle, str):
        return not rle.strip()
    raise RLEError(f"RLE must be a string of 'start length' pairs (or empty/None/NaN), got {type(rle).__name__} "
                   f"{rle!r}.")


def rle_runs(rle: str | float | None, num_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """0-indexed starts and lengths of the runs of `rle`, sorted by start, checked against `num_pixels`."""
    if _is_empty(rle):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens = str(rle).split()
    if len(tokens) % 2:
        raise RLEError(f"RLE has an odd number of values ({len(tokens)}): expected 'start length' pairs.")
    bad = next((token for token in tokens if not _INTEGER.fullmatch(token)), None)
    if bad is not None:
        raise RLEError(f"RLE token {bad!r} is not an integer: expected 'start length' pairs of integers.")
    values = np.array(tokens).astype(np.int64)
    starts, lengths = values[0::2], values[1::2]
    if (starts < 1).any():
        raise RLEError(f"RLE start {int(starts[starts < 1][0])} is below 1: starts are 1-indexed pixel positions.")
    if (lengths < 1).any():
        raise RLEError(f"RLE run starting at {int(starts[lengths < 1][0])} has length "
                       f"{int(lengths[lengths < 1][0])}: lengths must be at least 1.")
    order = np.argsort(starts, kind="stable")
    starts, lengths = starts[order] - 1, lengths[order]
    ends = starts + lengths
    if ends[-1] > num_pixels:
        raise RLEError(f"RLE run {int(starts[-1]) + 1} {int(lengths[-1])} ends at pixel {int(ends[-1])}, past the "
                       f"{num_pixels} pixels of the mask: wrong mask shape or wrong RLE.")
    overlap = np.flatnonzero(starts[1:] < ends[:-1])
    if overlap.size:
        i = int(overlap[0])
        raise RLEError(f"RLE runs {int(starts[i]) + 1} {int(lengths[i])} and {int(starts[i + 1]) + 1} "
                       f"{int(lengths[i + 1])} overlap.")
    return starts, lengths


def rle_decode(rle: str | float | None, shape: tuple[int, int], order: Order = "C") -> np.ndarray:
    """Binary mask (uint8 0/1) of `shape` = (rows, cols) from a Kaggle RLE string, flattened in `order`."""
    _check_order(order)
    rows, cols = (int(n) for n in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"shape must be two positive sizes (rows, cols), got {shape}.")
    starts, lengths = rle_runs(rle, rows * cols)
    edges = np.zeros(rows * cols + 1, dtype=np.int8)
    edges[starts] += 1
    edges[starts + lengths] -= 1
    flat = np.cumsum(edges[:-1], dtype=np.int8).astype(np.uint8)
    return flat.reshape((rows, cols), order=order)


def rle_encode(mask: np.ndarray, order: Order = "C") -> str:
    """Kaggle RLE string of a 2D mask (non-zero = foreground) flattened in `order`; `""` for an empty mask."""
    _check_order(order)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode takes a 2D mask, got shape {mask.shape}.")
    flat = np.concatenate([[False], mask.ravel(order=order) != 0, [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])  # 0-indexed run starts and ends, alternating
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts.tolist(), ends.tolist()))
