"""The training recipe's parts: configuration, data loaders, optimizers/schedules, the loop and its reports."""

from typing import Any

from .config import RecipeConfig, load_config


def train(cfg: RecipeConfig) -> dict[str, Any]:
    """Run the recipe described by `cfg` (see `hfseg.training.trainer`); returns the run's summary."""
    from .trainer import train as _train

    return _train(cfg)


__all__ = ["RecipeConfig", "load_config", "train"]
