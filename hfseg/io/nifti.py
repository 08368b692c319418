"""NIfTI-1 and NIfTI-2 volumes (`.nii`, `.nii.gz`), read with nibabel: any byte order, 2D to 4D."""

from __future__ import annotations

import gzip
import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from .errors import MedicalFileError
from .image import MedicalImage, check_dtype
from .limits import MAX_PIXELS, check_declared
from .sniff import check_content

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
# What nibabel raises for broken files (a corrupt .nii.gz stream raises zlib.error, not an OSError; a vox_offset
# past 2**63 an OverflowError).
_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, MemoryError, AttributeError, zlib.error,
           struct.error, OverflowError)
# Header extensions nibabel reads whole, trusting each extension's declared size: more than this is refused.
MAX_EXTENSION_BYTES = 16 * 1024 ** 2
# A .nii.gz declaring more voxel bytes than this is first checked to hold them (one streamed pass, no buffer),
# because nibabel allocates (and zero-fills) what the header declares before decompressing into it.
_STREAM_CHECK_BYTES = 64 * 1024 ** 2
_CHUNK = 1024 ** 2


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


def _open(path: Path):
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def _corrupt_header(path: Path, what: str) -> MedicalFileError:
    return MedicalFileError(f"Cannot read {path}: its header {what}, so it is corrupt. Replace it with a valid .nii or "
                            ".nii.gz.")


def check_extensions(path: Path) -> None:
    """Refuse header extensions that nibabel would read unbounded: it reads each extension's declared size (up to
    2 GB from a 600-byte file) and, when vox_offset lies before the extensions, reads them to the end of the
    stream. Nothing for a file without extensions or one nibabel refuses itself (not a NIfTI header)."""
    import nibabel as nib

    with _open(path) as handle:
        head = handle.read(544)
        if head[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):
            size, klass = 348, nib.Nifti1Header
        elif head[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c"):
            size, klass = 540, nib.Nifti2Header
        else:
            return
        if len(head) < size + 4 or head[size] == 0:
            return  # no extensions
        try:  # the byte order and vox_offset as nibabel will see them (it guesses the order from dim[0])
            header = klass(head[:size], check=False)
            order, vox_offset = header.endianness, float(header["vox_offset"])
        except (ValueError, TypeError, OverflowError):
            return
        if not math.isfinite(vox_offset):
            raise _corrupt_header(path, f"gives vox_offset {vox_offset}")
        remaining = int(vox_offset) - (size + 4)
        if remaining < 0:
            raise _corrupt_header(path, f"flags header extensions but puts the voxels (vox_offset {vox_offset:g}) "
                                        "before them")
        if remaining > MAX_EXTENSION_BYTES:
            raise _corrupt_header(path, f"declares {remaining} bytes of header extensions (vox_offset "
                                        f"{vox_offset:g}), over the {MAX_EXTENSION_BYTES // 1024 ** 2} MB hfseg reads")
        handle.seek(size + 4)
        region = handle.read(remaining)
    position = 0
    while remaining >= 16 and position + 8 <= len(region):
        esize = struct.unpack_from(order + "i", region, position)[0]
        if not 8 <= esize <= remaining:
            raise _corrupt_header(path, f"declares a header extension of {esize} bytes where {remaining} are left "
                                        "before the voxels")
        position, remaining = position + esize, remaining - esize


def check_stream(path: Path, end: int) -> None:
    """Refuse a .nii.gz whose decompressed stream ends before byte `end` (the end of the voxels read), counted in
    1 MB chunks, before nibabel allocates a buffer of the declared size."""
    if not str(path).lower().endswith(".gz") or end <= _STREAM_CHECK_BYTES:
        return
    total = 0
    with gzip.open(path, "rb") as handle:
        while total < end:
            chunk = handle.read(min(_CHUNK, end - total))
            if not chunk:
                raise MedicalFileError(f"Cannot read the voxels of {path}: its header declares {end} bytes but the "
                                       f"decompressed file holds {total}; it is truncated or corrupt. Replace it.")
            total += len(chunk)


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
               max_voxels: int | None = MAX_PIXELS) -> MedicalImage:
    """A NIfTI file as a 3D `MedicalImage` (a 2D file is one slice, shape (X, Y, 1)).

    Args:
        path: the `.nii` / `.nii.gz` file.
        volume (`int`, *optional*): the volume of a 4D file (required for one; negative counts from the end).
        dtype (`str`, *optional*, defaults to `"float32"`): `"float32"` (the header's scaling applied) or
            `"stored"` (the stored integer type when the header does not scale, e.g. label volumes).
        max_voxels (`int`, *optional*, defaults to `MAX_PIXELS`, 2³⁰): refuse files declaring more voxels than
            this (in the volume read), before reading any data; None: no limit.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    check_dtype(dtype)
    path = Path(path)
    check_content(path, "nifti")
    try:
        check_extensions(path)
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
        affine = np.asarray(img.affine, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except MedicalFileError:
        raise
    except (ImageFileError, HeaderDataError, *_ERRORS) as err:
        raise MedicalFileError(f"Cannot read {path}: corrupt or not a NIfTI file ({type(err).__name__}: {err}). "
                               "Replace it with a valid .nii or .nii.gz.") from err
    shape3, slicer = _volume_index(shape, volume, path)
    voxels = math.prod(shape3)
    check_declared(path, " x ".join(map(str, shape3)), voxels, max_voxels)
    if voxels == 0:
        raise MedicalFileError(f"{path} declares shape {shape}: it holds no voxels.")
    try:
        index = slicer[3] if len(slicer) > 3 and isinstance(slicer[3], int) else 0
        offset = int(getattr(img.dataobj, "offset", 0))
        check_stream(path, offset + voxels * img.get_data_dtype().itemsize * (index + 1))
        data = np.asanyarray(img.dataobj[slicer])
    except MedicalFileError:
        raise
    except _ERRORS as err:
        raise MedicalFileError(f"Cannot read the voxels of {path}: the file is truncated or corrupt "
                               f"({type(err).__name__}: {err}). Replace it.") from err
    if data.dtype.fields is not None or data.dtype.kind == "c":
        raise MedicalFileError(f"{path} stores {data.dtype} voxels (RGB, complex or structured): hfseg reads grey "
                               "volumes; split the channels (or magnitude and phase) into separate files.")
    if data.size != voxels:
        dim = img.header["dim"].tolist()
        raise MedicalFileError(f"Cannot read {path}: its header declares shape {shape} (dim {dim}) but {data.size} "
                               "voxels were read; the header is corrupt. Replace the file.")
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
