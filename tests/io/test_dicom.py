"""DICOM series written here with pydicom (shuffled file names, oblique planes, mixed series, broken files) and
single-file details (padding, rescale, palette, missing decoders), checked against the DICOM standard's geometry
equation and pydicom's own decoding."""

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.pixels import apply_modality_lut

from hfseg.io import MedicalFileError, read, read_dicom_series, to_slices
from hfseg.io.dicom import EXTRA_HINT

from .files import LPS_TO_RAS, ct_small, rotation, write_series


def hounsfield(stored):
    return stored.astype(np.float32) - 1024  # CT_small: RescaleSlope 1, RescaleIntercept -1024


def random_voxels(shape, count=20, seed=0):
    rng = np.random.default_rng(seed)
    return [tuple(int(rng.integers(0, n)) for n in shape) for _ in range(count)]


# -- series geometry and order -----------------------------------------------------------------------------------
def test_series_shuffled_names_give_patient_order(series):
    names = [p.name for p in series.files]
    assert names != sorted(names)  # the files are not named in slice order
    image = read(series.folder)
    assert image.kind == "dicom" and image.is_volume and image.modality == "CT"
    assert image.array.shape == (128, 128, 5) and image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, hounsfield(series.stored).transpose(1, 0, 2))
    assert [str(ds.SOPInstanceUID) for ds in image.meta["datasets"]] == series.sop_uids
    assert all("PixelData" not in ds for ds in image.meta["datasets"])
    assert image.meta["series_uid"] == series.uid
    assert image.spacing == pytest.approx((0.661468, 0.661468, 5.0))


def test_series_affine_is_the_dicom_equation(series):
    image = read(series.folder)
    step = series.positions[1] - series.positions[0]
    np.testing.assert_allclose(image.affine[:3, 2], (LPS_TO_RAS[:3, :3] @ step), atol=1e-6)
    for voxel in random_voxels(image.array.shape):
        np.testing.assert_allclose(image.affine @ np.r_[voxel, 1.0], np.r_[series.world(*voxel), 1.0], atol=1e-5)
    assert nib_codes(image.affine) == ("L", "P", "S")


def nib_codes(affine):
    import nibabel as nib

    return nib.aff2axcodes(affine)


