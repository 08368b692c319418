"""`build_hub_folder`: the exact folder a training run uploads to the Hub.

It holds the model re-saved as safetensors with its config (with `auto_map` and a copy of the code for hfseg's
own classes, so `trust_remote_code=True` loading works without hfseg), the image processor, the model card
(README.md), images/ (curves, the prediction panel or confusion matrix), training_config.yaml, metrics.json,
eval_results.json and history.csv. Never checkpoints/ (optimizer state) or logs/.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from .card import model_card
from .run import TrainingRun, read_run, redact_paths

AUTO_CLASSES = {"segmentation": AutoModelForSemanticSegmentation, "classification": AutoModelForImageClassification}
# Run files copied into images/ under these names (other top-level images keep their own names).
IMAGE_NAMES = {"curves.png": "curves.png", "panels.gif": "predictions.gif", "confusion.png": "confusion.png"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")


def load_packaged(run: TrainingRun) -> tuple[torch.nn.Module, Any]:
    """The run's model (with the Auto class of its task) and image processor, from `run.weights_dir`."""
    folder = run.weights_dir
    auto = AUTO_CLASSES[run.task]
    try:
        model = auto.from_pretrained(folder)
    except ValueError as err:
        raise ValueError(f"{folder} does not load with {auto.__name__} (task {run.task!r}); if the task is wrong, set "
                         f"`task` in {run.run_dir / 'config.yaml'}. {err}") from err
    try:
        processor = AutoImageProcessor.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{folder} has no usable image processor (preprocessor_config.json): the model cannot "
                                "be used without its preprocessing. Save it next to the weights "
                                f"(processor.save_pretrained(folder)). {err}") from err
    return model.eval(), processor


def _register_hfseg_code(model: torch.nn.Module, processor: Any, task: str) -> None:
    """Make `save_pretrained` copy hfseg's own model/config/processor code and write `auto_map`."""
    if type(model).__module__.startswith("hfseg."):
        type(model).register_for_auto_class(AUTO_CLASSES[task].__name__)
        type(model.config).register_for_auto_class()
    if type(processor).__module__.startswith("hfseg."):
        type(processor).register_for_auto_class()


def _prepare(out: Path, run: TrainingRun, overwrite: bool) -> None:
    resolved, root = out.resolve(), run.run_dir.resolve()
    if resolved == root or resolved in root.parents or any(
            resolved == p or p in resolved.parents for p in (root / "best", root / "final", root / "checkpoints")):
        raise ValueError(f"out_dir {out} would overwrite the run's own files; choose a new folder (the default is "
                         f"{run.run_dir / 'hub'}).")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it, or another "
                                  "out_dir.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _panel(run: TrainingRun) -> Path | None:
    """The prediction panel of the packaged epoch, else the last one."""
    panels = sorted((run.run_dir / "panels").glob("epoch_*.png"))
    if run.epoch is not None:
        exact = run.run_dir / "panels" / f"epoch_{run.epoch:03d}.png"
        if exact.is_file():
            return exact
    return panels[-1] if panels else None


def copy_images(run: TrainingRun, folder: Path) -> list[str]:
    """Copy the run's figures into `folder`; returns their names there (curves and predictions first)."""
    sources: dict[str, Path] = {}
    for name, target in IMAGE_NAMES.items():
        if run.file(name):
            sources[target] = run.run_dir / name
    panel = _panel(run)
    if panel is not None:
        sources["predictions.png"] = panel
    for path in sorted(run.run_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and path.name not in IMAGE_NAMES:
            sources.setdefault(path.name, path)
    order = ["curves.png", "predictions.png", "predictions.gif", "confusion.png"]
    names = [n for n in order if n in sources] + sorted(n for n in sources if n not in order)
    if names:
        folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(sources[name], folder / name)
    return names


def _copy_records(run: TrainingRun, out: Path) -> None:
    """The run's records, absolute local paths (data folders, caches, the output folder) redacted."""
    if run.file("config.yaml"):
        (out / "training_config.yaml").write_text(yaml.safe_dump(redact_paths(run.config), sort_keys=False))
    if run.file("metrics.json"):
        (out / "metrics.json").write_text(json.dumps(redact_paths(run.summary), indent=2))
    if run.file("history.csv"):
        shutil.copyfile(run.run_dir / "history.csv", out / "history.csv")
    if run.metrics:
        (out / "eval_results.json").write_text(json.dumps(run.metrics, indent=2))


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def default_repo_id(run: TrainingRun) -> str:
    """The run's `train.hub_model_id`, else `your-name/<model>-<dataset>` (to be replaced when uploading)."""
    hub_id = run.section("train").get("hub_model_id")
    return str(hub_id) if hub_id else f"your-name/{run.model_name}-{run.dataset or 'model'}"


def build_hub_folder(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                     weights: str | None = None, repo_id: str | None = None, license: str = "apache-2.0",
                     dataset_id: str | None = None, tags: Sequence[str] = (), overwrite: bool = False) -> Path:
    """Write the folder that `push_to_hub` uploads for the run in `run_dir`, and return it.

    Args:
        run_dir (`str` or `os.PathLike`): the run folder (the recipe's `train.output_dir`, e.g. `runs/demo`).
        out_dir (`str` or `os.PathLike`, *optional*): where to write; defaults to `run_dir/hub`. Must be new or
            empty unless `overwrite`.
        weights (`str`, *optional*): `"best"` or `"final"`; defaults to best/ when the run has it.
        repo_id (`str`, *optional*): the Hub repository named in the card; defaults to the run's
            `train.hub_model_id`, else `your-name/<model>-<dataset>`.
        license (`str`, *optional*, defaults to `"apache-2.0"`): the weights' license (a Hub license id).
        dataset_id (`str`, *optional*): the training data's Hub dataset id, if it is on the Hub (card `datasets`).
        tags (`Sequence[str]`, *optional*): extra card tags.
        overwrite (`bool`, *optional*, defaults to `False`): replace a non-empty `out_dir`.

    Returns:
        `Path`: the folder, loadable with `from_pretrained` (Auto classes, `trust_remote_code=True` for hfseg
        models where hfseg is not installed).

    Raises:
        `FileNotFoundError`: not a run folder, or its weights or image processor are missing.
        `FileExistsError`: `out_dir` is not empty and `overwrite` is False.
    """
    run = read_run(run_dir, weights)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "hub"
    model, processor = load_packaged(run)
    _prepare(out, run, overwrite)
    _register_hfseg_code(model, processor, run.task)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _copy_records(run, out)
    images = copy_images(run, out / "images")
    card = model_card(run, model, processor, repo_id=repo_id or default_repo_id(run), license=license,
                      dataset_id=dataset_id, tags=tags, images=images, files=_listing(out))
    card.save(out / "README.md")
    return out
