"""The class colours every hfseg picture uses."""

from __future__ import annotations

import numpy as np

# Distinct colours for up to 10 classes (background black); more classes cycle.
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.uint8)


def colorize(label: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours."""
    return PALETTE[np.asarray(label) % len(PALETTE)]


def class_color(index: int) -> tuple[int, int, int]:
    """The colour of class `index` (`PALETTE`, cycling)."""
    return tuple(int(v) for v in PALETTE[int(index) % len(PALETTE)])
