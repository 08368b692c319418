"""liver-voc: the published ImageSets split, re-splitting by blocks, grey images, every bad input, cache, streaming."""

import numpy as np
import pytest
from PIL import Image

import hfseg.data
from hfseg.data import DatasetFormatError

from .fixtures import corrupt_keeping_stamp
from .fixtures.liver_voc import SIZE, write_liver_voc

H, W = SIZE[1], SIZE[0]
LISTS = ("ImageSets", "Segmentation")


def load(root, **kw):
    return hfseg.data.load("liver-voc", str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


def published(root, name):
    return (root.joinpath(*LISTS) / name).read_text().split()


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("liver") / "d"
    truth = write_liver_voc(root)
    return root, truth, load(root)


def test_published_split_features_and_round_trip(voc):
    root, truth, ds = voc
    assert set(ds) == {"train", "validation"}  # test.txt is empty
    assert sorted(ds["train"]["case_id"]) == published(root, "train.txt") and len(ds["train"]) == 18
    assert sorted(ds["validation"]["case_id"]) == published(root, "val.txt") and len(ds["validation"]) == 2
    assert set(ds["train"].features) == {"image", "label", "case_id", "classes"}
    assert hfseg.data.id2label(ds) == {0: "background", 1: "liver"}
    for split in ds.values():
        for row in split:
            t = truth[row["case_id"]]  # the case id is the stem here
            image, label = np.asarray(row["image"]), np.asarray(row["label"])
            assert image.shape == label.shape == (H, W) and image.dtype == np.uint8  # RGB stored as one grey channel
            np.testing.assert_array_equal(image, t.image)
            np.testing.assert_array_equal(label, t.label)
            assert row["classes"] == ([0, 1] if t.label.any() else [0])


def test_non_empty_test_list_gives_a_test_split(tmp_path):
    write_liver_voc(tmp_path / "d", test=3)
    ds = load(tmp_path / "d")
    assert ds["test"]["case_id"] == ["017", "018", "019"]
    assert len(ds["train"]) + len(ds["validation"]) == 17


def test_resplit_by_blocks_of_consecutive_stems(voc, tmp_path):
    root, truth, _ = voc
    ds = load(root, use_imagesets=False, group_size=5, validation_fraction=0.25, cache_dir=str(tmp_path / "c"))
    assert len(ds["train"]) == 15 and len(ds["validation"]) == 5
    assert set(ds["train"]["case_id"]) | set(ds["validation"]["case_id"]) == {"000-004", "005-009", "010-014",
                                                                              "015-019"}
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    (block,) = set(ds["validation"]["case_id"])
    first = int(block[:3])
    expected = {truth[f"{k:03d}"].image.tobytes() for k in range(first, first + 5)}
    assert {np.asarray(row["image"]).tobytes() for row in ds["validation"]} == expected
    again = load(root, use_imagesets=False, group_size=5, validation_fraction=0.25, cache_dir=str(tmp_path / "c"))
    assert again["validation"]["case_id"] == ds["validation"]["case_id"]
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        load(root, use_imagesets=False, group_size=0)


def test_without_imagesets_or_with_trainval_only(tmp_path):
    write_liver_voc(tmp_path / "a", slices=12, imagesets=False)
    ds = load(tmp_path / "a", group_size=4, validation_fraction=0.3)
    assert len(ds["train"]) == 8 and len(ds["validation"]) == 4
    write_liver_voc(tmp_path / "b", slices=12)
    for name in ("train.txt", "val.txt"):
        (tmp_path / "b" / "ImageSets" / "Segmentation" / name).unlink()
    ds = load(tmp_path / "b", group_size=4, validation_fraction=0.3)
    assert sorted([*ds["train"]["case_id"], *ds["validation"]["case_id"]]) == ["000-003"] * 4 + ["004-007"] * 4 + [
        "008-011"] * 4


def test_rgb_with_differing_channels_is_kept_rgb(tmp_path):
    write_liver_voc(tmp_path / "d", slices=4, imagesets=False)
    rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "d" / "Images" / "002.png")
    ds = load(tmp_path / "d", group_size=1, validation_fraction=0.0)
    shapes = {row["case_id"]: np.asarray(row["image"]).shape for row in ds["train"]}
    assert shapes == {"000": (H, W), "001": (H, W), "002": (H, W, 3), "003": (H, W)}
    kept = load(tmp_path / "d", group_size=1, validation_fraction=0.0, grayscale=False)
    assert {np.asarray(row["image"]).shape for row in kept["train"]} == {(H, W, 3)}


def test_grey_labels_with_a_threshold(tmp_path):
    truth = write_liver_voc(tmp_path / "d", slices=3, imagesets=False)
    Image.fromarray((truth["001"].label * 200 + 20).astype(np.uint8)).save(tmp_path / "d" / "Labels" / "001_mask.png")
    ds = load(tmp_path / "d", label_values=None, threshold=127, group_size=1, validation_fraction=0.0)
    row = next(r for r in ds["train"] if r["case_id"] == "001")
    np.testing.assert_array_equal(np.asarray(row["label"]), truth["001"].label)


