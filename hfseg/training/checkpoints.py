"""Checkpoints that a kill cannot break, and that load without unpickling anything.

A checkpoint is written into a temporary folder next to its final place (`checkpoints/.step_0000016.tmp`): every
process writes there (accelerate's model, optimizer and per-process random states), the main process adds the
trainer state and the scheduler as JSON and the EMA weights as safetensors, and `checkpoint.json`, listing every
file with its size and sha256, is written last. The folder is then fsynced and renamed to `checkpoints/step_0000016`.
A folder named `step_*` with its marker is complete; anything else is ignored by `--resume latest`.

Loading checks the marker against the files (`CheckpointError` naming the file that is missing, truncated or
changed); `--resume latest` falls back to the previous complete checkpoint with a warning. Checkpoints written by
older hfseg versions hold the training state pickled (`custom_checkpoint_*.pkl`) and are refused: loading them
would need `torch.load(weights_only=False)`, which runs whatever code the file names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

MARKER = "checkpoint.json"
STATE_FILE = "trainer_state.json"
SCHEDULER_FILE = "scheduler_state.json"
EMA_FILE = "ema.safetensors"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (incomplete, truncated, changed or in the old pickled format)."""


def checkpoints_folder(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_folder(output_dir: str | Path, step: int) -> Path:
    return checkpoints_folder(output_dir) / f"step_{step:07d}"


def temp_folder(final: Path) -> Path:
    """Where `final` is written before it is complete: `.step_0000016.tmp` beside it."""
    return final.parent / f".{final.name}.tmp"


def _step_of(path: Path) -> int:
    try:
        return int(path.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def step_folders(output_dir: str | Path) -> list[Path]:
    """Every `checkpoints/step_*` folder, complete or not, oldest first."""
    folder = checkpoints_folder(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step_*") if p.is_dir() and _step_of(p) >= 0]
    return sorted(found, key=_step_of)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The `step_*` folders with a completeness marker, oldest first (the files are not hashed here)."""
    return [p for p in step_folders(output_dir) if (p / MARKER).is_file()]


def remove_temp_folders(output_dir: str | Path) -> list[Path]:
    """Delete the temporary folders of saves that never completed (a killed run); returns them."""
    folder = checkpoints_folder(output_dir)
    stale = sorted(folder.glob(".step_*.tmp")) if folder.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


# -- writing -----------------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk; folders cannot be opened on Windows, which is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_file(path: Path, value: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as handle:
        json.dump(value, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_training_state(folder: Path, state: dict[str, Any], scheduler: Any | None = None,
                        ema: torch.nn.Module | None = None) -> None:
    """The state accelerate would pickle, in formats that load without running code: JSON and safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json_file(folder / STATE_FILE, state)
    if scheduler is not None:
        try:
            write_json_file(folder / SCHEDULER_FILE, scheduler.state_dict())
        except TypeError as err:
            raise TypeError(f"The scheduler's state_dict is not JSON ({err}); checkpoints store it as JSON.") from None
    if ema is not None:
        from safetensors.torch import save_model

        save_model(ema, str(folder / EMA_FILE))


def write_marker(folder: Path, step: int, epoch: int) -> dict[str, Any]:
    """`checkpoint.json`: step, epoch and every file's size and sha256; written last, through a rename."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        _fsync(path)
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    marker = {"format": FORMAT, "step": step, "epoch": epoch, "files": files}
    write_json_file(folder / MARKER, marker)
    _fsync(folder)
    return marker


def commit(temp: Path, final: Path) -> None:
    """Rename the finished temporary folder to its final name (replacing an older folder of the same step)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(temp, final)
    _fsync(final.parent)


def rotate(output_dir: str | Path, limit: int | None, keep: Path | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit` (never the newest, nor `keep`); returns them.

    Only complete checkpoints count: an incomplete folder never pushes a usable one out.
    """
    if not limit:
        return []
    complete = complete_checkpoints(output_dir)
    old = [p for p in complete[:-max(limit, 1)] if keep is None or p.resolve() != keep.resolve()]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


# -- reading -----------------------------------------------------------------------------------------------------
def verify(folder: str | Path, hashes: bool = True) -> dict[str, Any]:
    """The checkpoint's marker, after checking that every file it lists is there with its size (and sha256)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a checkpoint folder.")
    pickled = sorted(folder.glob("custom_checkpoint_*.pkl"))
    if pickled:
        raise CheckpointError(
            f"{pickled[0]}: this checkpoint was written by an older hfseg and holds its training state pickled, "
            "which would need torch.load(weights_only=False) (able to run code from the file) to load. Start a new "
            "run (its best/ and final/ models are safetensors and load as they are), or resume with the hfseg "
            "version that wrote it.")
    marker_path = folder / MARKER
    if not marker_path.is_file():
        raise CheckpointError(f"{marker_path}: missing, so the checkpoint {folder} is incomplete (the save was "
                              "interrupted); resume from an earlier checkpoint.")
    try:
        marker = json.loads(marker_path.read_text())
        files = marker["files"]
        int(marker["step"]), int(marker["epoch"])
        files = {str(name): (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{marker_path}: unreadable ({err}); the checkpoint {folder} cannot be checked.",
                              ) from None
    for name, (expected, sha256) in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint (listed in {MARKER}).")
        size = path.stat().st_size
        if size != expected:
            raise CheckpointError(f"{path}: {size} bytes, {expected} when saved: the file is truncated or changed.")
        if hashes and _sha256(path) != sha256:
            raise CheckpointError(f"{path}: its sha256 differs from the one saved: the file is corrupt or changed.")
    return marker


def check_random_states(folder: Path, process_index: int) -> None:
    """accelerate swallows a failure to load the random states; check this process's file is there and loads."""
    path = folder / f"random_states_{process_index}.pkl"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this checkpoint was saved by fewer processes than this run has "
                              "(resume with the same number of processes).")
    from accelerate.utils import load

    try:
        load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read it is a bad checkpoint
        raise CheckpointError(f"{path}: cannot be loaded ({type(err).__name__}: {err}).") from None


def resolve_checkpoint(resume: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: a folder (checked, an error if bad) or `latest`, the newest complete one
    that checks out (a bad one is skipped with a warning naming what is wrong)."""
    if resume is None:
        return None
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume {resume}: not a checkpoint folder.")
        verify(path)
        return path
    candidates = step_folders(output_dir)
    if not candidates:
        raise FileNotFoundError(f"--resume latest: no checkpoints in {checkpoints_folder(output_dir)}.")
    problems = []
    for path in reversed(candidates):
        try:
            verify(path)
        except CheckpointError as err:
            problems.append(str(err))
            warnings.warn(f"--resume latest: skipping {path}: {err}", stacklevel=2)
            continue
        return path
    raise CheckpointError(f"--resume latest: no usable checkpoint in {checkpoints_folder(output_dir)}: "
                          + " ".join(problems))


def load_training_state(folder: Path, scheduler: Any | None = None, ema: torch.nn.Module | None = None,
                        ) -> dict[str, Any]:
    """The trainer state saved by `save_training_state` (and the scheduler's and EMA's, loaded in place)."""
    state = _read_json(folder / STATE_FILE)
    if scheduler is not None:
        scheduler.load_state_dict(_read_json(folder / SCHEDULER_FILE))
    if ema is not None:
        from safetensors.torch import load_model

        path = folder / EMA_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: missing, but this run has train.ema_decay set (was the checkpoint saved "
                                  "without EMA?).")
        try:
            load_model(ema, str(path), strict=True)
        except (OSError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot be loaded into this run's EMA model ({err}).") from None
    return state


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from the checkpoint.") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}).") from None


# -- the run folder ----------------------------------------------------------------------------------------------
RUN_FILES = ("config.yaml", "metrics.json", "checkpoints", "best", "final")
# What `overwrite_output_dir` removes before a new run: the previous run's results, so that `--resume latest`, the
# rotation and best/ never mix two runs. Other files in the folder are left alone.
RUN_RESULTS = ("checkpoints", "best", "final", "metrics.json", "history.csv", "skipped.jsonl")


class OutputDirInUse(ValueError):
    """A new run into a folder that holds another run, without `resume` or `overwrite_output_dir`."""


def check_output_dir(output_dir: str | Path, resume: str | None, overwrite: bool) -> list[str]:
    """Refuse a new run into `output_dir` when it holds a run (as transformers' Trainer does); returns what it holds.

    Allowed: an empty or new folder, `resume` set (continuing the run), or `overwrite` (starting over).
    """
    folder = Path(output_dir)
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if found and resume is None and not overwrite:
        raise OutputDirInUse(
            f"Output directory {folder} already holds a run ({', '.join(found)}). Use --resume latest "
            "(train.resume=latest) to continue it, or --overwrite_output_dir (train.overwrite_output_dir=true) to "
            "start a new run there (its checkpoints, best/, final/ and metrics are removed), or pick another "
            "--output_dir.")
    return found


def clear_run_results(output_dir: str | Path) -> list[Path]:
    """Remove the previous run's results (`RUN_RESULTS`) for `overwrite_output_dir`; returns what was removed."""
    removed = []
    for name in RUN_RESULTS:
        path = Path(output_dir) / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)  # several nodes on a shared filesystem may race here
        elif path.exists():
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed
