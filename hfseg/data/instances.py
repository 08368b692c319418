"""Instance maps and the 3-class boundary target that lets a semantic network separate touching objects.

An instance map is an integer array, 0 = background, every other value one object (nucleus, cell, gland); ids need
not be contiguous. Connected components of a semantic mask merge objects that touch, so instance segmentation
networks (DSB 2018 winners, Cellpose's and StarDist's 3-class baselines, HoVer-Net's ablations) are trained on a
**boundary target** instead: background 0, interior 1, boundary 2, where the boundary is the rim of pixels of an
object that touch another object or the background. A seeded watershed on the predicted probabilities then
recovers the objects (`UNetImageProcessor.post_process_instance_segmentation`).

Everything here is numpy/scipy and works on 2D maps and 3D volumes alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

INSTANCE_ID2LABEL: dict[int, str] = {0: "background", 1: "interior", 2: "boundary"}
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
MAX_INSTANCES = np.iinfo(np.uint16).max


def instance_map(array: Any, where: Any = "instance map") -> np.ndarray:
    """An instance map as a non-negative int32 array, or a `ValueError` naming `where` and the problem.

    Integer arrays (uint8/16/32, int) are accepted; floats only when they hold whole numbers.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        raise ValueError(f"{where}: a boolean mask is not an instance map; label it first "
                         "(hfseg.metrics.connected_instances) or save one id per object.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{where}: instance ids must be whole numbers, got fractional values.")
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: instance ids must be integers, got dtype {array.dtype}.")
    if array.size and array.min() < 0:
        raise ValueError(f"{where}: instance ids must be >= 0 (0 = background), got {int(array.min())}.")
    if array.size and array.max() > MAX_INSTANCES:
        raise ValueError(f"{where}: instance ids above {MAX_INSTANCES} do not fit a 16-bit instance map.")
    return array.astype(np.int32, copy=False)


def boundary_target(instances: Any, width: int = 1, connectivity: int = 1) -> np.ndarray:
    """The 3-class target (uint8: 0 background, 1 interior, 2 boundary) of an instance map.

    A pixel of an object is boundary when a pixel within `width` steps of it (steps along `connectivity`
    neighbours: 1 = faces, 4-neighbours in 2D; `ndim` = also diagonals) belongs to another object or to the
    background. Two objects that touch therefore get a boundary `width` pixels wide on each side, 2 * `width` in all,
    which keeps them apart after thresholding. The image border is not a boundary (the map is extended by its edge
    values).

    Args:
        instances: instance map (H, W) or (D, H, W), 0 = background.
        width (`int`, *optional*, defaults to 1): boundary width in pixels on each object's side (>= 1).
        connectivity (`int`, *optional*, defaults to 1): neighbourhood of one step, as in `scipy.ndimage`.
    """
    instances = instance_map(instances)
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}.")
    if not 1 <= connectivity <= max(instances.ndim, 1):
        raise ValueError(f"connectivity must be in [1, {instances.ndim}], got {connectivity}.")
    step = ndimage.generate_binary_structure(instances.ndim, connectivity)
    footprint = ndimage.iterate_structure(step, width) if width > 1 else step
    low = ndimage.grey_erosion(instances, footprint=footprint, mode="nearest")
    high = ndimage.grey_dilation(instances, footprint=footprint, mode="nearest")
    target = np.zeros(instances.shape, dtype=np.uint8)
    objects = instances > 0
    target[objects] = BOUNDARY
    target[objects & (low == high)] = INTERIOR
    return target


def relabel(instances: Any) -> np.ndarray:
    """The instance map with ids renumbered 1..N in order of first appearance of each sorted id (0 stays 0)."""
    instances = instance_map(instances)
    ids = np.unique(instances)
    ids = ids[ids != 0]
    lookup = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lookup[instances]


def count_instances(instances: Any) -> int:
    """Number of objects (distinct non-zero ids) in an instance map."""
    ids = np.unique(np.asarray(instances))
    return int((ids != 0).sum())
