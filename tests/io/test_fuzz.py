"""Fuzzed real files through `hfseg.io.read` and a dataset loader: truncations, bit flips, header bytes and header
fields; every case is read or refused with `MedicalFileError`, in bounded time and memory. The mutations are
`benchmarks.fuzz`'s (its longer run draws them at random; here hypothesis draws them, derandomized)."""

import logging
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import hfseg.data
from benchmarks import fuzz
from hfseg.data import DatasetFormatError
from hfseg.io import MedicalFileError, MedicalImage, read

SETTINGS = settings(derandomize=True, max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NAMES = sorted(fuzz.sources())
SECONDS = 20.0  # per case; a refusal takes milliseconds, a hang would not end
PEAK_MB = 64.0  # per case; the sources decode to under 2 MB, a declared-size allocation would be far more


@pytest.fixture(autouse=True)
def _quiet_nibabel():
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # it logs every odd header field of a mutated file
    yield
    logger.setLevel(level)


def read_or_refuse(path):
    """`read(path)`: a well-formed image or a `MedicalFileError`, within `SECONDS` and `PEAK_MB`."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = read(path)
    except MedicalFileError as err:
        assert path.name in str(err)
        image = None
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 1024 ** 2
        tracemalloc.stop()
    assert time.perf_counter() - start < SECONDS
    assert peak < PEAK_MB, f"{path.name}: {peak:.0f} MB allocated"
    if image is not None:
        assert isinstance(image, MedicalImage) and image.array.dtype == np.float32
        assert image.array.ndim in (2, 3) and image.array.size > 0 and image.array.dtype.isnative
        assert np.isfinite(image.array).all()  # NaN/inf (a damaged scaling) are replaced, with a warning
    return image


def written(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_sources_are_real_files():
    assert {".dcm", ".nii", ".nii.gz", ".png", ".tif"} <= {n[n.index("."):] for n in NAMES}
    assert len([n for n in NAMES if n.endswith(".dcm")]) >= 3 and len([n for n in NAMES if ".nii" in n]) >= 3


@SETTINGS
@given(name=st.sampled_from(NAMES), fraction=st.floats(0.0, 1.0))
def test_truncated_files(tmp_path, name, fraction):
    read_or_refuse(written(tmp_path, f"cut-{name}", fuzz.truncate(fuzz.sources()[name], fraction)))


@SETTINGS
@given(name=st.sampled_from(NAMES),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1, max_size=32))
def test_bit_flips(tmp_path, name, flips):
    read_or_refuse(written(tmp_path, f"flip-{name}", fuzz.flip_bits(fuzz.sources()[name], flips)))


@SETTINGS
@given(name=st.sampled_from(NAMES),
       edits=st.lists(st.tuples(st.integers(0, 1023), st.sampled_from([0, 1, 0x7F, 0x80, 0xFF])), min_size=1,
                      max_size=4))
def test_header_bytes(tmp_path, name, edits):
    read_or_refuse(written(tmp_path, f"bytes-{name}", fuzz.overwrite_header(fuzz.sources()[name], edits)))


@SETTINGS
@given(name=st.sampled_from([n for n in NAMES if n.endswith(".dcm")]),
       edits=st.lists(st.tuples(st.sampled_from(fuzz.DICOM_FIELDS), st.sampled_from(fuzz.DICOM_VALUES)),
                      min_size=1, max_size=3))
def test_dicom_fields(tmp_path, name, edits):
    data = fuzz.edit_dicom(fuzz.sources()[name], edits)
    if data is not None:
        read_or_refuse(written(tmp_path, f"fields-{name}", data))


@SETTINGS
@given(name=st.sampled_from([n for n in NAMES if ".nii" in n]),
       edits=st.lists(st.tuples(st.sampled_from(fuzz.NIFTI_FIELDS), st.integers(0, 7),
                                st.sampled_from(fuzz.NIFTI_VALUES)), min_size=1, max_size=3),
       compress=st.booleans())
def test_nifti_fields(tmp_path, name, edits, compress):
    data = fuzz.edit_nifti(fuzz.sources()[name], edits, compress)
    read_or_refuse(written(tmp_path, f"fields-{name.split('.')[0]}{'.nii.gz' if compress else '.nii'}", data))


@SETTINGS
@given(width=st.sampled_from([0, 1, 40, 60000, 2 ** 31 - 1]), height=st.sampled_from([0, 1, 48, 60000]),
       depth=st.sampled_from([1, 8, 16]), colour=st.sampled_from([0, 2, 3, 6]))
def test_png_headers(tmp_path, width, height, depth, colour):
    read_or_refuse(written(tmp_path, "ihdr.png", fuzz.png_claiming(width, height, depth, colour)))


def test_unmutated_sources_read(tmp_path):
    """The fuzz starts from files hfseg reads (4D NIfTI aside: refused without volume=)."""
    for name, data in fuzz.sources().items():
        path = written(tmp_path, name, data)
        if name in ("functional.nii", "example_nifti2.nii.gz"):
            with pytest.raises(MedicalFileError, match="4D"):
                read(path)
        else:
            assert read_or_refuse(path) is not None, name


# -- a dataset loader on a folder with one mutated file ----------------------------------------------------------------
def test_image_mask_folder_with_a_damaged_image(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(4):
        Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(root / "images" / f"case{k}.png")
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(root / "masks" / f"case{k}_mask.png")
    damaged = root / "images" / "case2.png"
    damaged.write_bytes(fuzz.truncate(damaged.read_bytes(), 0.5))
    options = dict(mask_suffix="_mask", value_map={0: 0, 255: 1}, validation_fraction=0.0)
    with pytest.raises(DatasetFormatError, match="case2.png"):
        hfseg.data.load("image-mask-folder", str(root), cache_dir=str(tmp_path / "c1"), **options)
    with pytest.warns(UserWarning, match="case2.png"):
        loaded = hfseg.data.load("image-mask-folder", str(root), cache_dir=str(tmp_path / "c2"), skip_bad=True,
                                 **options)
    assert sum(len(split) for split in loaded.values()) == 3
