"""Inference on whole images at their native resolution: load a saved model, normalize, resize or slide, flip TTA.

`load_model(path)` gives a model in eval mode and the image processor saved with it. `predict_logits(model,
processor, image)` returns (K, H, W) logits at the image's own height and width, whatever size the network sees:

- **plain** (default): the image is normalized at native resolution, resized to the processor's `size` when it
  resizes (`do_resize`, bilinear, antialiased: the training transform), run, and the logits are resized back
  bilinearly. Logits smaller than the input (Segformer predicts at 1/4) are upsampled the same way.
- **sliding window** (`sliding_window="auto"` or `(h, w)`): the normalized image is *not* resized; windows of the
  processor's size (or the one given) tile it with `overlap`, placed as nnU-Net does (evenly spread, first and last
  flush with the borders), and their logits are averaged with a Gaussian importance map (sigma = 1/8 of the window,
  as nnU-Net and MONAI's `sliding_window_inference(mode="gaussian")`), or uniformly (`weighting="constant"`).
  Images smaller than the window are zero-padded (the normalized mean for z-score) on both sides, then cropped back.
  This is `hfseg.inference.sliding_window` (2D and 3D) with the weights floored at 1e-3.
  Use it when the model saw training images at the pixel scale of the test images (patches, or smaller images).
- **flip TTA** (`tta_flip=True`): identity, horizontal, vertical and both flips, each prediction resized to the
  native size and flipped back; their **softmax probabilities** (sigmoid for a one-logit binary model) are averaged,
  as nnU-Net does, and returned as logits again: `log(mean p)` (binary: `log(p / (1 - p))`), so `argmax` / `> 0`
  still give the prediction and `softmax` gives the averaged probabilities. With a sliding window each window is
  flipped (nnU-Net's mirroring) and the windows' mean probabilities are blended with the same weights.

Everything runs under `torch.inference_mode` on the model's device; the returned logits are float32 on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import match_mode
from ..models.outputs import logits_at, predict
from .loading import size_of
from .sliding import compute_steps, gaussian_importance_map, sliding_window

# Flip dimensions of (B, C, H, W): identity, horizontal, vertical, both.
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
WEIGHTINGS = ("gaussian", "constant")
_EPS = 1e-7


# -- helpers -----------------------------------------------------------------------------------------------------
def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}.")
    return pair


def processor_size(processor: Any) -> tuple[int, int] | None:
    """(height, width) the processor resizes to, or None when it keeps the native size."""
    return size_of(processor.size) if getattr(processor, "do_resize", False) else None


def _check_not_volume(processor: Any, image: Any, input_data_format: str | None) -> None:
    """A 3D array with no plausible channel axis at either end is a volume: say how to predict one."""
    shape = tuple(getattr(image, "shape", ()))
    channels = getattr(processor, "num_channels", None) or 4
    if input_data_format is None and len(shape) == 3 and min(shape[0], shape[-1]) > max(channels, 4):
        raise ValueError(f"An array of shape {shape} looks like a volume, not one image with channels: predict it "
                         "slice by slice with hfseg.inference.predict(model, processor, hfseg.io.read(path)) (or "
                         "predict_volume), or pass one 2D slice (and input_data_format for a multi-channel image).")


def normalize(processor: Any, image: Any, input_data_format: str | None = None) -> torch.Tensor:
    """(1, C, H, W) float32: the processor's `to_channels_first` and `normalize_intensity` at native resolution."""
    _check_not_volume(processor, image, input_data_format)
    tensor = processor.to_channels_first(match_mode(image, getattr(processor, "num_channels", None)),
                                         input_data_format)
    return processor.normalize_intensity(tensor)[None]


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


