"""The training loop behind `hfseg train` / `recipes/train.py`: any zoo model, any `hfseg.data` dataset, one or many
processes.

Reads top to bottom like accelerate's examples: Accelerator, data, model, optimizer and schedule, `prepare`,
resume, then per epoch train / evaluate / write / checkpoint. Accelerate does the device, precision, gradient
accumulation and process work; everything written to disk is written by the main process only.

The run ends at `train.max_steps` optimizer steps when set (then `train.epochs` is no limit, as in transformers'
`Trainer`; the schedule spans max_steps), else after `train.epochs`, or earlier by early stopping; metrics.json's
`stopped_by` says which (`"max_steps"`, `"epochs"`, `"early_stopping"`). The last, possibly partial, epoch is
evaluated and checkpointed too. On CPU the torch threads are chosen by `hfseg.threads.configure_threads`.

Many processes (`accelerate launch --num_processes N`, on one machine or several): each trains on its share of every
epoch, the parameters take their gradients' memory layout before DDP wraps the model (`align_parameter_layouts`),
and a streaming training split (`data.streaming`) is read shard by shard, each process its own (`StreamLoader`).

Checkpoints are written whole or not at all, and hold no pickled state (`checkpoints.py`); a new run into a folder
holding another is refused unless resumed or `train.overwrite_output_dir` is set; the items `skip_bad` left out are
listed in `skipped.jsonl`.

What depends on `task` (the model family, the loss, the metrics and the per-epoch pictures) sits in a task object
(`tasks.py`); the loop is the same for both.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..data import skipped_items
from ..metrics import ClassificationMetrics, SegmentationMetrics
from ..threads import ThreadChoice, configure_threads
from .checkpoints import (check_output_dir, check_random_states, clear_run_results, commit, load_training_state,
                          remove_temp_folders, resolve_checkpoint, rotate, save_training_state, step_folder,
                          temp_folder, write_marker)
from .config import RecipeConfig
from .data import SAMPLE_LOG_ENV, StreamLoader, build_dataloaders, load_recipe_data
from .optim import build_optimizer, build_scheduler
from .precision import resolve_mixed_precision
from ..evaluation.report import write_json
from .report import plot_curves, write_gif, write_history
from .tasks import make_task
from .volumes import VolumeSegmentationTask, build_volume_dataloaders, is_volume_run, load_volume_data


@dataclass
class TrainState:
    """Progress saved with every checkpoint, so a resumed run continues at the exact step."""

    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    epoch_loss: float = 0.0  # the sum of those batches' losses (the epoch's mean train loss survives a resume)
    epoch_batches: int = 0
    step: int = 0  # optimizer steps
    best: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    """The checkpoint folder to resume from: a path (checked), or `latest`: the newest complete one in the run's
    checkpoints/ (see `checkpoints.resolve_checkpoint`)."""
    return resolve_checkpoint(resume, output_dir)


class Trainer:
    """One training run; `Trainer(cfg).fit()` returns the final metrics."""

    def __init__(self, cfg: RecipeConfig, model: torch.nn.Module | None = None) -> None:
        """`model`: a prebuilt network used instead of the task's `create_model` / `create_classifier` (e.g. a peer
        library's model in the benchmarks); it must take `pixel_values` and return an output with `.logits`, and save
        with `save_pretrained`."""
        self.cfg = cfg
        t = cfg.train
        self.output_dir = Path(t.output_dir)
        # CPU threads: the cores this process may use, unless the user chose (not accelerate's default of 1).
        self.threads: ThreadChoice | None = None if torch.cuda.is_available() else configure_threads()
        self.report_to, self.tracker_note = _tracker(t.report_to)
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            # A second run in one process (a notebook, tests) may use another precision: accelerate keeps its state
            # process-wide, so start it afresh. Never in a distributed run, whose state belongs to the launcher.
            AcceleratorState._reset_state(reset_partial_state=True)
        self.accelerator = Accelerator(
            # Without a GPU, `cpu=True` lets `accelerate launch --num_processes N` run data-parallel over gloo
            # (accelerate only picks its multi-CPU mode when told the run is on CPU).
            cpu=not torch.cuda.is_available(),
            mixed_precision=resolve_mixed_precision(t.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu"),
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            log_with=self.report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
            step_scheduler_with_optimizer=False,
        )
        # Runs never overwrite each other: every process refuses alike, before anything is loaded or written.
        found = check_output_dir(self.output_dir, t.resume, t.overwrite_output_dir)
        if found and t.resume is None and self.accelerator.is_local_main_process:
            clear_run_results(self.output_dir)
        set_seed(t.seed)
        volumes = is_volume_run(cfg)
        if volumes and cfg.data.streaming:
            raise ValueError("data.streaming does not apply to volume runs (a plan section), which hold the "
                             "planned cases in memory; set data.streaming=false.")
        with self.accelerator.main_process_first():  # the dataset cache is built once
            self.data = load_volume_data(cfg, self.is_main) if volumes else load_recipe_data(cfg)
        if volumes:
            self.train_loader, self.eval_loader = build_volume_dataloaders(cfg, self.data)
            self.task = VolumeSegmentationTask(cfg, self.data.id2label, self.data.plan)
        else:
            acc = self.accelerator
            self.train_loader, self.eval_loader = build_dataloaders(cfg, self.data, acc.process_index,
                                                                    acc.num_processes, acc.device)
            self.task = make_task(cfg, self.data.id2label)
        self.model = model if model is not None else self.task.build_model(self.data)
        if cfg.model.channels_last:  # channels_last_3d for a 3D network (5-D weights)
            volumetric = any(p.dim() == 5 for p in self.model.parameters())
            self.model = self.model.to(memory_format=torch.channels_last_3d if volumetric else torch.channels_last)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optim)
        if self.accelerator.num_processes > 1:
            self.model.to(self.accelerator.device)
            self.align_parameter_layouts()
        streaming = isinstance(self.train_loader, StreamLoader)
        batches = len(self.train_loader) if streaming else math.ceil(
            len(self.train_loader.dataset) / (t.batch_size * self.accelerator.num_processes))
        self.steps_per_epoch = max(math.ceil(batches / t.gradient_accumulation_steps), 1)
        # max_steps, when set, is the run's length whatever epochs says (as in transformers' Trainer).
        self.total_steps = t.max_steps or t.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, cfg.scheduler, self.steps_per_epoch, self.total_steps)
        if streaming:  # already this process's shards, on its device
            self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        else:
            self.model, self.optimizer, self.train_loader = self.accelerator.prepare(
                self.model, self.optimizer, self.train_loader)
        if self.eval_loader is not None:
            self.eval_loader = self.accelerator.prepare(self.eval_loader)
        if cfg.model.compile:
            self.model = torch.compile(self.model)
        self.ema = None
        if t.ema_decay:
            self.ema = AveragedModel(self.accelerator.unwrap_model(self.model),
                                     multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
        # The train state, the scheduler and the EMA weights are saved as JSON / safetensors by `save_checkpoint`
        # (not registered with accelerate, which would pickle them).
        self.state = TrainState()
        self.num_labels = len(self.data.id2label)

    # -- helpers -----------------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)

    def _inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["pixel_values"]
        if not self.cfg.model.channels_last:
            return x
        return x.to(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)

    def _metrics(self) -> SegmentationMetrics | ClassificationMetrics:
        return self.task.metrics()

    def align_parameter_layouts(self) -> int:
        """Give every parameter the memory layout (strides) of its gradient, before DDP builds its gradient buckets
        from the parameters' layouts; returns the number of parameters changed.

        A convolution's weight gradient takes the layout the convolution runs in (channels-last inside hfseg's
        U-Nets on the CPU, with `model.channels_last`, in bf16 autocast), and a weight with a size-1 dimension
        ([16, 1, 3, 3], [4, 4, 1, 1]) fits either layout, so its strides can differ from its gradient's. DDP compares
        strides exactly: it warns "Grad strides do not match bucket view strides" and copies such gradients into
        its buckets by strides every step. One forward and backward pass on two training items shows each
        gradient's strides; the random state, the buffers (batch-norm statistics) and the gradients are restored.
        """
        model = self.model
        buffers = [buffer.detach().clone() for buffer in model.buffers()]
        states = random.getstate(), np.random.get_state()
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            batch = {key: value.to(self.accelerator.device) for key, value in _sample_batch(self.train_loader).items()}
            model.train()
            with self.accelerator.autocast():
                out = model(pixel_values=self._inputs(batch))
            _, loss = self.task.training_loss(out, batch["labels"])
            loss.backward()
        random.setstate(states[0])
        np.random.set_state(states[1])
        changed = 0
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers):
                buffer.copy_(saved)
            for parameter in model.parameters():
                grad, parameter.grad = parameter.grad, None
                if grad is not None and grad.stride() != parameter.stride():
                    parameter.data = torch.empty_strided(parameter.shape, grad.stride(), dtype=parameter.dtype,
                                                         device=parameter.device).copy_(parameter.data)
                    changed += 1
        return changed

    def sync_buffers(self) -> None:
        """Copy process 0's buffers (batch-norm running statistics) to every process.

        DDP broadcasts buffers only at the start of a training forward, so after the last training step each
        process holds the statistics of its own batch; evaluation and saving must all use the same ones.
        """
        if self.accelerator.num_processes > 1:
            modules = [self.accelerator.unwrap_model(self.model)] + ([self.ema] if self.ema is not None else [])
            for module in modules:
                for buffer in module.buffers():
                    torch.distributed.broadcast(buffer.data, src=0)

    def save_checkpoint(self) -> None:
        """checkpoints/step_N, written into a temporary folder and renamed once complete (`checkpoints.py`),
        keeping the newest `checkpoints_total_limit` complete ones."""
        acc = self.accelerator
        final = step_folder(self.output_dir, self.state.step)
        temp = temp_folder(final)
        if acc.is_local_main_process and temp.exists():
            shutil.rmtree(temp)
        acc.wait_for_everyone()
        acc.save_state(str(temp))  # model (safetensors), optimizer, each process's random states
        if self.is_main:
            save_training_state(temp, self.state.state_dict(), self.scheduler, self.ema)
        acc.wait_for_everyone()
        if self.is_main:
            self._commit_checkpoint(temp, final)
        acc.wait_for_everyone()
        # Every node's first process completes its own copy: without a shared filesystem each node keeps its own
        # random states (on a shared one the folder is already renamed).
        if acc.is_local_main_process and temp.is_dir():
            self._commit_checkpoint(temp, final)
        acc.wait_for_everyone()

    def _commit_checkpoint(self, temp: Path, final: Path) -> None:
        write_marker(temp, self.state.step, self.state.epoch)
        commit(temp, final)
        rotate(self.output_dir, self.cfg.train.checkpoints_total_limit, keep=final)

    def write_skipped(self) -> Path | None:
        """`skipped.jsonl` in the run folder: the items `skip_bad` left out of the splits, one
        `{"split", "item", "error"}` line each (also when the dataset came from the cache); None when none were."""
        splits = [getattr(self.data, name, None) for name in ("train", "eval")]
        rows = skipped_items([split for split in splits if split is not None])
        path = self.output_dir / "skipped.jsonl"
        if not rows:
            path.unlink(missing_ok=True)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        self.accelerator.print(f"{len(rows)} unreadable item(s) skipped (data.options.skip_bad), listed in {path}.")
        return path

    def save_model(self, name: str) -> Path:
        """The evaluated weights (EMA if on) and the image processor as a `save_pretrained` folder."""
        self.sync_buffers()
        folder = self.output_dir / name
        if self.is_main:
            model = self._eval_model()
            model.save_pretrained(folder, is_main_process=True)
            self.data.processor.save_pretrained(folder)
        self.accelerator.wait_for_everyone()
        return folder

    # -- evaluation --------------------------------------------------------------------------------------------
    @property
    def has_evaluation(self) -> bool:
        """Whether the run has an evaluation split (a loader, or the volumes a volume task predicts whole)."""
        return self.eval_loader is not None or getattr(self.data, "eval", None) is not None and hasattr(
            self.task, "evaluate")

    @torch.inference_mode()
    def evaluate(self, epoch: int) -> dict[str, Any]:
        """Loss and metrics over the whole evaluation split (each image once, across processes); a task with its
        own `evaluate` (whole volumes) does it its way."""
        self.sync_buffers()
        if hasattr(self.task, "evaluate"):
            model = self._eval_model()
            was_training = model.training
            model.eval()
            try:
                result = self.task.evaluate(model, self.data, self.accelerator, epoch)
            finally:
                model.train(was_training)
            if self.is_main:
                self.task.write_evaluation(self.output_dir, epoch, result, result.pop("_panel", None))
            return result
        model = self._eval_model()
        was_training = model.training
        model.eval()
        metrics = self._metrics()
        loss_sum, count = torch.zeros((), device=self.accelerator.device), 0
        panel = None
        for batch in tqdm(self.eval_loader, desc=f"eval {epoch}", leave=False, disable=not self.is_main):
            labels = batch["labels"]
            with self.accelerator.autocast():
                out = model(pixel_values=self._inputs(batch), **self.task.forward_kwargs(model, panel is None))
            logits = self.task.align(out.logits, labels)
            loss = self.task.loss(logits, labels)
            local_scores = self.task.scores(logits)
            scores, labels, losses = self.accelerator.gather_for_metrics(
                (local_scores, labels, loss.detach().expand(local_scores.shape[0])))
            loss_sum += losses.sum()
            count += losses.numel()
            metrics.update(scores, labels)
            if panel is None and self.cfg.train.panels:
                panel = self.task.panel_sample(batch, out, local_scores)
        model.train(was_training)
        result = metrics.compute()
        result["loss"] = (loss_sum / max(count, 1)).item()
        if self.is_main:
            self.task.write_evaluation(self.output_dir, epoch, result, panel)
        return result

    # -- training ----------------------------------------------------------------------------------------------
    def resume(self) -> None:
        acc = self.accelerator
        if acc.is_local_main_process:  # the temporary folders of saves a kill interrupted
            remove_temp_folders(self.output_dir)
        acc.wait_for_everyone()
        path = resolve_resume(self.cfg.train.resume, self.output_dir)
        if path is None:
            return
        check_random_states(path, acc.process_index)
        acc.load_state(str(path))
        self.state.load_state_dict(load_training_state(path, self.scheduler, self.ema))
        acc.print(f"Resumed from {path}: epoch {self.state.epoch}, step {self.state.step}.")

    def _record_epoch(self, epoch: int, train_loss: float, result: dict[str, Any] | None, seconds: float) -> bool:
        """Add the epoch to the history, update best/early stopping, write files; True to stop early."""
        t = self.cfg.train
        row: dict[str, Any] = {"epoch": epoch, "step": self.state.step, "train_loss": train_loss,
                               "lr": self.scheduler.get_last_lr()[0], "seconds": round(seconds, 2)}
        stop = False
        if result is not None:
            row.update({f"eval_{k}": v for k, v in result.items() if isinstance(v, (int, float))})
            value = result.get(t.metric)
            if value is None:
                raise ValueError(f"train.metric={t.metric!r} is not computed; available: "
                                 f"{', '.join(k for k, v in result.items() if isinstance(v, (int, float)))}.")
            if value == value and (self.state.best is None or value > self.state.best + t.early_stopping_min_delta):
                self.state.best, self.state.best_epoch = float(value), epoch
                self.state.epochs_without_improvement = 0
                self.save_model("best")
                if self.is_main:
                    write_json(self.output_dir / "best" / "metrics.json", {"epoch": epoch, **result})
            else:
                self.state.epochs_without_improvement += 1
                stop = bool(t.early_stopping_patience and
                            self.state.epochs_without_improvement >= t.early_stopping_patience)
        self.state.history.append(row)
        self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"},
                             step=self.state.step)
        if self.is_main:
            write_history(self.output_dir / "history.csv", self.state.history)
            if result is not None:
                plot_curves(self.output_dir / "curves.png", self.state.history, t.metric)
        return stop

    def fit(self) -> dict[str, Any]:
        cfg, t, acc = self.cfg, self.cfg.train, self.accelerator
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.output_dir / "config.yaml")
            self.write_skipped()
        if self.tracker_note:
            acc.print(self.tracker_note)
        if self.report_to:
            acc.init_trackers("tensorboard", config=_flat_config(cfg))
        self.resume()
        length = f"max_steps={t.max_steps}" if t.max_steps else f"{t.epochs} epochs ({self.total_steps} steps)"
        plan = getattr(self.data, "plan", None)
        if plan is not None:
            acc.print(plan.describe())
        acc.print(f"Training {cfg.model.name} on {cfg.data.dataset}: {self.data.describe_train()}, "
                  f"{acc.num_processes} process(es) on {acc.device}{_describe_threads(self.threads)}, "
                  f"{self.steps_per_epoch} steps per epoch, {length}.")
        if not len(self.train_loader):  # max_steps would never be reached
            raise ValueError(f"The training split gives no batch ({self.data.describe_train()}).")
        sample_log = _open_sample_log(acc.process_index)
        start = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.state.step, desc="train", disable=not self.is_main)
        stopped_by = self._limit_reached()
        result: dict[str, Any] | None = None
        while stopped_by is None:
            epoch = self.state.epoch
            epoch_start = time.perf_counter()
            self.train_loader.set_epoch(epoch)
            if hasattr(getattr(self.train_loader, "dataset", None), "set_epoch"):  # patches drawn per epoch
                self.train_loader.dataset.set_epoch(epoch)
            loader = self.train_loader
            if self.state.batch_in_epoch and isinstance(loader, StreamLoader):
                loader = loader.skip_first_batches(self.state.batch_in_epoch)
            elif self.state.batch_in_epoch >= len(self.train_loader):  # saved after the epoch's last batch
                loader = ()
            elif self.state.batch_in_epoch:
                loader = acc.skip_first_batches(self.train_loader, self.state.batch_in_epoch)
                # Older accelerate releases start the new loader at iteration 0, so its `__iter__` would set epoch 0.
                loader.set_epoch(epoch)
            else:
                self.state.epoch_loss, self.state.epoch_batches = 0.0, 0
            self.model.train()
            train_metrics = self._metrics()
            for batch in loader:
                with acc.accumulate(self.model):
                    with acc.autocast():
                        out = self.model(pixel_values=self._inputs(batch))
                    logits, loss = self.task.training_loss(out, batch["labels"])
                    acc.backward(loss)
                    if acc.sync_gradients and t.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                self.state.batch_in_epoch += 1
                if sample_log is not None:
                    sample_log.write(json.dumps({"epoch": epoch, "ids": batch["sample_id"].tolist()}) + "\n")
                self.state.epoch_loss += loss.item()
                self.state.epoch_batches += 1
                train_metrics.update(self.task.scores(logits.detach()), batch["labels"])
                if not acc.sync_gradients:
                    continue
                self.scheduler.step()
                self.state.step += 1
                if self.ema is not None:
                    self.ema.update_parameters(acc.unwrap_model(self.model))
                bar.update(1)
                if self.state.step % t.log_every == 0 or self.state.step == 1:
                    running_metric = train_metrics.compute().get(t.metric, float("nan"))
                    mean_loss = self.state.epoch_loss / self.state.epoch_batches
                    bar.set_postfix(loss=f"{mean_loss:.4f}", **{t.metric: f"{running_metric:.3f}"})
                    acc.log({"train/loss": loss.item(), "train/lr": self.scheduler.get_last_lr()[0]},
                            step=self.state.step)
                if isinstance(t.checkpointing, int) and self.state.step % t.checkpointing == 0:
                    self.save_checkpoint()
                if self.state.step >= self.total_steps:
                    break
            else:  # the epoch's batches are all trained
                self.state.batch_in_epoch = len(self.train_loader)
            if self.state.batch_in_epoch >= len(self.train_loader):
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
            stopped_by = self._limit_reached()
            result = None
            if self.has_evaluation and (epoch % t.eval_every == t.eval_every - 1 or stopped_by):
                result = self.evaluate(epoch)
            train_loss = self.state.epoch_loss / max(self.state.epoch_batches, 1)
            if self._record_epoch(epoch, train_loss, result, time.perf_counter() - epoch_start):
                stopped_by = stopped_by or "early_stopping"
            if t.checkpointing == "epoch" or stopped_by:
                self.save_checkpoint()
            if stopped_by == "early_stopping":
                acc.print(f"Early stopping: no {t.metric} improvement for {t.early_stopping_patience} epochs.")
        bar.close()
        if sample_log is not None:
            sample_log.close()
        return self._finish(result, time.perf_counter() - start, stopped_by)

    def _limit_reached(self) -> str | None:
        """`"max_steps"` or `"epochs"` when the run's length is reached (max_steps, when set, is the only one)."""
        t = self.cfg.train
        if t.max_steps:
            return "max_steps" if self.state.step >= t.max_steps else None
        return "epochs" if self.state.epoch >= t.epochs or self.state.step >= self.total_steps else None

    def _finish(self, result: dict[str, Any] | None, seconds: float, stopped_by: str) -> dict[str, Any]:
        t = self.cfg.train
        final = self.save_model("final")
        epochs = round(self.state.epoch + self.state.batch_in_epoch / max(len(self.train_loader), 1), 2)
        summary = {"model": self.cfg.model.name, "task": self.cfg.task, "dataset": self.cfg.data.dataset,
                   "epochs": epochs,
                   "steps": self.state.step, "seconds": round(seconds, 1), "metric": t.metric,
                   "best": self.state.best, "best_epoch": self.state.best_epoch, "final": result or {},
                   "stopped_by": stopped_by, "output_dir": str(self.output_dir)}
        if self.is_main:
            write_json(self.output_dir / "metrics.json", summary)
            frames = sorted((self.output_dir / "panels").glob("epoch_*.png"))
            write_gif(self.output_dir / "panels.gif", frames)
            if t.push_to_hub:  # the best model (else the final one) with its model card, images and records
                from ..hub import push_to_hub

                summary["hub_url"] = push_to_hub(self.output_dir, t.hub_model_id)
        self.accelerator.end_training()
        best = (f"best validation {t.metric} {self.state.best:.4f} at epoch {self.state.best_epoch}"
                if self.state.best is not None else "no validation split")
        where = self.output_dir / "best" if self.state.best is not None else final
        reason = {"max_steps": f"max_steps={t.max_steps} reached", "epochs": f"epochs={t.epochs} done",
                  "early_stopping": "early stopping"}[stopped_by]
        self.accelerator.print(
            f"Trained {self.cfg.model.name} on {self.cfg.data.dataset}: {epochs:g} epochs, "
            f"{self.state.step} steps in {seconds:.0f} s (stopped by {reason}); {best}; model saved to {where}")
        return summary


