"""The Space's upload path on fuzzed and mislabelled files: every case is an `Upload` or an `UploadError` naming
the file by its display name (never the server's temporary path), in bounded time and memory; files are checked
by content before decoding."""

import gzip
import logging
import time
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import nibabel.testing
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks import fuzz
from hfseg.app.uploads import Upload, UploadError, read_upload

SETTINGS = settings(derandomize=True, max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NAMES = sorted(fuzz.sources())
SHOWN = "visitor file"  # the display name; the file on the server has another


@pytest.fixture(autouse=True)
def _quiet_nibabel():
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def upload_or_refuse(path, name=None):
    """`read_upload(path, name=...)`: an `Upload` or an `UploadError` naming `name` (raised by hfseg.io as a
    `MedicalFileError`, not caught as another error), quickly and in little memory."""
    name = name or f"{SHOWN}{''.join(path.suffixes)}"
    fallbacks = fuzz.FallbackLog()  # the upload path logs a reader error that was not a MedicalFileError
    logging.getLogger("hfseg.app.uploads").addHandler(fallbacks)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = read_upload(path, name=name)
    except UploadError as err:
        message = str(err)
        assert name in message and str(path) not in message and str(path.parent) not in message, message
        result = err
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 1024 ** 2
        tracemalloc.stop()
        logging.getLogger("hfseg.app.uploads").removeHandler(fallbacks)
    assert not fallbacks.records, fallbacks.records[0].exc_info
    assert time.perf_counter() - start < 20
    assert peak < 64, f"{path.name}: {peak:.0f} MB allocated"
    if isinstance(result, Upload):
        assert result.image.ndim in (2, 3) and min(result.image.shape[:2]) >= 2
    return result


def written(tmp_path, name, data):
    path = tmp_path / f"tmp8x2k{name}"  # a temporary-looking server name
    path.write_bytes(data)
    return path


@SETTINGS
@given(name=st.sampled_from(NAMES), how=st.sampled_from(["truncate", "flip", "bytes"]), fraction=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=16))
def test_mutated_uploads(tmp_path, name, how, fraction, flips):
    data = fuzz.sources()[name]
    data = (fuzz.truncate(data, fraction) if how == "truncate" else fuzz.flip_bits(data, flips) if how == "flip"
            else fuzz.overwrite_header(data, [(int(p * 1024), b * 37) for p, b in flips]))
    upload_or_refuse(written(tmp_path, name, data))


@pytest.mark.parametrize("case", sorted(fuzz.huge_cases()))
def test_files_claiming_huge_sizes(tmp_path, case):
    result = upload_or_refuse(written(tmp_path, case, fuzz.huge_cases()[case]))
    assert isinstance(result, UploadError)


# -- checked by content -------------------------------------------------------------------------------------------
def _png(tmp_path):
    path = tmp_path / "source.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    return path.read_bytes()


def _nifti(tmp_path, name="source.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), path)
    return path.read_bytes()


@pytest.mark.parametrize("shown, content, says", [
    ("scan.dcm", "png", "holds a PNG image; rename it to its format's extension"),
    ("photo.png", "text", "not a PNG, JPEG, TIFF or BMP picture (it holds text); replace it"),
    ("photo.png", "nifti", "holds a gzip-compressed NIfTI volume; rename it to .nii.gz"),
    ("photo.png", "dicom", "holds a DICOM file; rename it to .dcm"),
    ("brain.nii", "nifti", "named as a plain NIfTI but is compressed; rename it to .nii.gz"),
    ("brain.nii.gz", "png", "holds a PNG image"),
])
def test_mislabelled_uploads_are_refused_saying_what_they_hold(tmp_path, shown, content, says):
    from pydicom.data import get_testdata_file

    data = {"png": lambda: _png(tmp_path), "text": lambda: b"patient: anonymous\nnot an image\n",
            "nifti": lambda: _nifti(tmp_path),
            "dicom": lambda: open(get_testdata_file("CT_small.dcm"), "rb").read()}[content]()
    path = tmp_path / f"upload{''.join(s for s in shown[shown.index('.'):])}"
    path.write_bytes(data)
    result = upload_or_refuse(path, name=shown)
    assert isinstance(result, UploadError) and says in str(result), str(result)


def test_right_content_under_its_name_still_reads(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(_nifti(tmp_path, "y.nii.gz"))
    assert upload_or_refuse(path, name="brain.nii.gz").num_slices == 3
    plain = tmp_path / "x.nii"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    assert upload_or_refuse(plain, name="brain.nii").num_slices == 3
    jpeg = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(jpeg, format="JPEG")  # a JPEG named .png: Pillow reads it
    assert upload_or_refuse(jpeg, name="photo.png").image.shape == (8, 8)


@SETTINGS
@given(name=st.sampled_from([n for n in NAMES if n.endswith(".dcm") or ".nii" in n]),
       field=st.integers(0, 10 ** 6), value=st.integers(0, 10 ** 6), compress=st.booleans())
def test_header_fields_of_uploads(tmp_path, name, field, value, compress):
    """Edited header fields, through the upload path's slicing of volumes as well."""
    data = fuzz.sources()[name]
    if name.endswith(".dcm"):
        edited = fuzz.edit_dicom(data, [(fuzz.DICOM_FIELDS[field % len(fuzz.DICOM_FIELDS)],
                                         fuzz.DICOM_VALUES[value % len(fuzz.DICOM_VALUES)])])
        if edited is None:
            return
        upload_or_refuse(written(tmp_path, name, edited))
        return
    edits = [(fuzz.NIFTI_FIELDS[field % len(fuzz.NIFTI_FIELDS)], value % 8,
              fuzz.NIFTI_VALUES[value % len(fuzz.NIFTI_VALUES)])]
    upload_or_refuse(written(tmp_path, f"{name.split('.')[0]}{'.nii.gz' if compress else '.nii'}",
                             fuzz.edit_nifti(data, edits, compress)))


def test_fuzzer_cases_of_the_upload_path(tmp_path):
    """The cases the fuzzer found through the upload path: a "single-frame" DICOM holding 42 frames (IndexError),
    a NIfTI with a NaN sform (LinAlgError); both reach the visitor as UploadError without a fallback."""
    from pydicom.data import get_testdata_file

    ct = fuzz.edit_dicom(open(get_testdata_file("CT_small.dcm"), "rb").read(), [("Rows", 3)])
    assert "not the one frame" in str(upload_or_refuse(written(tmp_path, "ct.dcm", ct)))
    anatomical = (Path(nib.testing.data_path) / "anatomical.nii").read_bytes()
    nan = fuzz.edit_nifti(anatomical, [("srow_x", 0, float("nan")), ("sform_code", 0, 2)])
    assert "non-finite" in str(upload_or_refuse(written(tmp_path, "nan.nii", nan)))
