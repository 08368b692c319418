"""Gaussian sliding-window inference over 2D images and 3D volumes, as nnU-Net's
`predict_sliding_window_return_logits`.

```python
logits = sliding_window(model, image, patch_size=(96, 96, 96), step=0.5, batch_size=2, mirror_axes=(0, 1, 2))
mask = logits.argmax(0)
```

- **Padding**: an image smaller than the patch along an axis is padded with zeros there (half before, half after,
  as nnU-Net), and the padding is cropped off the result.
- **Window placement** (`compute_steps`, nnU-Net's `compute_steps_for_sliding_window`): along each axis of size `n`
  and patch `p`, `ceil((n - p) / (step * p)) + 1` windows, evenly spread, the first at 0 and the last at `n - p`.
- **Weighting** (`gaussian_importance_map`): each window's logits are weighted by a Gaussian centred on the window
  with sigma `sigma_scale * p` per axis, scaled to a maximum of 1 (zeros, where the Gaussian underflows, are
  replaced by its smallest non-zero value, as nnU-Net does), summed into a (K, *S) float32 accumulator and divided
  by the summed weights. The Gaussian is separable, so the summed weights are a product of one 1-D sum per axis,
  computed at the end rather than accumulated window by window.
- **Mirror TTA** (`mirror_axes`): for each of the 2**n subsets of the spatial axes given (indices into the patch
  axes), the windows are flipped, predicted and flipped back; the logits are averaged (nnU-Net's mirroring).
- **Stitching device** (`stitch_device`): by default the accumulator lives where the model runs, except on a CUDA
  device without room for it (`torch.cuda.mem_get_info`, less `STITCH_MARGIN_BYTES`) or when allocating it there
  runs out of memory: then it lives on the CPU and each batch's logits are moved there.

The model keeps its own device and dtype: windows are cast to the dtype of its parameters, logits are stitched in
float32. Everything runs under `torch.inference_mode`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

# Free device memory left over when deciding whether the accumulator fits there (the network needs room too).
STITCH_MARGIN_BYTES = 2 * 2**30
_TINY = torch.finfo(torch.float32).tiny


# -- window layout and weights -----------------------------------------------------------------------------------
def _sizes(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    sizes = (int(value),) * dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(sizes) != dims or min(sizes) <= 0:
        raise ValueError(f"{name} must be a positive int or {dims} positive ints (one per spatial axis), "
                         f"got {value!r}.")
    return sizes


def compute_steps(image_size: Sequence[int], patch_size: Sequence[int], step: float = 0.5) -> list[list[int]]:
    """Window start offsets along each axis (nnU-Net's `compute_steps_for_sliding_window`): target step
    `step * patch` (at least one voxel), `ceil((size - patch) / target) + 1` windows, evenly spread, the first at 0
    and the last at `size - patch`. Every size must be at least its patch size (pad first)."""
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1] (a fraction of the patch size), got {step}.")
    if len(image_size) != len(patch_size) or any(n < p for n, p in zip(image_size, patch_size)):
        raise ValueError(f"Image size {tuple(image_size)} must be at least the patch size {tuple(patch_size)} on "
                         "every axis; pad the image first (sliding_window does).")
    steps = []
    for n, p in zip(image_size, patch_size):
        count = math.ceil((n - p) / max(step * p, 1)) + 1
        actual = (n - p) / (count - 1) if count > 1 else 0.0
        steps.append([round(actual * i) for i in range(count)])
    return steps


def _gaussian_factors(patch_size: Sequence[int], sigma_scale: float) -> list[torch.Tensor]:
    """One float64 1-D Gaussian per axis, each with a maximum of 1: their outer product is the importance map."""
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}.")
    factors = []
    for n in patch_size:
        coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        g = torch.exp(-0.5 * (coords / (sigma_scale * n)) ** 2)
        factors.append(g / g.max())
    return factors


def _outer(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    out = factors[0]
    for f in factors[1:]:
        out = out[..., None] * f
    return out


@functools.lru_cache(maxsize=4)
def _gaussian(patch_size: tuple[int, ...], sigma_scale: float) -> torch.Tensor:
    weights = _outer(_gaussian_factors(patch_size, sigma_scale)).float()
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return weights


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1 / 8,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """(*patch_size) float32 weights of one window: a Gaussian centred on the window (exactly symmetric), sigma =
    `sigma_scale` x the patch size per axis, scaled to a maximum of 1, zeros replaced by the smallest non-zero
    value (nnU-Net's `compute_gaussian`)."""
    return _gaussian(tuple(int(n) for n in patch_size), float(sigma_scale)).to(device, copy=True)


def _weight_sum_factors(patch_size: Sequence[int], padded: Sequence[int], steps: Sequence[Sequence[int]],
                        sigma_scale: float) -> list[torch.Tensor] | None:
    """Per axis, the sum of the shifted 1-D Gaussians over the window starts: their outer product is the summed
    importance map of the whole layout. None when the map has underflowed zeros (no longer separable)."""
    factors = _gaussian_factors(patch_size, sigma_scale)
    if math.prod(float(f.min()) for f in factors) < _TINY:
        return None
    sums = []
    for f, n, starts in zip(factors, padded, steps):
        total = torch.zeros(n, dtype=torch.float64)
        for s in starts:
            total[s : s + len(f)] += f
        sums.append(total)
    return sums


# -- model calls -------------------------------------------------------------------------------------------------
def model_device_dtype(predict: Any, image: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first parameter; for a function (or a parameter-less module), the image's
    (float32 for an integer image)."""
    param = next(predict.parameters(), None) if isinstance(predict, nn.Module) else None
    if param is not None:
        return param.device, param.dtype
    return image.device, image.dtype if image.is_floating_point() else torch.float32


def _logits(predict: Callable[[torch.Tensor], Any], x: torch.Tensor) -> torch.Tensor:
    out = predict(x)
    out = getattr(out, "logits", out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"sliding_window: predict returned {type(out).__name__}; it must return logits "
                        "(B, K, *patch) or an output with `.logits`.")
    if out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
        raise ValueError(f"sliding_window: predict returned logits of shape {tuple(out.shape)} for windows of shape "
                         f"{tuple(x.shape)}; it must give (B, K, *patch) at the window's size (resize inside predict, "
                         "e.g. with torch.nn.functional.interpolate, for a model that predicts at a lower resolution).")
    return out


def channels_last_windows(x: torch.Tensor) -> torch.Tensor:
    """Windows (B, C, *patch) on the CPU in the channels-last layout (`channels_last` / `channels_last_3d`),
    values unchanged: oneDNN then convolves without reordering every activation (a 3D U-Net runs about twice as
    fast). With one channel both layouts hold the same data and `contiguous(memory_format=...)` may keep the
    default strides, which oneDNN reads as channels-first: a view with channels-last strides is taken instead.
    Other devices keep the windows as they are."""
    if x.device.type != "cpu" or x.dim() not in (4, 5):
        return x
    if x.shape[1] == 1:
        x = x.contiguous()
        spatial = x.shape[2:]
        strides = (math.prod(spatial), 1, *(math.prod(spatial[j + 1:]) for j in range(len(spatial))))
        return x.as_strided(x.shape, strides)
    return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)


def _mirrored(predict: Callable[[torch.Tensor], Any], x: torch.Tensor,
              mirror_axes: Sequence[int]) -> torch.Tensor:
    """Logits of `x`, averaged over every subset of `mirror_axes` flipped (the identity included)."""
    dims = [a + 2 for a in mirror_axes]
    total = _logits(predict, x).float()
    subsets = [c for r in range(1, len(dims) + 1) for c in itertools.combinations(dims, r)]
    for axes in subsets:
        total += _logits(predict, x.flip(axes)).float().flip(axes)
    return total / (len(subsets) + 1) if subsets else total


# -- stitching ---------------------------------------------------------------------------------------------------
def _stitch_device(stitch_device: torch.device | str | None, device: torch.device, nbytes: int) -> torch.device:
    if stitch_device is not None:
        return torch.device(stitch_device)
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # torch's cached blocks
    return device if nbytes + STITCH_MARGIN_BYTES <= free else torch.device("cpu")


def _accumulators(shape: tuple[int, ...], weighted: bool, device: torch.device,
                  auto: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zeroed float32 logit (and weight) accumulators; on CUDA out of memory, on the CPU when `auto`."""
    try:
        return (torch.zeros(shape, device=device),
                torch.zeros(shape[1:], device=device) if weighted else None)
    except torch.cuda.OutOfMemoryError:
        if not auto or device.type == "cpu":
            raise
        torch.cuda.empty_cache()
        return _accumulators(shape, weighted, torch.device("cpu"), auto=False)


def _divide(total: torch.Tensor, weight: torch.Tensor | None, factors: list[torch.Tensor] | None) -> None:
    """`total /= summed weights` in place: the weight accumulator, or the product of the per-axis sums (a slab of
    the first axis at a time, so that no full-size weight map is made)."""
    if weight is not None:
        total /= weight
        return
    inverse = [(1 / f).to(device=total.device, dtype=torch.float32) for f in factors]
    rest = _outer(inverse[1:]) if len(inverse) > 1 else torch.ones((), device=total.device)
    block = max(1, 2**22 // max(rest.numel(), 1))
    for a in range(0, total.shape[1], block):
        b = min(a + block, total.shape[1])
        total[:, a:b] *= inverse[0][a:b].view(-1, *(1,) * rest.dim()) * rest


@torch.inference_mode()
def sliding_window(
    predict: Callable[[torch.Tensor], Any] | nn.Module,
    image: torch.Tensor,
    patch_size: int | Sequence[int],
    step: float = 0.5,
    batch_size: int = 1,
    mirror_axes: Sequence[int] = (),
    device: torch.device | str | None = None,
    stitch_device: torch.device | str | None = None,
    sigma_scale: float = 1 / 8,
    progress: bool = False,
    importance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (K, *S) of an image (C, *S), from overlapping windows blended with a Gaussian (see the module
    docstring). The result is float32 on the stitching device (the model's device, or the CPU; see
    `stitch_device`).

    Args:
        predict (`nn.Module` or callable): takes windows (B, C, *patch_size) on `device` and returns logits
            (B, K, *patch_size), or an output with `.logits` (a transformers model).
        image (`torch.Tensor`): (C, *S) with 2 or 3 spatial axes, already normalized.
        patch_size (`int` or one int per spatial axis): the window size.
        step (`float`, *optional*, defaults to 0.5): target distance between windows, as a fraction of the patch
            size (0.5: windows overlap by half).
        batch_size (`int`, *optional*, defaults to 1): windows per call of `predict`.
        mirror_axes (`Sequence[int]`, *optional*): spatial axes (0 = the first axis of `patch_size`) to mirror for
            test-time augmentation; all 2**n combinations are predicted and their logits averaged.
        device (`torch.device` or `str`, *optional*): where windows are predicted; defaults to the model's device
            (the image's for a plain function).
        stitch_device (`torch.device` or `str`, *optional*): where the accumulator lives; defaults to `device`,
            or the CPU when that is a CUDA device without room for it.
        sigma_scale (`float`, *optional*, defaults to 1/8): Gaussian sigma as a fraction of the patch size.
        progress (`bool`, *optional*, defaults to `False`): a progress bar over the windows.
        importance (`torch.Tensor`, *optional*): (*patch_size) weights of a window to use instead of the Gaussian
            (e.g. ones for plain averaging).
    """
    dims = image.dim() - 1
    if dims not in (2, 3):
        raise ValueError(f"sliding_window takes an image (C, *S) with 2 or 3 spatial axes, got shape "
                         f"{tuple(image.shape)}; add a channel axis (image[None]) to a single-channel image.")
    patch = _sizes(patch_size, dims, "patch_size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if any(not 0 <= a < dims for a in mirror_axes) or len(set(mirror_axes)) != len(mirror_axes):
        raise ValueError(f"mirror_axes must be distinct spatial axes in 0..{dims - 1}, got {tuple(mirror_axes)}.")
    if importance is not None and tuple(importance.shape) != patch:
        raise ValueError(f"importance must have the patch's shape {patch}, got {tuple(importance.shape)}.")
    model_device, dtype = model_device_dtype(predict, image)
    device = torch.device(device) if device is not None else model_device

    size = tuple(image.shape[1:])
    pads = [max(p - n, 0) for n, p in zip(size, patch)]
    x = image
    if any(pads):  # F.pad takes the last axis first
        x = F.pad(image, [v for pad in reversed(pads) for v in (pad // 2, pad - pad // 2)])
    padded = tuple(x.shape[1:])
    steps = compute_steps(padded, patch, step)
    corners = list(itertools.product(*steps))
    factors = None if importance is not None else _weight_sum_factors(patch, padded, steps, sigma_scale)
    weights = importance if importance is not None else _gaussian(patch, float(sigma_scale))  # not modified

    total = weight = None
    bar = tqdm(total=len(corners), unit="window", leave=False, disable=not progress)
    for i in range(0, len(corners), batch_size):
        chunk = [tuple(slice(s, s + p) for s, p in zip(corner, patch)) for corner in corners[i : i + batch_size]]
        windows = torch.stack([x[(slice(None), *window)] for window in chunk]).to(device=device, dtype=dtype)
        windows = channels_last_windows(windows)
        logits = _mirrored(predict, windows, mirror_axes)
        if total is None:
            shape = (logits.shape[1], *padded)
            nbytes = 4 * (math.prod(shape) + (math.prod(padded) if factors is None else 0))
            target = _stitch_device(stitch_device, device, nbytes)
            total, weight = _accumulators(shape, factors is None, target, auto=stitch_device is None)
            weights = weights.to(device=total.device, dtype=torch.float32)
        logits = logits.to(total.device)
        for window, score in zip(chunk, logits):
            total[(slice(None), *window)].addcmul_(score, weights)
            if weight is not None:
                weight[window] += weights
        bar.update(len(chunk))
    bar.close()
    _divide(total, weight, factors)
    if not any(pads):
        return total
    return total[(slice(None), *(slice(pad // 2, pad // 2 + n) for pad, n in zip(pads, size)))].contiguous()
