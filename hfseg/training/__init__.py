"""The training recipe's parts: configuration (and the bundled configs/), data loaders, optimizers/schedules, the
loop, its reports, and the recipes' command lines (`cli`, behind `hfseg train` and `recipes/train.py`)."""

from typing import Any

from .config import RecipeConfig, load_config


def train(cfg: RecipeConfig) -> dict[str, Any]:
    """Run the recipe described by `cfg` (see `hfseg.training.trainer`); returns the run's summary."""
    from .trainer import train as _train

    return _train(cfg)


__all__ = ["RecipeConfig", "load_config", "train"]
