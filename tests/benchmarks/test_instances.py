"""`benchmarks.nuclei` (deterministic touching nuclei) and `benchmarks.instances` with tiny settings."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import instances, nuclei


def test_nuclei_tiles_are_deterministic_and_touch(tmp_path):
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    (image, ids), (image2, ids2) = nuclei.nuclei_tile(a, 64), nuclei.nuclei_tile(b, 64)
    assert (image == image2).all() and (ids == ids2).all()
    assert image.dtype == np.uint8 and ids.dtype == np.uint16 and ids.max() >= 3
    assert sorted(np.unique(ids)) == list(range(int(ids.max()) + 1))  # ids 0..N, no gaps
    assert image[ids > 0].mean() > image[ids == 0].mean() + 40  # bright nuclei on a dark background
    root = nuclei.write_nuclei_folder(tmp_path / "n", train=2, validation=1, size=64, seed=1)
    mask = Image.open(root / "validation" / "masks" / "tile_0000.png")
    assert mask.mode.startswith("I;16") and np.asarray(mask).max() >= 1
    touching = np.zeros((4, 6), np.uint16)
    touching[1:3, 0:2], touching[1:3, 2:4], touching[0, 5] = 1, 2, 3
    assert nuclei.touching_fraction(touching) == pytest.approx(2 / 3)


def test_tiny_run_and_report_from_records(tmp_path):
    pytest.importorskip("monai")
    threads = torch.get_num_threads()
    records = tmp_path / "runs.jsonl"
    tiny = ["--steps", "1", "--seeds", "0", "--batch_size", "2", "--size", "32", "--train", "2", "--validation", "2",
            "--models", "hfseg-attention-unet,monai-attention-unet", "--data_dir", str(tmp_path / "n"),
            "--records", str(records), "--threads", str(threads)]
    report = instances.main([*tiny, "--targets", "semantic", "--models", "hfseg-attention-unet",
                             "--output", str(tmp_path / "s.json")])
    assert list(report["results"]) == ["semantic + connected", "semantic + distance watershed"]
    assert report["targets"] == {}  # no peer to compare with
    report = instances.main([*tiny, "--targets", "boundary", "--output", str(tmp_path / "i.json")])
    saved = json.loads((tmp_path / "i.json").read_text())
    assert list(saved["results"]) == ["boundary + watershed"] and torch.get_num_threads() == threads
    for row in saved["results"].values():
        for name in ("hfseg-attention-unet", "monai-attention-unet"):
            run = row[name]["runs"][0]
            assert 0 <= run["dice"] <= 1 and 0 <= run["pq"] <= 1 and run["steps"] == 1
    assert set(report["targets"]) == {"boundary + watershed"}
    assert set(report["targets"]["boundary + watershed"]) == {"dice", "pq"}
    assert (tmp_path / "i.md").read_text().startswith("### `instances`")
    again = instances.main([*tiny, "--report_from", str(records), "--output", str(tmp_path / "j.json")])
    assert list(again["results"]) == ["semantic + connected", "semantic + distance watershed", "boundary + watershed"]
    assert again["results"]["boundary + watershed"]["hfseg-attention-unet"]["pq_mean"] == \
        report["results"]["boundary + watershed"]["hfseg-attention-unet"]["pq_mean"]
