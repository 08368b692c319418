"""NIfTI volumes written here with nibabel: byte order, 2D to 5D, scaling, stored types, NaN/inf, broken and
oversized files."""

import gzip
import time

import nibabel as nib
import numpy as np
import pytest

from hfseg.io import MedicalFileError, read, read_nifti, replace_nonfinite

AFFINE = np.array([[-0.9, 0, 0, 40.0], [0, 1.1, 0, -20.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])


def save(tmp_path, data, name="v.nii.gz", affine=AFFINE, header=None, nifti2=False):
    image_class = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    path = tmp_path / name
    nib.save(image_class(data, affine, header=header), path)
    return path


def volume(shape=(6, 5, 4), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-100, 100, size=shape).astype(dtype)


def test_float_volume(tmp_path):
    data = volume()
    image = read(save(tmp_path, data))
    assert image.kind == "nifti" and image.is_volume and image.modality is None
    np.testing.assert_array_equal(image.array, data)
    np.testing.assert_allclose(image.affine, AFFINE)
    assert image.spacing == pytest.approx((0.9, 1.1, 2.5))
    assert image.voxel_volume() == pytest.approx(0.9 * 1.1 * 2.5)
    assert image.meta["nonfinite"] == 0 and image.meta["shape"] == (6, 5, 4)
    assert type(image.array) is np.ndarray and image.array.flags.c_contiguous


def test_nonfinite_replaced_with_a_count(tmp_path):
    data = volume()
    data[0, 0, 0], data[1, 2, 3], data[5, 4, 3] = np.nan, np.inf, -np.inf
    data[2, 2, 2] = np.nan
    finite_min = np.nanmin(np.where(np.isinf(data), np.nan, data))
    with pytest.warns(UserWarning, match=r"4 NaN or infinite voxel\(s\) replaced by the minimum finite value"):
        image = read(save(tmp_path, data))
    assert image.meta["nonfinite"] == 4
    assert np.isfinite(image.array).all()
    for index in [(0, 0, 0), (1, 2, 3), (5, 4, 3), (2, 2, 2)]:
        assert image.array[index] == finite_min
    untouched = np.isfinite(data)
    np.testing.assert_array_equal(image.array[untouched], data[untouched])


def test_all_nonfinite_becomes_zero():
    with pytest.warns(UserWarning, match=r"x: 4 NaN"):
        array, count = replace_nonfinite(np.full((2, 2), np.nan, np.float32), "x")
    assert count == 4 and (array == 0).all()
    integers = np.arange(4, dtype=np.int16)
    assert replace_nonfinite(integers, "x") == (integers, 0)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64, np.uint16])
def test_big_endian_file_reads_equal_in_native_order(tmp_path, dtype):
    data = np.abs(volume(dtype=np.float64)).astype(dtype)
    header = nib.Nifti1Header().as_byteswapped(">")
    header.set_data_dtype(dtype)
    path = save(tmp_path, data.astype(np.dtype(dtype).newbyteorder(">")), "big.nii", header=header)
    assert path.read_bytes()[:4] == (348).to_bytes(4, "big")  # sizeof_hdr: a big-endian header
    assert nib.load(path).get_data_dtype().byteorder == ">"
    image = read(path)
    assert image.array.dtype == np.float32 and image.array.dtype.isnative
    np.testing.assert_array_equal(image.array, data.astype(np.float32))
    stored = read(path, dtype="stored")
    assert stored.array.dtype == np.dtype(dtype) and stored.array.dtype.isnative
    np.testing.assert_array_equal(stored.array, data)


def test_2d_file(tmp_path):
    data = volume((7, 3))
    image = read(save(tmp_path, data, "flat.nii"))
    assert image.array.shape == (7, 3, 1) and image.is_volume
    np.testing.assert_array_equal(image.array[:, :, 0], data)
    assert len(image.spacing) == 3 and image.spacing[:2] == pytest.approx((0.9, 1.1))
    assert image.meta["shape"] == (7, 3)


def test_4d_file_and_trailing_singletons(tmp_path):
    data = volume((4, 3, 2, 5))
    path = save(tmp_path, data)
    with pytest.raises(MedicalFileError, match="volume=N"):
        read(path)
    for index in (0, 3, -1):
        np.testing.assert_array_equal(read(path, volume=index).array, data[..., index])
    single = save(tmp_path, data[..., :1], "one.nii.gz")  # (4, 3, 2, 1): one volume, no choice needed
    np.testing.assert_array_equal(read(single).array, data[..., 0])
    with pytest.raises(MedicalFileError, match="not 4D"):
        read(save(tmp_path, data[..., 0], "three.nii.gz"), volume=1)


