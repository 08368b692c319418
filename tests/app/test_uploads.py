"""Reading uploads: every supported format (synthetic and pydicom's / nibabel's real test files), spacing,
modality, the radiological slices of a volume, and every kind of bad file."""

import gzip
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from hfseg.app.uploads import MAX_FILE_BYTES, Upload, UploadError, file_kind, read_upload
from hfseg.io import MedicalFileError, read, to_slices

from .conftest import EXAMPLES

RNG = np.random.default_rng(0)
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


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


def write_enhanced_dicom(path: Path, frames: np.ndarray, orientation, positions, spacing=(0.5, 0.8),
                         thickness=2.0) -> Path:
    """An enhanced MR multi-frame DICOM: (F, H, W) frames, geometry only in the functional groups (shared
    orientation and pixel measures, one ImagePositionPatient per frame, in the order of `frames`)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = EnhancedMRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = frames.shape[0], frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [str(v) for v in spacing], str(thickness)
    plane.ImageOrientationPatient = [str(v) for v in orientation]
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for position in positions:
        where, group = Dataset(), Dataset()
        where.ImagePositionPatient = [str(v) for v in position]
        group.PlanePositionSequence = [where]
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = frames.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def display_slices(count: int = 4, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    """(count, H, W) distinct uint8 slices as they should be displayed."""
    return RNG.integers(0, 255, (count, *size), dtype=np.uint8)


def ras_volume(display: np.ndarray) -> np.ndarray:
    """The (x, y, z) RAS+ volume whose axial slices (z, rows, columns), shown radiologically, are `display`: rows
    run from anterior to posterior (y descending), columns from the patient's right to left (x descending)."""
    return np.ascontiguousarray(display[:, ::-1, ::-1].transpose(2, 1, 0))


def huge_nifti(path: Path, shape=(20000, 20000, 20000)) -> Path:
    """A NIfTI whose header declares `shape` (8 TB of uint8 voxels) but which holds 100 bytes of data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    data = header.binaryblock + b"\0" * 4 + b"\0" * 100
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


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
# The display convention changed from neurological (the patient's right on the image's right, the x axis of RAS+
# from left to right) to radiological (hfseg.io.to_slices: the patient's right on the image's left), as DICOM
# viewers and the demo dataset show slices: the two tests below build their volumes with `ras_volume` accordingly.
def test_nifti_ras_slices_and_spacing(tmp_path):
    want = display_slices()
    path = write_nifti(tmp_path / "v.nii.gz", ras_volume(want), np.diag([0.7, 0.9, 3.0, 1.0]))
    upload = read_upload(path, slice_index=1)
    assert upload.kind == "nifti" and upload.num_slices == 4 and upload.slice_index == 1
    np.testing.assert_array_equal(upload.image, want[1])
    assert upload.image.dtype == np.uint8 and upload.modality is None
    assert upload.spacing == pytest.approx((0.9, 0.7))  # rows run along y, columns along x
    assert read_upload(path).slice_index == 2  # default: the middle slice


def test_nifti_is_shown_radiologically(tmp_path):
    """Anterior at the top, the patient's right on the image's left, slices from inferior to superior."""
    volume = np.zeros((5, 6, 3), np.uint8)  # RAS+: x to the patient's right, y anterior, z superior
    volume[4, 5, 0] = 1  # right, anterior, inferior
    volume[0, 0, 0] = 2  # left, posterior, inferior
    volume[4, 0, 2] = 3  # right, posterior, superior
    path = write_nifti(tmp_path / "v.nii", volume, np.eye(4))
    inferior, superior = read_upload(path, slice_index=0).image, read_upload(path, slice_index=2).image
    assert inferior.shape == (6, 5)
    assert inferior[0, 0] == 1 and inferior[-1, -1] == 2 and superior[-1, 0] == 3


def test_nifti_any_storage_order_displays_the_same(tmp_path):
    """An LPS-ordered, axis-permuted copy of the same volume gives the same slices (the affine is followed)."""
    want = display_slices()
    stored = ras_volume(want)[::-1, ::-1, ::-1].transpose(2, 0, 1)  # array axes: (z reversed, x reversed, y reversed)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1
    affine[2, 0], affine[0, 1], affine[1, 2] = -3.0, -0.7, -0.9
    path = write_nifti(tmp_path / "v.nii", stored, affine)
    for index in range(4):
        upload = read_upload(path, slice_index=index)
        np.testing.assert_array_equal(upload.image, want[index])
    assert upload.spacing == pytest.approx((0.9, 0.7))


def test_big_endian_nifti_slices_are_hfseg_io_slices():
    """nibabel's anatomical.nii (big-endian int16, LAS storage): each slice is `to_slices(...)[i]` of hfseg.io's
    volume, and the radiological view of nibabel's own RAS+ reorientation."""
    path = NIBABEL_DATA / "anatomical.nii"
    image = read(path, dtype="stored")
    slices = to_slices(image.array, image.affine, "axial")
    ras = np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)
    for index in (0, 12, 24):
        upload = read_upload(path, slice_index=index)
        np.testing.assert_array_equal(upload.image, slices[index])
        np.testing.assert_array_equal(upload.image, ras[::-1, ::-1, index].T)
        assert upload.image.dtype == np.int16 and upload.image.dtype.isnative
    assert upload.num_slices == 25 and upload.spacing == (2.0, 2.0) and read_upload(path).slice_index == 12


