"""image-mask-folder: pairing, grouped split, value maps, round trip, save/load, and every bad-input error."""

import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image

import hfseg.data
from hfseg.data.folder import DatasetFormatError


def write_fixture(root, patients=3, slices=4, suffix="_mask", size=(12, 10)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    truth = {}
    rng = np.random.default_rng(0)
    for p in range(patients):
        for s in range(slices):
            stem = f"case{p}_slice{s:03d}"
            image = rng.integers(0, 65535, size[::-1], dtype=np.uint16)  # 16-bit grey
            mask = np.zeros(size[::-1], np.uint8)
            mask[2 : 4 + s, 1:5] = 255
            Image.fromarray(image).save(root / "images" / f"{stem}.png")
            Image.fromarray(mask).save(root / "masks" / f"{stem}{suffix}.png")
            truth[stem] = (image, (mask > 0).astype(np.uint8))
    return truth


def load(root, **kw):
    defaults = dict(mask_suffix="_mask", value_map={0: 0, 255: 1}, group_pattern=r"^(case\d+)_",
                    cache_dir=str(root / "cache"))
    return hfseg.data.load("image-mask-folder", str(root), **{**defaults, **kw})


def test_grouped_split_and_round_trip(tmp_path):
    truth = write_fixture(tmp_path / "d")
    ds = load(tmp_path / "d", validation_fraction=0.3)
    assert len(ds["train"]) + len(ds["validation"]) == 12 and len(ds["validation"]) == 4
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    item = ds["validation"][0]
    stem = next(s for s in truth if s.startswith(item["case_id"]) and
                np.array_equal(np.asarray(item["image"]), truth[s][0]))
    np.testing.assert_array_equal(np.asarray(item["label"]), truth[stem][1])
    assert np.asarray(item["image"]).dtype == np.uint16  # 16-bit kept losslessly
    assert hfseg.data.id2label(ds) == {0: "background", 1: "foreground"}
    assert load(tmp_path / "d", validation_fraction=0.3)["validation"]["case_id"] == ds["validation"]["case_id"]


def test_save_to_disk_round_trip(tmp_path):
    write_fixture(tmp_path / "d")
    ds = load(tmp_path / "d")
    ds.save_to_disk(tmp_path / "saved")
    again = load_from_disk(str(tmp_path / "saved"))
    assert hfseg.data.id2label(again) == hfseg.data.id2label(ds)
    np.testing.assert_array_equal(np.asarray(again["train"][0]["label"]), np.asarray(ds["train"][0]["label"]))


def test_predefined_split_folders_and_threshold(tmp_path):
    write_fixture(tmp_path / "d" / "train", patients=2)
    write_fixture(tmp_path / "d" / "test", patients=1)
    ds = load(tmp_path / "d", value_map=None, threshold=127)
    assert set(ds) == {"train", "test"} and len(ds["train"]) == 8 and len(ds["test"]) == 4


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "masks" / "case0_slice000_mask.png").unlink(), r"image\(s\) without a mask.*case0_slice000"),
        (lambda r: (r / "images" / "case1_slice001.png").unlink(), r"mask\(s\) without an image.*case1_slice001"),
        (lambda r: Image.fromarray(np.zeros((5, 5), np.uint8)).save(r / "masks" / "case0_slice001_mask.png"),
         r"case0_slice001.png is \(10, 12\) but its mask .* is \(5, 5\)"),
        (lambda r: Image.fromarray(np.full((10, 12), 7, np.uint8)).save(r / "masks" / "case2_slice000_mask.png"),
         r"case2_slice000_mask.png has values \[7\] not in value_map"),
        (lambda r: (r / "images" / "case0_slice002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"),
         r"Cannot read .*case0_slice002.png: corrupt"),
    ],
)
def test_bad_input_names_the_file(tmp_path, damage, message):
    write_fixture(tmp_path / "d")
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load(tmp_path / "d")


def test_an_unreadable_file_is_a_medical_file_error(tmp_path):
    """The loaders read through hfseg.io: one `except MedicalFileError` catches what they refuse."""
    from hfseg.io import MedicalFileError

    write_fixture(tmp_path / "d")
    (tmp_path / "d" / "masks" / "case0_slice002_mask.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(MedicalFileError, match=r"Cannot read .*case0_slice002_mask.png: corrupt"):
        load(tmp_path / "d")


def test_values_outside_the_classes_suggest_the_fix(tmp_path):
    write_fixture(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=r"values \[255\] outside the 2 classes; pass value_map"):
        load(tmp_path / "d", value_map=None)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DatasetFormatError, match="holds no images"):
        load(tmp_path / "e")


def test_skip_bad_counts_and_reports(tmp_path):
    write_fixture(tmp_path / "d", patients=2)
    (tmp_path / "d" / "images" / "case0_slice002.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning) as record:
        ds = load(tmp_path / "d", skip_bad=True, validation_fraction=0.0)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "case0_slice002.png" in m for m in messages)
    assert any("skipped 1 of 8 train items" in m for m in messages)
    assert len(ds["train"]) == 7
    with pytest.warns(UserWarning, match=r"skipped 1 of 8 train items"):  # also when read back from the cache
        load(tmp_path / "d", skip_bad=True, validation_fraction=0.0)


