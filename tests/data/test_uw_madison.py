"""uw-madison-gi: train.csv RLEs + 16-bit scans, W/H from the name, overlap policies, case split, errors."""

import csv

import numpy as np
import pytest
from PIL import Image

import hfseg.data
from hfseg.data.common import DatasetFormatError
from hfseg.data.rle import rle_decode
from hfseg.data.uw_madison import UW_ID2LABEL

from .fixtures.uw_madison import CLASSES, HAND_WRITTEN, OVERLAPPING, write_uw_madison


@pytest.fixture
def uw(tmp_path):
    truth = write_uw_madison(tmp_path / "d")
    return tmp_path / "d", truth


def load(root, **kw):
    return hfseg.data.load("uw-madison-gi", str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


def painted(masks, priority=("stomach", "large_bowel", "small_bowel")):
    """The expected class map: classes painted from the lowest priority up."""
    label = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for name in reversed(priority):
        label[masks[name] == 1] = CLASSES.index(name) + 1
    return label


def all_rows(ds):
    return {row["slice"]: row for split in ds.values() for row in split}


def assert_matches_truth(ds, truth, group_by="case"):
    rows = all_rows(ds)
    assert set(rows) == set(truth)
    for slice_id, row in rows.items():
        known = truth[slice_id]
        image = np.asarray(row["image"])
        assert image.dtype == np.uint16
        np.testing.assert_array_equal(image, known["image"])
        np.testing.assert_array_equal(np.asarray(row["label"]), painted(known["masks"]))
        assert row["case_id"] == (known["case"] if group_by == "case" else f"{known['case']}_{known['day']}")
        assert row["pixel_spacing"] == [known["spacing"][1], known["spacing"][0]]


def edit_csv(root, slice_id, cls, rle=None, drop=False):
    with open(root / "train.csv", newline="") as f:
        rows = list(csv.reader(f))
    out = [r for r in rows if not (drop and r[:2] == [slice_id, cls])]
    for r in out:
        if r[:2] == [slice_id, cls] and rle is not None:
            r[2] = rle
    with open(root / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows(out)


def scan(root, slice_id):
    case, day, _, number = slice_id.split("_")
    return next((root / "train" / case / f"{case}_{day}" / "scans").glob(f"slice_{number}_*.png"))


def test_features_split_and_round_trip(uw):
    root, truth = uw
    ds = load(root)
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) == 12 and len(ds["validation"]) == 6  # 3 cases x 2 days x 3 slices, one case held out
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    assert hfseg.data.id2label(ds) == UW_ID2LABEL
    assert set(ds["train"].features) == {"image", "label", "case_id", "classes", "slice", "pixel_spacing"}
    assert_matches_truth(ds, truth)
    rows = all_rows(ds)
    assert np.asarray(rows["case2_day1_slice_0001"]["image"]).shape == (12, 14)  # H rows x W cols from the name
    assert rows["case2_day3_slice_0002"]["pixel_spacing"] == [1.63, 1.63]
    assert rows["case2_day1_slice_0001"]["classes"] == [0]
    assert rows["case2_day1_slice_0002"]["classes"] == [0, 1, 2, 3]
    assert load(root)["validation"]["slice"] == ds["validation"]["slice"]  # seeded


def test_hand_written_rle_decodes_to_the_hand_written_pixels(uw):
    root, _ = uw
    label = np.asarray(all_rows(load(root))[HAND_WRITTEN[0]]["label"])
    small_bowel = np.zeros((12, 14), np.uint8)
    small_bowel[2, 1:5] = small_bowel[3, 1:5] = 1  # "30 4 44 4", row-major, 1-indexed
    np.testing.assert_array_equal(label == 2, small_bowel == 1)


def test_overlap_policies(uw):
    root, truth = uw
    label = lambda **kw: np.asarray(all_rows(load(root, **kw))[OVERLAPPING]["label"])  # noqa: E731
    default = label()
    assert default[5, 6] == 3 and default[7, 6] == 1 and default[9, 9] == 2 and default[4, 8] == 3
    background = label(overlap="background")
    assert background[5, 6] == 0 and background[7, 7] == 0 and background[6, 3] == 1 and background[9, 9] == 2
    custom = label(priority=("small_bowel", "stomach", "large_bowel"))
    assert custom[7, 6] == 2 and custom[5, 6] == 3
    np.testing.assert_array_equal(custom, painted(truth[OVERLAPPING]["masks"],
                                                  ("small_bowel", "stomach", "large_bowel")))
    with pytest.raises(DatasetFormatError, match=r"Slice case\d+_day\d+_slice_0003: 6 pixels belong to two or more"):
        load(root, overlap="error")


def test_rle_order_f_decodes_column_major(uw):
    root, _ = uw
    rows = all_rows(load(root, rle_order="F", overlap="background"))
    with open(root / "train.csv", newline="") as f:
        rles = {(r["id"], r["class"]): r["segmentation"] for r in csv.DictReader(f)}
    masks = [rle_decode(rles[(HAND_WRITTEN[0], c)], (12, 14), "F") for c in CLASSES]
    stack = np.stack(masks)
    expected = np.where(stack.sum(axis=0) == 1, stack.argmax(axis=0) + 1, 0)  # overlap="background"
    np.testing.assert_array_equal(np.asarray(rows[HAND_WRITTEN[0]]["label"]), expected)
    assert np.asarray(rows[HAND_WRITTEN[0]]["label"])[5:9, 2].tolist() == [2, 2, 2, 2]  # first small-bowel run


def test_annotated_only_and_group_by_case_day(uw):
    root, truth = uw
    ds = load(root, annotated_only=True, validation_fraction=0.0)
    assert sorted(ds["train"]["slice"]) == sorted(s for s in truth if not s.endswith("_0001"))
    days = load(root, group_by="case_day")
    assert_matches_truth(days, truth, group_by="case_day")
    assert len(days["validation"]) == 6 and len(set(days["validation"]["case_id"])) == 2
    assert not set(days["train"]["case_id"]) & set(days["validation"]["case_id"])


def test_data_dir_may_be_the_train_folder(uw):
    root, truth = uw
    assert_matches_truth(load(root / "train"), truth)


@pytest.mark.parametrize("option", [dict(rle_order="K"), dict(overlap="max"), dict(group_by="day"),
                                    dict(priority=("stomach", "large_bowel"))])
def test_bad_options(uw, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        load(uw[0], **option)


def _write_csv(root, text):
    (root / "train.csv").write_text(text)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: scan(r, "case2_day1_slice_0001").unlink(),
         r"train.csv lists case2_day1_slice_0001 but there is no scan train/case2/case2_day1/scans/slice_0001_"),
        (lambda r: Image.fromarray(np.zeros((12, 12), np.uint16)).save(
            scan(r, "case9_day0_slice_0001").with_name("slice_0004_12_12_1.50_1.50.png")),
         r"slice_0004_12_12_1.50_1.50.png has no rows in .*train.csv \(id case9_day0_slice_0004\)"),
        (lambda r: Image.fromarray(np.zeros((14, 12), np.uint16)).save(scan(r, "case9_day20_slice_0002")),
         r"slice_0002_14_12_1.50_1.50.png is 14 rows x 12 cols but its name says width 14, height 12"),
        (lambda r: edit_csv(r, "case9_day20_slice_0002", "stomach", "3 4 9"),
         r"id case9_day20_slice_0002, class stomach: RLE has an odd number of values"),
        (lambda r: edit_csv(r, "case123_day22_slice_0003", "small_bowel", "160 20"),
         r"id case123_day22_slice_0003, class small_bowel: RLE run 160 20 ends at pixel 179, past the 168 pixels"),
        (lambda r: edit_csv(r, "case2_day3_slice_0001", "large_bowel", "1 2 2 1"),
         r"id case2_day3_slice_0001, class large_bowel: RLE runs 1 2 and 2 1 overlap"),
        (lambda r: scan(r, "case9_day0_slice_0002").write_bytes(b"\x89PNG\r\n\x1a\nbroken"),
         r"Cannot read .*case9_day0/scans/slice_0002_14_12_1.50_1.50.png: corrupt"),
        (lambda r: Image.fromarray(np.dstack([np.zeros((12, 14, 2), np.uint8), np.full((12, 14), 9, np.uint8)]))
         .save(scan(r, "case9_day0_slice_0002")),
         r"slice_0002_14_12_1.50_1.50.png has differing colour channels"),
        (lambda r: scan(r, "case2_day1_slice_0003").rename(scan(r, "case2_day1_slice_0003").with_name("s3.png")),
         r"Scan .*s3.png is not named slice_<SSSS>_<W>_<H>_<pw>_<ph>.png"),
        (lambda r: (r / "train" / "case2" / "case2_day1").rename(r / "train" / "case2" / "case3_day1"),
         r"Scan .*case3_day1/scans/slice_0001.* is not under train/case<N>/case<N>_day<D>/scans/"),
        (lambda r: _write_csv(r, "id,class\ncase2_day1_slice_0001,stomach\n"), r"lacks the columns \['segmentation'\]"),
        (lambda r: edit_csv(r, "case2_day1_slice_0001", "stomach", drop=True) or
         _write_csv(r, (r / "train.csv").read_text() + "case2_day1_slice_0001,liver,\n"),
         r"train.csv line 55: class 'liver' is not one of"),
        (lambda r: _write_csv(r, (r / "train.csv").read_text() + "case2-day1-slice-1,stomach,\n"),
         r"train.csv line 56: id 'case2-day1-slice-1' is not case<N>_day<D>_slice_<SSSS>"),
        (lambda r: _write_csv(r, (r / "train.csv").read_text() + "case2_day1_slice_0001,stomach,1 2\n"),
         r"line 56: a second stomach row for case2_day1_slice_0001"),
        (lambda r: (r / "train.csv").unlink(), r"train.csv is missing"),
        (lambda r: (r / "train").rename(r / "scans"), r"Folder .*train is missing"),
    ],
)
def test_bad_input_names_the_file(uw, damage, message):
    root, _ = uw
    damage(root)
    with pytest.raises(DatasetFormatError, match=message):
        load(root)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "e" / "train").mkdir(parents=True)
    (tmp_path / "e" / "train.csv").write_text("id,class,segmentation\ncase1_day0_slice_0001,stomach,\n")
    with pytest.raises(DatasetFormatError, match="holds no scans"):
        load(tmp_path / "e")


