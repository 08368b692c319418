"""chaos-mr-t2spir: DICOM + Ground PNG pairing, range label map, file-name slice order, patient split, errors."""

import shutil

import numpy as np
import pytest
from PIL import Image

import hfseg.data
from hfseg.data.chaos import CHAOS_ID2LABEL
from hfseg.data.common import DatasetFormatError

from .fixtures import corrupt_keeping_stamp
from .fixtures.chaos import SHAPE, write_chaos, write_dicom

MR = ("Train_Sets", "MR")


@pytest.fixture
def chaos(tmp_path):
    truth = write_chaos(tmp_path / "d")
    return tmp_path / "d", truth


def load(root, **kw):
    return hfseg.data.load("chaos-mr-t2spir", str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


def rows(split):
    return {(r["case_id"], r["slice"]): r for r in split}


def assert_matches_truth(ds, truth):
    seen = {}
    for split in ds.values():
        seen.update(rows(split))
    assert set(seen) == set(truth)
    for key, row in seen.items():
        image, labels, index = truth[key]
        assert np.asarray(row["image"]).dtype == np.uint16  # 12-bit data kept losslessly
        np.testing.assert_array_equal(np.asarray(row["image"]), image)
        np.testing.assert_array_equal(np.asarray(row["label"]), labels)
        assert row["slice_index"] == index  # file-name order, not InstanceNumber
        assert row["classes"] == sorted(np.unique(labels).tolist())


def test_features_split_and_round_trip(chaos):
    root, truth = chaos
    ds = load(root)
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) == 6 and len(ds["validation"]) == 3  # 3 patients x 3 slices, one patient held out
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    assert set(ds["train"]["case_id"]) | set(ds["validation"]["case_id"]) == {"1", "2", "5"}
    assert hfseg.data.id2label(ds) == CHAOS_ID2LABEL
    assert set(ds["train"].features) == {"image", "label", "case_id", "classes", "slice", "slice_index"}
    assert np.asarray(ds["train"][0]["image"]).shape == SHAPE  # Rows x Columns from the DICOM
    assert_matches_truth(ds, truth)
    again = load(root)
    assert again["validation"]["case_id"] == ds["validation"]["case_id"]  # seeded


@pytest.mark.parametrize("sub", [(), ("Train_Sets",), MR])
def test_data_dir_may_be_any_level(chaos, sub):
    root, truth = chaos
    assert_matches_truth(load(root.joinpath(*sub), cache_dir=str(root.parent / "c" / "-".join(sub))), truth)


def test_patients_option_and_unknown_patient(chaos):
    root, _ = chaos
    ds = load(root, patients=[1, "5"], validation_fraction=0.0)
    assert set(ds) == {"train"} and sorted(set(ds["train"]["case_id"])) == ["1", "5"]
    with pytest.raises(DatasetFormatError, match=r"Patients \['7'\] not found .* available: \['1', '2', '5'\]"):
        load(root, patients=[7])


def test_value_ranges_and_unmatched(chaos):
    root, truth = chaos
    ds = load(root, value_ranges={1: (55, 70)}, validation_fraction=0.0)
    row = ds["train"][0]
    expected = np.where(truth[(row["case_id"], row["slice"])][1] == 1, 1, 0)
    np.testing.assert_array_equal(np.asarray(row["label"]), expected)
    with pytest.raises(DatasetFormatError, match=r"IMG-0002-00001.png has values \[30, 72, 90\] outside"):
        load(root, unmatched="error", patients=[1])
    with pytest.raises(ValueError, match="overlap"):
        load(root, value_ranges={1: (55, 70), 2: (60, 80)})
    with pytest.raises(ValueError, match="class 1..4"):
        load(root, value_ranges={5: (10, 20)})


def test_signed_dicom_without_negative_values_is_accepted(chaos):
    root, truth = chaos
    image = truth[("2", "IMG-0004-00002")][0]
    write_dicom(_dicom(root, "2", "IMG-0004-00002"), image, bits_stored=16, signed=True)
    assert_matches_truth(load(root), truth)


def test_bare_dicom_without_file_meta_is_accepted(chaos):
    root, truth = chaos
    write_dicom(_dicom(root, "5", "IMG-0041-00001"), truth[("5", "IMG-0041-00001")][0], bare=True)
    assert_matches_truth(load(root), truth)


