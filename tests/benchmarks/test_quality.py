"""`benchmarks.quality` with tiny settings: hfseg and a peer trained by the same recipe loop."""

import json
import math

import pytest

from benchmarks import quality

TINY = ["--steps", "2", "--seeds", "0", "--batch_size", "4", "--size", "32", "--max_train_samples", "8",
        "--max_eval_samples", "4"]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo-cache"))


def test_tiny_run_trains_hfseg_and_peer(tmp_path, demo_cache):
    pytest.importorskip("monai")
    report = quality.main([*TINY, "--models", "hfseg-attention-unet,monai-attention-unet", "--cache_dir", demo_cache,
                           "--output", str(tmp_path / "q.json")])
    saved = json.loads((tmp_path / "q.json").read_text())
    for name in ("hfseg-attention-unet", "monai-attention-unet"):
        row = saved["results"][name]
        assert 0 <= row["dice_mean"] <= 1 and row["runs"][0]["steps"] == 2 and row["seconds_mean"] >= 0
    assert report["targets"]["best_dice_per_s"] in saved["results"]
    assert "same_or_better_dice" in report["targets"] and (tmp_path / "q.md").is_file()


def test_summary_statistics():
    runs = [{"dice": 0.5, "seconds": 10.0}, {"dice": 0.7, "seconds": 30.0}]
    s = quality.summarize(runs)
    assert s["dice_mean"] == pytest.approx(0.6) and s["dice_std"] == pytest.approx(math.sqrt(0.02))
    assert s["dice_per_s"] == pytest.approx(0.6 / 20)
