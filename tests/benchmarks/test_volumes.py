"""`benchmarks.volumes` with tiny settings: it runs end to end, writes JSON and Markdown, and its figures are sound."""

import json

import pytest
import torch

pytest.importorskip("monai")

from benchmarks import volumes  # noqa: E402

TINY = ["--shape", "24", "20", "12", "--patch", "16", "--channels", "4", "8", "--repeats", "1",
        "--train_patch", "16", "--train_warmup", "1", "--train_rounds", "1", "--train_steps", "1"]


def test_tiny_run_writes_results(tmp_path):
    report = volumes.main([*TINY, "--no_memory", "--output", str(tmp_path / "v.json")])  # no --threads: it would
    saved = json.loads((tmp_path / "v.json").read_text())  # outlive the test
    assert saved["sliding"]["shape"] == [24, 20, 12]
    for model in volumes.MODELS:
        row = saved["sliding"][model]
        # Both place 2 x 2 x 1 windows here (24: 0, 8; 20: 0, 4; 12 is padded to 16).
        assert row["hfseg"]["windows"] == row["monai"]["windows"] == 4
        assert row["hfseg"]["median_s"] > 0 and row["monai"]["median_s"] > 0 and row["speedup"] > 0
        assert 0 < row["hfseg"]["model_s"] < row["hfseg"]["median_s"] and row["hfseg"]["own_s"] > 0
    # The 1x1x1 convolution gives the same logit in every window: both inferers return it exactly.
    assert saved["sliding"]["pointwise"]["agreement"]["max_abs_diff"] < 1e-5
    assert 0.5 < saved["sliding"]["unet"]["agreement"]["argmax_agreement"] <= 1
    train = saved["training"]
    if "skipped" not in train:  # hfseg's 3D attention-unet exists
        assert train["hfseg-attention-unet"]["images_per_s"] > 0 and train["speedup"] > 0
    text = (tmp_path / "v.md").read_text()
    assert "| MONAI UNet | hfseg | 4 |" in text and "own s" in text and "argmax agreement" in text
    assert report["machine"]["versions"]["torch"] == torch.__version__.split("+")[0]


def test_memory_probe_in_process():
    settings = volumes.Settings(shape=[20, 18, 16], patch=16, channels=[4, 8])
    for method in volumes.METHODS:
        found = volumes.probe_memory("pointwise", method, settings)
        assert found["peak_mib"] >= 0 and found["method"]
        assert found["output_mib"] == pytest.approx(2 * 20 * 18 * 16 * 4 / 2**20)
