"""What a file holds, from its first bytes (magic numbers), so that a file whose name says one type and whose
content is another (a PNG renamed `.dcm`, a NIfTI renamed `.png`, a text file renamed `.png`) is refused with a
message saying what it is, before any decoder sees it."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from .errors import MedicalFileError

_PICTURES = ((b"\x89PNG\r\n\x1a\n", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"II*\x00", "TIFF image"),
             (b"MM\x00*", "TIFF image"), (b"II+\x00", "TIFF image"), (b"MM\x00+", "TIFF image"),
             (b"BM", "BMP image"), (b"GIF87a", "GIF image"), (b"GIF89a", "GIF image"))
_NAMED = {"picture": "picture (PNG, JPEG, TIFF or BMP)", "dicom": "DICOM file", "nifti": "NIfTI volume"}
_NOUN = {"picture": "PNG, JPEG, TIFF or BMP picture", "dicom": "DICOM file", "nifti": "NIfTI file"}
_RENAME = {"picture": "its format's extension (.png, .jpg, .tif, .bmp)", "dicom": ".dcm", "nifti": ".nii",
           "nifti-gz": ".nii.gz"}


def _nifti_header(head: bytes) -> bool:
    """Whether `head` starts with a NIfTI-1 or NIfTI-2 header (sizeof_hdr and magic, either byte order)."""
    if head[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):
        return head[344:347] in (b"n+1", b"ni1")
    if head[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c"):
        return head[4:7] == b"n+2"
    return False


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the end of the sample
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def content_kind(path: str | Path) -> tuple[str, str] | None:
    """(family, description) of what the file holds by its first bytes: family `"picture"`, `"dicom"`,
    `"nifti"` (description `"gzip-compressed NIfTI volume"` when packed), `"gzip"` (another gzip stream) or
    `"text"`; None when the bytes say nothing (a DICOM data set without preamble, an unknown or broken file).
    Reads at most 1 KB (of the decompressed stream for gzip)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom", "DICOM file"
    for magic, what in _PICTURES:
        if head.startswith(magic):
            return "picture", what
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "picture", "WebP image"
    if _nifti_header(head):
        return "nifti", "NIfTI volume"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as packed:
                inner = packed.read(548)
        except (OSError, EOFError, zlib.error):
            inner = b""
        return ("nifti", "gzip-compressed NIfTI volume") if _nifti_header(inner) else ("gzip", "gzip archive")
    if _is_text(head):
        return "text", "text file"
    return None


def check_content(path: str | Path, kind: str) -> None:
    """A `MedicalFileError` when the file named as a `kind` (`"picture"`, `"dicom"` or `"nifti"`) holds something
    else by its content; nothing when it matches or when its first bytes say nothing (left to the decoder)."""
    found = content_kind(path)
    if found is None:
        return
    family, what = found
    packed = what.startswith("gzip")
    compressed = str(path).lower().endswith(".gz")
    if family == kind and (kind != "nifti" or packed == compressed):
        return
    if family == "gzip" and kind == "nifti" and compressed:
        return  # a broken .nii.gz: nibabel's error says what is wrong with it
    if family == kind:  # a NIfTI whose name and content disagree on compression
        raise MedicalFileError(f"Cannot read {path}: it is named as a {'gzip-compressed' if compressed else 'plain'} "
                               f"NIfTI but is {'not ' if compressed else ''}compressed; rename it to "
                               f"{'.nii' if compressed else '.nii.gz'}.")
    expected = _NAMED[kind]
    if family in ("text", "gzip"):
        held = "text" if family == "text" else "a gzip archive of something else"
        raise MedicalFileError(f"Cannot read {path}: corrupt or not a {_NOUN[kind]} (it holds {held}); replace it "
                               "with the image file.")
    rename = _RENAME["nifti-gz" if packed else family]
    raise MedicalFileError(f"Cannot read {path}: it is named as a {expected} but holds a {what}; rename it to "
                           f"{rename} (hfseg reads a file as the type its name says).")