def test_descending_positions_are_sorted(tmp_path):
    # Slices written top down (negative gap): the volume still runs along the normal, inferior to superior.
    series = write_series(tmp_path / "s", n=4, gap=-3.0)
    image = read(series.folder)
    np.testing.assert_array_equal(image.array, hounsfield(series.stored[:, :, ::-1]).transpose(1, 0, 2))
    np.testing.assert_allclose(image.affine[:3, 2], [0, 0, 3.0], atol=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_oblique_series(tmp_path, seed):
    frame = rotation(seed)
    iop = np.r_[frame[:, 0], frame[:, 1]]
    # Not square, not isotropic: rows and columns, and their spacings, cannot be swapped unnoticed.
    series = write_series(tmp_path / "s", n=4, iop=iop, gap=2.5, seed=seed, size=(24, 32), PixelSpacing=[0.5, 0.8])
    image = read(series.folder)
    assert image.array.shape == (32, 24, 4) and image.spacing == pytest.approx((0.8, 0.5, 2.5))
    iop = series.iop  # as written (8 decimals)
    normal = np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(image.affine[:3, 2], LPS_TO_RAS[:3, :3] @ (2.5 * normal), atol=1e-5)
    np.testing.assert_allclose(image.affine[:3, 0], LPS_TO_RAS[:3, :3] @ (iop[:3] * series.spacing[1]), atol=1e-6)
    np.testing.assert_allclose(image.affine[:3, 1], LPS_TO_RAS[:3, :3] @ (iop[3:] * series.spacing[0]), atol=1e-6)
    for voxel in random_voxels(image.array.shape, seed=seed):
        np.testing.assert_allclose(image.affine @ np.r_[voxel, 1.0], np.r_[series.world(*voxel), 1.0], atol=1e-4)
    np.testing.assert_array_equal(image.array, hounsfield(series.stored).transpose(1, 0, 2))


def test_axial_slices_of_a_series_are_its_dicom_images(series):
    """An axial CT slice is the same image read as a DICOM file or cut from the volume (orientation.py)."""
    image = read(series.folder)
    slices = to_slices(image.array, image.affine, "axial")
    assert slices.shape == (5, 128, 128)
    for k, path in enumerate(series.files):  # series.files is in patient order (inferior to superior)
        np.testing.assert_array_equal(slices[k], read(path).array)


def test_gantry_tilt_keeps_the_true_step(tmp_path):
    # Positions move along y as well as z (a tilted gantry): the slice axis is the real step, not the normal.
    series = write_series(tmp_path / "s", n=3, size=16,
                          ImagePositionPatient=lambda k: [-100.0, -100.0 + 2.0 * k, -50.0 + 5.0 * k])
    image = read(series.folder)
    np.testing.assert_allclose(image.affine[:3, 2], LPS_TO_RAS[:3, :3] @ [0.0, 2.0, 5.0], atol=1e-6)


def test_irregular_spacing_warns(tmp_path):
    z = [0.0, 5.0, 10.0, 20.0]
    series = write_series(tmp_path / "s", n=4, size=16, ImagePositionPatient=lambda k: [0.0, 0.0, z[k]])
    with pytest.warns(UserWarning, match="slice spacing varies"):
        read(series.folder)


def test_series_without_positions_uses_instance_numbers(tmp_path):
    series = write_series(tmp_path / "s", n=3, size=16)
    for path in series.files:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    numbers = [int(pydicom.dcmread(p).InstanceNumber) for p in series.files]
    with pytest.warns(UserWarning, match="InstanceNumber"):
        image = read(series.folder)
    expected = series.stored[:, :, np.argsort(numbers)]
    np.testing.assert_array_equal(image.array, hounsfield(expected).transpose(1, 0, 2))


# -- refused series ----------------------------------------------------------------------------------------------
def test_mixed_series_refused_naming_both(tmp_path):
    first = write_series(tmp_path / "mixed", n=3, size=16, name="A")
    second = write_series(tmp_path / "mixed", n=2, size=16, name="B", seed=5)
    with pytest.raises(MedicalFileError) as info:
        read(tmp_path / "mixed")
    assert first.uid in str(info.value) and second.uid in str(info.value)
    assert "series=" in str(info.value)
    picked = read(tmp_path / "mixed", series=second.uid)
    np.testing.assert_array_equal(picked.array, hounsfield(second.stored).transpose(1, 0, 2))
    assert picked.meta["series_uid"] == second.uid
    with pytest.raises(MedicalFileError, match=first.uid):
        read(tmp_path / "mixed", series="1.2.3.4")


def test_duplicate_positions_refused(tmp_path):
    series = write_series(tmp_path / "s", n=3, size=16, ImagePositionPatient=lambda k: [0.0, 0.0, min(k, 1) * 5.0])
    with pytest.raises(MedicalFileError, match="share one position"):
        read(series.folder)


def test_inconsistent_rows_refused(tmp_path):
    series = write_series(tmp_path / "s", n=3, size=16)
    odd = series.files[1]
    ds = pydicom.dcmread(odd)
    ds.Rows, ds.PixelData = 8, np.zeros((8, 16), np.int16).tobytes()
    ds.save_as(odd)
    with pytest.raises(MedicalFileError, match=odd.name) as info:
        read(series.folder)
    assert "8 x 16" in str(info.value)


def test_mixed_orientations_refused(tmp_path):
    series = write_series(tmp_path / "s", n=3, size=16)
    ds = pydicom.dcmread(series.files[2])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal localizer in the series
    ds.save_as(series.files[2])
    with pytest.raises(MedicalFileError, match="orientations"):
        read(series.folder)


def test_non_dicom_files_are_ignored(series):
    (series.folder / "README.txt").write_text("scan notes")
    (series.folder / "notes.json").write_text("{}")
    (series.folder / ".DS_Store").write_bytes(b"\0\1\2")
    (series.folder / "LICENSE").write_text("no extension, not DICOM")
    (series.folder / "DICOMDIR").write_bytes(b"\0" * 10)
    image = read(series.folder)
    np.testing.assert_array_equal(image.array, hounsfield(series.stored).transpose(1, 0, 2))


def test_series_in_subfolders(tmp_path):
    series = write_series(tmp_path / "study" / "a", n=3, size=16)
    image = read(tmp_path / "study")
    np.testing.assert_array_equal(image.array, hounsfield(series.stored).transpose(1, 0, 2))


def test_corrupt_dcm_in_series_named(series):
    bad = series.folder / "IMG9999.dcm"
    bad.write_bytes(b"this is not DICOM" * 20)
    with pytest.raises(MedicalFileError, match=bad.name):
        read(series.folder)


def test_truncated_pixel_data_in_series_named(series):
    victim = series.files[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 5000])  # the header parses, the pixel data is short
    with pytest.raises(MedicalFileError, match=victim.name):
        read(series.folder)


