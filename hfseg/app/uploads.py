"""Reading one uploaded file into one 2D image and its spacing: `hfseg.io.read` plus the demo's size limits.

`read_upload(path)` returns an `Upload`: the pixels (2D grey, or (H, W, C)), the pixel spacing in mm (rows, columns)
when the file states it, the DICOM modality, and for a volume how many slices it has and which one was read.
Anything wrong with the file (unknown type, corrupt, too large, not one image or 3D volume) raises `UploadError`, a
`hfseg.io.MedicalFileError` whose message is meant for the user as it is: it names the file by its display name
(never the server's temporary path) and says what to upload instead.

- **Pictures** (PNG, JPEG, TIFF, BMP): as stored (8 or 16 bit, grey or colour: `hfseg.io.read_picture_array`, as
  `read` would give float32 and 8-bit pictures are shown as they are); a palette or 1-bit image becomes RGB(A) or
  grey; no spacing.
- **DICOM** (`.dcm`, `.dicom`, `.ima`, or any file with the `DICM` marker): the pixel data through the modality LUT
  (`RescaleSlope`/`RescaleIntercept`, e.g. Hounsfield units for CT), float32 (8-bit colour stays uint8), spacing
  from `PixelSpacing` (None when the file does not state it), the `Modality`. A single-frame file is shown as
  stored. The frames of a multi-frame file are its slices, sorted by position, each shown in its own plane (axial,
  coronal or sagittal) in the display convention below.
- **NIfTI** (`.nii`, `.nii.gz`): the axial slices of a 3D volume, whatever its storage order, in the display
  convention of `hfseg.io.to_slices`: slices from inferior to superior, anterior at the top and the patient's right
  on the image's left (radiological, as DICOM viewers and the `demo` dataset show them); values as stored (the
  header's scaling applied); spacing from the header's voxel sizes. A 4D file (time points or channels) is refused:
  the demo has no control to choose a volume, and picking one silently (the first of T1, T1ce, T2, FLAIR, say)
  would segment an image the user did not mean.

Files are checked by content before decoding: a file whose name says one type and whose bytes another (a PNG
renamed `.dcm`, a NIfTI or a text file renamed `.png`) is refused, the message saying what it holds and how to
rename it (the readers of `hfseg.io` check this).

Limits: files over `max_bytes` are refused before reading; pictures over `max_side` x `max_side` pixels and volumes
over `VOLUME_IMAGES` times that many voxels are refused from their headers, before decoding (a small `.nii.gz` may
declare gigabytes of voxels); the 2D image shown must be at most `max_side` pixels on each side.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import MedicalFileError, MedicalImage, default_plane, read, slice_spacing, to_slices
from ..io import file_kind as io_file_kind
from ..io.dicom import DICOM_EXTENSIONS
from ..io.nifti import NIFTI_EXTENSIONS
from ..io.pictures import PICTURE_EXTENSIONS, read_picture_array

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
# A volume may hold as many voxels as this many max_side x max_side images: at the defaults 67 M voxels, e.g. a
# 512 x 512 x 256 CT (268 MB as float32); a picture at most one such image.
VOLUME_IMAGES = 4
SUPPORTED_EXTENSIONS = PICTURE_EXTENSIONS + DICOM_EXTENSIONS + NIFTI_EXTENSIONS
_KINDS = {"picture": "image", "dicom": "dicom", "nifti": "nifti"}  # hfseg.io's kind -> the Upload's
_FORMATS = {"image": "PNG, JPEG or TIFF image", "dicom": "DICOM file (.dcm)", "nifti": "NIfTI file (.nii, .nii.gz)"}
logger = logging.getLogger(__name__)


class UploadError(MedicalFileError):
    """An uploaded file that cannot be used; the message says what is wrong and what to upload instead."""


@dataclass(frozen=True)
class Upload:
    """One 2D image read from an upload.

    Args:
        image (`np.ndarray`): (H, W) grey or (H, W, C) pixels (pictures and NIfTI as stored, DICOM float32 after
            the modality LUT).
        spacing (`tuple[float, float]`, *optional*): pixel size in mm along rows and columns; None when unknown.
        kind (`str`): `"image"`, `"dicom"` or `"nifti"`.
        name (`str`): the file name.
        num_slices (`int`): slices in the file (NIfTI volume, multi-frame DICOM); 1 for a 2D image.
        slice_index (`int`): the slice `image` is.
        modality (`str`, *optional*): the DICOM Modality code (`"CT"`, `"MR"`, ...); None when unknown.
        volume (`MedicalImage`, *optional*): the whole volume `image` is a slice of (a 3D model segments it whole);
            None for a 2D image.
        plane (`str`, *optional*): the plane of the slices of `volume` (`hfseg.io.to_slices`).
    """

    image: np.ndarray
    spacing: tuple[float, float] | None
    kind: str
    name: str
    num_slices: int = 1
    slice_index: int = 0
    modality: str | None = None
    volume: MedicalImage | None = field(default=None, repr=False, compare=False)
    plane: str | None = None

    @property
    def array(self) -> np.ndarray:
        """`image`, under `hfseg.io.MedicalImage`'s name, so that `hfseg.inference.check_input` takes an Upload."""
        return self.image


