"""The training loop in-process: outputs, exact resume, max_steps past epochs, EMA, early stopping, gradient
accumulation, a missing tensorboard."""

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from hfseg.training import load_config, train
from hfseg.training.trainer import Trainer

TINY = ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[32, 32]", "data.max_train_samples=24",
        "data.max_eval_samples=8", "train.batch_size=8", "train.report_to=null", "train.panels=0",
        "augment.hflip=0.0", "scheduler.warmup_steps=0"]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo-cache"))


def run(tmp_path, demo_cache, name, *overrides):
    cfg = load_config("demo", [*TINY, f"data.options.cache_dir={demo_cache}",
                                                    f"train.output_dir={tmp_path / name}", *overrides])
    return train(cfg)


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_outputs_are_written_and_the_model_reloads(tmp_path, demo_cache):
    summary = run(tmp_path, demo_cache, "a", "train.epochs=2", "train.panels=2")
    out = tmp_path / "a"
    for name in ("config.yaml", "history.csv", "metrics.json", "curves.png", "panels.gif", "panels/epoch_001.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["steps"] == summary["steps"] == 6
    assert summary["stopped_by"] == "epochs"
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "eval_mean_foreground_dice" in history[0]
    model = AutoModelForSemanticSegmentation.from_pretrained(out / "best")
    processor = AutoImageProcessor.from_pretrained(out / "best")
    assert model.config.id2label[3] == "white_matter" and processor.size == {"height": 32, "width": 32}
    saved = json.loads((out / "best" / "preprocessor_config.json").read_text())
    low, high = saved["intensity_range"]
    assert saved["modality"] == processor.modality == "MR" and 0 <= low < high <= 255  # the uint8 T1 demo
    pixels = processor(np.zeros((40, 40), np.uint8) + 7)["pixel_values"]
    assert model(pixel_values=pixels).logits.shape == (1, 4, 32, 32)
    assert (out / "best" / "metrics.json").is_file() and len(list((out / "checkpoints").iterdir())) == 2


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("length", [("train.epochs=3",), ("train.epochs=1", "train.max_steps=9")],
                         ids=["epochs", "max_steps_past_epochs"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, demo_cache, monkeypatch, length):
    # Same config for all three runs (cosine schedule over 9 steps, 3 per epoch); only the interruption differs.
    run(tmp_path, demo_cache, "full", *length, "train.checkpointing=5")
    save = Trainer.save_checkpoint

    def save_then_crash(self):
        save(self)
        if self.state.step == 5:
            raise Interrupted  # killed right after the step-5 checkpoint, inside epoch 1

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(Interrupted):
        run(tmp_path, demo_cache, "cut", *length, "train.checkpointing=5")
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "final").exists()
    summary = run(tmp_path, demo_cache, "cut", *length, "train.checkpointing=5", "train.resume=latest")
    assert summary["steps"] == 9 and summary["epochs"] == 3
    assert summary["stopped_by"] == ("max_steps" if "train.max_steps=9" in length else "epochs")
    full, resumed = weights(tmp_path / "full" / "final"), weights(tmp_path / "cut" / "final")
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0, msg=key)


def test_max_steps_bounds_the_run_whatever_epochs_says(tmp_path, demo_cache, capsys):
    # 3 steps per epoch: max_steps=7 runs 2 whole epochs and 1 step of a third, though epochs=1.
    summary = run(tmp_path, demo_cache, "m", "train.epochs=1", "train.max_steps=7", "scheduler.name=cosine")
    assert summary["steps"] == 7 and summary["epochs"] == pytest.approx(2.33) and summary["stopped_by"] == "max_steps"
    out = tmp_path / "m"
    history = list(csv.DictReader((out / "history.csv").open()))
    assert [row["step"] for row in history] == ["3", "6", "7"]
    assert all(row["eval_mean_foreground_dice"] for row in history)  # every epoch evaluated, the partial last too
    # The cosine schedule spans the 7 steps (not the 3 of epochs=1): after step 3 the lr is cos-decayed by 3/7.
    assert float(history[0]["lr"]) == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 7)))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000006", "step_0000007"]
    assert json.loads((out / "metrics.json").read_text())["stopped_by"] == "max_steps"
    log = capsys.readouterr().out
    assert "3 steps per epoch, max_steps=7." in log
    assert "2.33 epochs, 7 steps in" in log and "(stopped by max_steps=7 reached)" in log


