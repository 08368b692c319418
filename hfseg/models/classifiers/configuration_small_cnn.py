"""Configuration of the small CNN classifier (the brain-tumour study's "customly developed CNN").

Self-contained (no hfseg imports) so that a checkpoint saved with `register_for_auto_class` loads with
`trust_remote_code=True` where hfseg is not installed.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import Any, Sequence

from transformers import PretrainedConfig

GLOBAL_POOLS = ("avg", "max")

# The keyword check (`LEGACY_CONFIG_KEYS`, `config_keywords`, `check_config_fields`, `from_dict`, `from_json_file`) is
# the one of `hfseg/models/unet/configuration_unet.py`, repeated because each config file is copied alone next to its
# checkpoints for remote code.

# Keywords that reach a config class (from a saved config.json, or passed on by `from_dict`) and that a transformers
# release from 5.4 on may declare neither in `PretrainedConfig.__init__`'s signature, nor in
# `PretrainedConfig().to_dict()`, nor as a settable property: `auto_map` (written by `save_pretrained` for remote
# code), `attn_implementation`, `experts_implementation`, `num_labels`, `name_or_path` (passed on by `from_dict`,
# popped by `PretrainedConfig.__post_init__`), `torch_dtype` (the old name of `dtype`, in many saved configs),
# `_commit_hash` (added to the loaded dict by transformers 5.4) and `_attn_implementation_autoset` (written by some
# 4.x releases). `use_return_dict` is not one: a read-only property that no release writes.
LEGACY_CONFIG_KEYS = (
    "auto_map", "num_labels", "name_or_path", "attn_implementation", "experts_implementation", "_commit_hash",
    "torch_dtype", "_attn_implementation_autoset",
)


@lru_cache(maxsize=None)
def config_keywords(config_class: type[PretrainedConfig] = PretrainedConfig) -> frozenset[str]:
    """Every keyword `config_class(...)` takes, read from the installed transformers.

    That is its `__init__` parameters, those of `PretrainedConfig.__init__`, the keys of `PretrainedConfig().to_dict()`
    (what `save_pretrained` writes for every config), the settable properties of its classes (`num_labels`,
    `out_indices`, ...), the aliases of its `attribute_map`, and `LEGACY_CONFIG_KEYS`. With the default argument:
    the generic keywords every config takes.
    """
    keys = set(LEGACY_CONFIG_KEYS) | set(PretrainedConfig().to_dict()) | set(config_class.attribute_map)
    for cls in {config_class, PretrainedConfig}:
        keys |= {name for name, p in inspect.signature(cls.__init__).parameters.items()
                 if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for cls in config_class.__mro__:
        keys |= {name for name, value in vars(cls).items() if isinstance(value, property) and value.fset is not None}
    return frozenset(keys)


def check_config_fields(
    owner: str, given: Iterable[str], fields: Collection[str], note: str = "", what: str = "field"
) -> None:
    """Raise a `ValueError` naming each key of `given` that is neither in `fields` nor a generic config keyword,
    with its close matches among both; `owner` and `what` name the config and its keys, `note` ends the message."""
    generic = config_keywords()
    unknown = [key for key in given if key not in fields and key not in generic]
    if not unknown:
        return
    own = sorted(key for key in set(fields) - generic if not key.startswith("_"))
    candidates = own + sorted(key for key in generic if not key.startswith("_"))
    parts = []
    for key in unknown:
        close = [repr(match) for match in difflib.get_close_matches(key, candidates, n=3)]
        hint = f"; did you mean {' or '.join([', '.join(close[:-1]), close[-1]] if close[:-1] else close)}?"
        parts.append(f"Unknown {owner} {what} {key!r}" + (hint if close else "."))
    raise ValueError(
        " ".join(parts) + f" {owner} {what}s: {', '.join(own)}; the generic PretrainedConfig keywords (num_labels, "
        f"id2label, return_dict, output_hidden_states, ...) work as well.{note}"
    )



class SmallCNNConfig(PretrainedConfig):
    r"""
    Configuration of [`SmallCNNForImageClassification`]: conv-BN-ReLU blocks each ending in a 2x2 max pool, global
    pooling, dropout and a linear head.

    Args:
        num_channels (`int`, *optional*, defaults to 3):
            Input channels (1 for grey MRI, 3 for RGB).
        hidden_sizes (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
            Channels of each block; every block halves the resolution (max pool 2x2), so the input should be at
            least `2 ** len(hidden_sizes)` pixels on each side.
        convs_per_block (`int`, *optional*, defaults to 2):
            Conv-BN-ReLU layers in each block before its max pool.
        kernel_size (`int`, *optional*, defaults to 3):
            Odd kernel size of the convolutions ("same" padding).
        use_batchnorm (`bool`, *optional*, defaults to `True`):
            Batch norm between each convolution and its ReLU.
        global_pool (`str`, *optional*, defaults to `"avg"`):
            `"avg"` or `"max"` pooling of the last block's feature map to one vector.
        dropout (`float`, *optional*, defaults to 0.5):
            Dropout probability before the linear head.

    Any other keyword is a generic `PretrainedConfig` one (`num_labels`, `id2label`, ...); an unknown keyword is a
    `ValueError` that names its close matches, while `from_pretrained`/`from_dict` ignore unknown saved keys with a
    warning.

    `num_labels == 1` makes a binary classifier (one logit, BCE loss); otherwise `forward` uses cross-entropy.
    """

    model_type = "hfseg_small_cnn"

    def __init__(
        self,
        num_channels: int = 3,
        hidden_sizes: Sequence[int] = (32, 64, 128, 256),
        convs_per_block: int = 2,
        kernel_size: int = 3,
        use_batchnorm: bool = True,
        global_pool: str = "avg",
        dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        check_config_fields(type(self).__name__, kwargs, config_keywords(type(self)))
        hidden_sizes = [int(h) for h in hidden_sizes]
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes needs at least one positive entry, got {hidden_sizes}.")
        if int(num_channels) < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}.")
        if int(convs_per_block) < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {convs_per_block}.")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"Unknown global_pool {global_pool!r}; allowed values: {', '.join(GLOBAL_POOLS)}.")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.num_channels = int(num_channels)
        self.hidden_sizes = hidden_sizes
        self.convs_per_block = int(convs_per_block)
        self.kernel_size = int(kernel_size)
        self.use_batchnorm = bool(use_batchnorm)
        self.global_pool = global_pool
        self.dropout = float(dropout)
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> SmallCNNConfig:
        """`PretrainedConfig.from_dict` (which `from_pretrained` and `AutoConfig` call), ignoring with a warning the
        keys of `config_dict` that this version does not know (a config.json from another hfseg version)."""
        known = config_keywords(cls)
        unknown = [key for key in config_dict if key not in known]
        if unknown:
            warnings.warn(
                f"Ignoring {', '.join(map(repr, unknown))} in the saved {cls.__name__}: not a field of this version.",
                stacklevel=2,
            )
            config_dict = {key: value for key, value in config_dict.items() if key in known}
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> SmallCNNConfig:
        """A config read from a JSON file, as leniently as `from_dict`."""
        return cls.from_dict(cls.get_config_dict(json_file)[0])