def _unsupported(name: str) -> UploadError:
    return UploadError(f"{name}: unsupported file type. Upload a PNG, JPEG, TIFF or BMP image, a DICOM file (.dcm) "
                       "or a NIfTI volume (.nii, .nii.gz).")


def file_kind(path: str | os.PathLike, name: str | None = None) -> str:
    """`"image"`, `"dicom"` or `"nifti"` from the file name, or `"dicom"` for any file with the DICOM marker
    (`DICM` at byte 128, as DICOMs without extension have); else an `UploadError` listing the supported types."""
    try:
        kind = io_file_kind(path)
    except MedicalFileError:
        raise _unsupported(name or Path(path).name) from None
    if kind not in _KINDS:  # a folder (a DICOM series to hfseg.io): the demo takes one file
        raise UploadError(f"{name or Path(path).name} is a folder: upload one file (one DICOM slice, a NIfTI volume "
                          "or an image).")
    return _KINDS[kind]


def _user_error(text: str, path: Path, name: str) -> UploadError:
    """An `UploadError` saying `text` with the file named `name` instead of its path on the server (a temporary
    file)."""
    for shown in sorted({str(path), str(path.absolute()), str(path.resolve())}, key=len, reverse=True):
        text = text.replace(shown, name)
    if path.name != name:  # the temporary file's own name, where a message gives only that
        text = re.sub(rf"(?<![\w.-]){re.escape(path.name)}(?![\w.-])", lambda _: name, text)
    return UploadError(text)


def _check_size(height: int, width: int, name: str, max_side: int) -> None:
    if height > max_side or width > max_side:
        raise UploadError(f"{name} is {width} x {height} pixels, larger than the {max_side} x {max_side} this demo "
                          "accepts: downscale or crop it first.")
    if height < 2 or width < 2:
        raise UploadError(f"{name} is {width} x {height} pixels: upload a 2D image of at least 2 x 2 pixels.")


def _checked(pixels: np.ndarray, name: str, max_side: int) -> np.ndarray:
    """`pixels` as one contiguous 2D image within the demo's size limits, or an `UploadError`."""
    if pixels.ndim not in (2, 3):
        raise UploadError(f"{name} has pixel array shape {pixels.shape}: upload a 2D image.")
    _check_size(pixels.shape[0], pixels.shape[1], name, max_side)
    return np.ascontiguousarray(pixels)


def _slice_index(index: int | None, count: int, name: str) -> int:
    if index is None:
        return count // 2
    if not 0 <= int(index) < count:
        raise UploadError(f"{name} has {count} slices (0 to {count - 1}); slice {index} does not exist.")
    return int(index)


def _refuse_4d(path: Path, name: str) -> None:
    """An `UploadError` for a 4D NIfTI (several volumes); nothing for any other file (its own error stands)."""
    import nibabel as nib

    from ..io.nifti import check_extensions

    try:
        check_extensions(path)  # nibabel would read header extensions of any declared size
        shape = tuple(int(n) for n in nib.load(str(path)).shape)  # the header only
    except Exception:  # noqa: BLE001  (a broken file: hfseg.io's message says what is wrong)
        return
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 4:
        raise UploadError(f"{name} is 4D, {shape[3]} volumes of {' x '.join(map(str, shape[:3]))} voxels (time "
                          "points or channels): this demo segments a 2D image or one 3D volume. Save the volume you "
                          "want as its own .nii.gz (nibabel: image.slicer[..., n]) and upload that.")
    if len(shape) > 4:
        raise UploadError(f"{name} has shape {shape}: upload a 3D volume (one modality) or a 2D image.")