def test_4d_nifti_is_refused_with_what_to_upload():
    """A 4D file (time points or channels) is refused: the demo has no control to choose a volume, and picking
    the first silently could segment another modality than the user meant."""
    path = NIBABEL_DATA / "example4d.nii.gz"
    with pytest.raises(UploadError) as info:
        read_upload(path, name="fmri.nii.gz")
    message = str(info.value)
    assert message.startswith("fmri.nii.gz is 4D, 2 volumes of 128 x 96 x 24 voxels") and "3D volume" in message
    assert "upload" in message and str(NIBABEL_DATA) not in message and "example4d" not in message


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_huge_header_is_refused_before_reading(tmp_path, name):
    path = huge_nifti(tmp_path / name)
    start = time.perf_counter()
    with pytest.raises(UploadError, match="voxels, over the limit"):
        read_upload(path)
    assert time.perf_counter() - start < 2.0


def test_volume_voxel_limit_follows_max_side(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", np.zeros((16, 16, 8), np.uint8), np.eye(4))
    assert read_upload(path, max_side=32).num_slices == 8  # 2048 voxels <= 4 x 32²
    with pytest.raises(UploadError, match="2048 voxels, over the limit of 1024"):  # 4 x 16²
        read_upload(path, max_side=16)


# -- real DICOM files ----------------------------------------------------------------------------------------------
def test_ct_small_in_hounsfield_units_with_modality():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    upload = read_upload(path)
    assert upload.kind == "dicom" and upload.modality == "CT" and upload.num_slices == 1
    np.testing.assert_allclose(upload.image, apply_modality_lut(ds.pixel_array, ds))  # as stored: no reorientation
    assert upload.image.min() < 0 and upload.spacing == pytest.approx((0.661468, 0.661468))


def test_mr_small():
    path = get_testdata_file("MR_small.dcm")
    upload = read_upload(path, slice_index=5)  # ignored for a single image
    np.testing.assert_array_equal(upload.image, pydicom.dcmread(path).pixel_array)
    assert upload.modality == "MR" and upload.spacing == pytest.approx((0.3125, 0.3125)) and upload.slice_index == 0


def test_multiframe_rt_dose_frames_are_slices():
    """pydicom's rtdose.dcm: 15 axial frames placed by GridFrameOffsetVector, inferior to superior."""
    path = get_testdata_file("rtdose.dcm")
    frames = pydicom.dcmread(path).pixel_array
    upload = read_upload(path)
    assert upload.num_slices == 15 and upload.slice_index == 7 and upload.modality == "RTDOSE"
    np.testing.assert_array_equal(upload.image, frames[7])
    np.testing.assert_array_equal(read_upload(path, slice_index=14).image, frames[14])
    assert upload.spacing == (10.0, 10.0)


def test_enhanced_multiframe_sorted_by_position(tmp_path):
    """Frames stored out of order, geometry only in the functional groups: slices inferior to superior, spacing
    from PixelMeasuresSequence. (pydicom ships no enhanced multi-frame file offline, so this one is written.)"""
    frames = RNG.integers(0, 4000, (4, 6, 7), dtype=np.uint16)
    heights = [6.0, 0.0, 9.0, 3.0]
    path = write_enhanced_dicom(tmp_path / "enhanced.dcm", frames, (1, 0, 0, 0, 1, 0),
                                [(0.0, 0.0, z) for z in heights])
    order = np.argsort(heights)
    for index in range(4):
        upload = read_upload(path, slice_index=index)
        np.testing.assert_array_equal(upload.image, frames[order[index]])
    assert upload.num_slices == 4 and upload.spacing == (0.5, 0.8) and upload.modality == "MR"


def test_sagittal_multiframe_keeps_its_frames(tmp_path):
    """A sagittal stack is shown frame by frame (its own plane), from the patient's right to left, not resliced."""
    frames = RNG.integers(0, 4000, (3, 6, 7), dtype=np.uint16)
    x_lps = [4.0, -2.0, 10.0]  # LPS: x grows to the patient's left
    path = write_enhanced_dicom(tmp_path / "sagittal.dcm", frames, (0, 1, 0, 0, 0, -1),
                                [(x, 0.0, 0.0) for x in x_lps])
    order = np.argsort(x_lps)
    assert read_upload(path).num_slices == 3
    for index in range(3):
        np.testing.assert_array_equal(read_upload(path, slice_index=index).image, frames[order[index]])


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
        "unknown transfer syntax": write_dicom(tmp_path / "syntax.dcm", np.zeros((8, 8))),
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
    syntax = files["unknown transfer syntax"]  # explicit VR little endian's UID, its last digit made a non-UID byte
    syntax.write_bytes(syntax.read_bytes().replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.\xc0\0", 1))
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
        "truncated png": "truncated", "garbage dicom": "not a DICOM",
        "unknown transfer syntax": "transfer syntax", "dicom without pixels": "no pixel data",
        "garbage nifti": "not a NIfTI", "truncated nifti": "truncated", "4D nifti": "3D volume",
        "empty file": "empty", "too wide": "4096 x 4096", "too large": "MB limit",
    }
    for what, path in _bad_files(tmp_path).items():
        with pytest.raises(UploadError) as info:
            read_upload(path)
        assert expected[what] in str(info.value), (what, str(info.value))
        assert path.name in str(info.value)


def test_upload_errors_are_medical_file_errors_without_server_paths(tmp_path):
    """Every refusal is a hfseg.io.MedicalFileError naming the file by its display name, never the temporary path
    (nor the temporary file's own name) it has on the server."""
    assert issubclass(UploadError, MedicalFileError)
    for what, path in _bad_files(tmp_path).items():
        shown = "visitor scan" + "".join(path.suffixes)
        with pytest.raises(MedicalFileError) as info:
            read_upload(path, name=shown)
        message = str(info.value)
        assert isinstance(info.value, UploadError) and shown in message, (what, message)
        assert str(tmp_path) not in message and path.name not in message, (what, message)


def test_folder_upload(tmp_path):
    with pytest.raises(UploadError, match="is a folder: upload one file"):
        read_upload(tmp_path)


def test_slice_out_of_range(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 4, 3), np.uint8), np.eye(4))
    with pytest.raises(UploadError, match="slice 3 does not exist"):
        read_upload(path, slice_index=3)
