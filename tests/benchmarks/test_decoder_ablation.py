"""`benchmarks.decoder_ablation` with tiny settings: variants built as described, runs kept, the report."""

import json

import pytest
import torch
from torch import nn

from benchmarks import decoder_ablation

TINY = ["--steps", "2", "--seeds", "0", "--batch_size", "4", "--size", "32", "--max_train_samples", "8",
        "--max_eval_samples", "4"]


def test_variants_differ_from_base_as_named():
    base = decoder_ablation.build_variant("base", 0, 4)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in base.modules()) and base.head.kernel_size == (1, 1)
    preset = decoder_ablation.build_variant("nearest+head3+fan-in", 0, 4)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in preset.modules()) and preset.head.kernel_size == (3, 3)
    last = decoder_ablation.build_variant("zero-init-last", 0, 4).unet.encoder.backbone.layer1[0].bn2.weight
    assert torch.all(last == 0) and torch.all(base.unet.encoder.backbone.layer1[0].bn2.weight == 1)


def test_tiny_run_appends_runs_and_reports(tmp_path):
    runs = tmp_path / "runs.jsonl"
    out = tmp_path / "ablation.json"
    decoder_ablation.main([*TINY, "--variants", "base,head3", "--runs", str(runs), "--output", str(out),
                           "--cache_dir", str(tmp_path / "cache")])
    lines = [json.loads(line) for line in runs.read_text().splitlines()]
    assert [r["variant"] for r in lines] == ["base", "head3"] and all(r["steps"] == 2 for r in lines)
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"base", "head3"} and 0 <= saved["results"]["head3"]["dice_mean"] <= 1
    # a report of the runs file alone gives the same table
    again = decoder_ablation.main(["--report", str(runs), "--output", str(tmp_path / "again.json")])
    assert again["results"]["base"]["dice"] == saved["results"]["base"]["dice"]
    assert "`head3`" in (tmp_path / "again.md").read_text()


def test_unknown_variant():
    with pytest.raises(SystemExit, match="Unknown variant"):
        decoder_ablation.main(["--variants", "nope"])