def _dicom(root, patient="1", stem="IMG-0002-00002"):
    return root.joinpath(*MR, patient, "T2SPIR", "DICOM_anon", f"{stem}.dcm")


def _ground(root, patient="1", stem="IMG-0002-00002"):
    return root.joinpath(*MR, patient, "T2SPIR", "Ground", f"{stem}.png")


def _strip_pixels(path):
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: _ground(r).unlink(), r"DICOM .*IMG-0002-00002.dcm has no Ground mask: expected .*Ground"),
        (lambda r: _dicom(r, "5", "IMG-0041-00003").unlink(),
         r"Ground mask .*IMG-0041-00003.png has no DICOM: expected .*DICOM_anon"),
        (lambda r: Image.fromarray(np.zeros((10, 14), np.uint8)).save(_ground(r)),
         r"IMG-0002-00002.dcm is \(14, 10\) but its mask .*IMG-0002-00002.png is \(10, 14\)"),
        (lambda r: _dicom(r).write_bytes(b"not a dicom at all" * 20),
         r"Cannot read .*IMG-0002-00002.dcm: corrupt or not a DICOM file"),
        (lambda r: _dicom(r).write_bytes(_dicom(r).read_bytes()[:-40]),
         r"Cannot decode the pixel data of .*IMG-0002-00002.dcm .*the file is truncated or corrupt"),
        (lambda r: _strip_pixels(_dicom(r)), r"DICOM .*IMG-0002-00002.dcm has no pixel data"),
        (lambda r: write_dicom(_dicom(r), np.full(SHAPE, -5, np.int16), signed=True),
         r"IMG-0002-00002.dcm has int16 pixel values from -5 to -5"),
        (lambda r: write_dicom(_dicom(r), np.zeros((2, *SHAPE), np.uint16)),
         r"IMG-0002-00002.dcm holds pixel data of shape \(2, 14, 10\), not one grey \(14, 10\) frame"),
        (lambda r: Image.fromarray(np.zeros(SHAPE, bool)).save(_ground(r)),
         r"Ground mask .*IMG-0002-00002.png is bool, not 8-bit grey"),
        (lambda r: _ground(r).write_bytes(b"\x89PNG\r\n\x1a\nbroken"), r"Cannot read .*IMG-0002-00002.png: corrupt"),
        (lambda r: shutil.rmtree(_ground(r).parent), r"Ground is missing: .*Test_Sets have no ground truth"),
        (lambda r: [p.unlink() for p in _dicom(r).parent.iterdir()], r"DICOM_anon holds no .dcm files"),
        (lambda r: shutil.rmtree(r.joinpath(*MR, "2", "T2SPIR")), r"Patient folder .*2 has no T2SPIR/ folder"),
    ],
)
def test_bad_input_names_the_file(chaos, damage, message):
    root, _ = chaos
    damage(root)
    with pytest.raises(DatasetFormatError, match=message):
        load(root)


def test_missing_or_wrong_folder(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "Train_Sets" / "MR").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=r"No MR/<id>/T2SPIR folder found .* pass the folder extracted"):
        load(tmp_path)


def test_skip_bad_counts_and_reports(chaos):
    root, truth = chaos
    _dicom(root).write_bytes(b"garbage")
    _ground(root, "5", "IMG-0041-00001").unlink()
    shutil.rmtree(root.joinpath(*MR, "2", "T2SPIR"))
    with pytest.warns(UserWarning) as record:
        ds = load(root, skip_bad=True, validation_fraction=0.0)
    messages = [str(w.message) for w in record]
    assert any("skipping a patient" in m and "no T2SPIR" in m for m in messages)
    assert any("skipping an item: Cannot read" in m and "IMG-0002-00002.dcm" in m for m in messages)
    assert any("skipping an item: DICOM" in m and "IMG-0041-00001.dcm has no Ground" in m for m in messages)
    assert any("skipped 2 of 6 train items" in m for m in messages)
    assert sorted(ds["train"]["slice"]) == ["IMG-0002-00001", "IMG-0002-00003", "IMG-0041-00002", "IMG-0041-00003"]


