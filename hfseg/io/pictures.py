"""Pictures: PNG, JPEG, TIFF and BMP, 8 or 16 bit, grey or colour, read with Pillow."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import MedicalFileError
from .image import MedicalImage, check_dtype
from .limits import MAX_PIXELS, SizedReader
from .sniff import check_content

PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Modes without a direct array form: palette and 1-bit images become RGB(A) or grey, as viewers show them.
_CONVERT = {"P": "RGB", "PA": "RGBA", "1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "LA": "LA"}
# What Pillow raises for broken files (its decoders do not all wrap their errors).
_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError,
           TypeError, ZeroDivisionError, NotImplementedError)


def read_picture_array(path: str | Path, convert: bool = False, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """The pixels of a picture as stored: (H, W) grey or (H, W, C), uint8/uint16/int32/float32 in native byte
    order (a palette image gives its indices, as label masks need). With `convert`, palette, 1-bit, CMYK and other
    colour spaces become RGB(A) or grey, as viewers show them. `max_pixels` (default `MAX_PIXELS`; None: no
    limit) refuses larger images before decoding, as does Pillow's own `PIL.Image.MAX_IMAGE_PIXELS` (89 M pixels).
    """
    path = Path(path)
    check_content(path, "picture")
    try:
        with SizedReader(path) as handle, warnings.catch_warnings():
            # Opening checks the declared size: over Pillow's limit it warns (made an error here), twice over raises.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle)
            return _pixels(image, path, convert, max_pixels)
    except MedicalFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MedicalFileError(f"{path} declares more pixels than the safety limit of {Image.MAX_IMAGE_PIXELS} "
                               f"({err}): downscale or crop it first (or, for a genuine image, raise "
                               "PIL.Image.MAX_IMAGE_PIXELS).") from err
    except _ERRORS as err:
        raise MedicalFileError(f"Cannot read {path}: corrupt, truncated or not an image ({type(err).__name__}: {err})."
                               " Replace it with a valid PNG, JPEG or TIFF.") from err


def _pixels(image: Image.Image, path: Path, convert: bool, max_pixels: int | None) -> np.ndarray:
    """The array of an opened picture, its size checked against `max_pixels` before decoding."""
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise MedicalFileError(f"{path} is {width} x {height} pixels, over the limit of {max_pixels} pixels: "
                                   "downscale or crop it first.")
        if convert and image.mode in _CONVERT and image.mode != "LA":
            image = image.convert("RGBA" if image.mode == "P" and "transparency" in image.info else
                                  _CONVERT[image.mode])
        array = np.asarray(image)
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise MedicalFileError(f"{path} has pixel array shape {array.shape}: expected one 2D image (a multi-page "
                               "TIFF's first page is read; save other pages separately).")
    return array.astype(array.dtype.newbyteorder("=")) if not array.dtype.isnative else array


def read_picture(path: str | Path, dtype: str = "float32", max_pixels: int | None = MAX_PIXELS) -> MedicalImage:
    """A picture as a `MedicalImage` (no spacing or affine: pictures carry no geometry hfseg trusts).

    `dtype="float32"` gives the picture as viewers show it (palette and other colour spaces converted to RGB(A) or
    grey); `dtype="stored"` gives the stored values and type (a palette label mask's class indices).
    """
    check_dtype(dtype)
    array = read_picture_array(path, convert=dtype != "stored", max_pixels=max_pixels)
    if dtype != "stored":
        array = array.astype(np.float32)
    return MedicalImage(array, Path(path), "picture")