def test_a_missing_class_row_is_no_mask(uw):
    root, truth = uw
    edit_csv(root, "case2_day1_slice_0001", "stomach", drop=True)
    assert_matches_truth(load(root), truth)


def test_skip_bad_counts_and_reports(uw):
    root, truth = uw
    scan(root, "case9_day0_slice_0002").write_bytes(b"not a png")
    edit_csv(root, "case123_day20_slice_0003", "stomach", "1 9999")
    scan(root, "case2_day3_slice_0001").unlink()
    with pytest.warns(UserWarning) as record:
        ds = load(root, skip_bad=True, validation_fraction=0.0)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "case9_day0/scans/slice_0002" in m for m in messages)
    assert any("skipping an item: train.csv id case123_day20_slice_0003, class stomach" in m for m in messages)
    assert any("skipping an item:" in m and "lists case2_day3_slice_0001 but there is no scan" in m
               for m in messages)
    assert any("skipped 3 of 18 train items" in m for m in messages)
    assert len(ds["train"]) == 15
    with pytest.warns(UserWarning, match="skipped 3 of 18 train items"):  # also when read back from the cache
        load(root, skip_bad=True, validation_fraction=0.0)


def test_second_load_is_served_from_the_cache(uw):
    root, truth = uw
    first = load(root)
    for path in (root / "train").glob("*/*/scans/*.png"):
        path.write_bytes(b"unreadable now")  # a generator run would fail on these
    second = load(root)
    assert second["train"].cache_files[0]["filename"].startswith(str(root.parent / "cache"))
    assert_matches_truth(second, truth)
    assert second["train"]["slice"] == first["train"]["slice"]


def test_num_proc_gives_the_same_rows(uw):
    root, truth = uw
    ds = load(root, num_proc=2, cache_dir=str(root.parent / "cache2"))
    assert_matches_truth(ds, truth)
    assert sorted(ds["train"]["slice"]) == sorted(load(root)["train"]["slice"])


def test_streaming_reads_lazily_the_same_rows(uw):
    root, truth = uw
    stream = load(root, streaming=True, cache_dir=str(root.parent / "unused"))
    assert not (root.parent / "unused").exists()
    assert_matches_truth(stream, truth)
    assert [r["slice"] for r in stream["validation"]] == load(root)["validation"]["slice"]
