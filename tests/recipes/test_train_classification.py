"""`recipes/train.py --task classification` in subprocesses: CLI flags, resume, and two data-parallel processes."""

import json

import pytest
import torch
import yaml
from transformers import AutoModelForImageClassification

from hfseg.metrics import ClassificationMetrics
from hfseg.training import load_config
from hfseg.training.data import build_dataloaders, load_recipe_data
from tests.data.fixtures.brain_tumor_mri import CLASSES, write_brain_tumor_mri
from tests.recipes.test_train_recipe import launch

CONFIG = "brain_tumor_small_cnn"

TINY = ["model.kwargs.hidden_sizes=[4,8]", "model.kwargs.convs_per_block=1", "data.size=[16,16]",
        "train.report_to=null"]


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    root = tmp_path_factory.mktemp("brain")
    write_brain_tumor_mri(root / "data")
    return ["--dataset", "brain-tumor-mri", "--data_dir", root / "data", f"data.options.cache_dir={root / 'cache'}"]


def evaluate_single_process(config_path, model):
    """Evaluation of `model` on the run's validation split in this process, without the trainer."""
    cfg = load_config(config_path)
    data = load_recipe_data(cfg)
    _, loader = build_dataloaders(cfg, data)
    metrics = ClassificationMetrics(len(data.id2label), id2label=data.id2label)
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            metrics.update(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
    return metrics.compute()


def test_cli_trains_a_small_cnn_and_resumes(tmp_path, brain):
    out = tmp_path / "run"
    args = ["--config", CONFIG, "--task", "classification", "--model", "small-cnn", "--output_dir", out, "--epochs", 2,
            "--batch_size", 4, *brain, *TINY]
    result = launch(*args, "--max_steps", 3)
    assert "Trained small-cnn on brain-tumor-mri: 0.75 epochs, 3 steps" in result.stdout + result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["task"] == "classification" and saved["loss"]["name"] == "ce"
    assert saved["train"]["metric"] == "accuracy"
    resumed = launch(*args, "--resume", "latest")
    log = resumed.stdout + resumed.stderr
    assert "Resumed from" in log and "step_0000003" in log and "8 steps" in log
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 8 and summary["final"]["labels"] == list(CLASSES)
    assert (out / "confusion.png").is_file() and (out / "panels.gif").is_file()
    model = AutoModelForImageClassification.from_pretrained(out / "best")
    assert model.config.model_type == "hfseg_small_cnn" and model.config.num_channels == 1


def test_two_processes_evaluate_each_image_once_and_match_one_process(tmp_path, brain):
    out = tmp_path / "ddp"
    args = ["--config", CONFIG, "--output_dir", out, "--epochs", 1, "--batch_size", 2, *brain, *TINY,
            "data.eval_split=train", "data.max_eval_samples=13"]  # 13: 7 + 6 and a padding duplicate to drop
    result = launch(*args, "train.eval_batch_size=3", processes=2)
    log = result.stdout + result.stderr
    assert "2 process(es)" in log and log.count("Trained small-cnn") == 1
    summary = json.loads((out / "metrics.json").read_text())
    final = summary["final"]
    assert summary["steps"] == 4 and final["num_samples"] == 13  # every image once, no padding duplicates
    model = AutoModelForImageClassification.from_pretrained(out / "final")
    single = evaluate_single_process(out / "config.yaml", model)
    assert single["num_samples"] == 13
    assert final["confusion_matrix"] == single["confusion_matrix"]
    for key in ("accuracy", "mean_max_probability", "mean_true_class_probability", "macro_f1"):
        assert final[key] == pytest.approx(single[key], abs=1e-6, nan_ok=True), key
