"""oral-epithelium: both layouts, grades, grouping by mouse, round trip, every bad input, cache, num_proc, streaming."""

import numpy as np
import pytest
from PIL import Image

import hfseg.data
from hfseg.data import DatasetFormatError

from .fixtures import corrupt_keeping_stamp
from .fixtures.oral_epithelium import GRADES, SIZE, write_archive, write_study

ARCHIVE_MASKS = "Gold_Standard_Semantic_Segmentation"


def load(root, **kw):
    return hfseg.data.load("oral-epithelium", str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


def rows_by_key(split):
    """Rows keyed by (case_id, image bytes): the fixture's truth is matched by case and content, not order."""
    return {(row["case_id"], np.asarray(row["image"]).tobytes()): row for row in split}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("oral") / "d"
    truth = write_archive(root)
    return root, truth, load(root, validation_fraction=0.3)


def test_archive_features_splits_and_round_trip(archive):
    root, truth, ds = archive
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) == len(ds["validation"]) == 8  # 2 mice per grade, one per grade held out
    assert set(ds["train"].features) == {"image", "label", "case_id", "classes", "grade"}
    assert ds["train"].features["grade"].names == list(GRADES)
    assert hfseg.data.id2label(ds) == {0: "background", 1: "nucleus"}
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    assert sorted(ds["validation"]["grade"]) == [0, 0, 1, 1, 2, 2, 3, 3]  # stratified by grade
    rows = {**rows_by_key(ds["train"]), **rows_by_key(ds["validation"])}
    assert len(rows) == len(truth) == 16
    for stem, t in truth.items():  # roi1 masks are 1-channel PNGs, roi2 masks 3-channel
        row = rows[(t.case_id, t.image.tobytes())]
        label = np.asarray(row["label"])
        assert label.shape == (SIZE[1], SIZE[0]) and label.dtype == np.uint8
        np.testing.assert_array_equal(label, t.label, err_msg=stem)
        assert row["grade"] == t.grade and row["classes"] == [0, 1]
        assert np.asarray(row["image"]).shape == (SIZE[1], SIZE[0], 3)


def test_same_seed_same_split_and_layout_forced(archive):
    root, _, ds = archive
    again = load(root, validation_fraction=0.3, layout="archive")
    assert again["validation"]["case_id"] == ds["validation"]["case_id"]
    with pytest.raises(ValueError, match="layout must be"):
        load(root, layout="zenodo")


def test_study_layout_keeps_its_test_split(tmp_path):
    truth = write_study(tmp_path / "d", mask_suffix="_mask")
    with pytest.warns(UserWarning, match=r"does not match 1 stem.*'tile_007'"):
        ds = load(tmp_path / "d", validation_fraction=0.25)
    assert set(ds) == {"train", "validation", "test"}
    assert len(ds["train"]) + len(ds["validation"]) == 9 and len(ds["test"]) == 3
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    for split in ("train", "test"):
        rows = rows_by_key(ds["test"]) if split == "test" else {**rows_by_key(ds["train"]),
                                                                  **rows_by_key(ds["validation"])}
        for t in truth[split].values():
            row = rows[(t.case_id, t.image.tobytes())]
            np.testing.assert_array_equal(np.asarray(row["label"]), t.label)
            assert row["grade"] == t.grade
    assert -1 in ds["test"]["grade"] and "tile_100" in ds["test"]["case_id"]


def test_study_layout_same_stem_and_explicit_suffix(tmp_path):
    write_study(tmp_path / "a")
    with pytest.warns(UserWarning, match="group_pattern"):
        assert len(load(tmp_path / "a", mask_suffix="")["test"]) == 3
    write_study(tmp_path / "b", mask_suffix="-gt")
    with pytest.raises(DatasetFormatError, match=r"image\(s\) without a mask.*mask_suffix=None"):
        load(tmp_path / "b")
    with pytest.warns(UserWarning, match="group_pattern"):
        assert len(load(tmp_path / "b", mask_suffix="-gt")["test"]) == 3


@pytest.mark.filterwarnings("ignore:oral-epithelium. group_pattern")
def test_study_half_test_pair_is_an_error(tmp_path):
    write_study(tmp_path / "d")
    for path in (tmp_path / "d" / "Test Masks").iterdir():
        path.unlink()
    (tmp_path / "d" / "Test Masks").rmdir()
    with pytest.raises(DatasetFormatError, match=r"Test Masks is missing"):
        load(tmp_path / "d")


def test_threshold_and_invert(tmp_path):
    truth = write_archive(tmp_path / "d", mice=1, rois=1)
    ds = load(tmp_path / "d", invert=True, validation_fraction=0.0)
    rows = rows_by_key(ds["train"])
    for t in truth.values():
        np.testing.assert_array_equal(np.asarray(rows[(t.case_id, t.image.tobytes())]["label"]), 1 - t.label)


def _overwrite(path, array):
    Image.fromarray(array).save(path)


