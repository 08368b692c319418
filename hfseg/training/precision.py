"""`train.mixed_precision: auto`: bf16 autocast where the hardware runs bf16 natively, else fp32.

`resolve_mixed_precision(value, device)` turns the config value into what `Accelerator(mixed_precision=...)` takes:

- `no`, `fp16`, `bf16`: kept as given;
- `auto` (the default): `bf16` on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX-BF16) and on a GPU that
  supports bf16 (`torch.cuda.is_bf16_supported()`), else `no` (fp32). On the demo recipe bf16 autocast trains
  as well as fp32 (see benchmarks/results/time_to_dice.md) in less time;
- the environment variable `HFSEG_MIXED_PRECISION` replaces `auto` (`no`, `fp16` or `bf16`); set to `no` it
  forces fp32 whatever the config says.

A CPU without native bf16 emulates it, slower than fp32, so `auto` keeps fp32 there. The capability checks are
private torch functions; where one is missing (an older or newer torch, another architecture) it counts as absent.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("no", "fp16", "bf16", "auto")
ENV_VARIABLE = "HFSEG_MIXED_PRECISION"


def _check(module: object, name: str) -> bool:
    """`module.name()`, False when the function is missing or fails."""
    function = getattr(module, name, None)
    if function is None:
        return False
    try:
        return bool(function())
    except (RuntimeError, AttributeError):
        return False


def cpu_bf16_feature() -> str | None:
    """The CPU's native bf16 instructions (`"AVX512-BF16"` or `"AMX-BF16"`), or None when it has neither."""
    if _check(torch.cpu, "_is_avx512_bf16_supported"):
        return "AVX512-BF16"
    if _check(torch.cpu, "_is_amx_tile_supported"):  # AMX tiles come with AMX-BF16 (Sapphire Rapids and later)
        return "AMX-BF16"
    return None


def gpu_supports_bf16() -> bool:
    """Whether the current CUDA device runs bf16 natively (compute capability 8.0+, or ROCm)."""
    return torch.cuda.is_available() and _check(torch.cuda, "is_bf16_supported")


def _auto(device_type: str) -> tuple[str, str]:
    """What `auto` becomes on `device_type`, and why."""
    if device_type == "cuda":
        if gpu_supports_bf16():
            return "bf16", "the GPU supports bf16"
        return "no", "the GPU has no bf16 support"
    if device_type == "cpu":
        feature = cpu_bf16_feature()
        if feature:
            return "bf16", f"the CPU has {feature}"
        return "no", "the CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is slower than fp32"
    return "no", f"bf16 autocast is not enabled automatically on {device_type}"


def resolve_mixed_precision(value: str, device: str | torch.device | None = None) -> str:
    """The `Accelerator(mixed_precision=...)` value for the config's `value` on `device` (a device or its type;
    None: CUDA when available, else CPU); logs what was chosen and why."""
    if value not in PRECISIONS:
        raise ValueError(f"train.mixed_precision={value!r} is not allowed; choose one of {', '.join(PRECISIONS)}.")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(device).type
    env = os.environ.get(ENV_VARIABLE, "").strip().lower()
    if env and env not in PRECISIONS[:3]:
        raise ValueError(f"{ENV_VARIABLE}={env!r} is not allowed; choose one of {', '.join(PRECISIONS[:3])}.")
    if value == "no" or (value != "auto" and env != "no"):  # the config's choice ("no" always holds)
        logger.info("Mixed precision: %s (train.mixed_precision=%s).", value, value)
        return value
    if env:  # replaces auto; "no" also overrides fp16/bf16
        chosen, why = env, f"{ENV_VARIABLE}={env}"
    else:
        chosen, why = _auto(device_type)
    name = {"no": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[chosen]
    message = f"Mixed precision: {name} on {device_type} (train.mixed_precision={value}: {why})."
    if chosen == "no":
        logger.info(message)
    elif int(os.environ.get("RANK", "0") or 0) == 0:  # a visible line, once per run: autocast changes the numerics
        logger.warning(message + " Set train.mixed_precision=no (or HFSEG_MIXED_PRECISION=no) for fp32.")
    return chosen