def _colour_as_stored(image: MedicalImage) -> np.ndarray:
    """A colour DICOM's 8-bit RGB back as uint8 (hfseg.io gives float32), so that it is shown as stored."""
    array = image.array
    if image.meta.get("samples_per_pixel", 1) > 1 and array.size and 0 <= array.min() and array.max() <= 255:
        ds = (image.meta.get("datasets") or [{}])[0]
        if int(ds.get("BitsStored", 8) or 8) <= 8 and np.array_equal(array, np.round(array)):
            return array.astype(np.uint8)
    return array


def _plane(image: MedicalImage) -> str:
    """Axial for a NIfTI volume; the frames' own plane for a multi-frame DICOM (its slices are the frames, as
    acquired: a sagittal or cine series is not resliced across frames)."""
    shape = image.array.shape
    if image.kind == "dicom":
        shape = (*shape[:2], 1)
    return default_plane(image.affine, shape, image.name)


# -- entry point -------------------------------------------------------------------------------------------------
def read_upload(path: str | os.PathLike, slice_index: int | None = None, max_bytes: int = MAX_FILE_BYTES,
                max_side: int = MAX_SIDE, name: str | None = None) -> Upload:
    """Read one uploaded file (see the module docstring).

    Args:
        path (`str`): the file.
        slice_index (`int`, *optional*): the slice of a NIfTI volume or multi-frame DICOM; default the middle one.
            Ignored for a 2D image.
        max_bytes (`int`, *optional*, defaults to 20 MB): larger files are refused.
        max_side (`int`, *optional*, defaults to 4096): images wider or taller than this are refused, and files
            declaring more than `max_side`² pixels (pictures) or `VOLUME_IMAGES` x `max_side`² voxels (volumes).
        name (`str`, *optional*): the name to use in messages; default the file's name.

    Raises:
        UploadError: the file is missing, too large, of an unsupported type, corrupt, 4D, or not a 2D image.
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
    kind = file_kind(path, name)
    try:
        if kind == "image":  # as stored (8-bit stays 8-bit for display), palettes and colour spaces as viewers show
            pixels = read_picture_array(path, convert=True, max_pixels=max_side ** 2)
            return Upload(_checked(pixels, name, max_side), None, "image", name)
        # DICOM through the modality LUT (float32), NIfTI as stored (the header's scaling applied)
        image = read(path, dtype="float32" if kind == "dicom" else "stored", max_bytes=max_bytes,
                     max_pixels=max_side ** 2 * VOLUME_IMAGES)
        if image.is_volume:
            plane = _plane(image)
            slices = to_slices(image.array, image.affine, plane, name)
            index, count = _slice_index(slice_index, slices.shape[0], name), slices.shape[0]
            pixels, spacing = slices[index], slice_spacing(image.spacing, image.affine, plane)
            spacing = spacing[1:3] if spacing is not None else None
        else:  # a single-frame DICOM, as stored
            pixels, count, index, spacing, plane = _colour_as_stored(image), 1, 0, image.spacing, None
    except UploadError:
        raise
    except MedicalFileError as err:
        if kind == "nifti":
            _refuse_4d(path, name)
        raise _user_error(str(err), path, name) from err
    except Exception as err:  # noqa: BLE001  hfseg.io should have said MedicalFileError: log it, tell the visitor
        logger.warning("reading the upload %s raised %s", name, type(err).__name__, exc_info=True)
        raise _user_error(f"Cannot read {name} ({type(err).__name__}: {err}): the file is corrupt or of a variant "
                          f"this demo does not read. Upload a valid {_FORMATS[kind]}.", path, name) from err
    spacing = (float(spacing[0]), float(spacing[1])) if spacing is not None else None
    volume = image if image.is_volume else None
    return Upload(_checked(pixels, name, max_side), spacing, kind, name, count, index, image.modality, volume, plane)
