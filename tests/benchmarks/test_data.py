"""`benchmarks.data` with tiny settings on a synthetic image/mask folder."""

import json

import numpy as np
from PIL import Image

from benchmarks import data


def test_synthetic_folder_has_all_classes(tmp_path):
    root = data.write_synthetic_folder(tmp_path, count=3, size=40)
    mask = np.asarray(Image.open(root / "masks" / "case000.png"))
    assert mask.shape == (40, 40) and set(np.unique(mask)) <= {0, 1, 2, 3} and mask[20, 20] > 0
    assert len(list((root / "images").iterdir())) == 3


def test_tiny_run_writes_results(tmp_path):
    report = data.main(["--datasets", "image-mask-folder", "--augment", "none,flips", "--workers", "0",
                        "--batches", "2", "--batch_size", "2", "--size", "32", "--train_rate", "10",
                        "--synthetic_count", "6", "--synthetic_size", "48", "--output", str(tmp_path / "d.json")])
    saved = json.loads((tmp_path / "d.json").read_text())
    assert [(r["augment"], r["workers"]) for r in saved["results"]] == [("none", 0), ("flips", 0)]
    row = saved["results"][0]
    assert row["samples"] == 4 and row["samples_per_s"] > 0
    assert row["headroom"] == row["samples_per_s"] / 10
    assert report["train_source"] == "given" and (tmp_path / "d.md").is_file()
