"""NIfTI-1 and NIfTI-2 volumes (`.nii`, `.nii.gz`), read with nibabel: any byte order, 2D to 4D."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from .errors import MedicalFileError
from .image import MedicalImage, check_dtype

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
# What nibabel raises for broken files (a corrupt .nii.gz stream raises zlib.error, not an OSError).
_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, MemoryError, AttributeError, zlib.error,
           struct.error)


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_EXTENSIONS)


def replace_nonfinite(array: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """`array` with NaN and +-inf replaced by its minimum finite value (0 when none is finite), and their count;
    a warning names the count. Integer arrays are returned as they are."""
    if array.dtype.kind != "f":
        return array, 0
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count:
        finite = array[~bad]
        fill = float(finite.min()) if finite.size else 0.0
        array = np.where(bad, np.asarray(fill, dtype=array.dtype), array)
        warnings.warn(f"{name}: {count} NaN or infinite voxel(s) replaced by the minimum finite value ({fill:g}).",
                      stacklevel=3)
    return array, count


def _volume_index(shape: tuple[int, ...], volume: int | None, path: Path) -> tuple[tuple[int, ...], tuple]:
    """The 3D shape and the slicer that reads it: trailing singleton axes dropped, one volume of a 4D file."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 4:
        raise MedicalFileError(f"{path} has shape {shape}: hfseg reads 2D, 3D and 4D NIfTI only.")
    if len(dims) == 4:
        count = dims[3]
        if volume is None:
            raise MedicalFileError(f"{path} is 4D, {count} volumes of {tuple(dims[:3])} voxels (time points or "
                                   f"channels): choose one with volume=N (hfseg predict --volume N), N from 0 to "
                                   f"{count - 1}.")
        if not -count <= volume < count:
            raise MedicalFileError(f"{path} has {count} volumes (0 to {count - 1}); volume {volume} does not exist.")
        slicer = (slice(None),) * 3 + (volume % count,) + (0,) * (len(shape) - 4)
        return tuple(dims[:3]), slicer
    if volume not in (None, 0):
        raise MedicalFileError(f"{path} is {len(dims)}D {tuple(dims)}, not 4D: it has no volume {volume}.")
    slicer = (slice(None),) * len(dims) + (0,) * (len(shape) - len(dims))
    return tuple(dims) + (1,) * (3 - len(dims)), slicer


def read_nifti(path: str | Path, volume: int | None = None, dtype: str = "float32",
               max_voxels: int | None = None) -> MedicalImage:
    """A NIfTI file as a 3D `MedicalImage` (a 2D file is one slice, shape (X, Y, 1)).

    Args:
        path: the `.nii` / `.nii.gz` file.
        volume (`int`, *optional*): the volume of a 4D file (required for one; negative counts from the end).
        dtype (`str`, *optional*, defaults to `"float32"`): `"float32"` (the header's scaling applied) or
            `"stored"` (the stored integer type when the header does not scale, e.g. label volumes).
        max_voxels (`int`, *optional*): refuse files declaring more voxels than this, before reading any data.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    check_dtype(dtype)
    path = Path(path)
    try:
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
        affine = np.asarray(img.affine, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except (ImageFileError, HeaderDataError, *_ERRORS) as err:
        raise MedicalFileError(f"Cannot read {path}: corrupt or not a NIfTI file ({type(err).__name__}: {err}). "
                               "Replace it with a valid .nii or .nii.gz.") from err
    shape3, slicer = _volume_index(shape, volume, path)
    voxels = int(np.prod(shape3, dtype=np.int64))
    if max_voxels is not None and voxels > max_voxels:
        raise MedicalFileError(f"{path} declares {' x '.join(map(str, shape3))} = {voxels} voxels, over the limit of "
                               f"{max_voxels}: crop or downsample it first.")
    if voxels == 0:
        raise MedicalFileError(f"{path} declares shape {shape}: it holds no voxels.")
    try:
        data = np.asanyarray(img.dataobj[slicer])
    except _ERRORS as err:
        raise MedicalFileError(f"Cannot read the voxels of {path}: the file is truncated or corrupt "
                               f"({type(err).__name__}: {err}). Replace it.") from err
    if data.dtype.fields is not None or data.dtype.kind == "c":
        raise MedicalFileError(f"{path} stores {data.dtype} voxels (RGB, complex or structured): hfseg reads grey "
                               "volumes; split the channels (or magnitude and phase) into separate files.")
    data = data.reshape(shape3)
    if dtype == "float32":
        data = data.astype(np.float32)
    elif isinstance(data, np.memmap):  # an unscaled .nii maps the file: copy, so the file is not held open
        data = np.array(data)
    data = np.asarray(data)  # a plain array (astype keeps the memmap class)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    data, nonfinite = replace_nonfinite(np.ascontiguousarray(data), path.name)
    spacing = tuple(zooms[:3]) + (1.0,) * (3 - len(zooms[:3]))
    meta = {"header": img.header.copy(), "shape": shape, "volume": volume, "nonfinite": nonfinite}
    return MedicalImage(data, path, "nifti", spacing=spacing, affine=affine, meta=meta)
