"""Atomic checkpoints: temporary folder + rename, the completeness marker, corrupt files named, `latest` falling back,
rotation over complete checkpoints only, nothing unpickled, and a real run killed inside its save."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hfseg.training.checkpoints import (MARKER, CheckpointError, check_random_states, commit, complete_checkpoints,
                                        load_training_state, remove_temp_folders, resolve_checkpoint, rotate,
                                        save_training_state, step_folder, temp_folder, verify, write_marker)
from hfseg.training.config import SchedulerSection
from hfseg.training.optim import build_scheduler

ROOT = Path(__file__).resolve().parents[2]


def fake_checkpoint(output_dir: Path, step: int, epoch: int = 0, complete: bool = True) -> Path:
    """A checkpoint as the trainer writes it, with a small model file and a random-states file."""
    final = step_folder(output_dir, step)
    temp = temp_folder(final)
    temp.mkdir(parents=True)
    (temp / "model.safetensors").write_bytes(os.urandom(256))
    torch.save({"torch_manual_seed": torch.get_rng_state(), "step": step}, temp / "random_states_0.pkl")
    save_training_state(temp, {"step": step, "epoch": epoch, "history": [{"epoch": 0, "loss": 0.5}]})
    if not complete:
        return temp
    write_marker(temp, step, epoch)
    commit(temp, final)
    return final


def test_a_checkpoint_is_renamed_into_place_with_a_marker_listing_its_files(tmp_path):
    final = fake_checkpoint(tmp_path, 16, epoch=2)
    assert final == tmp_path / "checkpoints" / "step_0000016" and final.is_dir()
    assert not temp_folder(final).exists()
    marker = json.loads((final / MARKER).read_text())
    assert marker["step"] == 16 and marker["epoch"] == 2
    assert set(marker["files"]) == {"model.safetensors", "random_states_0.pkl", "trainer_state.json"}
    assert marker["files"]["model.safetensors"]["size"] == 256
    import hashlib
    assert marker["files"]["model.safetensors"]["sha256"] == hashlib.sha256(
        (final / "model.safetensors").read_bytes()).hexdigest()
    assert verify(final)["step"] == 16
    assert load_training_state(final)["history"] == [{"epoch": 0, "loss": 0.5}]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_file_is_a_checkpoint_error_naming_it(tmp_path, damage):
    final = fake_checkpoint(tmp_path, 4)
    target = final / "model.safetensors"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[:100])
    elif damage == "flip":
        target.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    else:
        target.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        verify(final)
    with pytest.raises(CheckpointError, match="model.safetensors"):  # an explicit path is an error, no fallback
        resolve_checkpoint(str(final), tmp_path)


def test_latest_falls_back_to_the_previous_complete_checkpoint_with_a_warning(tmp_path):
    good = fake_checkpoint(tmp_path, 2)
    bad = fake_checkpoint(tmp_path, 4)
    (bad / "trainer_state.json").write_text("{}")  # same file, other bytes
    fake_checkpoint(tmp_path, 6, complete=False)  # a save killed before its marker: only a temp folder
    (tmp_path / "checkpoints" / "step_0000008").mkdir()  # a folder without a marker
    with pytest.warns(UserWarning) as caught:
        assert resolve_checkpoint("latest", tmp_path) == good
    messages = " ".join(str(w.message) for w in caught)
    assert "step_0000008" in messages and "incomplete" in messages
    assert "trainer_state.json" in messages and str(bad) in messages
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        resolve_checkpoint("latest", tmp_path / "other")
    (good / "model.safetensors").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no usable checkpoint"):
        resolve_checkpoint("latest", tmp_path)


def test_temp_folders_are_ignored_and_cleaned(tmp_path):
    fake_checkpoint(tmp_path, 2)
    temp = fake_checkpoint(tmp_path, 4, complete=False)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_0000002"]
    assert remove_temp_folders(tmp_path) == [temp] and not temp.exists()


def test_rotation_counts_complete_checkpoints_only(tmp_path):
    for step in (2, 4, 6):
        fake_checkpoint(tmp_path, step)
    (tmp_path / "checkpoints" / "step_0000008").mkdir()  # incomplete: does not count, is not a reason to delete
    removed = rotate(tmp_path, 2)
    assert [p.name for p in removed] == ["step_0000002"]
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_0000004", "step_0000006"]
    assert rotate(tmp_path, 1, keep=tmp_path / "checkpoints" / "step_0000004") == []  # the one resumed from stays
    assert [p.name for p in rotate(tmp_path, 1)] == ["step_0000004"]
    assert rotate(tmp_path, 1) == [] and [p.name for p in complete_checkpoints(tmp_path)] == ["step_0000006"]


def test_old_pickled_checkpoints_are_refused_with_the_reason(tmp_path):
    final = fake_checkpoint(tmp_path, 2)
    torch.save({"step": 2}, final / "custom_checkpoint_0.pkl")
    with pytest.raises(CheckpointError, match=r"custom_checkpoint_0\.pkl.*weights_only=False"):
        verify(final)


def test_random_states_must_exist_and_load(tmp_path):
    final = fake_checkpoint(tmp_path, 2)
    check_random_states(final, 0)
    with pytest.raises(CheckpointError, match="random_states_1.pkl: missing"):
        check_random_states(final, 1)
    (final / "random_states_0.pkl").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="random_states_0.pkl: cannot be loaded"):
        check_random_states(final, 0)


@pytest.mark.parametrize("schedule", ["cosine", "polynomial", "step", "multistep"])
def test_scheduler_and_ema_round_trip_through_json_and_safetensors(tmp_path, schedule):
    def build():
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        cfg = SchedulerSection(name=schedule, warmup_steps=2)
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
        return model, optimizer, build_scheduler(optimizer, cfg, 3, 12), ema

    model, optimizer, scheduler, ema = build()
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model[0].weight.add_(0.1)
        ema.update_parameters(model)
    save_training_state(tmp_path, {"step": 5}, scheduler, ema)
    _, optimizer2, scheduler2, ema2 = build()
    assert load_training_state(tmp_path, scheduler2, ema2) == {"step": 5}
    assert scheduler2.get_last_lr() == scheduler.get_last_lr() and scheduler2.last_epoch == 5
    scheduler.step(), scheduler2.step()
    assert scheduler2.get_last_lr() == scheduler.get_last_lr()
    for (name, a), b in zip(ema.state_dict().items(), ema2.state_dict().values()):
        assert torch.equal(a, b), name
    assert int(ema2.n_averaged) == 5


KILLER = textwrap.dedent("""
    import os, signal, sys
    import hfseg.training.checkpoints as checkpoints
    import hfseg.training.trainer as trainer
    calls = []
    original = checkpoints.write_marker

    def write_marker_or_die(folder, step, epoch):
        calls.append(step)
        if len(calls) == int(os.environ["KILL_AT_SAVE"]):
            # The model, optimizer, random states and trainer state are written; die while writing the marker.
            (folder / "checkpoint.json.part").write_text('{"format": 1, "st')
            os.kill(os.getpid(), signal.SIGKILL)
        return original(folder, step, epoch)

    trainer.write_marker = write_marker_or_die
    from hfseg.training.cli import train_main
    train_main(sys.argv[1:])
