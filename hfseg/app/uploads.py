"""Reading one uploaded file into pixels and their spacing: PNG/JPEG/TIFF/BMP, DICOM, or one slice of a NIfTI.

`read_upload(path)` returns an `Upload`: the pixels as stored (2D grey, or (H, W, C)), the pixel spacing in mm
(rows, columns) when the format carries it, and for a NIfTI volume (or a multi-frame DICOM) how many slices it has
and which one was read. Anything wrong with the file (unknown type, corrupt, too large, not one 2D image) raises
`UploadError`, whose message is meant for the user as it is.

- **Images** (PNG, JPEG, TIFF, BMP): read as stored (8 or 16 bit, grey or colour, `hfseg.data.common.read_image`);
  a palette or 1-bit image becomes RGB or grey; no spacing.
- **DICOM** (`.dcm`, `.dicom`, or any file with the `DICM` marker): the pixel data through the modality LUT
  (`RescaleSlope`/`RescaleIntercept`, e.g. Hounsfield units for CT), spacing from `PixelSpacing`; the frames of a
  multi-frame file are its slices.
- **NIfTI** (`.nii`, `.nii.gz`): axial slices of a 3D volume, whatever its storage order: the axis closest to
  inferior-superior (from the affine) is the slice axis, slices count from inferior to superior, and each slice is
  shown as radiology viewers and the `demo` dataset do (anterior at the top, the x axis of RAS+ from left to right);
  spacing from the header's voxel sizes. Only the requested slice is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.common import IMAGE_EXTENSIONS, DatasetFormatError, read_image

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
DICOM_EXTENSIONS = (".dcm", ".dicom")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS + NIFTI_EXTENSIONS


class UploadError(ValueError):
    """An uploaded file that cannot be used; the message says what is wrong and what to upload instead."""


@dataclass(frozen=True)
class Upload:
    """One 2D image read from an upload.

    Args:
        image (`np.ndarray`): (H, W) grey or (H, W, C) pixels, as stored (DICOM: after the modality LUT).
        spacing (`tuple[float, float]`, *optional*): pixel size in mm along rows and columns; None when unknown.
        kind (`str`): `"image"`, `"dicom"` or `"nifti"`.
        name (`str`): the file name.
        num_slices (`int`): slices in the file (NIfTI volume, multi-frame DICOM); 1 for a 2D image.
        slice_index (`int`): the slice `image` is.
    """

    image: np.ndarray
    spacing: tuple[float, float] | None
    kind: str
    name: str
    num_slices: int = 1
    slice_index: int = 0


def file_kind(path: str | os.PathLike) -> str:
    """`"image"`, `"dicom"` or `"nifti"` from the file name, or `"dicom"` for any file with the DICOM marker
    (`DICM` at byte 128, as DICOMs without extension have); else an `UploadError` listing the supported types."""
    name = Path(path).name.lower()
    if name.endswith(NIFTI_EXTENSIONS):
        return "nifti"
    if name.endswith(DICOM_EXTENSIONS):
        return "dicom"
    if name.endswith(IMAGE_EXTENSIONS):
        return "image"
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) == b"DICM":
                return "dicom"
    except OSError:
        pass
    raise UploadError(f"{Path(path).name}: unsupported file type. Upload a PNG, JPEG, TIFF or BMP image, a DICOM file "
                      f"(.dcm) or a NIfTI volume (.nii, .nii.gz).")


def _check_size(height: int, width: int, name: str, max_side: int) -> None:
    if height > max_side or width > max_side:
        raise UploadError(f"{name} is {width} x {height} pixels, larger than the {max_side} x {max_side} this demo "
                          "accepts: downscale or crop it first.")
    if height < 2 or width < 2:
        raise UploadError(f"{name} is {width} x {height} pixels: upload a 2D image of at least 2 x 2 pixels.")


def _slice_index(index: int | None, count: int, name: str) -> int:
    if index is None:
        return count // 2
    if not 0 <= int(index) < count:
        raise UploadError(f"{name} has {count} slices (0 to {count - 1}); slice {index} does not exist.")
    return int(index)


# -- images ------------------------------------------------------------------------------------------------------
def _read_picture(path: Path, name: str, max_side: int) -> np.ndarray:
    try:
        with Image.open(path) as image:  # reads the header only: the size is checked before decoding
            width, height = image.size
            mode = image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UploadError(f"{name}: corrupt or not an image ({err}). Upload a valid PNG, JPEG or TIFF.") from err
    _check_size(height, width, name, max_side)
    if mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        try:
            with Image.open(path) as image:
                converted = image.convert("L" if mode == "1" else "RGBA" if "A" in mode else "RGB")
        except (OSError, SyntaxError, ValueError) as err:
            raise UploadError(f"{name}: corrupt image ({err}). Upload a valid image file.") from err
        return np.asarray(converted)
    try:
        return read_image(path)
    except DatasetFormatError as err:
        raise UploadError(f"{name}: corrupt or truncated image ({err.__cause__ or err}). Upload a valid image file.",
                          ) from err


# -- DICOM -------------------------------------------------------------------------------------------------------
def _read_dicom(path: Path, name: str, index: int | None, max_side: int) -> Upload:
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    from ..data.chaos import dcmread

    try:
        ds = dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError, KeyError, TypeError) as err:
        raise UploadError(f"{name}: corrupt or not a DICOM file ({err}). Upload a valid .dcm file.") from err
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise UploadError(f"{name}: this DICOM holds no image (no pixel data). Upload an image DICOM.")
    _check_size(int(ds.Rows), int(ds.Columns), name, max_side)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        pixels = apply_modality_lut(ds.pixel_array, ds)
    except Exception as err:  # pydicom raises many types for broken or unsupported pixel data
        raise UploadError(f"{name}: cannot decode the DICOM pixel data ({type(err).__name__}: {err}). Upload an "
                          "uncompressed DICOM or one in a transfer syntax pydicom can decode.") from err
    if frames > 1:
        slice_index = _slice_index(index, frames, name)
        pixels = pixels[slice_index]
    else:
        slice_index = 0
    spacing = ds.get("PixelSpacing")
    spacing = (float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None
    return Upload(np.ascontiguousarray(pixels), spacing, "dicom", name, frames, slice_index)


# -- NIfTI -------------------------------------------------------------------------------------------------------
_NIFTI_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, MemoryError)


def _axes(orientation: np.ndarray, ndim: int) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Array axes along x (left-right), y (posterior-anterior), z (inferior-superior), and whether each runs
    backwards, from `nibabel.orientations.io_orientation`; a 2D image is one slice (z the missing third axis)."""
    axis_of = {int(target): axis for axis, (target, _) in enumerate(orientation[:3]) if not np.isnan(target)}
    if ndim == 2 and axis_of.get(2) != 2:
        return (0, 1, 2), (False, False, False)  # a 2D non-axial plane: shown as stored
    if set(axis_of) != {0, 1, 2}:
        raise ValueError("degenerate affine")
    axes = (axis_of[0], axis_of[1], axis_of[2])
    return axes, tuple(bool(orientation[axis, 1] < 0) for axis in axes)