def test_ema_early_stopping_and_accumulation(tmp_path, demo_cache):
    summary = run(tmp_path, demo_cache, "e", "train.epochs=6", "train.ema_decay=0.5",
                  "train.early_stopping_patience=2", "train.early_stopping_min_delta=2.0",
                  "train.gradient_accumulation_steps=3")
    # Dice cannot improve by 2: epochs 1 and 2 do not improve on epoch 0, so patience 2 stops after epoch 2;
    # 3 batches per epoch with accumulation 3 make one optimizer step per epoch.
    assert summary["epochs"] == 3 and summary["steps"] == 3 and summary["best_epoch"] == 0
    assert summary["stopped_by"] == "early_stopping"
    # The saved model is the EMA (decay 0.5 over 3 steps), not the raw weights kept in the checkpoint.
    final = weights(tmp_path / "e" / "final")
    raw = load_file(str(tmp_path / "e" / "checkpoints" / "step_0000003" / "model.safetensors"))
    assert final.keys() == raw.keys()
    assert any(not torch.equal(final[k], raw[k]) for k in final if final[k].is_floating_point())


def test_resume_without_checkpoints_is_a_clear_error(tmp_path, demo_cache):
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        run(tmp_path, demo_cache, "none", "train.resume=latest")


def test_bf16_autocast_on_cpu_and_push_to_hub_uploads_the_packaged_run(tmp_path, demo_cache, monkeypatch):
    from huggingface_hub import ModelCard

    calls = []

    def upload(*, repo_id, folder_path, **kwargs):
        card = ModelCard.load(Path(folder_path) / "README.md")
        calls.append(("upload", repo_id, sorted(os.listdir(folder_path)), card.data.eval_results))
        return "https://hub.example/commit/1"

    monkeypatch.setattr("huggingface_hub.create_repo", lambda repo_id, **kwargs: calls.append(("create", repo_id)))
    monkeypatch.setattr("huggingface_hub.upload_folder", upload)
    summary = run(tmp_path, demo_cache, "bf", "train.epochs=1", "train.mixed_precision=bf16", "train.push_to_hub=true",
                  "train.hub_model_id=me/unet-demo")
    assert summary["steps"] == 3 and summary["final"]["loss"] == summary["final"]["loss"]  # finite, not NaN
    assert [c[:2] for c in calls] == [("create", "me/unet-demo"), ("upload", "me/unet-demo")]
    files, results = calls[1][2], calls[1][3]
    assert {"README.md", "model.safetensors", "config.json", "preprocessor_config.json", "modeling_unet.py"} <= set(
        files) and "checkpoints" not in files and "logs" not in files
    dice = next(r.metric_value for r in results if r.metric_name == "Mean foreground Dice")
    assert dice == pytest.approx(summary["best"])  # the card reports the best epoch, which is what was uploaded
    assert summary["hub_url"] == "https://hub.example/commit/1"

def test_missing_tensorboard_trains_without_a_tracker_and_says_how_to_get_it(tmp_path, demo_cache, monkeypatch,
                                                                              capsys):
    for name in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)  # `import tensorboard` raises ImportError
    summary = run(tmp_path, demo_cache, "tb", "train.max_steps=1", "train.report_to=tensorboard")
    assert summary["steps"] == 1 and (tmp_path / "tb" / "final" / "model.safetensors").is_file()
    log = capsys.readouterr().out
    assert log.count('pip install "hfseg[tensorboard]"') == 1 and "training without a tracker" in log
    assert not (tmp_path / "tb" / "logs").exists()
