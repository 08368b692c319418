"""Files nobody here wrote: every DICOM file and folder pydicom ships and every file in nibabel's test data gives a
`MedicalImage` or a `MedicalFileError`, and known files read exactly as pydicom and nibabel read them."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import warnings
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIBABEL_DATA
from pydicom.pixels import apply_modality_lut

from hfseg.io import MedicalFileError, MedicalImage, read

from .files import PHILIPS_ENHANCED, philips_subset, write_series

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SECONDS_PER_FILE = 20


@pytest.fixture(scope="module")
def pydicom_files() -> dict[str, Path]:
    """pydicom's test files and folders by path under its test_files folder (downloaded ones by name; those whose
    download fails, offline, are left out)."""
    root = Path(pydicom.data.data_manager.DATA_ROOT) / "test_files"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One or more download failures occurred"
        paths = [Path(p) for p in pydicom.data.get_testdata_files()]
    return {(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name): p for p in paths if p.exists()}


def nibabel_files() -> list[Path]:
    return sorted(p for p in Path(NIBABEL_DATA).rglob("*") if p.is_file())


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    """Fail instead of hanging (where SIGALRM exists)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def _hang(signum, frame):
        raise TimeoutError(f"reading {what} took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_or_refuse(path: Path) -> MedicalImage | MedicalFileError:
    """`read(path)` (a 4D NIfTI: its first volume, after checking the refusal says how to choose one)."""
    with time_limit(SECONDS_PER_FILE, path), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read(path)
        except MedicalFileError as err:
            if "volume=N" not in str(err):
                return err
        return read(path, volume=0)


def check_image(image: MedicalImage, path: Path) -> None:
    """What every `MedicalImage` promises, whatever the file."""
    array = image.array
    assert isinstance(array, np.ndarray) and type(array) is np.ndarray, path
    assert array.dtype == np.float32 and array.dtype.isnative, (path, array.dtype)
    assert np.isfinite(array).all(), path
    assert array.ndim in (2, 3) and array.size > 0, (path, array.shape)
    assert image.kind in ("dicom", "nifti") and image.path == path
    if image.affine is not None:
        assert image.affine.shape == (4, 4) and np.isfinite(image.affine).all(), path
    if image.spacing is not None:
        assert all(s > 0 for s in image.spacing), (path, image.spacing)
    assert image.is_volume == (array.ndim == 3 and image.meta.get("samples_per_pixel", 1) == 1), path


def test_every_shipped_file_reads_or_is_refused(pydicom_files):
    counts: Counter = Counter()
    outcome: dict[str, str] = {}
    for name, path in sorted(pydicom_files.items()):
        kind = "dicom folder" if path.is_dir() else "dicom file"
        result = read_or_refuse(path)
        if isinstance(result, MedicalImage):
            check_image(result, path)
            assert result.kind == "dicom", path
        counts[kind, isinstance(result, MedicalImage)] += 1
        outcome[name] = "read" if isinstance(result, MedicalImage) else "refused"
    for path in nibabel_files():
        result = read_or_refuse(path)
        if isinstance(result, MedicalImage):
            check_image(result, path)
        kind = result.kind if isinstance(result, MedicalImage) else "nibabel file"
        counts[kind, isinstance(result, MedicalImage)] += 1
        outcome[path.relative_to(NIBABEL_DATA).as_posix()] = "read" if isinstance(result, MedicalImage) else "refused"
    print("\nreal files:", {f"{kind} {'read' if ok else 'refused'}": n for (kind, ok), n in sorted(counts.items())})
    dicom_read = counts["dicom file", True] + counts["dicom folder", True] + counts["dicom", True]
    assert dicom_read >= 90, counts
    assert counts["dicom folder", True] >= 3, counts  # dicomdirtests' one-series folders (CT2, CT5N, ...)
    assert counts["nifti", True] >= 7, counts  # 3D and (first volume of) 4D, NIfTI-1 and -2
    # Files that must read, and files that must be refused (not images, or broken).
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "rtdose.dcm", "SC_rgb_jpeg.dcm",
                 "dicomdirtests/98892001/CT5N", "anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz",
                 "0.dcm"):
        assert outcome.get(name) == "read", name
    for name in ("rtplan.dcm", "rtstruct.dcm", "MR_truncated.dcm", "waveform_ecg.dcm", "README.txt", "analyze.hdr",
                 "dicomdirtests", "row_major.dconn.nii"):
        assert outcome.get(name) == "refused", name


