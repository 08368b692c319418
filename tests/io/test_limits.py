"""Refusal by declared size: files whose headers claim huge images are refused by `hfseg.io.read` before anything
of that size is allocated (tracemalloc peak stays small), at the default limit `MAX_PIXELS`, with a message naming
the file, the declared size and how to raise the limit; and the cases the fuzzer found (each allocated gigabytes
or raised something other than `MedicalFileError` before its fix)."""

import gzip
import logging
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import nibabel.testing
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from benchmarks import fuzz
from hfseg.io import MAX_PIXELS, MedicalFileError, read

PEAK_MB = 16.0


@pytest.fixture(autouse=True)
def _quiet_nibabel():
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def refused(path, match, **kwargs) -> str:
    """The message of `read(path)`'s `MedicalFileError`, checked to be quick and to allocate under `PEAK_MB`."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(MedicalFileError, match=match) as info:
            read(path, **kwargs)
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 1024 ** 2
        tracemalloc.stop()
    assert time.perf_counter() - start < 10
    assert peak < PEAK_MB, f"{path.name}: {peak:.0f} MB allocated before the refusal"
    assert path.name in str(info.value)
    return str(info.value)


@pytest.fixture(scope="module")
def huge():
    return fuzz.huge_cases()


def write(tmp_path, huge, name):
    path = tmp_path / name
    path.write_bytes(huge[name])
    return path


def test_default_limit_is_above_real_volumes():
    assert MAX_PIXELS == 2 ** 30 > 512 * 512 * 2000


@pytest.mark.parametrize("name", ["nifti-32767-cubed.nii", "nifti-32767-cubed.nii.gz"])
def test_nifti_32767_cubed(tmp_path, huge, name):
    message = refused(write(tmp_path, huge, name), "32767 x 32767 x 32767 = 35181150961663 voxels, over the limit")
    assert f"of {MAX_PIXELS} voxels" in message and "max_pixels=35181150961663" in message  # how to raise it


def test_dicom_65535_squared(tmp_path, huge):
    message = refused(write(tmp_path, huge, "dicom-65535-squared.dcm"), "1 frame\\(s\\) of 65535 x 65535")
    assert "4294836225 pixels" in message and "max_pixels=" in message


def test_dicom_billion_frames(tmp_path, huge):
    refused(write(tmp_path, huge, "dicom-billion-frames.dcm"), "1000000000 frame\\(s\\) of 128 x 128")


@pytest.mark.parametrize("name", ["png-60000-squared.png", "png-30000-squared-16bit.png"])
def test_png_decompression_bomb(tmp_path, huge, name):
    refused(write(tmp_path, huge, name), "safety limit")  # Pillow's DecompressionBombError, as MedicalFileError


def test_an_explicit_limit_names_no_raise_hint(tmp_path):
    path = tmp_path / "ct.dcm"
    path.write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    assert "max_pixels=" not in refused(path, "over the limit of 100 pixels", max_pixels=100)
    assert read(path, max_pixels=128 * 128).array.shape == (128, 128)


def test_no_limit_reads_past_it(tmp_path, huge):
    """max_pixels=None lifts the limit: the 32767³ file then fails on its missing voxels, still refused."""
    path = write(tmp_path, huge, "nifti-32767-cubed.nii")
    refused(path, "truncated or corrupt", max_pixels=None)


# -- what the fuzzer found -----------------------------------------------------------------------------------------
def test_gz_declaring_a_gigabyte_in_100_bytes(tmp_path, huge):
    """Under the voxel limit, but nibabel would allocate and zero-fill the declared 1 GB before decompressing."""
    refused(write(tmp_path, huge, "nifti-1g-voxels-in-100-bytes.nii.gz"), "declares 1048576352 bytes but the "
            "decompressed file holds 416")


def test_nifti_extension_claiming_2gb(tmp_path, huge):
    """nibabel reads a header extension's declared size at once (2 GB allocated for a 100-byte .nii.gz)."""
    refused(write(tmp_path, huge, "nifti-extension-2gb.nii.gz"), "header extension")


