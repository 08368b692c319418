"""`MedicalImage`: pixels or voxels with the geometry and source metadata needed to write results back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Kind = Literal["picture", "dicom", "nifti"]
DTYPES = ("float32", "stored")


def check_dtype(dtype: str) -> None:
    """A `ValueError` unless `dtype` is one the readers know: `"float32"` or `"stored"`."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'stored', got {dtype!r}.")


@dataclass
class MedicalImage:
    """One image or volume read by `hfseg.io.read`.

    Args:
        array (`np.ndarray`): the pixels in native byte order, float32 (or the stored integer type with
            `read(..., dtype="stored")`). A picture or a single-frame DICOM is 2D `(rows, columns)` or
            `(rows, columns, channels)`; a volume (NIfTI, DICOM series, multi-frame DICOM) is 3D in storage order,
            indexed `(i, j, k)` as its `affine` maps them. A DICOM volume is `(columns, rows, slices)`: `[:, :, k]`
            is slice k transposed, as DICOM-to-NIfTI converters store it.
        path (`Path`): the file or series folder read.
        kind (`str`): `"picture"` (PNG, JPEG, TIFF, BMP), `"dicom"` or `"nifti"`.
        spacing (`tuple[float, ...]`, *optional*): the size of a voxel in mm along each array axis (a 2D image:
            rows, columns); None when the format does not say.
        affine (`np.ndarray`, *optional*): 4 x 4 matrix from voxel indices of `array` (a 2D DICOM: (row, column,
            0)) to RAS+ world coordinates in mm (nibabel's convention; DICOM's LPS patient coordinates are
            converted). None for pictures.
        modality (`str`, *optional*): the DICOM Modality code (`"CT"`, `"MR"`, ...); None when unknown (NIfTI,
            pictures).
        meta (`dict`): what writing results back needs: `"header"` (NIfTI), `"datasets"` (the DICOM data sets,
            in slice order, without pixel data), `"series_uid"`, `"frame_of_reference_uid"`,
            `"samples_per_pixel"` (DICOM: 3 for a colour image, whose (rows, columns, 3) array is one 2D image), and
            `"nonfinite"` (the count of NaN/inf voxels replaced).
    """

    array: np.ndarray
    path: Path
    kind: Kind
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    modality: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_volume(self) -> bool:
        """Whether this is a 3D volume (NIfTI, DICOM series or multi-frame) rather than one 2D image (a picture, a
        single DICOM image, grey or colour)."""
        return (self.kind != "picture" and self.affine is not None and self.array.ndim == 3
                and self.meta.get("samples_per_pixel", 1) == 1)

    @property
    def name(self) -> str:
        """The file or folder name, for messages and output names."""
        return self.path.name

    @property
    def stem(self) -> str:
        """The name without its extension (`.nii.gz` counts as one), for naming outputs."""
        name = self.path.name
        for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    def voxel_volume(self) -> float | None:
        """mm³ per voxel of a volume, mm² per pixel of a 2D image with spacing; None without spacing."""
        if self.spacing is None:
            return None
        dims = 3 if self.is_volume else 2
        return float(np.prod(self.spacing[:dims]))

    def __repr__(self) -> str:
        spacing = "x".join(f"{s:g}" for s in self.spacing) if self.spacing else "unknown"
        return (f"MedicalImage({self.name!r}, {self.kind}, shape={tuple(self.array.shape)}, dtype={self.array.dtype}, "
                f"spacing={spacing} mm, modality={self.modality})")