def test_second_load_is_served_from_the_cache(chaos):
    root, truth = chaos
    first = load(root)
    for path in root.joinpath(*MR).glob("*/T2SPIR/DICOM_anon/*.dcm"):
        corrupt_keeping_stamp(path)  # same size and mtime: a generator run would fail on these
    second = load(root)
    assert second["train"].cache_files[0]["filename"].startswith(str(root.parent / "cache"))
    assert_matches_truth(second, truth)
    assert second["train"]["slice"] == first["train"]["slice"]


def test_num_proc_gives_the_same_rows(chaos):
    root, truth = chaos
    ds = load(root, num_proc=2, cache_dir=str(root.parent / "cache2"))
    assert_matches_truth(ds, truth)


def test_streaming_reads_lazily_the_same_rows(chaos):
    root, truth = chaos
    stream = load(root, streaming=True, cache_dir=str(root.parent / "unused"))
    assert not (root.parent / "unused").exists()
    assert_matches_truth(stream, truth)
    assert [r["slice"] for r in stream["validation"]] == load(root)["validation"]["slice"]


# ----------------------------------------------------------------------------------------------------- volumes


def _volume_truth(truth, patient, order):
    """The truth slices of a patient in `order` (file indices), as a series volume stores them: (cols, rows, k)."""
    keys = sorted(k for k in truth if k[0] == patient)
    image = np.stack([truth[keys[i]][0].T for i in order], axis=-1).astype(np.float32)
    label = np.stack([truth[keys[i]][1].T for i in order], axis=-1)
    return image, label


def _cases(ds):
    from hfseg.data.volumes import case_arrays

    return {c.case_id: c for split in ds.values() for c in (case_arrays(split, i) for i in range(len(split)))}


def test_volumes_stack_the_series_with_each_slice_s_own_ground(chaos):
    """volumes=True: the series in hfseg.io's slice order (here InstanceNumber, which runs opposite to the file
    names), each slice labelled by the Ground PNG of its own file, transposed as the series stores it."""
    root, truth = chaos
    with pytest.warns(UserWarning, match="ordered by InstanceNumber"):
        ds = load(root, volumes=True)
    slices = load(root)
    for split in ("train", "validation"):
        assert sorted(ds[split]["case_id"]) == sorted(set(slices[split]["case_id"]))
    assert hfseg.data.id2label(ds) == CHAOS_ID2LABEL
    cases = _cases(ds)
    assert sorted(cases) == ["1", "2", "5"]
    for patient, case in cases.items():
        image, label = _volume_truth(truth, patient, [2, 1, 0])
        assert case.image.shape == (1, SHAPE[1], SHAPE[0], 3) and case.channels == ["T2SPIR"]
        np.testing.assert_array_equal(case.image[0], image)
        np.testing.assert_array_equal(case.label, label)
        assert case.spacing == (1.5, 1.5, 1.0)


def test_volumes_geometry_from_the_slice_positions(chaos):
    """With ImageOrientationPatient the series is sorted by position (z = 9 * InstanceNumber) and its third axis
    is 9 mm; the labels still follow their own files."""
    import pydicom

    root, truth = chaos
    for path in root.joinpath(*MR).glob("*/T2SPIR/DICOM_anon/*.dcm"):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.save_as(path)
    cases = _cases(load(root, volumes=True, validation_fraction=0.0))
    for patient, case in cases.items():
        image, label = _volume_truth(truth, patient, [2, 1, 0])
        np.testing.assert_array_equal(case.label, label)
        np.testing.assert_array_equal(case.image[0], image)
        assert case.spacing == (1.5, 1.5, 9.0)
        # LPS -> RAS: columns along -x, rows along -y, slices along +z from the lowest position (instance 1: 9 mm).
        np.testing.assert_allclose(case.affine, [[-1.5, 0, 0, 0], [0, -1.5, 0, 0], [0, 0, 9, 9], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: _ground(r).unlink(), r"DICOM .*IMG-0002-00002.dcm has no Ground mask: expected .*Ground"),
        (lambda r: Image.fromarray(np.zeros((10, 14), np.uint8)).save(_ground(r)),
         r"Ground mask .*IMG-0002-00002.png is \(10, 14\) but its DICOM .*IMG-0002-00002.dcm is \(14, 10\)"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*ordered by InstanceNumber")
def test_volumes_bad_input_names_the_file(chaos, damage, message):
    root, _ = chaos
    damage(root)
    with pytest.raises(DatasetFormatError, match=message):
        load(root, volumes=True)
