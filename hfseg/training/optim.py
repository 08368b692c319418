"""Optimizers and learning-rate schedules of the recipe.

Every schedule is a per-optimizer-step multiplier of the base lr (a `LambdaLR`), so it resumes exactly from a
checkpoint (only the step count is state) and epoch-based schedules mean the same with any batch size:
- `exponential`: `gamma ** (step / steps_per_epoch)`, e.g. the liver study's x0.92 per epoch (applied stepwise
  within the epoch, continuous rather than a staircase: use `step` with `step_size: 1` for a staircase);
- `step`: `gamma ** floor(epoch / step_size)`; `multistep`: `gamma ** (number of milestones <= epoch)`;
- `cosine`: half cosine from 1 to `min_lr_ratio` over the run; `polynomial`: `(1 - t) ** power` down to
  `min_lr_ratio` (t = fraction of the run after warm-up);
- `warmup_steps`: linear ramp from 0 to the schedule's value first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimSection, SchedulerSection


def build_optimizer(parameters: Iterable[torch.nn.Parameter], cfg: OptimSection) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with momentum) over the trainable parameters."""
    params = [p for p in parameters if p.requires_grad]
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"Unknown optimizer {cfg.name!r}; choose adam, adamw or sgd.")


def lr_multiplier(cfg: SchedulerSection, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """The schedule as a function of the optimizer step (0-based)."""
    if steps_per_epoch <= 0 or total_steps <= 0:
        raise ValueError("A schedule needs at least one step per epoch and one step in total.")
    warmup = cfg.warmup_steps
    floor = cfg.min_lr_ratio

    def main(step: int) -> float:
        epoch = step / steps_per_epoch
        if cfg.name == "none":
            return 1.0
        if cfg.name == "exponential":
            return cfg.gamma ** epoch
        if cfg.name == "step":
            return cfg.gamma ** math.floor(epoch / cfg.step_size)
        if cfg.name == "multistep":
            return cfg.gamma ** sum(1 for m in cfg.milestones if math.floor(epoch) >= m)
        t = min(max(step - warmup, 0) / max(total_steps - warmup, 1), 1.0)
        if cfg.name == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if cfg.name == "polynomial":
            return floor + (1 - floor) * (1 - t) ** cfg.power
        raise ValueError(f"Unknown scheduler {cfg.name!r}.")

    def multiplier(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1) * main(warmup)
        return main(step)

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedulerSection, steps_per_epoch: int,
                    total_steps: int) -> LambdaLR:
    """A `LambdaLR` stepping `lr_multiplier` once per optimizer step."""
    return LambdaLR(optimizer, lr_multiplier(cfg, steps_per_epoch, total_steps))
