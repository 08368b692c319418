"""`recipes/train.py` end to end in subprocesses: CLI, data-parallel over 2 CPU processes, and that it learns."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSemanticSegmentation

from hfseg.metrics import SegmentationMetrics
from hfseg.models.zoo import create_model
from hfseg.training import load_config
from hfseg.training.data import build_dataloaders, load_recipe_data
from hfseg.models.outputs import logits_at, predict

ROOT = Path(__file__).parents[2]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
TINY = ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[32,32]", "train.report_to=null"]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo-cache"))


def launch(*args, processes=1, check=True):
    launcher = [*ACCELERATE, "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no"]
    if processes > 1:
        launcher.append("--multi_gpu")  # torchrun-style spawn; on a CPU-only machine the recipe uses gloo
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([*launcher, str(ROOT / "recipes" / "train.py"), *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-3000:] + result.stderr[-5000:])
    return result


def evaluate_single_process(config_path, model):
    """Evaluation of `model` on the run's validation split in this process, without the trainer."""
    cfg = load_config(config_path)
    data = load_recipe_data(cfg)
    _, loader = build_dataloaders(cfg, data)
    metrics = SegmentationMetrics(4, ignore_index=cfg.loss.ignore_index, id2label=data.id2label)
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            logits = logits_at(model(pixel_values=batch["pixel_values"]).logits, batch["labels"].shape[-2:])
            metrics.update(predict(logits), batch["labels"])
    return metrics.compute()


def test_cli_flags_overrides_and_errors(tmp_path, demo_cache):
    out = tmp_path / "run"
    result = launch("--output_dir", out, "--epochs", 1, "--batch_size", 16, "--lr", "0.002", "--max_steps", 2, *TINY,
                    f"data.options.cache_dir={demo_cache}", "train.panels=0")
    log = result.stdout + result.stderr
    assert "Trained attention-unet on demo: 0.33 epochs, 2 steps" in log and "(stopped by max_steps=2 reached)" in log
    if not torch.cuda.is_available():  # OMP_NUM_THREADS=1 exported by launch() is kept
        assert "on cpu with 1 CPU thread (the user's choice)" in log
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["batch_size"] == 16 and saved["optim"]["lr"] == 0.002 and saved["model"]["kwargs"] == {
        "base_channels": 4, "depth": 2, "convs_per_block": 1, "upsample": "nearest"}
    resumed = launch("--output_dir", out, "--epochs", 1, "--batch_size", 16, "--lr", "0.002", "--max_steps", 4, *TINY,
                     f"data.options.cache_dir={demo_cache}", "train.panels=0", "--resume", "latest")
    log = resumed.stdout + resumed.stderr
    assert "Resumed from" in log and "step_0000002" in log and "4 steps" in log
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 4 and summary["stopped_by"] == "max_steps"
    bad = launch("--output_dir", out, "optim.learnin_rate=1", check=False)
    assert bad.returncode != 0 and "Unknown config key optim.'learnin_rate'" in bad.stderr


def test_two_processes_evaluate_each_image_once_and_match_one_process(tmp_path, demo_cache):
    out = tmp_path / "ddp"
    result = launch("--output_dir", out, "--epochs", 1, *TINY, f"data.options.cache_dir={demo_cache}",
                    "train.panels=1", processes=2)
    log = result.stdout + result.stderr
    assert "2 process(es)" in log and log.count("Trained attention-unet") == 1  # the summary is printed once
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 6  # 94 images / (8 per process x 2 processes)
    final = summary["final"]
    assert final["num_images"] == 32  # every validation image exactly once (no padding duplicates)
    model = AutoModelForSemanticSegmentation.from_pretrained(out / "final")
    single = evaluate_single_process(out / "config.yaml", model)
    assert single["num_images"] == 32
    for key in ("mean_foreground_dice", "mean_iou", "pixel_accuracy", "image_mean_foreground_dice"):
        assert final[key] == pytest.approx(single[key], abs=1e-6), key
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["epoch_000.png"]


def test_the_demo_recipe_learns(tmp_path, demo_cache):
    """A short run lifts validation Dice far above the untrained model (the README states the full run's)."""
    out = tmp_path / "learn"
    overrides = ["model.kwargs.base_channels=8", "data.size=[64,64]", "train.report_to=null", "train.panels=0",
                 f"data.options.cache_dir={demo_cache}"]
    launch("--output_dir", out, "--epochs", 6, *overrides)
    trained = json.loads((out / "metrics.json").read_text())["best"]
    torch.manual_seed(0)
    cfg = load_config(out / "config.yaml")
    untrained = create_model(cfg.model.name, id2label={0: "a", 1: "b", 2: "c", 3: "d"}, num_channels=1,
                             **cfg.model.kwargs)
    baseline = evaluate_single_process(out / "config.yaml", untrained)["mean_foreground_dice"]
    assert trained > 0.5 and trained > baseline + 0.3, (trained, baseline)
