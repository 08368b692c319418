"""DICOM with pydicom: single files (one frame or multi-frame) and series folders, with patient geometry.

- Pixel values go through the modality LUT (RescaleSlope / RescaleIntercept: Hounsfield units for CT), per frame
  for enhanced multi-frame files; pixels equal to PixelPaddingValue (up to PixelPaddingRangeLimit) are set to the
  smallest real value of the whole image or volume (background). PALETTE COLOR images become RGB, as shown, and
  MONOCHROME1 images are inverted within their range (bright is bright, as viewers show them; `dtype="stored"`
  keeps the stored values).
- Compressed transfer syntaxes are decoded by pydicom's pixel handlers; JPEG, JPEG-LS and JPEG 2000 need the
  `dicom` extra (`pip install "hfseg[dicom]"`), which the error names when a decoder is missing.
- A series folder is grouped by SeriesInstanceUID (several series are refused, their UIDs listed: pick one with
  `series=`), sorted by slice position along the slice normal (ImagePositionPatient projected on the cross product
  of ImageOrientationPatient's cosines), never by file name, and checked for one size, orientation and spacing.
  Multi-frame files are sorted the same way (per-frame positions, or an RT Dose GridFrameOffsetVector); slices or
  frames at a repeated position (several echoes or time points) are refused.
- A damaged file fails where pydicom first converts the damaged element; every such failure is a
  `MedicalFileError` naming the file.
- Geometry: DICOM patient coordinates (LPS) become a RAS+ affine (nibabel's convention). A volume is stored
  (columns, rows, slices), as DICOM-to-NIfTI converters store it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MedicalFileError
from .image import MedicalImage, check_dtype
from .limits import MAX_PIXELS, SizedReader, check_declared
from .sniff import check_content

DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
EXTRA_HINT = 'install the decoders with pip install "hfseg[dicom]" (pylibjpeg, openjpeg, jpeg-ls)'
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UNIT = np.ones(2)  # the pixel spacing assumed when a file states none (told apart by identity: `is _UNIT`)
_UNIT.setflags(write=False)
_READ_ERRORS = (OSError, EOFError, ValueError, AttributeError, KeyError, TypeError, IndexError, OverflowError,
                RuntimeError, NotImplementedError, struct.error)


def _data_errors() -> tuple[type[BaseException], ...]:
    """What pydicom raises for a broken file, when it is read or when an element is first used (elements are
    converted lazily, so a damaged value fails where it is used, not where the file is opened)."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (InvalidDicomError, BytesLengthException, *_READ_ERRORS)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Every failure inside as a `MedicalFileError` naming `path` (a `MedicalFileError` passes as it is)."""
    try:
        yield
    except MedicalFileError:
        raise
    except _data_errors() as err:
        raise MedicalFileError(f"Cannot read {path}: corrupt or not a DICOM file ({type(err).__name__}: {err}). "
                               "Replace it with the archive's file.") from err


def has_dicom_marker(path: str | Path) -> bool:
    """Whether the file has the `DICM` marker at byte 128 (every DICOM Part 10 file does)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom(path: str | Path) -> bool:
    """A DICOM extension (.dcm, .dicom, .ima) or the `DICM` marker."""
    return str(path).lower().endswith(DICOM_EXTENSIONS) or has_dicom_marker(path)


def dcmread(path: str | Path, stop_before_pixels: bool = False):
    """A DICOM file, or a bare data set without preamble and file meta (as some anonymizers write) that holds
    pixel data; anything else raises pydicom's `InvalidDicomError`. Reads never allocate more than the file's
    size, whatever lengths its elements declare."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        with SizedReader(path) as handle:
            return pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        with SizedReader(path) as handle:
            ds = pydicom.dcmread(handle, force=True, stop_before_pixels=stop_before_pixels)
        if "Rows" not in ds or ("PixelData" not in ds and not stop_before_pixels):
            raise
    implicit, little = ds.original_encoding
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def open_dataset(path: Path, stop_before_pixels: bool = False):
    """`dcmread` with every failure as a `MedicalFileError` naming the file."""
    with _reading(path):
        return dcmread(path, stop_before_pixels)


