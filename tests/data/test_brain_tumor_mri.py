"""brain-tumor-mri: class folders, stratified validation, Testing as test, JPEG round trip, errors, cache, streaming."""

import numpy as np
import pytest

import hfseg.data
from hfseg.data import DatasetFormatError

from .fixtures import corrupt_keeping_stamp
from .fixtures.brain_tumor_mri import CLASSES, write_brain_tumor_mri


def load(root, **kw):
    return hfseg.data.load("brain-tumor-mri", str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


@pytest.fixture(scope="module")
def mri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri") / "d"
    truth = write_brain_tumor_mri(root)
    return root, truth, load(root)


def test_features_splits_and_round_trip(mri):
    _, truth, ds = mri
    assert set(ds) == {"train", "validation", "test"}
    assert (len(ds["train"]), len(ds["validation"]), len(ds["test"])) == (16, 4, 8)
    assert set(ds["train"].features) == {"image", "label", "case_id"}
    assert hfseg.data.id2label(ds) == dict(enumerate(CLASSES))
    assert sorted(ds["validation"]["label"]) == [0, 1, 2, 3]  # one of each class's five: stratified
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    assert all(stem.startswith("Te-") for stem in ds["test"]["case_id"])
    shapes = set()
    for split in ds.values():
        for row in split:
            t = truth[row["case_id"]]
            assert row["label"] == t.label
            np.testing.assert_array_equal(np.asarray(row["image"]), t.image)  # the stored JPEG, not re-encoded
            shapes.add(np.asarray(row["image"]).shape)
    assert {len(s) for s in shapes} == {2, 3} and len(shapes) > 10  # grey and RGB kept, sizes not unified


def test_same_seed_same_split(mri):
    root, _, ds = mri
    assert load(root)["validation"]["case_id"] == ds["validation"]["case_id"]
    other = load(root, seed=1)
    assert len(other["validation"]) == 4 and sorted(other["validation"]["label"]) == [0, 1, 2, 3]


def test_grayscale_converts_every_image(mri, tmp_path):
    root, truth, _ = mri
    ds = load(root, grayscale=True, cache_dir=str(tmp_path / "c"))
    for row in ds["test"]:
        image = np.asarray(row["image"])
        assert image.ndim == 2 and image.shape == truth[row["case_id"]].image.shape[:2]


def test_explicit_classes_choose_folders_and_order(mri, tmp_path):
    root, truth, _ = mri
    ds = load(root, classes=["pituitary", "glioma"], cache_dir=str(tmp_path / "c"))
    assert hfseg.data.id2label(ds) == {0: "pituitary", 1: "glioma"}
    assert len(ds["train"]) + len(ds["validation"]) == 10 and len(ds["test"]) == 4
    for row in ds["test"]:
        assert CLASSES[truth[row["case_id"]].label] == ["pituitary", "glioma"][row["label"]]
    with pytest.raises(ValueError, match="repeated names"):
        load(root, classes=["glioma", "glioma"])
    with pytest.raises(ValueError, match="list of folder names"):
        load(root, classes="glioma")


def test_without_testing_there_is_no_test_split(tmp_path):
    write_brain_tumor_mri(tmp_path / "d", train=3, test=1)
    (tmp_path / "d" / "Testing").rename(tmp_path / "elsewhere")
    assert set(load(tmp_path / "d", validation_fraction=0.0)) == {"train"}


def _truncate(path):
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "Training" / "no_tumor").mkdir(),
         r"Unknown class folder\(s\) \['no_tumor'\] .*expected glioma, meningioma, notumor, pituitary"),
        (lambda r: [p.unlink() for p in (r / "Testing" / "meningioma").iterdir()],
         r"Class folder .*Testing/meningioma holds no images"),
        (lambda r: (r / "Training" / "pituitary").rename(r / "pit"), r"Training/pituitary is missing"),
        (lambda r: (r / "Training").rename(r / "Train"), r"Folder .*/Training is missing or not a folder"),
        (lambda r: (r / "Training" / "glioma" / "Tr-gl_0002.jpg").write_bytes(b"\xff\xd8\xff not a jpeg"),
         r"Cannot read .*Tr-gl_0002.jpg: corrupt"),
        (lambda r: _truncate(r / "Testing" / "notumor" / "Te-no_0001.jpg"), r"Cannot read .*Te-no_0001.jpg: corrupt"),
    ],
)
def test_bad_input_names_the_path(tmp_path, damage, message):
    write_brain_tumor_mri(tmp_path / "d", train=3, test=1)
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load(tmp_path / "d")


def test_missing_data_dir(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_skip_bad_counts_and_reports(tmp_path):
    write_brain_tumor_mri(tmp_path / "d", train=3, test=2)
    _truncate(tmp_path / "d" / "Testing" / "glioma" / "Te-gl_0002.jpg")
    with pytest.warns(UserWarning) as record:
        ds = load(tmp_path / "d", skip_bad=True)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "Te-gl_0002.jpg" in m for m in messages)
    assert any("skipped 1 of 8 test items" in m for m in messages)
    assert len(ds["test"]) == 7 and "Te-gl_0002" not in ds["test"]["case_id"]


def test_second_load_comes_from_the_cache(tmp_path):
    write_brain_tumor_mri(tmp_path / "d", train=2, test=1)
    first = load(tmp_path / "d")
    for path in (tmp_path / "d").rglob("*.jpg"):
        corrupt_keeping_stamp(path)  # same size and mtime: a generator run would fail on these
    again = load(tmp_path / "d")
    assert again["test"]["case_id"] == first["test"]["case_id"]
    np.testing.assert_array_equal(np.asarray(again["test"][0]["image"]), np.asarray(first["test"][0]["image"]))


def test_num_proc_gives_the_same_rows(mri, tmp_path):
    root, _, ds = mri
    two = load(root, num_proc=2, cache_dir=str(tmp_path / "cache2"))
    for split in ds:
        one_rows = {row["case_id"]: row for row in ds[split]}
        two_rows = {row["case_id"]: row for row in two[split]}
        assert one_rows.keys() == two_rows.keys()
        for stem, row in one_rows.items():
            assert row["label"] == two_rows[stem]["label"]
            np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(two_rows[stem]["image"]))


def test_streaming_reads_lazily_the_same_rows(mri, tmp_path):
    root, truth, ds = mri
    stream = load(root, streaming=True, cache_dir=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()
    rows = list(stream["test"])
    assert sorted(r["case_id"] for r in rows) == sorted(ds["test"]["case_id"])
    for row in rows:
        assert row["label"] == truth[row["case_id"]].label
        np.testing.assert_array_equal(np.asarray(row["image"]), truth[row["case_id"]].image)
