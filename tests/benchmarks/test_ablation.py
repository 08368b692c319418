"""`benchmarks.ablation` with tiny settings: every variant switches off what it names."""

import json

import pytest

from benchmarks import ablation


def test_variants_switch_measures_off():
    default, none = ablation.build_variant("default"), ablation.build_variant("none")
    assert default.unet.channels_last_on_cpu and default.unet.decoder.blocks[0].lean_inference
    assert not none.unet.channels_last_on_cpu and not none.unet.decoder.blocks[0].lean_inference
    assert not none.unet.decoder.blocks[0].stage.recompute and not none.unet.decoder.blocks[0].gate.fold_in_eval
    only = ablation.build_variant("-recompute")
    assert not only.unet.decoder.blocks[0].stage.recompute and only.unet.decoder.blocks[0].stage.convs[0].fold_in_eval


def test_tiny_run(tmp_path):
    report = ablation.main(["--variants", "default,-fold,+bf16", "--rounds", "1", "--steps", "1", "--warmup", "1",
                            "--size", "32", "--batch_size", "2", "--no_memory", "--output", str(tmp_path / "a.json")])
    saved = json.loads((tmp_path / "a.json").read_text())
    assert list(saved["results"]) == ["default", "-fold", "+bf16"]
    assert saved["results"]["default"]["train_vs_default"] == pytest.approx(1.0)
    assert report["results"]["-fold"]["infer_ms"] > 0 and (tmp_path / "a.md").is_file()