# -- pixel data --------------------------------------------------------------------------------------------------
def decode(ds: Any, path: Path, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """`ds.pixel_array` (stored values, native byte order), or a `MedicalFileError` naming the file and the fix."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = ds.get("Modality", "") or ds.get("SOPClassUID", "")
        raise MedicalFileError(f"{path} holds no image (no pixel data{f'; it is a {kind} object' if kind else ''}): "
                               "pass an image DICOM (CT, MR, ...) or a series folder.")
    if ds.get("Rows") is None or ds.get("Columns") is None:
        raise MedicalFileError(f"{path} has pixel data but no Rows / Columns: the file is corrupt or not an image "
                               "DICOM; replace it with the archive's file.")
    try:
        rows, cols = int(ds.get("Rows")), int(ds.get("Columns"))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as err:
        raise MedicalFileError(f"{path}: Rows, Columns or NumberOfFrames is not a number ({err}); the file is "
                               "corrupt.") from err
    check_declared(path, f"{frames} frame(s) of {rows} x {cols}", rows * cols * frames, max_pixels, "pixels")
    _check_rle_size(ds, path, rows * cols * frames)
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for broken or unsupported pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        text = str(err)
        try:
            compressed = syntax is not None and syntax.is_compressed
        except ValueError:  # not a transfer syntax UID at all
            compressed = False
        if compressed and (
                "missing dependencies" in text or "no plugins" in text.lower() or "no pixel data handler" in text.lower()):
            raise MedicalFileError(f"{path} is compressed ({syntax.name}) and no installed decoder handles it: "
                                   f"{EXTRA_HINT}.") from err
        raise MedicalFileError(f"Cannot decode the pixel data of {path} ({type(err).__name__}: {err}): the file is "
                               "truncated or corrupt, or its transfer syntax is unsupported.") from err
    pixels = np.asarray(pixels)
    return pixels.astype(pixels.dtype.newbyteorder("=")) if not pixels.dtype.isnative else pixels


def _check_rle_size(ds: Any, path: Path, pixels: int) -> None:
    """Refuse RLE pixel data too short for what the header declares, before pydicom allocates the declared size: a
    PackBits run of 2 bytes gives at most 128, so RLE holds at most 64 times its own size."""
    from pydicom.uid import RLELossless

    if getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) != RLELossless or "PixelData" not in ds:
        return
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 8) or 8)
    declared, stored = pixels * samples * -(-bits // 8), len(ds.PixelData)
    if declared > 64 * stored:
        raise MedicalFileError(f"{path} declares {declared} bytes of pixels but holds {stored} bytes of RLE data, "
                               f"which decode to at most {64 * stored}: the file is truncated or corrupt (check Rows, "
                               "Columns and NumberOfFrames). Replace it with the archive's file.")


def _item(ds: Any, keyword: str, sequence: str, frame: int | None) -> Any:
    """A value from the data set, else from the enhanced multi-frame functional groups (per-frame, then shared)."""
    if keyword in ds:
        return ds.get(keyword)
    groups = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds and frame < len(ds.PerFrameFunctionalGroupsSequence):
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if sequence in group and len(group.get(sequence)) and keyword in group.get(sequence)[0]:
            return group.get(sequence)[0].get(keyword)
    return None


def _rescale(pixels: np.ndarray, ds: Any, frame: int | None) -> np.ndarray:
    """The modality LUT of one frame (top-level attributes, or the frame's PixelValueTransformationSequence)."""
    from pydicom import Dataset
    from pydicom.pixels import apply_modality_lut

    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    slope = _item(ds, "RescaleSlope", "PixelValueTransformationSequence", frame)
    intercept = _item(ds, "RescaleIntercept", "PixelValueTransformationSequence", frame)
    if slope is None and intercept is None:
        return pixels.astype(np.float32)
    lut = Dataset()
    lut.RescaleSlope = slope if slope is not None else 1
    lut.RescaleIntercept = intercept if intercept is not None else 0
    return np.asarray(apply_modality_lut(pixels, lut), dtype=np.float32)


def _padding(stored: np.ndarray, ds: Any) -> np.ndarray | None:
    """Where the stored values are PixelPaddingValue (to PixelPaddingRangeLimit), or None without padding."""
    if "PixelPaddingValue" not in ds:
        return None
    try:
        value = int(ds.PixelPaddingValue)
        limit = int(ds.PixelPaddingRangeLimit) if "PixelPaddingRangeLimit" in ds else value
    except (TypeError, ValueError):
        return None
    low, high = min(value, limit), max(value, limit)
    where = (stored >= low) & (stored <= high)
    return where if where.any() else None


def _to_values(stored: np.ndarray, ds: Any, frame: int | None) -> tuple[np.ndarray, np.ndarray]:
    """float32 values of one frame (modality LUT applied) and where it holds padding."""
    padded = _padding(stored, ds)
    return _rescale(stored, ds, frame), padded if padded is not None else np.zeros(stored.shape, dtype=bool)


def _fill_padding(values: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """`values` with its padding set to the smallest real value of the whole image or volume (background)."""
    if padded.any():
        real = values[~padded]
        values[padded] = real.min() if real.size else 0.0
    return values


def _stack_values(frames: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The (columns, rows, slices) float32 volume of per-slice `_to_values`, padding filled over the volume."""
    values = np.stack([v for v, _ in frames], axis=-1).transpose(1, 0, 2).astype(np.float32, copy=False)
    return _fill_padding(values, np.stack([p for _, p in frames], axis=-1).transpose(1, 0, 2))


def _finite(values: np.ndarray, path: Path) -> np.ndarray:
    """float32 values with NaN / inf (a damaged RescaleSlope or float pixel data) replaced as NIfTI's are, with a
    warning giving their count."""
    from .nifti import replace_nonfinite

    return replace_nonfinite(values, path.name)[0]


def display_polarity(values: np.ndarray, ds: Any) -> np.ndarray:
    """MONOCHROME1 values (the lowest shown white, as in many CR / DX images) inverted within their own range, so
    bright means bright as viewers show it and as pictures exported from them store it; other images as they are."""
    if str(ds.get("PhotometricInterpretation", "")).strip() != "MONOCHROME1" or not values.size:
        return values
    return (values.min() + values.max()) - values


def _palette_rgb(stored: np.ndarray, ds: Any, path: Path) -> np.ndarray:
    """A PALETTE COLOR image as the RGB viewers show (0-255, 16-bit palettes scaled down)."""
    from pydicom.pixels import apply_color_lut

    try:
        rgb = np.asarray(apply_color_lut(stored, ds), dtype=np.float32)
    except (ValueError, KeyError, AttributeError, TypeError, IndexError) as err:
        raise MedicalFileError(f"{path} is a PALETTE COLOR image whose palette cannot be applied ({err}): the file "
                               "is corrupt; export it as RGB.") from err
    return rgb / 257.0 if rgb.size and rgb.max() > 255 else rgb


# -- geometry ----------------------------------------------------------------------------------------------------
def _floats(value: Any, count: int) -> np.ndarray | None:
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (count,) and np.isfinite(out).all() else None


def _geometry(ds: Any, frame: int | None) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(ImageOrientationPatient (6,), ImagePositionPatient (3,), PixelSpacing (row, column)) of one frame; the
    first two None when the file does not say, the spacing 1 mm when it does not."""
    iop = _floats(_item(ds, "ImageOrientationPatient", "PlaneOrientationSequence", frame) or [], 6)
    ipp = _floats(_item(ds, "ImagePositionPatient", "PlanePositionSequence", frame) or [], 3)
    spacing = _floats(_item(ds, "PixelSpacing", "PixelMeasuresSequence", frame) or
                      ds.get("ImagerPixelSpacing") or [], 2)
    if iop is not None and (np.linalg.norm(iop[:3]) < 0.5 or np.linalg.norm(iop[3:]) < 0.5):
        iop = None
    return iop, ipp, spacing if spacing is not None and (spacing > 0).all() else _UNIT


def _thickness(ds: Any, frame: int | None) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _item(ds, keyword, "PixelMeasuresSequence", frame)
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            pass
    return 1.0


def _normal(iop: np.ndarray) -> np.ndarray:
    normal = np.cross(iop[:3], iop[3:])
    return normal / (np.linalg.norm(normal) or 1.0)


def volume_affine(iop: np.ndarray | None, first: np.ndarray | None, step: np.ndarray | None,
                  spacing: np.ndarray, thickness: float) -> np.ndarray:
    """The RAS+ affine of a (columns, rows, slices) volume: column index along the row cosine x column spacing,
    row index along the column cosine x row spacing, slice index along `step` (or the normal x thickness)."""
    iop = iop if iop is not None else np.array([1.0, 0, 0, 0, 1, 0])
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * spacing[1]
    affine[:3, 1] = iop[3:] * spacing[0]
    affine[:3, 2] = step if step is not None and np.linalg.norm(step) > 1e-6 else _normal(iop) * thickness
    affine[:3, 3] = first if first is not None else 0.0
    return _LPS_TO_RAS @ affine


def _strip(ds: Any) -> Any:
    """The data set without its pixel data (kept for writing results back, not for its pixels)."""
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            del ds[keyword]
    if hasattr(ds, "_pixel_array"):
        ds._pixel_array = None
    return ds


def _meta(datasets: Sequence[Any], ds: Any, samples: int = 1) -> dict[str, Any]:
    return {"datasets": list(datasets), "series_uid": str(ds.get("SeriesInstanceUID", "")) or None,
            "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")) or None,
            "geometry": "ImageOrientationPatient" in ds or "SharedFunctionalGroupsSequence" in ds,
            "samples_per_pixel": samples}


def _modality(ds: Any) -> str | None:
    return str(ds.get("Modality", "")).strip() or None


# -- files -------------------------------------------------------------------------------------------------------
def read_dicom_file(path: str | Path, dtype: str = "float32", max_pixels: int | None = MAX_PIXELS) -> MedicalImage:
    """One DICOM file: a single frame as a 2D image (rows, columns) as stored and shown by viewers, with its
    affine for (row, column, 0) (a colour image is (rows, columns, 3), PALETTE COLOR converted to RGB unless
    `dtype="stored"`); a multi-frame file as a (columns, rows, frames) volume sorted by frame position when the
    frames carry positions (enhanced CT/MR, RT Dose grids), else in stored order. Frames at repeated positions
    (several time points or echoes in one file) are refused. `max_pixels` (default `MAX_PIXELS`, 2³⁰; None: no
    limit) refuses files declaring more pixels (rows x columns x frames), before decoding."""
    check_dtype(dtype)
    path = Path(path)
    check_content(path, "dicom")
    with _reading(path):
        return _read_file(open_dataset(path), path, dtype, max_pixels)


def _read_file(ds: Any, path: Path, dtype: str, max_pixels: int | None) -> MedicalImage:
    stored = decode(ds, path, max_pixels)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    modality = _modality(ds)
    if frames == 1:
        expected = (int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
        if stored.shape != expected:  # pydicom returns every frame the data holds, whatever the header says
            raise MedicalFileError(f"{path} holds pixel data of shape {stored.shape}, not the one frame of "
                                   f"{' x '.join(map(str, expected))} its header declares (Rows, Columns, "
                                   "SamplesPerPixel, NumberOfFrames): the file is corrupt; replace it.")
        if dtype == "stored":
            values = stored
        elif samples > 1:
            values = stored.astype(np.float32)
        elif str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
            values, samples = _palette_rgb(stored, ds, path), 3
        else:
            values = _finite(display_polarity(_fill_padding(*_to_values(stored, ds, 0)), ds), path)
        iop, ipp, spacing = _geometry(ds, 0)
        affine = volume_affine(iop, ipp, None, spacing, _thickness(ds, 0))[:, [1, 0, 2, 3]]  # (row, column, 0)
        stated = spacing is not _UNIT
        return MedicalImage(np.ascontiguousarray(values), path, "dicom",
                            spacing=(float(spacing[0]), float(spacing[1])) if stated else None,
                            affine=affine, modality=modality, meta=_meta([_strip(ds)], ds, samples))
    if samples > 1:
        raise MedicalFileError(f"{path} is a multi-frame colour DICOM ({frames} frames): hfseg reads grey volumes; "
                               "export the frames as pictures.")
    stored = stored.reshape(frames, *stored.shape[-2:])
    positions = _frame_geometry(ds, frames)
    iop = positions[0][0]
    order = list(range(frames))
    step = None
    if iop is not None and all(p[1] is not None for p in positions):
        along = np.array([p[1] @ _normal(iop) for p in positions])
        distinct = len(np.unique(np.round(along, 4)))
        if distinct == frames:
            order = [int(f) for f in np.argsort(along, kind="stable")]
            step = (positions[order[-1]][1] - positions[order[0]][1]) / (frames - 1)
        elif distinct > 1:
            raise MedicalFileError(f"{path}: its {frames} frames lie at {distinct} slice positions, so it holds more "
                                   "than one volume (time points, echoes or b-values): export one volume per file.")
    if dtype == "stored":
        volume = np.stack([stored[f] for f in order], axis=-1).transpose(1, 0, 2)
    else:
        volume = _finite(display_polarity(_stack_values([_to_values(stored[f], ds, f) for f in order]), ds), path)
    first = positions[order[0]][1]
    spacing = positions[0][2]
    affine = volume_affine(iop, first, step, spacing, _thickness(ds, 0))
    zooms = (float(spacing[1]), float(spacing[0]), float(np.linalg.norm(affine[:3, 2]))) if spacing is not _UNIT \
        else None
    meta = _meta([_strip(ds)], ds) | {"frame_order": order}
    return MedicalImage(np.ascontiguousarray(volume), path, "dicom", spacing=zooms, affine=affine,
                        modality=modality, meta=meta)


def _frame_geometry(ds: Any, frames: int) -> list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray]]:
    """`_geometry` of each frame of a multi-frame file: from the functional groups, or for an RT Dose grid
    ImagePositionPatient moved along the slice normal by GridFrameOffsetVector."""
    geometry = [_geometry(ds, f) for f in range(frames)]
    offsets = _floats(ds.get("GridFrameOffsetVector") or [], frames)
    iop, ipp, spacing = geometry[0]
    if offsets is not None and iop is not None and ipp is not None and "PerFrameFunctionalGroupsSequence" not in ds:
        # The first offset is the first frame's (0 when relative, its z when absolute).
        geometry = [(iop, ipp + (offset - offsets[0]) * _normal(iop), spacing) for offset in offsets]
    return geometry


# -- series ------------------------------------------------------------------------------------------------------
def series_files(folder: Path) -> list[Path]:
    """The files of a folder tree that can be DICOM (hidden files and DICOMDIR left out), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name.upper() != "DICOMDIR" and (is_dicom(p) or not p.suffix))


def _describe(uid: str, headers: Sequence[tuple[Path, Any]]) -> str:
    ds = headers[0][1]
    what = " ".join(str(ds.get(k, "")).strip() for k in ("Modality", "SeriesDescription") if ds.get(k))
    return f"{uid} ({len(headers)} file(s){', ' + what if what else ''}, e.g. {headers[0][0].name})"


def read_dicom_series(folder: str | Path, series: str | None = None, dtype: str = "float32",
                      max_pixels: int | None = MAX_PIXELS) -> MedicalImage:
    """A folder holding one DICOM series as a (columns, rows, slices) volume sorted by slice position.

    Args:
        folder: the series folder (searched recursively).
        series (`str`, *optional*): the SeriesInstanceUID to read when the folder holds several.
        dtype (`str`, *optional*): `"float32"` (modality LUT applied) or `"stored"`.
        max_pixels (`int`, *optional*, defaults to `MAX_PIXELS`, 2³⁰): refuse series declaring more voxels than
            this, before decoding; None: no limit.
    """
    check_dtype(dtype)
    folder = Path(folder)
    with _reading(folder):  # a file's own error names the file (below); this catches the rest
        return _read_series(folder, series, dtype, max_pixels)


def _series_headers(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    """The image headers of a folder's DICOM files by SeriesInstanceUID, in path order."""
    headers: dict[str, list[tuple[Path, Any]]] = {}
    for path in series_files(folder):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001  (anything that is not DICOM is left out; DICOMs must parse, see below)
            if is_dicom(path):
                open_dataset(path, stop_before_pixels=True)  # raises the file's error
            continue
        with _reading(path):
            # Not presentation states, structured reports, ... (no Rows), nor segmentations (a DICOM-SEG written
            # next to its source series, as `hfseg predict --format dicom-seg --output-dir <series>` does).
            if "Rows" in ds and str(ds.get("Modality", "")).upper() != "SEG":
                headers.setdefault(str(ds.get("SeriesInstanceUID", "unknown")), []).append((path, ds))
    return headers


def _read_series(folder: Path, series: str | None, dtype: str, max_pixels: int | None) -> MedicalImage:
    headers = _series_headers(folder)
    if not headers:
        raise MedicalFileError(f"{folder} holds no DICOM images: pass a folder with one series' .dcm files.")
    if series is not None:
        if series not in headers:
            raise MedicalFileError(f"{folder} has no series {series}; it holds "
                                   f"{'; '.join(_describe(u, h) for u, h in headers.items())}.")
        headers = {series: headers[series]}
    if len(headers) > 1:
        listed = "; ".join(_describe(u, h) for u, h in sorted(headers.items()))
        raise MedicalFileError(f"{folder} mixes {len(headers)} DICOM series: {listed}. Put each series in its own "
                               "folder or choose one with series=UID (hfseg predict --series UID).")
    (uid, members), = headers.items()
    if len(members) == 1:
        return dataclasses.replace(read_dicom_file(members[0][0], dtype, max_pixels), path=folder)
    first = members[0][1]
    with _reading(members[0][0]):
        rows, cols = int(first.Rows), int(first.Columns)
    check_declared(folder, f"{len(members)} slices of {rows} x {cols}", rows * cols * len(members), max_pixels)
    geometry = []
    for path, ds in members:
        with _reading(path):
            geometry.append(_geometry(ds, None))
    iop = geometry[0][0]
    for (path, ds), (o, _, s) in zip(members, geometry):
        with _reading(path):
            size, frames = (int(ds.Rows), int(ds.Columns)), int(ds.get("NumberOfFrames", 1) or 1)
        if size != (rows, cols):
            raise MedicalFileError(f"{path} is {size[0]} x {size[1]} but {members[0][0]} is {rows} x {cols}: "
                                   "a series' slices must share one size (remove the odd file or split the series).")
        if frames > 1:
            raise MedicalFileError(f"{path} is a multi-frame file inside a series of {len(members)} files: read it on "
                                   "its own.")
        if (o is None) != (iop is None) or (iop is not None and not np.allclose(o, iop, atol=1e-4)):
            raise MedicalFileError(f"{path} has ImageOrientationPatient {None if o is None else o.round(4).tolist()} "
                                   f"but {members[0][0]} has {None if iop is None else iop.round(4).tolist()}: the "
                                   "series mixes orientations (e.g. a localizer); remove the odd slices.")
    if iop is not None and all(g[1] is not None for g in geometry):
        along = np.array([g[1] @ _normal(iop) for g in geometry])
        order = [int(i) for i in np.argsort(along, kind="stable")]
        gaps = np.diff(along[order])
        if (np.abs(gaps) < 1e-4).any():
            same = [members[order[i]][0].name for i in np.flatnonzero(np.abs(gaps) < 1e-4)[:3]]
            raise MedicalFileError(f"{folder}: several slices share one position (e.g. {', '.join(same)}): the series "
                                   "holds more than one volume (echoes, time points or duplicates); split it by "
                                   "EchoNumbers / TemporalPositionIdentifier or remove the duplicates.")
        if gaps.size > 1 and (gaps.max() - gaps.min()) > 0.01 * max(gaps.mean(), 1e-6) + 1e-3:
            warnings.warn(f"{folder}: slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm (missing or "
                          "irregular slices); the volume uses the mean spacing.", stacklevel=2)
        step = (geometry[order[-1]][1] - geometry[order[0]][1]) / (len(order) - 1)
        first_position = geometry[order[0]][1]
    else:
        warnings.warn(f"{folder}: slices without ImagePositionPatient/ImageOrientationPatient are ordered by "
                      "InstanceNumber; the volume's geometry is approximate.", stacklevel=2)
        numbers = []
        for i, (path, ds) in enumerate(members):
            with _reading(path):
                numbers.append(int(ds.get("InstanceNumber", i) or i))
        order = [int(i) for i in np.argsort(numbers, kind="stable")]
        step, first_position = None, None
    slices, datasets = [], []
    for index in order:
        path = members[index][0]
        with _reading(path):
            ds = open_dataset(path)
            stored = decode(ds, path, max_pixels=rows * cols)  # its header was checked: this is the file read now
            if stored.shape != (rows, cols):
                raise MedicalFileError(f"{path} holds pixel data of shape {stored.shape}, not one grey {rows} x {cols}"
                                       " frame: remove it from the series.")
            slices.append(stored if dtype == "stored" else _to_values(stored, ds, None))
            datasets.append(_strip(ds))
    volume = (np.stack(slices, axis=-1).transpose(1, 0, 2) if dtype == "stored"
              else _finite(display_polarity(_stack_values(slices), first), folder))
    spacing = geometry[0][2]
    affine = volume_affine(iop, first_position, step, spacing, _thickness(first, None))
    zooms = (float(spacing[1]), float(spacing[0]), float(np.linalg.norm(affine[:3, 2]))) if spacing is not _UNIT \
        else None
    return MedicalImage(np.ascontiguousarray(volume), folder, "dicom", spacing=zooms, affine=affine,
                        modality=_modality(first), meta=_meta(datasets, first))
