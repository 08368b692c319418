"""Slicing a volume into 2D images in one display convention, and stacking 2D results back into the volume.

hfseg's 2D models see volume slices the way radiology viewers show them, whatever order the file stores its
voxels in (the convention of DICOM's standard patient orientations, so an axial CT slice is the same image read as
a DICOM file or cut from a volume):

- **axial**: slices from inferior to superior; anterior at the top, the patient's right on the image's left.
- **coronal**: slices from posterior to anterior; superior at the top, the patient's right on the image's left.
- **sagittal**: slices from the patient's right to left; superior at the top, anterior on the image's left.

The volume is reoriented with nibabel's `io_orientation` / `apply_orientation` (axes permuted and flipped, never
resampled), sliced, and the per-slice results are put back in storage order with the inverse transform.
`axis=0|1|2` slices along a storage axis as stored instead.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .errors import MedicalFileError

Plane = Literal["axial", "coronal", "sagittal"]
# Axis codes of the reoriented array: (slice axis, rows, columns), as nibabel names directions.
PLANES: dict[str, tuple[str, str, str]] = {
    "axial": ("S", "P", "L"),
    "coronal": ("A", "I", "L"),
    "sagittal": ("L", "I", "P"),
}
_NORMAL = {0: "sagittal", 1: "coronal", 2: "axial"}  # RAS+ world axis -> the plane normal to it


def _orientation(affine: np.ndarray, name: str) -> np.ndarray:
    from nibabel.orientations import io_orientation

    affine = np.asarray(affine, dtype=np.float64)
    ornt = io_orientation(affine) if np.isfinite(affine).all() else np.full((3, 2), np.nan)
    if np.isnan(ornt).any():
        raise MedicalFileError(f"{name}: the affine {np.round(affine, 3).tolist()} does not define three axes "
                               "(a zero, repeated or non-finite direction); fix the file's geometry (NIfTI "
                               "sform/qform, DICOM ImageOrientationPatient) or slice along a storage axis with "
                               "axis=0, 1 or 2.")
    return ornt


def default_plane(affine: np.ndarray, shape: tuple[int, ...], name: str = "the volume") -> Plane:
    """`"axial"`, or for a single-slice volume the plane of that slice (a sagittal DICOM slice stays sagittal)."""
    singles = [axis for axis, n in enumerate(shape[:3]) if n == 1]
    if len(singles) == 1:
        return _NORMAL[int(_orientation(affine, name)[singles[0], 0])]  # type: ignore[return-value]
    return "axial"


def _transform(affine: np.ndarray, plane: str, name: str) -> np.ndarray:
    from nibabel.orientations import axcodes2ornt, ornt_transform

    if plane not in PLANES:
        raise ValueError(f"Unknown plane {plane!r}; choose one of {', '.join(PLANES)} or a storage axis 0, 1, 2.")
    return ornt_transform(_orientation(affine, name), axcodes2ornt(PLANES[plane]))


def to_slices(array: np.ndarray, affine: np.ndarray, plane: Plane | int = "axial",
              name: str = "the volume") -> np.ndarray:
    """`(n, rows, columns, ...)` slices of a 3D `array` (extra trailing axes, e.g. channels, are kept).

    `plane` is `"axial"`, `"coronal"` or `"sagittal"` in the module's display convention, or a storage axis
    (0, 1, 2) to slice as stored.
    """
    if array.ndim < 3:
        raise ValueError(f"to_slices needs a 3D volume, got shape {array.shape}.")
    if isinstance(plane, (int, np.integer)):
        if not 0 <= plane < 3:
            raise ValueError(f"axis must be 0, 1 or 2, got {plane}.")
        return np.moveaxis(array, int(plane), 0)
    from nibabel.orientations import apply_orientation

    return apply_orientation(array, _transform(affine, plane, name))


def from_slices(slices: np.ndarray, affine: np.ndarray, plane: Plane | int = "axial",
                name: str = "the volume") -> np.ndarray:
    """The inverse of `to_slices`: per-slice results `(n, rows, columns, ...)` back in the volume's storage order."""
    if isinstance(plane, (int, np.integer)):
        return np.moveaxis(slices, 0, int(plane))
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    back = ornt_transform(axcodes2ornt(PLANES[plane]), _orientation(affine, name))
    return apply_orientation(slices, back)


def slice_spacing(spacing: tuple[float, ...] | None, affine: np.ndarray, plane: Plane | int) -> tuple[float, ...] | None:
    """The voxel size (slice, rows, columns) in mm of `to_slices`' output, from the storage spacing."""
    if spacing is None:
        return None
    if isinstance(plane, (int, np.integer)):
        order = [int(plane)] + [a for a in range(3) if a != plane]
    else:
        transform = _transform(affine, plane, "the volume")  # row: storage axis -> (new position, flip)
        order = [int(np.flatnonzero(transform[:, 0] == new)[0]) for new in range(3)]
    return tuple(float(spacing[a]) for a in order)