def test_nifti_extension_size_in_the_other_byte_order(tmp_path):
    """nibabel guesses the byte order from dim[0]: an invalid dim[0] makes it read the extension size swapped."""
    small = nib.Nifti2Image(np.zeros((2, 2, 2), np.int16), np.eye(4)).to_bytes()
    path = tmp_path / "swapped.nii.gz"
    path.write_bytes(fuzz.edit_nifti(small, [("dim", 0, 99), ("extension", 0, 32)], compress=True))
    refused(path, "corrupt")


def test_nifti_vox_offset_past_any_file(tmp_path, huge):
    """An OverflowError from numpy's memmap before the fix."""
    refused(write(tmp_path, huge, "nifti-vox-offset-1e30.nii"), "truncated or corrupt")


def test_nifti_header_with_no_dimensions(tmp_path):
    """The fuzzer's case: functional.nii with dim[0] = 32767 (-129 byte-swapped) and vox_offset, pixdim[1:3] and
    qform_code damaged. nibabel reads the header swapped and gives shape (), whose data did not reshape to one
    voxel (a ValueError before the fix)."""
    raw = bytearray((Path(nibabel.testing.data_path) / "functional.nii").read_bytes())
    for offset, value in {40: 255, 41: 127, 110: 0, 111: 0, 112: 0, 113: 0, 114: 192, 115: 127, 116: 0, 117: 0,
                          118: 192, 119: 127, 252: 1}.items():
        raw[offset] = value
    path = tmp_path / "nodim.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    assert nib.load(path).shape == ()
    refused(path, "declares shape \\(\\) .* but 0 voxels were read; the header is corrupt")


def test_rle_dicom_declaring_more_than_its_data_can_hold(tmp_path, huge):
    """pydicom's RLE decoder allocates every declared frame first (16384 x 128 x 128 x 2 bytes here, 27 TB in the
    fuzzer's case) before finding the data missing."""
    refused(write(tmp_path, huge, "dicom-rle-16k-frames.dcm"), "RLE data")


def test_dicom_element_length_flipped(tmp_path):
    """A flipped bit in an element's length: pydicom's read(length) allocated gigabytes from a 10 KB file."""
    raw = bytearray(open(get_testdata_file("MR_small.dcm"), "rb").read())
    index = raw.index(b"\x08\x00\x20\x00DA")  # StudyDate, explicit VR: 2-byte length after the VR
    raw[index:index + 8] = b"\x08\x00\x20\x00UN\x00\x00"  # UN takes a 4-byte length after 2 reserved bytes
    path = tmp_path / "length.dcm"
    path.write_bytes(bytes(raw[:index + 8]) + (0xF0000000).to_bytes(4, "little") + bytes(raw[index + 8:]))
    tracemalloc.start()
    try:
        read(path)
    except MedicalFileError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 1024 ** 2
        tracemalloc.stop()
    assert peak < PEAK_MB


def test_single_frame_dicom_whose_data_holds_more_frames(tmp_path):
    """Rows lowered: pydicom returns every frame the data holds, and the 3D array of a "single frame" raised an
    IndexError in the upload path (its 2D spacing read as a volume's) before the fix."""
    path = tmp_path / "rows.dcm"
    path.write_bytes(fuzz.edit_dicom(open(get_testdata_file("CT_small.dcm"), "rb").read(), [("Rows", 3)]))
    refused(path, "pixel data of shape \\(42, 3, 128\\), not the one frame of 3 x 128")


def test_nifti_with_a_non_finite_affine(tmp_path):
    """NaN in the sform: slicing raised numpy's LinAlgError (SVD did not converge) before the fix."""
    from hfseg.io import to_slices

    source = Path(nibabel.testing.data_path) / "anatomical.nii"
    path = tmp_path / "nan.nii"
    path.write_bytes(fuzz.edit_nifti(source.read_bytes(), [("srow_x", 0, float("nan")), ("sform_code", 0, 2)]))
    image = read(path)
    with pytest.raises(MedicalFileError, match="nan.nii: the affine .* non-finite"):
        to_slices(image.array, image.affine, "axial", image.name)