def test_truncated_dicom_names_the_problem(pydicom_files):
    with pytest.raises(MedicalFileError, match="MR_truncated.dcm.*truncated or corrupt"):
        read(pydicom_files["MR_truncated.dcm"])


# -- known DICOM files, exactly ----------------------------------------------------------------------------------
def test_ct_small_in_hounsfield_units(pydicom_files):
    path = pydicom_files["CT_small.dcm"]
    ds = pydicom.dcmread(path)
    image = read(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    assert image.array.dtype == np.float32 and image.array.shape == (128, 128) and not image.is_volume
    np.testing.assert_array_equal(image.array, expected.astype(np.float32))
    assert image.array.min() == ds.pixel_array.min() - 1024 < 0  # HU, not the stored values (>= 128)
    assert image.modality == "CT" and image.spacing == pytest.approx((0.661468, 0.661468))
    stored = read(path, dtype="stored")
    assert stored.array.dtype == ds.pixel_array.dtype
    np.testing.assert_array_equal(stored.array, ds.pixel_array)


def test_ct_small_geometry_matches_nibabel(pydicom_files):
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    path = pydicom_files["CT_small.dcm"]
    image = read(path)
    reference = LPS_TO_RAS @ wrapper_from_data(pydicom.dcmread(path)).affine  # (row, column, slice) to RAS+
    np.testing.assert_allclose(image.affine[:, [0, 1, 3]], reference[:, [0, 1, 3]], atol=1e-6)


def canonical_affine(affine, shape):
    """The affine of the same voxel grid with its axes permuted and flipped to the closest RAS+ order."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    return affine @ inv_ornt_aff(io_orientation(affine), shape)


def same_pixels(a: MedicalImage, b: MedicalImage) -> None:
    assert a.array.shape == b.array.shape
    np.testing.assert_array_equal(a.array, b.array)
    assert a.array.dtype.isnative and b.array.dtype.isnative


def test_big_endian_equals_little_endian(pydicom_files):
    little, big = pydicom_files["MR_small.dcm"], pydicom_files["MR_small_bigendian.dcm"]
    same_pixels(read(little), read(big))
    same_pixels(read(little, dtype="stored"), read(big, dtype="stored"))
    np.testing.assert_allclose(read(little).affine, read(big).affine)


TWINS = [  # (compressed or re-encoded, uncompressed twin)
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
    ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE
    ("MR_small_expb.dcm", "MR_small.dcm"),  # explicit big endian
    ("MR_small_implicit.dcm", "MR_small.dcm"),
    ("rtdose_rle.dcm", "rtdose.dcm"),  # RLE, multi-frame
    ("rtdose_rle_1frame.dcm", "rtdose_1frame.dcm"),
    ("rtdose_expb.dcm", "rtdose.dcm"),
    ("liver_expb_1frame.dcm", "liver_1frame.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),  # multi-frame (pydicom-data, when downloaded)
    ("emri_small_RLE.dcm", "emri_small.dcm"),
    ("emri_small_big_endian.dcm", "emri_small.dcm"),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
]


@pytest.mark.parametrize(("encoded", "plain"), TWINS, ids=[t[0] for t in TWINS])
def test_compressed_equals_uncompressed_twin(pydicom_files, encoded, plain):
    if encoded not in pydicom_files or plain not in pydicom_files:
        pytest.skip(f"{encoded} or {plain} not available (pydicom-data download)")
    a, b = read(pydicom_files[encoded]), read(pydicom_files[plain])
    same_pixels(a, b)
    reference = pydicom.dcmread(pydicom_files[plain]).pixel_array
    assert a.array.size == reference.size  # the twin's own pixel count: nothing dropped or added
    if a.affine is not None:
        np.testing.assert_allclose(a.affine, b.affine)


def test_multiframe_rle_matches_pydicom(pydicom_files):
    path = pydicom_files["rtdose_rle.dcm"]
    image = read(path, dtype="stored")
    frames = pydicom.dcmread(path).pixel_array  # (frames, rows, columns), already in position order
    assert image.is_volume and image.array.shape == (10, 10, 15)
    np.testing.assert_array_equal(image.array, frames.transpose(2, 1, 0))


@pytest.fixture(scope="module")
def philips_enhanced(tmp_path_factory) -> Path:
    """nibabel's Philips Enhanced MR Image Storage file (176 frames with per-frame functional groups)."""
    source = PHILIPS_ENHANCED
    if not source.exists():
        pytest.skip("nibabel's nicom test data is not installed")
    path = tmp_path_factory.mktemp("enhanced") / "philips_mprage.dcm"
    with gzip.open(source) as packed, open(path, "wb") as handle:
        shutil.copyfileobj(packed, handle)
    return path


def _nibabel_multiframe_affine_is_reliable() -> bool:
    """nibabel 5.3 fixed its multi-frame DICOM reader (frame order and origin of Philips enhanced files)."""
    from packaging.version import Version

    return Version(nib.__version__) >= Version("5.3")


def test_enhanced_multiframe_geometry_matches_nibabel(philips_enhanced):
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    ds = pydicom.dcmread(philips_enhanced)
    assert ds.SOPClassUID.name == "Enhanced MR Image Storage" and int(ds.NumberOfFrames) == 176
    image = read(philips_enhanced)
    assert image.is_volume and image.array.shape == (256, 256, 176) and image.modality == "MR"
    if _nibabel_multiframe_affine_is_reliable():
        reference = LPS_TO_RAS @ wrapper_from_data(ds).affine  # nibabel's (row, column, slice) to RAS+
        # One voxel grid: the same affine once both are reoriented to the closest RAS+ order.
        np.testing.assert_allclose(canonical_affine(image.affine, image.array.shape),
                                   canonical_affine(reference, (256, 256, 176)), atol=5e-3)
    # And ImagePositionPatient of every frame is a voxel centre of the volume's slice axis.
    normal_step = image.affine[:3, 2]
    positions = [LPS_TO_RAS[:3, :3] @ [float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient]
                 for g in ds.PerFrameFunctionalGroupsSequence]
    for k in (0, 100, 175):
        np.testing.assert_allclose(image.affine[:3, 3] + k * normal_step, positions[k], atol=1e-3)
    assert image.spacing == pytest.approx((1.0, 1.0, 1.0), abs=1e-3)


def test_enhanced_multiframe_shuffled_frames_and_per_frame_scaling(philips_enhanced, tmp_path):
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    count = 6
    slopes = 1.0 + 0.5 * np.arange(count)  # of each original frame
    path = tmp_path / "shuffled.dcm"
    stored_order, pixels = philips_subset(path, count, slopes=slopes)
    image = read(path)
    # The original frames run along the slice normal, so the volume is original frame 0, 1, 2, ...
    assert [int(stored_order[f]) for f in image.meta["frame_order"]] == list(range(count))
    for original in range(count):
        f = int(np.flatnonzero(stored_order == original)[0])
        np.testing.assert_allclose(image.array[:, :, original], pixels[f].T * slopes[original], rtol=1e-6)
    if not _nibabel_multiframe_affine_is_reliable():
        return
    # Stored values against nibabel's multi-frame reader (which sorts by dimension index), on one world grid.
    stored = read(path, dtype="stored")
    wrapper = wrapper_from_data(pydicom.dcmread(path))
    ours = nib.as_closest_canonical(nib.Nifti1Image(stored.array, stored.affine))
    theirs = nib.as_closest_canonical(nib.Nifti1Image(wrapper.get_data(), LPS_TO_RAS @ wrapper.affine))
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)

    # Two frames at one position: two volumes in one file (echoes, time points), refused.
    ds = pydicom.dcmread(path)
    groups = ds.PerFrameFunctionalGroupsSequence
    groups[1].PlanePositionSequence[0].ImagePositionPatient = groups[0].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(path)
    with pytest.raises(MedicalFileError, match="more than one volume"):
        read(path)