def test_empty_folder_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(MedicalFileError, match="no DICOM images"):
        read(tmp_path / "empty")


def test_series_max_pixels(series):
    with pytest.raises(MedicalFileError, match="over the limit"):
        read(series.folder, max_pixels=128 * 128 * 4)
    assert read(series.folder, max_pixels=128 * 128 * 5).array.shape == (128, 128, 5)


def test_single_file_series_is_that_file(tmp_path):
    series = write_series(tmp_path / "one", n=1, size=16)
    image = read(series.folder)
    assert image.array.shape == (16, 16) and not image.is_volume
    assert image.path == series.folder  # the input named, as for a series of many files
    np.testing.assert_array_equal(image.array, hounsfield(series.stored[:, :, 0]))


# -- values ------------------------------------------------------------------------------------------------------
def test_rescale_slope_intercept_per_slice(tmp_path):
    slopes, intercepts = [2.0, 0.5, 1.5], [-100.0, 10.0, 0.0]
    series = write_series(tmp_path / "s", n=3, size=16, RescaleSlope=lambda k: slopes[k],
                          RescaleIntercept=lambda k: intercepts[k])
    image = read(series.folder)
    for k in range(3):
        expected = series.stored[:, :, k].astype(np.float64) * slopes[k] + intercepts[k]
        np.testing.assert_allclose(image.array[:, :, k].T, expected, rtol=1e-6)
    stored = read(series.folder, dtype="stored")
    assert stored.array.dtype == np.int16
    np.testing.assert_array_equal(stored.array, series.stored.transpose(1, 0, 2))


def test_padding_becomes_the_smallest_real_value_of_the_volume(tmp_path):
    rng = np.random.default_rng(3)
    pixels = [rng.integers(1000 + 300 * k, 2000 + 300 * k, size=(16, 16)) for k in range(3)]
    for array in pixels:
        array[:4, :4] = -2000  # CT_small's PixelPaddingValue
    series = write_series(tmp_path / "s", n=3, size=16, pixels=pixels)
    image = read(series.folder)
    real_min = min(p[p != -2000].min() for p in pixels) - 1024.0
    for k in range(3):
        slice_k = image.array[:, :, k].T
        assert (slice_k[:4, :4] == real_min).all()  # one background value for every slice, not each slice's own
        np.testing.assert_array_equal(slice_k[4:], pixels[k][4:] - 1024.0)
    assert image.array.min() == real_min


def test_padding_range_limit_single_file(tmp_path):
    ds = ct_small()
    array = ds.pixel_array.copy()
    array[0, :10] = np.arange(-2010, -2000)  # PixelPaddingValue -2000 .. PixelPaddingRangeLimit -2010
    array[1, 0] = -1500  # real, below every other value
    ds.PixelData = array.tobytes()
    ds.add_new("PixelPaddingRangeLimit", "SS", -2010)
    ds.save_as(tmp_path / "pad.dcm")
    image = read(tmp_path / "pad.dcm")
    assert (image.array[0, :10] == -1500 - 1024).all()
    assert image.array[1, 0] == -1500 - 1024
    np.testing.assert_array_equal(image.array[2:], apply_modality_lut(array, ds)[2:].astype(np.float32))


