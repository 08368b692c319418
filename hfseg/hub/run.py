"""Read a training run folder (the recipe's `train.output_dir`) into what packaging it for the Hub needs.

A run holds `config.yaml` (the resolved recipe), `metrics.json` (the summary), `history.csv`, `curves.png`,
`panels/epoch_NNN.png`, `best/` and `final/` (`save_pretrained` folders; `best/metrics.json` holds the best epoch's
validation metrics), `checkpoints/` and `logs/`. Classification runs have the same layout (`task: classification`
in config.yaml, often a `confusion.png`). Only `best/` or `final/` is required; everything else is read if present.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml

WEIGHTS = ("best", "final")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TASKS = ("segmentation", "classification")


@dataclass
class TrainingRun:
    """A run folder's contents.

    Args:
        run_dir (`Path`): the run folder.
        weights (`str`): which saved model is packaged, `"best"` or `"final"`.
        config (`dict`): config.yaml as written (empty if absent).
        summary (`dict`): metrics.json (empty if the run has not finished).
        metrics (`dict`): validation metrics of the packaged weights: `best/metrics.json` for `"best"`, the summary's
            `final` entry for `"final"` (empty when the run had no validation split).
    """

    run_dir: Path
    weights: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_dir(self) -> Path:
        return self.run_dir / self.weights

    def section(self, name: str) -> dict[str, Any]:
        """A config.yaml section (`model`, `data`, `train`, ...), empty if absent."""
        value = self.config.get(name)
        return dict(value) if isinstance(value, dict) else {}

    @property
    def model_name(self) -> str:
        """The zoo name the run trained (`attention-unet`, ...), else the run folder's name."""
        return str(self.section("model").get("name") or self.summary.get("model") or self.run_dir.name)

    @property
    def dataset(self) -> str | None:
        """The `hfseg.data.load` name of the training data, if recorded."""
        name = self.section("data").get("dataset") or self.summary.get("dataset")
        return str(name) if name else None

    @property
    def task(self) -> str:
        """`"segmentation"` or `"classification"`: config.yaml's `task`, else from the saved model's architecture."""
        task = self.config.get("task")
        if task is None:
            architectures = _read_json(self.weights_dir / "config.json").get("architectures") or []
            classifier = any(str(a).endswith("ForImageClassification") for a in architectures)
            task = "classification" if classifier else "segmentation"
        if task not in TASKS:
            raise ValueError(f"{self.run_dir / 'config.yaml'}: task={task!r} is not allowed; choose one of "
                             f"{', '.join(TASKS)}.")
        return str(task)

    @property
    def eval_split(self) -> str:
        return str(self.section("data").get("eval_split") or "validation")

    @property
    def epoch(self) -> int | None:
        """The epoch whose weights are packaged (0-based, as in history.csv), if known."""
        if self.weights == "best":
            epoch = self.metrics.get("epoch", self.summary.get("best_epoch"))
        else:
            epoch = self.summary.get("epochs")
            epoch = int(epoch) - 1 if isinstance(epoch, (int, float)) and epoch == int(epoch) else None
        return int(epoch) if epoch is not None else None

    def file(self, name: str) -> Path | None:
        """`run_dir / name` if it is a file."""
        path = self.run_dir / name
        return path if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the training or remove the file.") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config sections, got {type(data).__name__}.")
    return data


def _check_weights(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: it is not a save_pretrained folder. Package a run whose "
                                "best/ or final/ was written by the trainer.")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"{folder} has no model weights (expected one of {', '.join(WEIGHT_FILES)}); the run "
                                "may have been interrupted while saving. Re-run it, or package the other folder with "
                                f"weights={'final' if folder.name == 'best' else 'best'!r}.")


def read_run(run_dir: str | os.PathLike, weights: str | None = None) -> TrainingRun:
    """Read the run folder `run_dir`, checking that the weights to package are there.

    Args:
        run_dir (`str` or `os.PathLike`): the recipe's `train.output_dir` (e.g. `runs/demo`).
        weights (`str`, *optional*): `"best"` (the best validation epoch) or `"final"` (the last one). Defaults to
            `"best"` when the run has it (it has a validation split), else `"final"`.

    Raises:
        `FileNotFoundError`: the folder does not exist, is not a run (neither best/ nor final/), or the chosen folder
            lacks its config or weights. `ValueError`: an unknown `weights`, or unreadable metadata files.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Run folder {root} does not exist; pass the recipe's train.output_dir (e.g. "
                                "runs/demo).")
    if weights is not None and weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} is not allowed; choose one of {', '.join(WEIGHTS)}.")
    present = [name for name in WEIGHTS if (root / name).is_dir()]
    if not present:
        raise FileNotFoundError(f"{root} is not an hfseg training run: it has neither best/ nor final/. Pass the "
                                "folder the recipe wrote (train.output_dir, e.g. runs/demo), after training finished.")
    weights = weights or present[0]
    if weights not in present:
        raise FileNotFoundError(f"{root} has no {weights}/ folder (it has {', '.join(p + '/' for p in present)}); pass "
                                f"weights={present[0]!r}.")
    _check_weights(root / weights)
    summary = _read_json(root / "metrics.json")
    metrics = _read_json(root / "best" / "metrics.json") if weights == "best" else dict(summary.get("final") or {})
    return TrainingRun(run_dir=root, weights=weights, config=_read_yaml(root / "config.yaml"), summary=summary,
                       metrics=metrics)


def redact_paths(value: Any) -> Any:
    """`value` with every absolute local path (a string starting with `/`, `~` or a drive letter) replaced by
    `<local>/<last component>`: a published config or summary should not show the trainer's file system."""
    if isinstance(value, dict):
        return {key: redact_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_paths(item) for item in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        return f"<local>/{PurePath(value.replace(chr(92), '/')).name}"
    return value
