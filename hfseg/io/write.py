"""`write_mask(mask, like=image, path)`: a predicted label map written aligned with the image it came from.

- **PNG** (`.png`): the class indices as grey values (8 bit, 16 bit above 255 classes), the layout hfseg's folder
  loaders read; for pictures and single DICOM images.
- **NIfTI** (`.nii`, `.nii.gz`): uint8 (uint16 above 255 classes) labels on the source's voxel grid with its affine.
  From a NIfTI source the header is copied (qform / sform and their codes, units, NIfTI-1 or -2), the scaling reset
  and the intent set to labels; from DICOM the affine is the scanner's (codes 1). A 2D or 4D source gives a 2D
  or 3D mask of one volume's shape.
- **DICOM-SEG** (`.dcm`): a Segmentation Storage object made by highdicom (the `dicom` extra), one segment per
  foreground class named from `id2label`, referencing the source series' instances and frame of reference.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MedicalFileError
from .image import MedicalImage

FORMATS = ("png", "nifti", "dicom-seg")
SUFFIXES = {"png": ".png", "nifti": ".nii.gz", "dicom-seg": ".dcm"}


def format_of(path: str | os.PathLike) -> str:
    """`"png"`, `"nifti"` or `"dicom-seg"` from the output file's extension."""
    name = str(path).lower()
    if name.endswith(".png"):
        return "png"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".dcm"):
        return "dicom-seg"
    raise ValueError(f"Cannot tell the mask format from {path}: end it with .png, .nii.gz (or .nii) or .dcm "
                     "(DICOM-SEG).")


def auto_format(image: MedicalImage) -> str:
    """The format `hfseg predict --format auto` writes: PNG for pictures and single DICOM images, NIfTI for
    volumes."""
    return "nifti" if image.is_volume else "png"


def _labels(mask: Any, like: MedicalImage, path: Path) -> np.ndarray:
    array = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if array.dtype.kind not in "iub":
        if array.dtype.kind != "f" or not np.array_equal(array, np.round(array)):
            raise ValueError(f"A mask holds integer class indices, got {array.dtype} values.")
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError(f"Mask values must be class indices 0..65535, got {array.min()}..{array.max()}.")
    expected = like.array.shape[:2] if not like.is_volume else like.array.shape[:3]
    if array.shape != expected:
        raise ValueError(f"The mask for {path.name} is {array.shape} but {like.name} is {expected}: a mask must "
                         "match its image voxel for voxel (predict on the image as read).")
    return array.astype(np.uint8 if array.size == 0 or array.max() < 256 else np.uint16)


