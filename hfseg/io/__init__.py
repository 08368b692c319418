"""Medical image files in and out: `read(path)` gives a `MedicalImage` (pixels or voxels, spacing, affine,
modality, source metadata); `write_mask(mask, like=image, path)` writes a label map aligned with it (PNG, NIfTI,
DICOM-SEG). `to_slices` / `from_slices` cut a volume into 2D images in hfseg's display convention and back.
Every refused file raises `MedicalFileError`, whose message names the file and the fix; files are checked by
content (a PNG renamed `.dcm` is refused, saying what it is) and refused from their declared size before decoding
(`MAX_PIXELS`, the `max_pixels` argument)."""

from .dicom import dcmread, read_dicom_file, read_dicom_series
from .errors import MedicalFileError
from .image import MedicalImage
from .limits import MAX_PIXELS
from .nifti import read_nifti, replace_nonfinite
from .orientation import PLANES, default_plane, from_slices, slice_spacing, to_slices
from .pictures import PICTURE_EXTENSIONS, read_picture, read_picture_array
from .read import SUPPORTED, file_kind, list_inputs, read
from .sniff import content_kind
from .write import FORMATS, SUFFIXES, auto_format, format_of, write_mask

__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "PICTURE_EXTENSIONS",
    "PLANES",
    "SUFFIXES",
    "SUPPORTED",
    "MedicalFileError",
    "MedicalImage",
    "auto_format",
    "content_kind",
    "dcmread",
    "default_plane",
    "file_kind",
    "format_of",
    "from_slices",
    "list_inputs",
    "read",
    "read_dicom_file",
    "read_dicom_series",
    "read_nifti",
    "read_picture",
    "read_picture_array",
    "replace_nonfinite",
    "slice_spacing",
    "to_slices",
    "write_mask",
]
