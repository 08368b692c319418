"""`recipes/train.py` with its default augmentation (random flips) killed with SIGKILL after a checkpoint, inside an
epoch and at an epoch boundary, then resumed with `--resume latest`: the final weights are bit-identical to an
uninterrupted run's, on one process and on two (gloo).

Each killed run goes through a small wrapper that runs `recipes/train.py` unchanged except that, once the checkpoint
of the chosen step is saved (`Trainer.save_checkpoint` returned on every process), each process writes a mark and
waits; the test then kills the whole process group. So the kill lands after a complete checkpoint and before the
next one, whatever the load of the machine.

A volume run (patches, nnU-Net's augmentation) interrupted after a mid-epoch checkpoint resumes bit-identical too
(in-process, as tests/training/test_trainer.py does for 2D runs).
"""

import csv
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hfseg.data import load
from hfseg.training import load_config
from hfseg.training import train as train_in_process
from hfseg.training.trainer import Trainer

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "recipes" / "train.py"
WRAPPER = '''
import os, runpy, sys, time
from pathlib import Path
from hfseg.training import trainer

pause_at, marks = int(os.environ["HFSEG_TEST_PAUSE_AT"]), Path(os.environ["HFSEG_TEST_MARKS"])
save_checkpoint = trainer.Trainer.save_checkpoint


def pausing_save_checkpoint(self, *args, **kwargs):
    result = save_checkpoint(self, *args, **kwargs)
    if self.state.step == pause_at:
        mark = marks / f"rank_{self.accelerator.process_index}"
        mark.with_suffix(".tmp").write_text(str(os.getpid()))
        mark.with_suffix(".tmp").rename(mark)  # whole when it appears: the test reads the pid
        time.sleep(3600)  # killed here by the test
    return result


trainer.Trainer.save_checkpoint = pausing_save_checkpoint
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def overrides(cache: str, train: int, epochs: int, checkpointing: int, output_dir: Path) -> list[str]:
    """The demo recipe, tiny, with its augmentation left as configured (hflip 0.5)."""
    return ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.options.size=32", "data.size=[32, 32]",
            f"data.options.cache_dir={cache}", f"data.max_train_samples={train}", "data.max_eval_samples=4",
            "train.batch_size=4", f"train.epochs={epochs}", f"train.checkpointing={checkpointing}",
            "train.mixed_precision='no'", "train.report_to=null", "train.panels=0", f"train.output_dir={output_dir}"]


def command(processes: int, script: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *script]


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def train(tmp_path: Path, processes: int, args: list[str]) -> None:
    """A whole run (or the rest of one, with `--resume latest` in `args`)."""
    result = subprocess.run(command(processes, [str(SCRIPT), *args]), cwd=tmp_path, env=environment(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def train_and_kill(tmp_path: Path, processes: int, args: list[str], step: int) -> None:
    """A run killed with SIGKILL (all its processes) once the checkpoint of `step` is saved."""
    marks = tmp_path / f"marks_{step}"
    marks.mkdir()
    wrapper = tmp_path / "pause_after_checkpoint.py"
    wrapper.write_text(WRAPPER)
    env = {**environment(tmp_path), "HFSEG_TEST_PAUSE_AT": str(step), "HFSEG_TEST_MARKS": str(marks)}
    log = tmp_path / f"killed_at_{step}.log"  # a file, not a pipe: a full pipe would stall the run
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command(processes, [str(wrapper), str(SCRIPT), *args]), cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(marks.glob("rank_*[0-9]"))) < processes:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (code {proc.returncode}) before its step-{step} checkpoint:\n"
                            f"{log.read_text()[-4000:]}")
            assert time.monotonic() < deadline, f"no step-{step} checkpoint within 300 s"
            time.sleep(0.2)
    finally:
        # torchrun starts each worker in a session of its own: kill the workers by pid, then the launcher's group.
        for mark in marks.glob("rank_*[0-9]"):
            kill(int(mark.read_text()))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL or processes > 1


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{len(different)} of {len(first)} tensors differ, e.g. {different[:3]}"
    assert_same_history(a, b)


def assert_same_history(a: Path, b: Path) -> None:
    """Each epoch's row (train loss over all its batches, learning rate, validation scores) as if never stopped."""
    def rows(run: Path) -> list[dict[str, str]]:
        with open(run / "history.csv", newline="") as f:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]

    assert rows(a) == rows(b)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("demo-cache"))
    load("demo", size=32, cache_dir=folder)  # built once, read by every run
    return folder


def test_one_process_killed_inside_an_epoch_and_at_its_end_ends_bit_identical(tmp_path, cache):
    """12 images in batches of 4 = 3 steps per epoch, 3 epochs, a checkpoint every 2 steps: killed after step 4
    (one batch into epoch 1), resumed, killed after step 6 (epoch 1's last batch: the boundary), resumed to the end."""
    reference = tmp_path / "reference"
    reference.mkdir()
    train(reference, 1, overrides(cache, 12, 3, 2, reference / "run"))
    args = overrides(cache, 12, 3, 2, tmp_path / "run")
    train_and_kill(tmp_path, 1, args, 4)
    assert (tmp_path / "run" / "checkpoints" / "step_0000004").is_dir()
    train_and_kill(tmp_path, 1, [*args, "--resume", "latest"], 6)
    assert (tmp_path / "run" / "checkpoints" / "step_0000006").is_dir()
    assert not (tmp_path / "run" / "final").exists()
    train(tmp_path, 1, [*args, "--resume", "latest"])
    assert_same_weights(reference / "run", tmp_path / "run")


def test_two_processes_killed_inside_an_epoch_and_at_its_end_end_bit_identical(tmp_path, cache):
    """2 processes over gloo: 16 images = 2 batches of 4 per process and epoch, 3 epochs; killed after step 3
    (inside epoch 1), resumed, killed after step 4 (its end), resumed to the end."""
    reference = tmp_path / "reference"
    reference.mkdir()
    train(reference, 2, overrides(cache, 16, 3, 1, reference / "run"))
    args = overrides(cache, 16, 3, 1, tmp_path / "run")
    train_and_kill(tmp_path, 2, args, 3)
    train_and_kill(tmp_path, 2, [*args, "--resume", "latest"], 4)
    assert (tmp_path / "run" / "checkpoints" / "step_0000004").is_dir()
    train(tmp_path, 2, [*args, "--resume", "latest"])
    assert_same_weights(reference / "run", tmp_path / "run")


class Interrupted(Exception):
    pass


def test_a_volume_run_interrupted_inside_an_epoch_resumes_bit_identical(tmp_path, spheres_nnunet, monkeypatch):
    """The bundled nnunet_3d recipe, tiny, with dropout (so the model draws from the global RNG, which accelerate
    restores: the loaders must not draw from it): 4 patches of 2 = 2 steps per epoch, 5 steps; stopped right after
    the step-3 checkpoint (one batch into epoch 1), resumed with `latest`."""
    threads, states = torch.get_num_threads(), (random.getstate(), np.random.get_state(), torch.get_rng_state())

    def run(name, *extra):
        cfg = load_config("nnunet_3d", [
            "plan.base_width=4", "model.kwargs.dropout=0.2", "train.max_steps=5", "train.batch_size=2",
            "data.samples_per_epoch=4", "train.report_to=null", "train.panels=0", "train.checkpointing=3",
            "data.max_eval_samples=1",
            f"data.options.cache_dir={tmp_path / 'cache'}", *extra],
            values={"data.data_dir": str(spheres_nnunet), "train.output_dir": str(tmp_path / name)})
        return train_in_process(cfg)

    try:
        run("reference")
        save = Trainer.save_checkpoint

        def save_then_stop(self):
            save(self)
            if self.state.step == 3:
                raise Interrupted

        monkeypatch.setattr(Trainer, "save_checkpoint", save_then_stop)
        with pytest.raises(Interrupted):
            run("run")
        monkeypatch.undo()
        assert run("run", "train.resume=latest")["steps"] == 5
    finally:  # the runs set the thread count and seed every global RNG (accelerate's set_seed)
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
    assert_same_weights(tmp_path / "reference", tmp_path / "run")