def _write_png(labels: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(labels).save(path)


def _spatial_shape(like: MedicalImage) -> tuple[int, ...]:
    """The NIfTI source's own spatial shape (2D stays 2D; a 4D source's one volume is 3D)."""
    return tuple(like.meta.get("shape") or like.array.shape)[:3]


def _write_nifti(labels: np.ndarray, like: MedicalImage, path: Path) -> None:
    import nibabel as nib

    if like.affine is None:
        raise MedicalFileError(f"{like.name} is a picture with no patient geometry, so {path.name} cannot be a "
                               "NIfTI aligned with it: write a PNG (--format png).")
    header = like.meta.get("header")
    if like.kind == "nifti" and header is not None:
        header = header.copy()
        data = labels.reshape(_spatial_shape(like))
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        image = image_class(data, like.affine, header=header)
        image.set_qform(like.affine, code=int(header["qform_code"]))
        image.set_sform(like.affine, code=int(header["sform_code"]))
    else:
        data = labels if labels.ndim == 3 else labels[..., None]
        image = nib.Nifti1Image(data, like.affine)
        image.set_qform(like.affine, code=1)
        image.set_sform(like.affine, code=1)
        image.header.set_xyzt_units("mm")
    image.set_data_dtype(data.dtype)
    image.header.set_slope_inter(1, 0)
    image.header.set_intent("label")
    image.header["cal_min"], image.header["cal_max"] = 0, int(data.max()) if data.size else 0
    image.header["descrip"] = b"hfseg predicted labels"
    nib.save(image, str(path))


def _segment_names(labels: np.ndarray, id2label: Mapping[Any, str] | None) -> dict[int, str]:
    names = {int(k): str(v) for k, v in (id2label or {}).items()}
    top = int(labels.max()) if labels.size else 0
    if len(names) == 1:  # a binary model's one logit: its label names the foreground
        names = {1: next(iter(names.values()))}
    # At least one segment: a DICOM-SEG of an empty mask still says what was looked for.
    return {i: names.get(i, f"class {i}") for i in range(1, max(top, max(names, default=0), 1) + 1)}


def _shared_groups(ds: Any) -> Any:
    """A multi-frame source whose pixel measures and plane orientation are per-frame only (as Philips writes them)
    with them also in its shared functional groups, where highdicom reads them; the data set itself when it has
    them, is single-frame, or its frames differ (highdicom then refuses it)."""
    if "PerFrameFunctionalGroupsSequence" not in ds or not ds.get("SharedFunctionalGroupsSequence"):
        return ds
    keywords = [k for k in ("PixelMeasuresSequence", "PlaneOrientationSequence")
                if k not in ds.SharedFunctionalGroupsSequence[0]]
    frames = ds.PerFrameFunctionalGroupsSequence
    if not keywords or not all(k in f and f.get(k) == frames[0].get(k) for f in frames for k in keywords):
        return ds
    ds = copy.deepcopy(ds)  # the image's own data set stays as read
    for keyword in keywords:
        setattr(ds.SharedFunctionalGroupsSequence[0], keyword, copy.deepcopy(frames[0].get(keyword)))
    return ds


# Type 2 attributes (present, possibly empty) of the patient and study modules that highdicom copies from the source
# into the Segmentation; anonymized or converted series often drop them.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2(ds: Any) -> Any:
    """The data set, or a copy with the missing type 2 patient / study attributes present and empty (the image's
    own data set stays as read; pixel data is not kept, so the copy is small)."""
    missing = [k for k in _TYPE2 if k not in ds]
    if not missing:
        return ds
    ds = copy.deepcopy(ds)
    for keyword in missing:
        setattr(ds, keyword, "")
    return ds


def _write_dicom_seg(labels: np.ndarray, like: MedicalImage, path: Path, id2label: Mapping[Any, str] | None,
                     model_name: str | None) -> None:
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError as err:
        raise MedicalFileError(f"Writing {path.name} as DICOM-SEG needs highdicom: pip install \"hfseg[dicom]\".",
                               ) from err
    from pydicom.uid import generate_uid

    from .. import __version__

    sources = like.meta.get("datasets")
    if like.kind != "dicom" or not sources:
        raise MedicalFileError(f"{like.name} is not DICOM, so {path.name} cannot be a DICOM-SEG referencing it: "
                               "write NIfTI (--format nifti) or PNG.")
    if labels.ndim == 2:
        frames = labels[None]
    else:
        frames = labels.transpose(2, 1, 0)  # (columns, rows, slices) -> (slices, rows, columns), sorted order
        order = like.meta.get("frame_order")
        if order is not None:  # a multi-frame source: back to its stored frame order
            stored = np.empty_like(frames)
            stored[np.asarray(order)] = frames
            frames = stored
    names = _segment_names(labels, id2label)
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name or "hfseg model", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for number, name in names.items()
    ]
    first = sources[0]
    try:
        seg = hd.seg.Segmentation(
            source_images=[_with_type2(_shared_groups(ds)) for ds in sources], pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=int(
                first.get("SeriesNumber", 0) or 0) + 1000, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="hfseg", manufacturer_model_name=(model_name or "hfseg model")[:64],
            software_versions=__version__, device_serial_number="hfseg", series_description="hfseg segmentation",
            omit_empty_frames=False)
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise MedicalFileError(f"Cannot make a DICOM-SEG of {like.name} ({type(err).__name__}: {err}): its source "
                               "images lack attributes highdicom needs; write NIfTI (--format nifti) instead.",
                               ) from err
    seg.save_as(str(path))


def write_mask(mask: Any, like: MedicalImage, path: str | os.PathLike, *, format: str | None = None,
               id2label: Mapping[Any, str] | None = None, model_name: str | None = None) -> Path:
    """Write a predicted label map aligned with the image it was predicted from (see the module docstring).

    Args:
        mask: (rows, columns) class indices of a 2D image, or a label volume of `like.array`'s shape.
        like (`MedicalImage`): the image as `hfseg.io.read` gave it.
        path: the output file; its extension picks the format unless `format` is given.
        format (`str`, *optional*): `"png"`, `"nifti"` or `"dicom-seg"`.
        id2label (`dict`, *optional*): class names, for the DICOM-SEG segments.
        model_name (`str`, *optional*): the model, recorded in the DICOM-SEG's algorithm identification.

    Returns:
        `Path`: the file written (its parent folder is created).
    """
    path = Path(path)
    format = format or format_of(path)
    if format not in FORMATS:
        raise ValueError(f"Unknown mask format {format!r}; choose one of {', '.join(FORMATS)}.")
    labels = _labels(mask, like, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "png":
        if labels.ndim != 2:
            raise MedicalFileError(f"{like.name} is a volume, so its mask cannot be one PNG: write NIfTI "
                                   "(--format nifti) or DICOM-SEG.")
        _write_png(labels, path)
    elif format == "nifti":
        _write_nifti(labels, like, path)
    else:
        _write_dicom_seg(labels, like, path, id2label, model_name)
    return path