def _forward(model: nn.Module, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Logits (B, K, *size), float32, resized bilinearly from whatever size the model gives."""
    device, dtype = _device_dtype(model)
    return logits_at(model(pixel_values=x.to(device=device, dtype=dtype)).logits.float(), size)


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(1)


def probabilities_to_logits(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Logits whose softmax (sigmoid for one channel) is `probs`: `log p`, or `log(p / (1 - p))` for one channel."""
    probs = probs.clamp(_EPS, 1 - _EPS) if probs.shape[dim] == 1 else probs.clamp_min(_EPS)
    return torch.log(probs) - torch.log1p(-probs) if probs.shape[dim] == 1 else torch.log(probs)


def _scores(model: nn.Module, x: torch.Tensor, tta_flip: bool, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits resized to `size` (default: the input's), or with `tta_flip` the mean of their probabilities over
    the four flips (each flipped back)."""
    size = size or tuple(x.shape[-2:])
    if not tta_flip:
        return _forward(model, x, size)
    total = None
    for dims in FLIPS:
        out = _forward(model, x.flip(dims) if dims else x, size)
        probs = _probabilities(out.flip(dims) if dims else out)
        total = probs if total is None else total + probs
    return total / len(FLIPS)


def importance_map(window: tuple[int, int], weighting: str = "gaussian", sigma_scale: float = 0.125) -> torch.Tensor:
    """(h, w) weights of one window's logits: `gaussian_importance_map` (sigma = `sigma_scale` x the window size,
    maximum 1) floored at 1e-3 (MONAI's rule), or ones for `"constant"`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"Unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}.")
    if weighting == "constant":
        return torch.ones(window)
    return gaussian_importance_map(window, sigma_scale).clamp_min(1e-3)


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows covering `length`: step `window * (1 - overlap)` at most, evenly spread, the first
    at 0 and the last at `length - window` (nnU-Net's placement, `compute_steps` along one axis)."""
    return compute_steps((max(length, window),), (window,), 1 - overlap)[0]


def _sliding(model: nn.Module, x: torch.Tensor, window: tuple[int, int], overlap: float, tta_flip: bool,
             batch_size: int, weighting: str) -> torch.Tensor:
    """Weighted mean of window scores over a (1, C, H, W) image -> (1, K, H, W): `sliding_window` with each
    window's scores from `_scores` (logits, or the flip-averaged probabilities)."""
    return sliding_window(lambda tiles: _scores(model, tiles, tta_flip), x[0], window, step=1 - overlap,
                          batch_size=batch_size, device=x.device, importance=importance_map(window, weighting))[None]


def _window(sliding_window: Any, size: tuple[int, int] | None, processor: Any) -> tuple[int, int] | None:
    if sliding_window is None or sliding_window is False:
        return None
    if sliding_window is True or sliding_window == "auto":
        window = size or processor_size(processor)
        if window is None:
            raise ValueError("sliding_window='auto' needs a window size: the processor does not resize (no `size`); "
                             "pass size=(height, width) or sliding_window=(height, width).")
        return window
    if isinstance(sliding_window, str):
        raise ValueError(f"sliding_window must be None, 'auto' or (height, width), got {sliding_window!r}.")
    return _pair(sliding_window, "sliding_window")


# -- prediction --------------------------------------------------------------------------------------------------
@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    processor: Any,
    image: Any,
    size: int | Sequence[int] | None = None,
    tta_flip: bool = False,
    sliding_window: Literal["auto"] | Sequence[int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 4,
    weighting: Literal["gaussian", "constant"] = "gaussian",
    input_data_format: str | None = None,
) -> torch.Tensor:
    """Segmentation logits (K, H, W) of one image at its native height and width (see the module docstring).

    Args:
        model (`nn.Module`): a semantic segmentation model called as `model(pixel_values=x).logits` (B, K, h, w);
            K = 1 is a binary model (foreground where the logit is > 0, i.e. sigmoid > 0.5).
        processor: its image processor (`UNetImageProcessor` or anything with `to_channels_first` and
            `normalize_intensity`; see `as_unet_processor`).
        image: a PIL image, or an array / tensor (H, W), (H, W, C) or (C, H, W).
        size (`int` or `(height, width)`, *optional*): the size the network sees (plain) or the window (sliding);
            defaults to the processor's `size` when it resizes, else the native size.
        tta_flip (`bool`, *optional*, defaults to `False`): average the softmax probabilities over 4 flips; the
            result is `log(mean p)` (see the module docstring).
        sliding_window (`"auto"` or `(height, width)`, *optional*): tile the native-resolution image with windows of
            `size` / the processor's size (`"auto"`) or of the given size.
        overlap (`float`, *optional*, defaults to 0.5): fraction of a window shared with the next one, in [0, 1).
        batch_size (`int`, *optional*, defaults to 4): windows per forward pass.
        weighting (`str`, *optional*, defaults to `"gaussian"`): window weights, `"gaussian"` or `"constant"`.
        input_data_format (`str`, *optional*): `"channels_last"` / `"channels_first"` for 3-D arrays (default:
            inferred by the processor).
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    size = _pair(size, "size") if size is not None else None
    window = _window(sliding_window, size, processor)
    if window is None:  # plain: one image is a batch of one
        return predict_logits_batch(model, processor, [image], size=size, tta_flip=tta_flip,
                                    input_data_format=input_data_format)[0]
    x = normalize(processor, image, input_data_format).to(_device_dtype(model)[0])
    scores = _sliding(model, x, window, overlap, tta_flip, batch_size, weighting)[0].float().cpu()
    return probabilities_to_logits(scores) if tta_flip else scores


@torch.inference_mode()
def predict_logits_batch(
    model: nn.Module,
    processor: Any,
    images: Sequence[Any],
    size: int | Sequence[int] | None = None,
    tta_flip: bool = False,
    sliding_window: Literal["auto"] | Sequence[int] | None = None,
    overlap: float = 0.5,
    batch_size: int = 4,
    weighting: Literal["gaussian", "constant"] = "gaussian",
    input_data_format: str | None = None,
) -> list[torch.Tensor]:
    """`predict_logits` of each image, with images of one native size run through the network together.

    Each image is normalized on its own (as the processor does in training), so results equal `predict_logits`
    image by image up to floating-point batching effects; `batch_size` images go through per forward pass. With a
    sliding window each image is tiled on its own (its windows batched). Returns (K, H_i, W_i) logits in input
    order.
    """
    if sliding_window is not None and sliding_window is not False:
        return [predict_logits(model, processor, image, size=size, tta_flip=tta_flip, sliding_window=sliding_window,
                               overlap=overlap, batch_size=batch_size, weighting=weighting,
                               input_data_format=input_data_format) for image in images]
    device = _device_dtype(model)[0]
    size = _pair(size, "size") if size is not None else None
    network = size or processor_size(processor)
    out: list[torch.Tensor | None] = [None] * len(images)
    pending: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}

    def run(group: list[tuple[int, torch.Tensor]]) -> None:
        x = torch.cat([t for _, t in group]).to(device)
        native = tuple(x.shape[-2:])
        if network is not None and network != native:
            x = F.interpolate(x, size=network, mode="bilinear", antialias=True, align_corners=False)
        scores = _scores(model, x, tta_flip, native).float().cpu()
        for (index, _), score in zip(group, scores):
            out[index] = probabilities_to_logits(score) if tta_flip else score

    for index, image in enumerate(images):
        x = normalize(processor, image, input_data_format)
        group = pending.setdefault(tuple(x.shape[1:]), [])
        group.append((index, x))
        if len(group) >= batch_size:
            run(pending.pop(tuple(x.shape[1:])))
    for group in pending.values():
        run(group)
    return out  # type: ignore[return-value]


def predict_mask(model: nn.Module, processor: Any, image: Any, **kwargs: Any) -> torch.Tensor:
    """(H, W) int64 class indices at native resolution: `predict_logits` then argmax (binary: logit > 0)."""
    return predict(predict_logits(model, processor, image, **kwargs)[None])[0]


@torch.inference_mode()
def classify_logits(model: nn.Module, processor: Any, image: Any, tta_flip: bool = False,
                    input_data_format: str | None = None) -> torch.Tensor:
    """Image-classification logits (K,) of one image: normalized, resized to the processor's size when it resizes,
    and with `tta_flip` the mean softmax (sigmoid for K = 1) over the four flips, as logits (`log(mean p)`)."""
    x = normalize(processor, image, input_data_format)
    network = processor_size(processor)
    if network is not None and network != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=network, mode="bilinear", antialias=True, align_corners=False)
    device, dtype = _device_dtype(model)
    views = [x.flip(dims) if dims else x for dims in (FLIPS if tta_flip else FLIPS[:1])]
    logits = model(pixel_values=torch.cat(views).to(device=device, dtype=dtype)).logits.float().cpu()
    if not tta_flip:
        return logits[0]
    probs = torch.sigmoid(logits) if logits.shape[-1] == 1 else logits.softmax(-1)
    return probabilities_to_logits(probs.mean(0))
