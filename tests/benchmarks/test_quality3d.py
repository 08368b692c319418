"""Smoke test of `benchmarks.quality3d` (tiny settings) and its Otsu threshold against a hand-made case."""

import json

import numpy as np
import pytest

from benchmarks.quality3d import main, otsu_threshold


def test_otsu_splits_two_populations_between_them():
    values = np.concatenate([np.full(300, 10.0), np.full(700, 50.0)])
    assert 10.0 < otsu_threshold(values) < 50.0
    rng = np.random.default_rng(0)
    mixed = np.concatenate([rng.normal(0, 1, 5000), rng.normal(5, 2, 3000)])

    def between(threshold: float) -> float:  # computed from the values themselves, not from the histogram
        low, high = mixed[mixed <= threshold], mixed[mixed > threshold]
        return len(low) * len(high) * (low.mean() - high.mean()) ** 2 / len(mixed) ** 2

    best = max(between(c) for c in np.linspace(np.percentile(mixed, 1), np.percentile(mixed, 99), 400))
    assert between(otsu_threshold(mixed)) == pytest.approx(best, rel=1e-3)


def test_quality3d_runs_end_to_end(tmp_path):
    out = tmp_path / "q.json"
    main(["--tasks", "white_matter", "--models", "hfseg-attention-unet-3d,otsu", "--seeds", "0", "--steps", "1",
          "--base_width", "4", "--patch", "32", "32", "32", "--output", str(out)])
    report = json.loads(out.read_text())
    results = report["results"]["white_matter"]
    assert 0.0 <= results["hfseg-attention-unet-3d"]["dice_mean"] <= 1.0
    assert 0.0 < results["otsu"]["dice_mean"] < 1.0
    assert out.with_suffix(".md").is_file()
