"""The demo's models: which ones a visitor may use (`ModelPolicy`), loading (cached), and what a model expects.

A Space serves whoever opens it, so the models are an allowlist set by the operator through environment variables
(Space *variables* in the Space settings):

- `HFSEG_MODEL`: the model shown first (a folder or a Hub id); it is always on the list.
- `HFSEG_MODELS`: the segmentation models offered, comma-separated; default: the model bundled with the Space
  (`spaces/model/`, passed in by `spaces/app.py`; `model` in the list, run from the Space's root).
- `HFSEG_CLASSIFIERS`: the image classifiers offered, comma-separated; default: none.
- `HFSEG_ALLOW_ANY_MODEL=1`: visitors may also type any folder or Hub id (off by default).
- `HFSEG_TRUST_REMOTE_CODE=1`: load models whose code ships with them (`trust_remote_code=True`): it runs that
  code in the Space, so allow it only for models you trust (off by default). It applies to the listed models only: a
  folder or Hub id a visitor types (with `HFSEG_ALLOW_ANY_MODEL=1`) never runs its code.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..inference import is_classifier, load_model

MODEL_ENV = "HFSEG_MODEL"
MODELS_ENV = "HFSEG_MODELS"
CLASSIFIERS_ENV = "HFSEG_CLASSIFIERS"
ANY_MODEL_ENV = "HFSEG_ALLOW_ANY_MODEL"
REMOTE_CODE_ENV = "HFSEG_TRUST_REMOTE_CODE"
BUNDLED_LABEL = "hfseg demo: Attention U-Net, brain tissue (bundled)"
TRUE = ("1", "true", "yes", "on")
# A Hub id that failed to load (offline: after about 30 s of retries) fails at once for this long.
HUB_RETRY_AFTER_S = 60.0
_hub_failures: dict[str, tuple[float, str]] = {}
# Loading a model is slow and uses every core: one at a time (the cache then serves the others).
_load_lock = threading.Lock()


class ModelError(ValueError):
    """A model that cannot be loaded or used here; the message says what to give instead."""


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for name in names if name))


def _key(name: str) -> str:
    """What two names of the same model share: the real path of an existing folder, else the name."""
    return os.path.realpath(name) if os.path.isdir(name) else name


@dataclass(frozen=True)
class ModelPolicy:
    """The models a visitor may use.

    Args:
        models (`tuple[str, ...]`): segmentation models (folders or Hub ids) offered, the first is the default.
        classifiers (`tuple[str, ...]`, *optional*): image classifiers offered (none by default).
        allow_any (`bool`, *optional*, defaults to `False`): any other folder or Hub id is accepted too.
        trust_remote_code (`bool`, *optional*, defaults to `False`): load the listed models whose code ships with
            them (never a typed one: `trusts`).
        labels (`dict[str, str]`, *optional*): names shown instead of a model's folder (by its real path) or id.
    """

    models: tuple[str, ...]
    classifiers: tuple[str, ...] = ()
    allow_any: bool = False
    trust_remote_code: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, bundled: str | os.PathLike | None = None,
                         environ: Mapping[str, str] | None = None) -> ModelPolicy:
        """The policy the operator set (see the module docstring), with `bundled` the Space's own model folder."""
        env = os.environ if environ is None else environ
        bundled = os.fspath(bundled) if bundled is not None else None
        listed = _split(env.get(MODELS_ENV))
        if not listed and bundled:
            listed = [bundled]
        return cls(models=_unique([env.get(MODEL_ENV, "").strip(), *listed]),
                   classifiers=_unique(_split(env.get(CLASSIFIERS_ENV))),
                   allow_any=env.get(ANY_MODEL_ENV, "").strip().lower() in TRUE,
                   trust_remote_code=env.get(REMOTE_CODE_ENV, "").strip().lower() in TRUE,
                   labels={_key(bundled): BUNDLED_LABEL} if bundled else {})

    @classmethod
    def only(cls, model: str | os.PathLike) -> ModelPolicy:
        """A policy offering just `model`."""
        return cls(models=(os.fspath(model),))

    @property
    def default(self) -> str | None:
        """The model shown first, None when none is offered."""
        return self.models[0] if self.models else None

    def label(self, name: str) -> str:
        """The name shown for model `name`: its label, else `name` itself."""
        return self.labels.get(_key(name), self.labels.get(name, name))

    def choices(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """`(label, name)` pairs of `names` for a dropdown."""
        return [(self.label(name), name) for name in names]

    def listed(self, name: str) -> bool:
        """Whether `name` is one of the offered models or classifiers (the same folder counts, however written)."""
        return _key(name) in {_key(m) for m in (*self.models, *self.classifiers)}

    def trusts(self, name: str) -> bool:
        """Whether model `name` may run code shipped with it: `trust_remote_code` is on and `name` is listed (a
        name typed under `allow_any` never is)."""
        return self.trust_remote_code and self.listed(name)

    def check(self, name: str) -> None:
        """Raise a `ModelError` naming the offered models when `name` is not on the list (and `allow_any` is off)."""
        if self.allow_any or self.listed(name):
            return
        if not (self.models or self.classifiers):
            raise ModelError(f"This demo offers no models: its operator sets {MODEL_ENV} or {MODELS_ENV} (a folder "
                             "or a Hub id).")
        offered = ", ".join(repr(self.label(m)) for m in (*self.models, *self.classifiers))
        raise ModelError(f"{name!r} is not one of this demo's models: choose one of {offered}. (Its operator can "
                         f"add models with {MODELS_ENV}, or allow any with {ANY_MODEL_ENV}=1.)")


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with its processor, and what the app needs to know about it.

    Args:
        name (`str`): the folder or Hub id it was loaded from.
        model (`nn.Module`), processor: as `hfseg.inference.load_model` gives them.
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


def default_model(bundled: str | os.PathLike | None = None) -> str | None:
    """The model shown first: `$HFSEG_MODEL`, else the first of `$HFSEG_MODELS`, else `bundled`."""
    return ModelPolicy.from_environment(bundled).default


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
def _load(name: str, trust_remote_code: bool = False) -> LoadedModel:
    model, processor = load_model(name, device="cpu", trust_remote_code=trust_remote_code)
    return LoadedModel(name, model, processor, input_channels(model, processor), id2label_of(model),
                       is_classifier(model))


def get_model(name: str | None, policy: ModelPolicy | None = None) -> LoadedModel:
    """The model saved at the folder or Hub id `name`, loaded once per name (kept on the CPU).

    Args:
        name (`str`): a folder or Hub id.
        policy (`ModelPolicy`, *optional*): the models allowed, and whether remote code may run (`trusts`); None
            (library use) allows any model, without remote code. The app always passes its policy.

    A Hub id that could not be loaded is not retried for `HUB_RETRY_AFTER_S` seconds (the same error is raised), so
    that an offline Space answers at once instead of retrying the Hub on every click.

    Raises:
        ModelError: no name, a name the policy does not allow, no such folder, an unreachable Hub id (offline), or
            an unloadable model.
    """
    name = (name or "").strip()
    if not name:
        raise ModelError("No model given: choose one of the demo's models.")
    if policy is not None:
        policy.check(name)
    trust = bool(policy and policy.trusts(name))
    failed = _hub_failures.get(name)
    if failed and time.monotonic() - failed[0] < HUB_RETRY_AFTER_S:
        raise ModelError(failed[1])
    try:
        with _load_lock:
            return _load(name, trust)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        hint = ""
        if "trust_remote_code" in str(err):
            hint = (f" This model runs code shipped with it, which this demo does not allow (its operator can, for "
                    f"models they list and trust, with {REMOTE_CODE_ENV}=1).")
        message = f"Cannot load model {name!r}: {str(err).rstrip('.').strip()}.{hint}"
        if not os.path.exists(name):
            _hub_failures[name] = (time.monotonic(), message)
        raise ModelError(message) from err