def test_5d_vector_file_refused(tmp_path):
    with pytest.raises(MedicalFileError, match="2D, 3D and 4D"):
        read(save(tmp_path, volume((4, 3, 2, 1, 3))))


def test_scaling_applied_and_stored_type(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(4, 3, 2)
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, path)
    scaled = read(path)
    np.testing.assert_allclose(scaled.array, data * 0.5 + 10.0)
    np.testing.assert_allclose(scaled.array, nib.load(path).get_fdata())
    labels = np.random.default_rng(0).integers(0, 4, size=(4, 3, 2)).astype(np.uint8)
    stored = read(save(tmp_path, labels, "labels.nii.gz"), dtype="stored")
    assert stored.array.dtype == np.uint8
    np.testing.assert_array_equal(stored.array, labels)


def test_unscaled_stored_read_does_not_hold_the_file(tmp_path):
    data = np.arange(7 * 3, dtype=np.int16).reshape(7, 3, 1)  # C- and F-contiguous alike: a memmap could survive
    path = save(tmp_path, data, "m.nii")
    image = read(path, dtype="stored")
    assert type(image.array) is np.ndarray and not isinstance(image.array, np.memmap)
    image.array[0, 0, 0] = 99  # writable, and the file is not changed
    assert np.asanyarray(nib.load(path).dataobj)[0, 0, 0] == 0


def test_nifti2(tmp_path):
    data = volume()
    path = save(tmp_path, data, "two.nii", nifti2=True)
    image = read(path)
    assert isinstance(image.meta["header"], nib.Nifti2Header)
    np.testing.assert_array_equal(image.array, data)


def test_qform_only_affine(tmp_path):
    image = nib.Nifti1Image(volume(), None)
    image.set_qform(AFFINE, code=1)
    image.set_sform(None, code=0)
    path = tmp_path / "q.nii.gz"
    nib.save(image, path)
    np.testing.assert_allclose(read(path).affine, AFFINE, atol=1e-5)


def test_header_claiming_32767_cubed_refused_before_reading(tmp_path):
    path = save(tmp_path, np.zeros((2, 2, 2), np.int16), "huge.nii")
    raw = bytearray(path.read_bytes())
    with open(path, "rb") as handle:
        header = nib.Nifti1Header.from_fileobj(handle)
    header.set_data_shape((32767, 32767, 32767))
    raw[:348] = header.binaryblock
    path.write_bytes(bytes(raw))
    packed = tmp_path / "huge.nii.gz"
    packed.write_bytes(gzip.compress(bytes(raw)))
    assert nib.load(path).shape == (32767, 32767, 32767)
    for candidate in (path, packed):
        start = time.perf_counter()
        with pytest.raises(MedicalFileError, match="32767 x 32767 x 32767.*over the limit"):
            read(candidate, max_pixels=512 ** 3)
        assert time.perf_counter() - start < 2
    with pytest.raises(MedicalFileError, match="truncated or corrupt"):
        read(path)  # no limit: the data is not there


@pytest.mark.parametrize("damage", ["truncate", "garbage", "corrupt-gzip", "not-gzip"])
def test_broken_files_refused(tmp_path, damage):
    path = save(tmp_path, volume((20, 20, 20)), "v.nii.gz")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "corrupt-gzip":
        middle = len(raw) // 2
        path.write_bytes(raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 200]) + raw[middle + 200:])
    else:
        path.write_bytes(gzip.decompress(raw)[:1000])  # a .nii.gz that is neither gzip nor whole
    with pytest.raises(MedicalFileError, match="v.nii.gz"):
        read(path)


def test_truncated_plain_nifti(tmp_path):
    path = save(tmp_path, volume((20, 20, 20)), "v.nii")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(MedicalFileError, match="truncated or corrupt"):
        read(path)


def test_complex_and_rgb_refused(tmp_path):
    with pytest.raises(MedicalFileError, match="complex"):
        read(save(tmp_path, volume().astype(np.complex64), "c.nii.gz"))
    rgb = np.zeros((3, 3, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    with pytest.raises(MedicalFileError, match="RGB"):
        read(save(tmp_path, rgb, "rgb.nii.gz"))


def test_invalid_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        read_nifti(save(tmp_path, volume()), dtype="int")