def _read_nifti(path: Path, name: str, index: int | None, max_side: int) -> Upload:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.orientations import io_orientation

    try:
        volume = nib.load(str(path))
        stored_shape = tuple(int(n) for n in volume.shape)
        zooms = tuple(float(z) for z in volume.header.get_zooms())
        orientation = io_orientation(volume.affine)
    except (ImageFileError, *_NIFTI_ERRORS) as err:
        raise UploadError(f"{name}: corrupt or not a NIfTI file ({err}). Upload a valid .nii or .nii.gz.") from err
    shape = stored_shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise UploadError(f"{name} has shape {stored_shape}: upload a 3D volume (one modality) or a 2D image.")
    try:
        (x_axis, y_axis, z_axis), (flip_x, flip_y, flip_z) = _axes(orientation, len(shape))
    except ValueError:
        raise UploadError(f"{name}: the header's affine has no clear axial axis. Fix the NIfTI header.") from None
    shape3 = (*shape, 1)[:3]
    _check_size(shape3[y_axis], shape3[x_axis], name, max_side)
    count = shape3[z_axis]
    slice_index = _slice_index(index, count, name)
    stored = count - 1 - slice_index if flip_z else slice_index  # slices count from inferior to superior
    slicer = [slice(None)] * len(shape) + [0] * (len(stored_shape) - len(shape))
    if len(shape) == 3:
        slicer[z_axis] = stored
    try:
        plane = np.asarray(volume.dataobj[tuple(slicer)])
    except _NIFTI_ERRORS as err:
        raise UploadError(f"{name}: the NIfTI data cannot be read ({err}); the file is truncated or corrupt.") from err
    # `plane` keeps the x and y axes in storage order: make it (x, y) in RAS+ directions, then rows = -y, cols = x.
    if x_axis > y_axis:
        plane = plane.T
    plane = plane[::-1 if flip_x else 1, ::-1 if flip_y else 1]
    image = np.ascontiguousarray(plane.T[::-1])
    spacing = (zooms[y_axis], zooms[x_axis]) if len(zooms) > max(x_axis, y_axis) else None
    return Upload(image, spacing, "nifti", name, count, slice_index)


# -- entry point -------------------------------------------------------------------------------------------------
def read_upload(path: str | os.PathLike, slice_index: int | None = None, max_bytes: int = MAX_FILE_BYTES,
                max_side: int = MAX_SIDE, name: str | None = None) -> Upload:
    """Read one uploaded file (see the module docstring).

    Args:
        path (`str`): the file.
        slice_index (`int`, *optional*): the slice of a NIfTI volume or multi-frame DICOM; default the middle one.
        max_bytes (`int`, *optional*, defaults to 20 MB): larger files are refused.
        max_side (`int`, *optional*, defaults to 4096): images wider or taller than this are refused.
        name (`str`, *optional*): the name to use in messages; default the file's name.

    Raises:
        UploadError: the file is missing, too large, of an unsupported type, corrupt, or not a 2D image.
    """
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UploadError(f"{name}: the uploaded file cannot be opened ({err.strerror}). Upload it again.") from err
    if size > max_bytes:
        raise UploadError(f"{name} is {size / 1024 ** 2:.1f} MB, over the {max_bytes / 1024 ** 2:.0f} MB limit of "
                          "this demo: upload a smaller file (one slice, or a compressed .nii.gz).")
    if size == 0:
        raise UploadError(f"{name} is empty. Upload an image, DICOM or NIfTI file.")
    kind = file_kind(path)
    if kind == "dicom":
        return _read_dicom(path, name, slice_index, max_side)
    if kind == "nifti":
        return _read_nifti(path, name, slice_index, max_side)
    image = _read_picture(path, name, max_side)
    if image.ndim not in (2, 3):
        raise UploadError(f"{name} has pixel array shape {image.shape}: upload a 2D image.")
    return Upload(image, None, "image", name)
