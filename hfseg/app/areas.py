"""Per-class area of a predicted mask: pixels, share of the image, and mm² when the pixel spacing is known."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

AREA_HEADERS = ["class", "pixels", "% of image", "area (mm²)"]
UNKNOWN = "—"


def class_areas(mask: np.ndarray, id2label: Mapping[int, str], spacing: tuple[float, float] | None,
                ) -> list[list[object]]:
    """One row per class of `id2label` (also those absent from the mask), in class order: name, pixel count,
    percentage of the image (1 decimal), and area in mm² (pixels x row spacing x column spacing, 2 decimals) or
    `"—"` when `spacing` is None. Mask values outside `id2label` get a `class <k>` row."""
    mask = np.asarray(mask)
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=max(id2label, default=-1) + 1)
    names = dict(id2label)
    names.update({k: f"class {k}" for k in np.flatnonzero(counts) if k not in names})
    pixel_area = None if spacing is None else float(spacing[0]) * float(spacing[1])
    rows = []
    for k in sorted(names):
        pixels = int(counts[k]) if k < len(counts) else 0
        area = UNKNOWN if pixel_area is None else round(pixels * pixel_area, 2)
        rows.append([names[k], pixels, round(100 * pixels / max(mask.size, 1), 1), area])
    return rows