def test_num_proc_gives_the_same_rows(tmp_path):
    write_fixture(tmp_path / "d")
    one = load(tmp_path / "d")
    two = load(tmp_path / "d", num_proc=2, cache_dir=str(tmp_path / "cache2"))
    assert sorted(one["train"]["case_id"]) == sorted(two["train"]["case_id"])
    key = lambda row: np.asarray(row["image"]).tobytes()  # noqa: E731
    for a, b in zip(sorted(one["train"], key=key), sorted(two["train"], key=key)):
        np.testing.assert_array_equal(np.asarray(a["label"]), np.asarray(b["label"]))


def test_streaming_reads_lazily_the_same_rows(tmp_path):
    write_fixture(tmp_path / "d")
    stream = load(tmp_path / "d", streaming=True, cache_dir=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()  # nothing written: files are read as the rows are consumed
    cached = load(tmp_path / "d")
    rows = list(stream["validation"])
    assert len(rows) == len(cached["validation"])
    np.testing.assert_array_equal(np.asarray(rows[0]["label"]), np.asarray(cached["validation"][0]["label"]))


def test_a_mask_edited_in_place_is_reread_not_served_stale(tmp_path):
    write_fixture(tmp_path / "d", patients=1, slices=2)
    first = load(tmp_path / "d", validation_fraction=0.0)
    mask_path = tmp_path / "d" / "masks" / "case0_slice000_mask.png"
    fixed = np.zeros((10, 12), np.uint8)
    fixed[5:9, 6:11] = 255  # a different, corrected mask
    Image.fromarray(fixed).save(mask_path)
    again = load(tmp_path / "d", validation_fraction=0.0)
    row = next(r for r in again["train"] if np.asarray(r["label"]).sum() == (fixed > 0).sum())
    np.testing.assert_array_equal(np.asarray(row["label"]), (fixed > 0).astype(np.uint8))
    assert again["train"].cache_files[0]["filename"] != first["train"].cache_files[0]["filename"]


def test_a_split_left_empty_by_skipping_is_a_clear_error(tmp_path):
    write_fixture(tmp_path / "d", patients=1, slices=1)
    (tmp_path / "d" / "images" / "case0_slice000.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(DatasetFormatError, match="train split is empty"):
        load(tmp_path / "d", skip_bad=True, validation_fraction=0.0)


def write_instance_fixture(root, count=3, suffix=""):
    """Images with two touching squares each, their masks 16-bit instance PNGs with ids above 255."""
    truth = {}
    for split in ("train", "validation"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            instances = np.zeros((8, 12), np.uint16)
            instances[2:6, 1:5], instances[2:6, 5:9 + (i % 2)] = 1000 + i, 40000
            Image.fromarray(np.full((8, 12), 50 + i, np.uint8)).save(root / split / "images" / f"t{i}.png")
            Image.fromarray(instances).save(root / split / "masks" / f"t{i}{suffix}.png")
            truth[(split, f"t{i}")] = instances
    return truth


def test_instance_masks_give_boundary_target_and_instances(tmp_path):
    from hfseg.data.instances import boundary_target

    truth = write_instance_fixture(tmp_path / "d")
    ds = hfseg.data.load("image-mask-folder", str(tmp_path / "d"), instance_masks=True, cache_dir=str(tmp_path / "c"))
    assert hfseg.data.id2label(ds) == {0: "background", 1: "interior", 2: "boundary"}
    for split in ("train", "validation"):
        for row in ds[split]:
            instances = np.asarray(row["instances"])
            expected = truth[(split, row["case_id"])]
            assert instances.dtype == np.uint16 and (instances == expected).all()
            np.testing.assert_array_equal(np.asarray(row["label"]), boundary_target(expected))
            assert row["classes"] == [0, 1, 2]
    wide = hfseg.data.load("image-mask-folder", str(tmp_path / "d"), instance_masks=True, boundary_width=2,
                           cache_dir=str(tmp_path / "c"))
    assert (np.asarray(wide["train"][0]["label"]) == 1).sum() == 0  # a 4-px square is all rim at width 2
    plain = hfseg.data.load("image-mask-folder", str(tmp_path / "d"), instance_masks=True, boundary=False,
                            cache_dir=str(tmp_path / "c"))
    row = plain["train"][0]
    assert hfseg.data.id2label(plain) == {0: "background", 1: "foreground"}
    np.testing.assert_array_equal(np.asarray(row["label"]), np.asarray(row["instances"]) > 0)


def test_instance_mask_errors(tmp_path):
    write_instance_fixture(tmp_path / "d", count=1)
    with pytest.raises(DatasetFormatError, match="leave id2label"):
        hfseg.data.load("image-mask-folder", str(tmp_path / "d"), instance_masks=True, threshold=0)
    with pytest.raises(DatasetFormatError, match="boundary_width"):
        hfseg.data.load("image-mask-folder", str(tmp_path / "d"), instance_masks=True, boundary_width=0)
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[..., 0] = 5
    Image.fromarray(rgb).save(tmp_path / "d" / "train" / "masks" / "t0.png")
    with pytest.raises(DatasetFormatError, match="instance masks as one grey channel"):
        hfseg.data.load("image-mask-folder", str(tmp_path / "d"), instance_masks=True, cache_dir=str(tmp_path / "c"))