# -- known NIfTI files -------------------------------------------------------------------------------------------
def test_big_endian_nifti_equals_nibabel():
    path = Path(NIBABEL_DATA) / "anatomical.nii"
    reference = nib.load(path)
    assert reference.header.endianness == ">"
    image = read(path)
    assert image.kind == "nifti" and image.array.dtype == np.float32 and image.array.dtype.isnative
    np.testing.assert_array_equal(image.array, reference.get_fdata().astype(np.float32))
    np.testing.assert_allclose(image.affine, reference.affine)
    assert image.spacing == pytest.approx(reference.header.get_zooms())
    stored = read(path, dtype="stored")
    assert stored.array.dtype == np.int16 and stored.array.dtype.isnative
    np.testing.assert_array_equal(stored.array, np.asanyarray(reference.dataobj))


def test_4d_nifti_needs_a_volume():
    path = Path(NIBABEL_DATA) / "example4d.nii.gz"
    with pytest.raises(MedicalFileError, match=r"4D, 2 volumes.*volume=N.*0 to 1"):
        read(path)
    reference = nib.load(path).get_fdata()
    for volume in (0, 1, -1):
        np.testing.assert_array_equal(read(path, volume=volume).array, reference[..., volume].astype(np.float32))
    with pytest.raises(MedicalFileError, match="volume 2 does not exist"):
        read(path, volume=2)