def _sample_batch(loader: torch.utils.data.DataLoader | StreamLoader) -> dict[str, torch.Tensor]:
    """The first two items of the training data, collated (for `Trainer.align_parameter_layouts`)."""
    source = loader.loader if isinstance(loader, StreamLoader) else loader
    dataset = source.dataset
    if isinstance(dataset, torch.utils.data.IterableDataset):
        items = list(itertools.islice(dataset, 2))
    else:
        items = [dataset[i] for i in range(min(2, len(dataset)))]
    return source.collate_fn(items)


def _open_sample_log(rank: int) -> IO[str] | None:
    """`$HFSEG_SAMPLE_LOG/rank_<rank>.jsonl`, appended one line per batch: `{"epoch": e, "ids": [sample ids]}`."""
    folder = os.environ.get(SAMPLE_LOG_ENV)
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return open(Path(folder) / f"rank_{rank}.jsonl", "a", buffering=1)


def _tracker(report_to: str | None) -> tuple[str | None, str | None]:
    """The tracker accelerate can use for `train.report_to`, and a note to print when it cannot: tensorboard is an
    optional dependency, and the run goes on without it."""
    if report_to == "tensorboard" and not any(_importable(name) for name in ("tensorboard", "tensorboardX")):
        return None, ('train.report_to: tensorboard, but tensorboard is not installed: training without a tracker '
                      '(pip install "hfseg[tensorboard]" to log to <output_dir>/logs, or set train.report_to=null).')
    return report_to, None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
        return False


def _describe_threads(choice: ThreadChoice | None) -> str:
    """`" with 2 CPU threads (2 cores / 1 process)"` for the "Training ..." line; empty on GPU."""
    if choice is None:
        return ""
    why = ("the user's choice" if choice.source == "user"
           else f"{choice.cores} cores / {choice.local_processes} process{'es' if choice.local_processes > 1 else ''}")
    return f" with {choice.threads} CPU thread{'s' if choice.threads > 1 else ''} ({why})"


def _flat_config(cfg: RecipeConfig) -> dict[str, Any]:
    """Scalars of the config with dotted keys (what TensorBoard's hparams accept)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, (int, float, str, bool)):
            flat[prefix] = node
        elif node is not None:
            flat[prefix] = str(node)

    walk("", cfg.to_dict())
    return flat


def train(cfg: RecipeConfig, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Run the recipe described by `cfg` (with a prebuilt `model` if given); returns the summary also written to
    metrics.json."""
    return Trainer(cfg, model).fit()