H, W = SIZE[1], SIZE[0]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")  # PIL's own warning on the broken TIFF
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / ARCHIVE_MASKS / "mild" / "mild-01-roi1.png").unlink(),
         r"image\(s\) without a mask, e.g. .*mild-01-roi1.tif"),
        (lambda r: (r / "Original ROI images" / "severe" / "severe-02-roi2.tif").unlink(),
         r"mask\(s\) without an image, e.g. .*severe-02-roi2.png"),
        (lambda r: _overwrite(r / ARCHIVE_MASKS / "healthy" / "healthy-01-roi1.png", np.zeros((5, 7), np.uint8)),
         r"healthy-01-roi1.tif is \(12, 16\) but its mask .* is \(5, 7\)"),
        (lambda r: _overwrite(r / ARCHIVE_MASKS / "mild" / "mild-02-roi1.png",
                              np.arange(H * W, dtype=np.uint8).reshape(H, W)),
         r"mild-02-roi1.png has 192 distinct values .* strict_binary=False"),
        (lambda r: _overwrite(r / ARCHIVE_MASKS / "moderate" / "moderate-01-roi2.png",
                              np.dstack([np.full((H, W), v, np.uint8) for v in (255, 0, 0)])),
         r"moderate-01-roi2.png has differing colour channels"),
        (lambda r: (r / "Original ROI images" / "healthy" / "healthy-02-roi1.tif").write_bytes(b"II*\x00broken"),
         r"Cannot read .*healthy-02-roi1.tif: corrupt"),
        (lambda r: (r / "Original ROI images" / "carcinoma").mkdir(), r"Unknown grade folder\(s\) \['carcinoma'\]"),
        (lambda r: [p.unlink() for p in (r / ARCHIVE_MASKS / "severe").iterdir()],
         r"Folder .*severe holds no images"),
        (lambda r: (r / ARCHIVE_MASKS).rename(r / "masks"), r"Gold_Standard_Semantic_Segmentation is missing"),
    ],
)
def test_bad_input_names_the_file(tmp_path, damage, message):
    write_archive(tmp_path / "d")
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load(tmp_path / "d")


def test_missing_and_ambiguous_layouts(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="holds neither 'Original ROI images/<grade>/'"):
        load(tmp_path / "empty")
    write_archive(tmp_path / "both", mice=1, rois=1)
    write_study(tmp_path / "both")
    with pytest.raises(DatasetFormatError, match="pass layout='archive' or layout='study'"):
        load(tmp_path / "both")


def test_unmatched_stems_fall_back_to_the_stem(tmp_path):
    write_archive(tmp_path / "d", mice=1, rois=2)
    with pytest.warns(UserWarning, match=r"does not match 8 stem\(s\)"):
        ds = load(tmp_path / "d", group_pattern=r"^mouse(\d+)", validation_fraction=0.0)
    assert "healthy-01-roi2" in ds["train"]["case_id"]


def test_skip_bad_counts_and_reports(tmp_path):
    write_archive(tmp_path / "d", rois=1)
    (tmp_path / "d" / "Original ROI images" / "mild" / "mild-01-roi1.tif").write_bytes(b"not a tiff")
    with pytest.warns(UserWarning) as record:
        ds = load(tmp_path / "d", skip_bad=True, validation_fraction=0.0)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "mild-01-roi1.tif" in m for m in messages)
    assert any("skipped 1 of 8 train items" in m for m in messages)
    assert len(ds["train"]) == 7


def test_second_load_comes_from_the_cache(tmp_path):
    write_archive(tmp_path / "d", rois=1)
    first = load(tmp_path / "d")
    for path in (tmp_path / "d" / "Original ROI images").rglob("*.tif"):
        corrupt_keeping_stamp(path)  # same size and mtime: a generator run would fail on these
    again = load(tmp_path / "d")
    assert again["train"]["case_id"] == first["train"]["case_id"]
    np.testing.assert_array_equal(np.asarray(again["validation"][0]["image"]),
                                  np.asarray(first["validation"][0]["image"]))


def test_num_proc_gives_the_same_rows(archive, tmp_path):
    root, _, ds = archive
    two = load(root, validation_fraction=0.3, num_proc=2, cache_dir=str(tmp_path / "cache2"))
    for split in ds:
        one_rows, two_rows = rows_by_key(ds[split]), rows_by_key(two[split])
        assert one_rows.keys() == two_rows.keys()
        for key, row in one_rows.items():
            np.testing.assert_array_equal(np.asarray(row["label"]), np.asarray(two_rows[key]["label"]))
            assert row["grade"] == two_rows[key]["grade"]


def test_streaming_reads_lazily_the_same_rows(archive, tmp_path):
    root, _, ds = archive
    stream = load(root, validation_fraction=0.3, streaming=True, cache_dir=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()
    rows = rows_by_key(stream["validation"])
    assert rows.keys() == rows_by_key(ds["validation"]).keys()
    for key, row in rows_by_key(ds["validation"]).items():
        np.testing.assert_array_equal(np.asarray(rows[key]["label"]), np.asarray(row["label"]))
