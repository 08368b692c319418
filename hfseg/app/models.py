"""The demo's models: which one is the default, loading (cached), and what a loaded model expects.

The default model is the `HFSEG_MODEL` environment variable, else `DEFAULT_HUB_MODEL`, a Hub id that exists once
the demo run was pushed (`python recipes/train.py --config recipes/configs/demo.yaml --push_to_hub ...`).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..evaluation.inference import is_classifier, load_model

DEFAULT_HUB_MODEL = "hfseg/demo-attention-unet"
MODEL_ENV = "HFSEG_MODEL"
# A Hub id that failed to load (offline: after about 30 s of retries) fails at once for this long.
HUB_RETRY_AFTER_S = 60.0
_hub_failures: dict[str, tuple[float, str]] = {}


class ModelError(ValueError):
    """A model that cannot be loaded or used here; the message says what to give instead."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with its processor, and what the app needs to know about it.

    Args:
        name (`str`): the folder or Hub id it was loaded from.
        model (`nn.Module`), processor: as `hfseg.evaluation.inference.load_model` gives them.
        num_channels (`int`): the image channels it takes.
        id2label (`dict[int, str]`): its classes (its logits' channels).
        classifier (`bool`): an image classifier rather than a segmentation model.
    """

    name: str
    model: nn.Module
    processor: Any
    num_channels: int
    id2label: dict[int, str]
    classifier: bool

    @property
    def mask_labels(self) -> dict[int, str]:
        """Names of the values of a predicted mask: `id2label`, or for a binary model (one logit) 0 background
        and 1 its one class."""
        if len(self.id2label) == 1 and not self.classifier:
            return {0: "background", 1: next(iter(self.id2label.values()))}
        return dict(self.id2label)


def default_model() -> str:
    """`$HFSEG_MODEL`, else `DEFAULT_HUB_MODEL`."""
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_HUB_MODEL


def input_channels(model: nn.Module, processor: Any = None) -> int:
    """Channels `model` takes: `config.num_channels`, a timm model's `model_args["in_chans"]`, the processor's
    `num_channels`, else the first convolution's input channels (3 when there is none)."""
    config = getattr(model, "config", None)
    for value in (getattr(config, "num_channels", None),
                  (getattr(config, "model_args", None) or {}).get("in_chans"),
                  getattr(processor, "num_channels", None)):
        if value:
            return int(value)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


def id2label_of(model: nn.Module) -> dict[int, str]:
    """`model.config.id2label` with int keys (`class <i>` names when it has none)."""
    config = getattr(model, "config", None)
    mapping = getattr(config, "id2label", None) or {}
    if not mapping:
        mapping = {i: f"class {i}" for i in range(int(getattr(config, "num_labels", 0) or 0))}
    return {int(k): str(v) for k, v in mapping.items()}


@functools.lru_cache(maxsize=4)
def _load(name: str) -> LoadedModel:
    model, processor = load_model(name, device="cpu")
    return LoadedModel(name, model, processor, input_channels(model, processor), id2label_of(model),
                       is_classifier(model))


def get_model(name: str | None) -> LoadedModel:
    """The model saved at the folder or Hub id `name`, loaded once per name (kept on the CPU).

    A Hub id that could not be loaded is not retried for `HUB_RETRY_AFTER_S` seconds (the same error is raised), so
    that an offline Space answers at once instead of retrying the Hub on every click.

    Raises:
        ModelError: no name, no such folder, an unreachable Hub id (offline, not pushed yet) or an unloadable model.
    """
    name = (name or "").strip()
    if not name:
        raise ModelError("No model given: enter a local run folder (e.g. runs/demo/best) or a Hub id (owner/name).")
    failed = _hub_failures.get(name)
    if failed and time.monotonic() - failed[0] < HUB_RETRY_AFTER_S:
        raise ModelError(failed[1])
    try:
        return _load(name)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        hint = ""
        if name == DEFAULT_HUB_MODEL:
            hint = (f" {name} is the demo's default Hub model: it exists once the demo run was pushed with the "
                    "recipe's --push_to_hub, and loading it needs the Hub (no offline mode). Set HFSEG_MODEL or enter "
                    "a local folder instead.")
        message = f"Cannot load model {name!r}: {str(err).rstrip('.')}.{hint}"
        if not os.path.exists(name):
            _hub_failures[name] = (time.monotonic(), message)
        raise ModelError(message) from err