def _listed_in(root, name, stem):
    path = root.joinpath(*LISTS) / name
    path.write_text(path.read_text() + f"{stem}\n")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "Images" / "004.png").unlink(), r"(train|val).txt lists '004' but .*Images/004.png is missing"),
        (lambda r: (r / "Labels" / "007_mask.png").unlink(), r".txt lists '007' but .*Labels/007_mask.png is missing"),
        (lambda r: _listed_in(r, "val.txt", "123"), r"val.txt lists '123' but .*Images/123.png is missing"),
        (lambda r: _listed_in(r, "val.txt", published(r, "train.txt")[0]),
         r"Stem '\d+' is listed in both .*train.txt and .*val.txt"),
        (lambda r: (r.joinpath(*LISTS) / "val.txt").unlink(), r"only one of train.txt/val.txt: add .*val.txt"),
        (lambda r: [(r.joinpath(*LISTS) / n).unlink() for n in ("train.txt", "val.txt", "trainval.txt")],
         r"Segmentation has no train.txt/val.txt nor trainval.txt"),
        (lambda r: Image.fromarray(np.zeros((5, 7), np.uint8)).save(r / "Labels" / "003_mask.png"),
         r"003.png is \(12, 16\) but its mask .*003_mask.png is \(5, 7\)"),
        (lambda r: Image.fromarray(np.eye(H, W, dtype=np.uint8)).save(r / "Labels" / "001_mask.png"),
         r"001_mask.png has values \[1\] outside \[0, 255\]: for 0/1 labels pass threshold=0"),
        (lambda r: Image.fromarray(np.dstack([np.full((H, W), v, np.uint8) for v in (255, 0, 0)])).save(
            r / "Labels" / "002_mask.png"), r"002_mask.png has differing colour channels"),
        (lambda r: (r / "Images" / "006.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"),
         r"Cannot read .*006.png: corrupt"),
        (lambda r: [p.unlink() for p in (r / "Images").iterdir()], r"Images holds no CT slice images"),
        (lambda r: (r / "Labels").rename(r / "masks"), r"Labels is missing or not a folder"),
    ],
)
def test_bad_input_names_the_file(tmp_path, damage, message):
    write_liver_voc(tmp_path / "d")
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load(tmp_path / "d")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "Labels" / "005_mask.png").unlink(), r"1 image\(s\) without a label, e.g. .*005.png: expected "
                                                             r".*Labels/005_mask.png"),
        (lambda r: (r / "Images" / "011.png").unlink(), r"1 label\(s\) without an image, e.g. .*011_mask.png"),
    ],
)
def test_unpaired_files_when_resplitting(tmp_path, damage, message):
    write_liver_voc(tmp_path / "d", slices=12)
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load(tmp_path / "d", use_imagesets=False)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_skip_bad_counts_and_reports(tmp_path):
    write_liver_voc(tmp_path / "d")
    train = published(tmp_path / "d", "train.txt")
    (tmp_path / "d" / "Images" / f"{train[0]}.png").write_bytes(b"not a png")
    (tmp_path / "d" / "Labels" / f"{train[1]}_mask.png").unlink()
    with pytest.warns(UserWarning) as record:
        ds = load(tmp_path / "d", skip_bad=True)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and f"{train[0]}.png" in m for m in messages)
    assert any("skipping an item: " in m and f"lists '{train[1]}'" in m for m in messages)
    assert any("skipped 2 of 18 train items" in m for m in messages)
    assert len(ds["train"]) == 16 and len(ds["validation"]) == 2


def test_second_load_comes_from_the_cache(tmp_path):
    write_liver_voc(tmp_path / "d", slices=6)
    first = load(tmp_path / "d")
    for path in (tmp_path / "d" / "Images").iterdir():
        corrupt_keeping_stamp(path)  # same size and mtime: a generator run would fail on these
    again = load(tmp_path / "d")
    assert again["train"]["case_id"] == first["train"]["case_id"]
    np.testing.assert_array_equal(np.asarray(again["train"][0]["image"]), np.asarray(first["train"][0]["image"]))


def test_num_proc_gives_the_same_rows(voc, tmp_path):
    root, _, ds = voc
    two = load(root, num_proc=2, cache_dir=str(tmp_path / "cache2"))
    for split in ds:
        one_rows = {row["case_id"]: row for row in ds[split]}
        two_rows = {row["case_id"]: row for row in two[split]}
        assert one_rows.keys() == two_rows.keys()
        for stem, row in one_rows.items():
            np.testing.assert_array_equal(np.asarray(row["label"]), np.asarray(two_rows[stem]["label"]))
            np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(two_rows[stem]["image"]))


def test_streaming_reads_lazily_the_same_rows(voc, tmp_path):
    root, truth, ds = voc
    stream = load(root, streaming=True, cache_dir=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()
    rows = list(stream["train"])
    assert sorted(r["case_id"] for r in rows) == sorted(ds["train"]["case_id"])
    for row in rows:
        np.testing.assert_array_equal(np.asarray(row["label"]), truth[row["case_id"]].label)
