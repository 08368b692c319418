"""`skip_bad`: the skipped items are listed (split, file, error), also when the dataset is reloaded from its cache,
and a training run writes the list into its folder."""

import json
import warnings

from hfseg.data import skipped_items
from hfseg.training import load_config
from hfseg.training.trainer import Trainer
from tests.data.test_folder import load, write_fixture


def damaged_folder(root):
    """2 patients x 4 slices, one unreadable image and one unreadable mask."""
    write_fixture(root, patients=2)
    (root / "images" / "case0_slice002.png").write_bytes(b"not a png")
    (root / "masks" / "case1_slice001_mask.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def loaded(root, **kw):
    """`(splits, skipping warnings)` of a `skip_bad=True` load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(root, skip_bad=True, validation_fraction=0.0, **kw)
    return splits, [str(w.message) for w in caught if "skipping an item" in str(w.message)]


def test_skipped_items_are_listed_and_survive_the_cache(tmp_path):
    root = damaged_folder(tmp_path / "d")
    splits, warned = loaded(root)
    assert len(splits["train"]) == 6 and len(warned) == 2  # the generator ran and warned about both
    rows = sorted(skipped_items(splits), key=lambda row: row["item"])
    assert [row["split"] for row in rows] == ["train", "train"]
    assert "case0_slice002.png" in rows[0]["item"] and "case0_slice002.png" in rows[0]["error"]
    assert "case1_slice001_mask.png" in rows[1]["item"] and "case1_slice001_mask.png" in rows[1]["error"]
    assert all(str(root) in row["item"] for row in rows)  # the file paths, not only the names
    again, warned = loaded(root)
    assert warned == []  # read back from the Arrow cache: no generator ran
    assert sorted(skipped_items(again), key=lambda row: row["item"]) == rows
    assert sorted(skipped_items([again["train"].select(range(3))]), key=lambda r: r["item"]) == rows  # a subset too


def test_a_clean_dataset_lists_nothing_and_workers_list_the_same(tmp_path):
    write_fixture(tmp_path / "clean", patients=2)
    assert skipped_items(loaded(tmp_path / "clean")[0]) == []
    root = damaged_folder(tmp_path / "d")
    single = sorted(row["item"] for row in skipped_items(loaded(root)[0]))
    parallel = sorted(row["item"] for row in skipped_items(loaded(root, num_proc=2, cache_dir=str(tmp_path / "c2"))[0]))
    assert len(single) == 2 and parallel == single


def test_a_fixed_file_clears_the_list(tmp_path):
    root = damaged_folder(tmp_path / "d")
    assert len(skipped_items(loaded(root)[0])) == 2
    write_fixture(tmp_path / "fresh", patients=2)
    for name in ("images/case0_slice002.png", "masks/case1_slice001_mask.png"):
        (root / name).write_bytes((tmp_path / "fresh" / name).read_bytes())  # a new cache key: read again
    assert skipped_items(loaded(root)[0]) == []


def test_the_run_folder_lists_the_skipped_items(tmp_path):
    root = damaged_folder(tmp_path / "d")
    options = ["data.dataset=image-mask-folder", f"data.data_dir={root}",
               "data.options={mask_suffix: _mask, value_map: {0: 0, 255: 1}, skip_bad: true, "
               f"validation_fraction: 0.25, group_pattern: '^(case[0-9]+)_', cache_dir: {tmp_path / 'cache'}}}",
               "model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[16, 16]", "train.batch_size=4",
               "train.max_steps=1", "train.report_to=null", "train.panels=0"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(load_config("demo", [*options, f"train.output_dir={tmp_path / 'a'}"])).fit()
        reloaded = Trainer(load_config("demo", [*options, f"train.output_dir={tmp_path / 'b'}"]))  # from the cache
        reloaded.write_skipped()
    for run in ("a", "b"):
        rows = [json.loads(line) for line in (tmp_path / run / "skipped.jsonl").read_text().splitlines()]
        assert sorted(row["item"].split()[-1].rsplit("/", 1)[-1] for row in rows) == [
            "case0_slice002_mask.png", "case1_slice001_mask.png"], run  # each item: its image and mask paths
        assert {row["split"] for row in rows} <= {"train", "validation"} and all(row["error"] for row in rows)