def test_missing_decoder_names_the_extra(monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    path = get_testdata_file("MR_small_jp2klossless.dcm")
    decoder = get_decoder(JPEG2000Lossless)
    # As pydicom sees a machine without pylibjpeg-openjpeg or GDCM: every plugin unavailable.
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"gdcm": ("gdcm>=3.0.10",), "pylibjpeg": ("pylibjpeg>=2.0",
                                                                                          "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(RuntimeError, match="all plugins are missing dependencies"):
        _ = pydicom.dcmread(path).pixel_array  # pydicom's own message, which hfseg recognises
    with pytest.raises(MedicalFileError) as info:
        read(path)
    message = str(info.value)
    assert 'hfseg[dicom]' in message and EXTRA_HINT in message and "JPEG 2000" in message
    assert "MR_small_jp2klossless.dcm" in message


def test_palette_color_is_converted_unless_stored():
    from pydicom.pixels import apply_color_lut

    path = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    image = read(path)
    assert image.array.shape == (*ds.pixel_array.shape, 3) and not image.is_volume
    expected = apply_color_lut(ds.pixel_array, ds).astype(np.float64) / 257  # a 16-bit palette, shown 0-255
    np.testing.assert_allclose(image.array, expected, rtol=1e-5)
    assert 0 <= image.array.min() and image.array.max() <= 255
    stored = read(path, dtype="stored")
    np.testing.assert_array_equal(stored.array, ds.pixel_array)  # the indices


def test_colour_dicom_is_one_2d_image():
    image = read(get_testdata_file("SC_rgb_rle.dcm"))
    assert image.array.shape == (100, 100, 3)
    assert not image.is_volume and image.voxel_volume() == pytest.approx(1.0)


def test_multiframe_colour_refused():
    with pytest.raises(MedicalFileError, match="multi-frame colour"):
        read(get_testdata_file("SC_rgb_rle_2frame.dcm"))


def test_file_max_pixels_before_decoding(monkeypatch):
    path = get_testdata_file("CT_small.dcm")
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(lambda self: pytest.fail("decoded")))
    with pytest.raises(MedicalFileError, match="over the limit"):
        read(path, max_pixels=100)


def test_bare_dataset_without_file_meta(tmp_path):
    ds = ct_small()
    bare = tmp_path / "bare.dcm"
    buffer = DicomBytesIO()  # what some anonymizers write: no preamble, no DICM prefix, no file meta
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(buffer, ds)
    bare.write_bytes(buffer.getvalue())
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(bare)
    np.testing.assert_array_equal(read(bare).array, read(get_testdata_file("CT_small.dcm")).array)


def test_no_pixel_data_refused():
    with pytest.raises(MedicalFileError, match="no pixel data; it is a RTPLAN"):
        read(get_testdata_file("rtplan.dcm"))


def test_rt_dose_grid_frame_offsets():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    image = read(path)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    step = (offsets[1] - offsets[0]) * np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(image.affine[:3, 2], LPS_TO_RAS[:3, :3] @ step, atol=1e-6)
    assert image.spacing[2] == pytest.approx(5.0)
    np.testing.assert_array_equal(image.array, ds.pixel_array.astype(np.float32).transpose(2, 1, 0))


def test_invalid_dtype():
    with pytest.raises(ValueError, match="dtype"):
        read(get_testdata_file("CT_small.dcm"), dtype="float64")


def test_series_uid_listing_when_missing(tmp_path):
    series = write_series(tmp_path / "s", n=2, size=16)
    with pytest.raises(MedicalFileError, match=series.uid):
        read_dicom_series(series.folder, series="9.9.9")


def test_unstated_pixel_spacing_is_none_not_an_invented_millimetre(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    import hfseg.io as hio

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelSpacing
    ds.save_as(tmp_path / "nospacing.dcm")
    image = hio.read(tmp_path / "nospacing.dcm")
    assert image.spacing is None and image.voxel_volume() is None
    assert np.allclose(np.abs(image.affine[:3, :2]).sum(0), 1.0)  # the geometry still has unit steps
    assert hio.read(get_testdata_file("CT_small.dcm")).spacing == pytest.approx((0.661468, 0.661468))


def test_monochrome1_is_inverted_to_display_polarity(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    image = read(tmp_path / "mono1.dcm")
    np.testing.assert_allclose(image.array, hu.min() + hu.max() - hu)  # the lowest value now the brightest
    np.testing.assert_array_equal(read(tmp_path / "mono1.dcm", dtype="stored").array, ds.pixel_array)
