"""Pictures written here with Pillow: bit depths, byte orders, colour modes, palettes, broken and oversized files."""

import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from hfseg.io import MedicalFileError, read, read_picture_array

RNG = np.random.default_rng(0)


def mode_of(path):
    with Image.open(path) as picture:
        return picture.mode


def save(tmp_path, image, name):
    path = tmp_path / name
    image.save(path)
    return path


def test_8bit_grey(tmp_path):
    pixels = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)
    path = save(tmp_path, Image.fromarray(pixels), "grey.png")
    image = read(path)
    assert image.kind == "picture" and not image.is_volume and image.affine is None and image.spacing is None
    assert image.array.dtype == np.float32 and image.array.shape == (5, 7)
    np.testing.assert_array_equal(image.array, pixels)
    stored = read_picture_array(path)
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, pixels)
    assert read(path, dtype="stored").array.dtype == np.uint8


def test_16bit_png(tmp_path):
    pixels = RNG.integers(0, 65536, size=(6, 4)).astype(np.uint16)
    path = save(tmp_path, Image.fromarray(pixels), "deep.png")
    assert mode_of(path).startswith("I")
    image = read(path)
    np.testing.assert_array_equal(image.array, pixels.astype(np.float32))
    assert image.array.max() > 255
    stored = read_picture_array(path)
    assert stored.dtype.itemsize >= 2 and stored.dtype.isnative
    np.testing.assert_array_equal(stored, pixels)


def test_16bit_big_endian_tiff(tmp_path):
    pixels = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    picture = Image.frombytes("I;16B", (4, 3), pixels.astype(">u2").tobytes())
    path = save(tmp_path, picture, "big.tif")
    with Image.open(path) as check:
        assert check.mode == "I;16B" and np.asarray(check).dtype == np.dtype(">u2")
    stored = read_picture_array(path)
    assert stored.dtype == np.uint16 and stored.dtype.isnative
    np.testing.assert_array_equal(stored, pixels)
    np.testing.assert_array_equal(read(path).array, pixels.astype(np.float32))


def test_float_tiff(tmp_path):
    pixels = RNG.normal(size=(4, 5)).astype(np.float32)
    path = save(tmp_path, Image.fromarray(pixels), "float.tif")
    np.testing.assert_array_equal(read(path).array, pixels)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour(tmp_path, mode):
    pixels = RNG.integers(0, 256, size=(4, 6, len(mode)), dtype=np.uint8)
    path = save(tmp_path, Image.fromarray(pixels, mode), f"c_{mode}.png")
    image = read(path)
    assert image.array.shape == (4, 6, len(mode)) and not image.is_volume
    np.testing.assert_array_equal(image.array, pixels)


def test_jpeg_matches_pillow(tmp_path):
    pixels = RNG.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    path = save(tmp_path, Image.fromarray(pixels), "photo.jpg")
    with Image.open(path) as reference:
        np.testing.assert_array_equal(read(path).array, np.asarray(reference.convert("RGB")))


def palette_picture(transparent=False):
    indices = np.array([[0, 1, 2], [2, 1, 0], [3, 3, 1]], dtype=np.uint8)
    picture = Image.fromarray(indices, "L").convert("P")
    picture.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30])
    picture.frombytes(indices.tobytes())
    if transparent:
        picture.info["transparency"] = 0
    return picture, indices, np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], dtype=np.float32)


def test_palette_indices_as_stored_colours_as_shown(tmp_path):
    picture, indices, colours = palette_picture()
    path = save(tmp_path, picture, "mask.png")
    assert mode_of(path) == "P"
    np.testing.assert_array_equal(read_picture_array(path), indices)  # label masks need the indices
    np.testing.assert_array_equal(read(path, dtype="stored").array, indices)
    shown = read(path)  # as a viewer shows it
    assert shown.array.shape == (3, 3, 3)
    np.testing.assert_array_equal(shown.array, colours[indices])
    np.testing.assert_array_equal(read_picture_array(path, convert=True), colours[indices].astype(np.uint8))


def test_palette_with_transparency_becomes_rgba(tmp_path):
    picture, indices, colours = palette_picture(transparent=True)
    path = tmp_path / "t.png"
    picture.save(path, transparency=0)
    shown = read(path).array
    assert shown.shape == (3, 3, 4)
    np.testing.assert_array_equal(shown[..., :3], colours[indices])
    np.testing.assert_array_equal(shown[..., 3], np.where(indices == 0, 0, 255))


def test_1bit(tmp_path):
    bits = RNG.integers(0, 2, size=(4, 8)).astype(bool)
    path = save(tmp_path, Image.fromarray(bits), "bits.png")
    np.testing.assert_array_equal(read(path).array, bits * 255.0)


def test_truncated_png_refused(tmp_path):
    path = save(tmp_path, Image.fromarray(RNG.integers(0, 256, size=(64, 64), dtype=np.uint8)), "cut.png")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(MedicalFileError, match="cut.png.*truncated"):
        read(path)


def test_not_an_image_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture at all")
    with pytest.raises(MedicalFileError, match="notes.png"):
        read(tmp_path / "notes.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MedicalFileError, match="empty"):
        read(tmp_path / "empty.png")


def png_claiming(tmp_path, width, height, name="bomb.png"):
    """A tiny PNG whose header declares `width` x `height` pixels (the IHDR patched, its CRC fixed)."""
    path = save(tmp_path, Image.new("L", (8, 8)), name)
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"IHDR"
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("side", [100_000, 10_000])  # over twice Pillow's limit (an error), and over it (a warning)
def test_decompression_bomb_refused_quickly(tmp_path, side):
    path = png_claiming(tmp_path, side, side)
    start = time.perf_counter()
    with pytest.raises(MedicalFileError, match="safety limit"):
        read(path)
    assert time.perf_counter() - start < 1.0


def test_max_pixels_before_decoding(tmp_path):
    path = png_claiming(tmp_path, 5000, 5000)  # 25 M pixels claimed, 64 stored: decoding would fail differently
    with pytest.raises(MedicalFileError, match="5000 x 5000 pixels, over the limit of 1000000"):
        read(path, max_pixels=1_000_000)


def test_multipage_tiff_gives_the_first_page(tmp_path):
    pages = [Image.fromarray(np.full((3, 3), value, np.uint8)) for value in (10, 20)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(read(path).array, np.full((3, 3), 10.0))


def test_invalid_dtype(tmp_path):
    path = save(tmp_path, Image.new("L", (2, 2)), "x.png")
    with pytest.raises(ValueError, match="dtype"):
        read(path, dtype="uint8")