""")


def test_a_run_killed_inside_its_save_resumes_from_the_previous_checkpoint(tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "run"
    args = ["--output_dir", str(out), "--epochs", "3", "train.checkpointing=2", "train.checkpoints_total_limit=1",
            "model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.options.size=32", "data.size=[32, 32]",
            "data.max_train_samples=16", "data.max_eval_samples=4", "train.batch_size=8", "train.report_to=null",
            "train.panels=0", "augment.hflip=0.0", f"data.options.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HFSEG_MIXED_PRECISION": "no", "TRANSFORMERS_VERBOSITY": "error", "KILL_AT_SAVE": "2"}
    killed = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    folder = out / "checkpoints"
    # The step-4 save died before its marker: step 2 is complete and still there (the rotation to limit 1 happens
    # only once the new checkpoint is complete).
    assert sorted(p.name for p in folder.iterdir()) == [".step_0000004.tmp", "step_0000002"]
    resumed = subprocess.run([sys.executable, "-m", "hfseg.cli", "train", *args, "--resume", "latest"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from {folder / 'step_0000002'}: epoch 0, step 2." in resumed.stdout + resumed.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    assert sorted(p.name for p in folder.iterdir()) == ["step_0000006"]  # temp cleaned, rotated to the limit
    assert verify(folder / "step_0000006")["step"] == 6
    assert not list(folder.glob("step_0000006/custom_checkpoint_*"))  # nothing pickled by accelerate for us
