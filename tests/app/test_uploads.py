"""Reading uploads: every supported format, spacing, NIfTI orientation and slices, and every kind of bad file."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from hfseg.app.uploads import MAX_FILE_BYTES, Upload, UploadError, file_kind, read_upload

from .conftest import EXAMPLES

RNG = np.random.default_rng(0)


def write_dicom(path: Path, pixels: np.ndarray, spacing=None, slope=None, intercept=None, signed=False,
                with_pixels=True) -> Path:
    """A minimal valid MR DICOM; (F, H, W) pixels make a multi-frame file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    if spacing is not None:
        ds.PixelSpacing = [str(spacing[0]), str(spacing[1])]
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
    if with_pixels:
        ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def display_slices(count: int = 4, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    """(count, H, W) distinct uint8 slices as they should be displayed (anterior up, x left to right)."""
    return RNG.integers(0, 255, (count, *size), dtype=np.uint8)


# -- images --------------------------------------------------------------------------------------------------------
def test_png_8_bit(tmp_path):
    pixels = RNG.integers(0, 255, (20, 30), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    upload = read_upload(tmp_path / "a.png")
    assert isinstance(upload, Upload) and upload.kind == "image" and upload.name == "a.png"
    np.testing.assert_array_equal(upload.image, pixels)
    assert upload.spacing is None and upload.num_slices == 1


def test_png_16_bit_keeps_values(tmp_path):
    pixels = RNG.integers(0, 65535, (20, 30), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    upload = read_upload(tmp_path / "a.png")
    assert upload.image.dtype == np.uint16
    np.testing.assert_array_equal(upload.image, pixels)


def test_jpeg_rgb(tmp_path):
    pixels = np.full((24, 32, 3), (200, 100, 50), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.JPG", quality=95)
    upload = read_upload(tmp_path / "a.JPG")
    assert upload.image.shape == (24, 32, 3)
    assert np.abs(upload.image.astype(int) - pixels).max() <= 3


def test_tiff_16_bit_and_palette_png(tmp_path):
    pixels = RNG.integers(0, 4000, (16, 16), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_upload(tmp_path / "a.tif").image, pixels)
    palette = Image.fromarray(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "p.png")
    assert read_upload(tmp_path / "p.png").image.shape == (8, 8, 3)


# -- DICOM ---------------------------------------------------------------------------------------------------------
def test_dicom_pixels_and_spacing(tmp_path):
    pixels = RNG.integers(0, 4095, (20, 24), dtype=np.uint16)
    upload = read_upload(write_dicom(tmp_path / "slice.dcm", pixels, spacing=(0.5, 0.8)))
    assert upload.kind == "dicom" and upload.spacing == (0.5, 0.8)
    np.testing.assert_array_equal(upload.image, pixels)


def test_dicom_modality_lut_and_no_extension(tmp_path):
    pixels = RNG.integers(0, 2000, (8, 8)).astype(np.int16)
    path = write_dicom(tmp_path / "IM0001", pixels, slope=2, intercept=-1024, signed=True)
    assert file_kind(path) == "dicom"
    upload = read_upload(path)
    np.testing.assert_allclose(upload.image, pixels * 2.0 - 1024)
    assert upload.spacing is None


def test_multiframe_dicom_frames_are_slices(tmp_path):
    frames = RNG.integers(0, 1000, (3, 8, 9), dtype=np.uint16)
    path = write_dicom(tmp_path / "cine.dcm", frames, spacing=(1, 1))
    upload = read_upload(path)
    assert upload.num_slices == 3 and upload.slice_index == 1
    np.testing.assert_array_equal(upload.image, frames[1])
    np.testing.assert_array_equal(read_upload(path, slice_index=2).image, frames[2])


# -- NIfTI ---------------------------------------------------------------------------------------------------------
def test_nifti_ras_slices_and_spacing(tmp_path):
    want = display_slices()
    volume = np.stack([np.rot90(s, -1) for s in want], axis=-1)  # (x, y, z) whose rot90 displays as `want`
    path = write_nifti(tmp_path / "v.nii.gz", volume, np.diag([0.7, 0.9, 3.0, 1.0]))
    upload = read_upload(path, slice_index=1)
    assert upload.kind == "nifti" and upload.num_slices == 4 and upload.slice_index == 1
    np.testing.assert_array_equal(upload.image, want[1])
    assert upload.spacing == pytest.approx((0.9, 0.7))  # rows run along y, columns along x
    assert read_upload(path).slice_index == 2  # default: the middle slice


def test_nifti_any_storage_order_displays_the_same(tmp_path):
    """An LPS-ordered, axis-permuted copy of the same volume gives the same slices (the affine is followed)."""
    want = display_slices()
    ras = np.stack([np.rot90(s, -1) for s in want], axis=-1)
    stored = ras[::-1, ::-1, ::-1].transpose(2, 0, 1)  # array axes: (z reversed, x reversed, y reversed)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1
    affine[2, 0], affine[0, 1], affine[1, 2] = -3.0, -0.7, -0.9
    path = write_nifti(tmp_path / "v.nii", stored, affine)
    for index in range(4):
        upload = read_upload(path, slice_index=index)
        np.testing.assert_array_equal(upload.image, want[index])
    assert upload.spacing == pytest.approx((0.9, 0.7))


def test_bundled_examples_read():
    names = {p.name: read_upload(p) for p in EXAMPLES.iterdir() if not p.name.endswith(".py")}
    assert {u.kind for u in names.values()} == {"image", "dicom", "nifti"}
    assert sum(p.stat().st_size for p in EXAMPLES.iterdir()) < 300_000
    assert names["brain_mr.dcm"].spacing == names["brain_volume.nii.gz"].spacing != None  # noqa: E711


# -- bad uploads ---------------------------------------------------------------------------------------------------
def _bad_files(tmp_path: Path) -> dict[str, Path]:
    png = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 255, (64, 64), dtype=np.uint8)).save(png)
    files = {
        "unsupported type": tmp_path / "notes.txt",
        "garbage png": tmp_path / "garbage.png",
        "truncated png": tmp_path / "truncated.png",
        "garbage dicom": tmp_path / "garbage.dcm",
        "dicom without pixels": write_dicom(tmp_path / "empty.dcm", np.zeros((4, 4)), with_pixels=False),
        "garbage nifti": tmp_path / "garbage.nii.gz",
        "truncated nifti": tmp_path / "truncated.nii",
        "4D nifti": write_nifti(tmp_path / "t.nii", np.zeros((4, 4, 3, 2), np.float32), np.eye(4)),
        "empty file": tmp_path / "empty.png",
        "too wide": tmp_path / "wide.png",
        "too large": tmp_path / "large.png",
    }
    files["unsupported type"].write_text("not an image")
    files["garbage png"].write_bytes(b"\x89PNG\r\n\x1a\n" + RNG.bytes(200))
    files["truncated png"].write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    files["garbage dicom"].write_bytes(RNG.bytes(300))
    files["garbage nifti"].write_bytes(RNG.bytes(300))
    nifti = write_nifti(tmp_path / "full.nii", np.ones((16, 16, 8), np.float32), np.eye(4))
    files["truncated nifti"].write_bytes(nifti.read_bytes()[:600])
    files["empty file"].write_bytes(b"")
    Image.new("L", (4100, 8)).save(files["too wide"])
    with open(files["too large"], "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: the size is refused before anything is read
    return files


def test_every_bad_upload_raises_a_clear_upload_error(tmp_path):
    expected = {
        "unsupported type": "unsupported file type", "garbage png": "not an image",
        "truncated png": "truncated", "garbage dicom": "not a DICOM", "dicom without pixels": "no pixel data",
        "garbage nifti": "not a NIfTI", "truncated nifti": "truncated", "4D nifti": "3D volume",
        "empty file": "empty", "too wide": "4096 x 4096", "too large": "MB limit",
    }
    for what, path in _bad_files(tmp_path).items():
        with pytest.raises(UploadError) as info:
            read_upload(path)
        assert expected[what] in str(info.value), (what, str(info.value))
        assert path.name in str(info.value)


def test_slice_out_of_range(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 4, 3), np.uint8), np.eye(4))
    with pytest.raises(UploadError, match="slice 3 does not exist"):
        read_upload(path, slice_index=3)
