"""hfseg.data.common: the loaders' error is the file layer's, and images are read through hfseg.io as stored."""

import numpy as np
import pytest
from PIL import Image

import hfseg.data.chaos
import hfseg.io
from hfseg.data.common import DatasetFormatError, file_errors, read_image
from hfseg.io import MedicalFileError


def test_dataset_format_error_is_a_medical_file_error():
    assert issubclass(DatasetFormatError, MedicalFileError) and issubclass(DatasetFormatError, ValueError)
    with pytest.raises(MedicalFileError, match="named file"):  # one except clause catches every refused input
        raise DatasetFormatError("named file")


def test_file_errors_turn_the_file_layer_error_into_the_loaders_error():
    cause = OSError("low level")
    with pytest.raises(DatasetFormatError, match=r"^x.png: broken$") as caught:
        with file_errors():
            raise MedicalFileError("x.png: broken") from cause
    assert caught.value.__cause__ is cause  # the library's own error stays the cause, as before hfseg.io
    with pytest.raises(DatasetFormatError) as caught:
        with file_errors():
            raise MedicalFileError("no cause")
    assert isinstance(caught.value.__cause__, MedicalFileError)
    original = DatasetFormatError("already the loaders' error")
    with pytest.raises(DatasetFormatError) as caught:
        with file_errors():
            raise original
    assert caught.value is original


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (np.arange(12, dtype=np.uint8).reshape(3, 4), "L"),
        (np.arange(0, 60000, 5000, dtype=np.uint16).reshape(3, 4), "I;16"),
        (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), "RGB"),
    ],
)
def test_read_image_gives_the_pixels_as_stored(tmp_path, array, mode):
    path = tmp_path / "image.png"
    Image.fromarray(array, mode).save(path)
    got = read_image(path)
    assert got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)


def test_read_image_keeps_palette_indices(tmp_path):
    path = tmp_path / "mask.png"
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (3 * 253))
    image.save(path)
    np.testing.assert_array_equal(read_image(path), indices)  # class indices, not the palette colours


def test_read_image_error_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DatasetFormatError, match=r"Cannot read .*broken.png: corrupt"):
        read_image(path)


def test_chaos_keeps_dcmread_importable_from_the_file_layer():
    assert hfseg.data.chaos.dcmread is hfseg.io.dcmread