def test_nifti2_file():
    path = Path(NIBABEL_DATA) / "example_nifti2.nii.gz"
    reference = nib.load(path)
    assert isinstance(reference, nib.Nifti2Image)
    image = read(path, volume=1)
    np.testing.assert_array_equal(image.array, reference.get_fdata()[..., 1].astype(np.float32))
    np.testing.assert_allclose(image.affine, reference.affine)


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "standard.nii.gz"])
def test_gzipped_equals_plain(tmp_path, name):
    source = Path(NIBABEL_DATA) / name
    if name.endswith(".gz"):
        plain, packed = tmp_path / name[:-3], source
        with gzip.open(source) as handle:
            plain.write_bytes(handle.read())
    else:
        plain, packed = source, tmp_path / f"{name}.gz"
        packed.write_bytes(gzip.compress(source.read_bytes()))
    volume = 0 if "4d" in name else None
    a, b = read(plain, volume=volume), read(packed, volume=volume)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.stem == b.stem == name.split(".")[0]


def test_cifti_is_refused():
    with pytest.raises(MedicalFileError, match="row_major.dconn.nii"):
        read(Path(NIBABEL_DATA) / "row_major.dconn.nii")


def test_unsupported_formats_list_what_is_supported():
    for name in ("test.mgz", "tiny.mnc", "T1.PAR", "analyze.hdr"):
        with pytest.raises(MedicalFileError, match="unsupported file type.*NIfTI"):
            read(Path(NIBABEL_DATA) / name)


@pytest.mark.skipif(not os.path.exists(NIBABEL_DATA), reason="nibabel test data missing")
def test_nibabel_dicom_files_read():
    image = read(Path(NIBABEL_DATA) / "0.dcm")
    ds = pydicom.dcmread(Path(NIBABEL_DATA) / "0.dcm")
    np.testing.assert_array_equal(image.array, apply_modality_lut(ds.pixel_array, ds).astype(np.float32))


# -- damaged copies ----------------------------------------------------------------------------------------------
DAMAGED_SOURCES = ["CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                   "rtdose.dcm", "SC_rgb_jpeg.dcm", "MR_small_bigendian.dcm", "examples_palette.dcm",
                   "anatomical.nii", "example4d.nii.gz", "standard.nii.gz"]


def damage(raw: bytes, rng: np.random.Generator) -> bytes:
    """Cut short, some bytes changed (most in the header), or a run of bytes overwritten."""
    raw = bytearray(raw)
    how = rng.integers(0, 3)
    if how == 0:
        return bytes(raw[: rng.integers(0, len(raw))])
    if how == 1:
        for _ in range(rng.integers(1, 20)):
            raw[rng.integers(0, min(len(raw), 3000))] = rng.integers(0, 256)
    else:
        start = rng.integers(0, min(2000, len(raw)))
        raw[start:start + 8] = rng.bytes(8)
    return bytes(raw)


def test_damaged_copies_read_or_are_refused(pydicom_files, tmp_path):
    """Damaged headers fail where pydicom first converts an element, not only where the file is opened."""
    rng = np.random.default_rng(0)
    sources = [pydicom_files.get(n) or Path(NIBABEL_DATA) / n for n in DAMAGED_SOURCES]
    refused = 0
    for trial in range(330):
        source = sources[trial % len(sources)]
        path = tmp_path / f"{trial}_{source.name}"
        path.write_bytes(damage(source.read_bytes(), rng))
        with time_limit(SECONDS_PER_FILE, path), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                check_image(read(path, volume=0 if "4d" in path.name else None), path)
            except MedicalFileError as err:
                assert path.name in str(err)
                refused += 1
        path.unlink()
    assert 30 < refused < 330  # some damage is harmless (pixel values), much is not


def test_damaged_slice_in_a_series_is_named(tmp_path):
    rng = np.random.default_rng(1)
    series = write_series(tmp_path / "series", n=3, size=16)
    pristine = {p: p.read_bytes() for p in series.files}
    for trial in range(40):
        victim = series.files[trial % 3]
        victim.write_bytes(damage(pristine[victim], rng))
        with time_limit(SECONDS_PER_FILE, victim), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                read(series.folder)
            except MedicalFileError as err:
                names = [p.name for p in series.files]
                assert any(name in str(err) for name in names) or str(series.folder) in str(err), err
        victim.write_bytes(pristine[victim])
