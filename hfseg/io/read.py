"""`read(path)`: any supported medical image file or DICOM series folder as a `MedicalImage`."""

from __future__ import annotations

import os
from pathlib import Path

from .dicom import DICOM_EXTENSIONS, is_dicom, read_dicom_file, read_dicom_series
from .errors import MedicalFileError
from .image import MedicalImage, check_dtype
from .limits import MAX_PIXELS
from .nifti import NIFTI_EXTENSIONS, is_nifti, read_nifti
from .pictures import PICTURE_EXTENSIONS, read_picture

SUPPORTED = ("PNG, JPEG, TIFF or BMP pictures, DICOM files (.dcm) or series folders, NIfTI volumes "
             "(.nii, .nii.gz)")


def file_kind(path: str | os.PathLike) -> str:
    """`"picture"`, `"dicom"`, `"nifti"` or `"dicom-series"` (a folder) from the name, or the DICOM marker for
    files without a known extension; else a `MedicalFileError` listing what is supported."""
    path = Path(path)
    if path.is_dir():
        return "dicom-series"
    name = path.name.lower()
    if is_nifti(name):
        return "nifti"
    if name.endswith(DICOM_EXTENSIONS):
        return "dicom"
    if name.endswith(PICTURE_EXTENSIONS):
        return "picture"
    if is_dicom(path):
        return "dicom"
    raise MedicalFileError(f"{path}: unsupported file type. hfseg reads {SUPPORTED}.")


def read(path: str | os.PathLike, *, volume: int | None = None, series: str | None = None,
         dtype: str = "float32", max_bytes: int | None = None, max_pixels: int | None = MAX_PIXELS) -> MedicalImage:
    """Read a picture, a DICOM file or series folder, or a NIfTI file.

    Args:
        path: the file, or a folder holding one DICOM series.
        volume (`int`, *optional*): the volume of a 4D NIfTI (required for one).
        series (`str`, *optional*): the SeriesInstanceUID to read from a folder holding several series.
        dtype (`str`, *optional*, defaults to `"float32"`): `"float32"` intensities (NIfTI scaling and the DICOM
            modality LUT applied, NaN/inf replaced) or `"stored"` (the stored values and type, e.g. for label files).
        max_bytes (`int`, *optional*): refuse larger files before reading them.
        max_pixels (`int`, *optional*, defaults to `MAX_PIXELS`, 2³⁰): refuse images or volumes whose header
            declares more pixels / voxels, before decoding (a corrupt or hostile header cannot make hfseg allocate
            what it declares); None: no limit.

    Returns:
        `MedicalImage`: the array in native byte order with spacing, affine, modality and source metadata.

    Raises:
        MedicalFileError: missing, empty, too large, unsupported, named as one type but holding another (a PNG
            renamed .dcm), corrupt, or ambiguous (4D without `volume`, a
            folder of several series); the message names the file and the fix.
    """
    check_dtype(dtype)
    path = Path(path)
    if not path.exists():
        raise MedicalFileError(f"{path} does not exist: check the path.")
    kind = file_kind(path)
    if kind == "dicom-series":
        return read_dicom_series(path, series=series, dtype=dtype, max_pixels=max_pixels)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise MedicalFileError(f"{path} cannot be opened ({err.strerror}): check its permissions.") from err
    if size == 0:
        raise MedicalFileError(f"{path} is empty (0 bytes): replace it with the original file.")
    if max_bytes is not None and size > max_bytes:
        raise MedicalFileError(f"{path} is {size / 1024 ** 2:.1f} MB, over the {max_bytes / 1024 ** 2:.0f} MB limit: "
                               "pass a smaller file (one slice, or a compressed .nii.gz).")
    if kind == "nifti":
        return read_nifti(path, volume=volume, dtype=dtype, max_voxels=max_pixels)
    if kind == "dicom":
        return read_dicom_file(path, dtype=dtype, max_pixels=max_pixels)
    return read_picture(path, dtype=dtype, max_pixels=max_pixels)


def list_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """The inputs named by `paths`: files as they are; a folder gives its pictures and NIfTI files (sorted, not
    recursive) and, when it also holds DICOM files, itself once, as a series (read recursively). A folder with
    neither, like a missing path, is kept, so reading it reports what is wrong."""
    inputs: list[Path] = []
    for item in map(Path, paths):
        if not item.is_dir():
            inputs.append(item)
            continue
        files = sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith("."))
        readable = [p for p in files if p.name.lower().endswith(PICTURE_EXTENSIONS) or is_nifti(p.name)]
        inputs.extend(readable)
        if not readable or any(is_dicom(p) for p in files if p not in readable):
            inputs.append(item)
    return inputs


__all__ = ["NIFTI_EXTENSIONS", "SUPPORTED", "file_kind", "list_inputs", "read"]
