"""Which layer a CAM looks at: automatic choice per model family, lookup by module name, and activation adapters.

Automatic target layers (`default_target_layers`), the first rule that matches the model:

- **hfseg U-Net** (`UNetForSemanticSegmentation`, 2-D or 3-D): `unet.decoder.blocks.<last>`, the finest decoder
  block, i.e. the full-resolution features right before the head. The block returns `(features, gate map)`; its
  features are used (see `tap_layers`).
- **Segformer**: `decode_head.linear_fuse`, the 1x1 conv fusing the four upsampled MLP projections (1/4 of the
  input), a plain conv map: no reshape needed.
- **UPerNet** (ConvNeXt or Swin backbone) and **BEiT** / Data2Vec-vision (their UperHead):
  `decode_head.fpn_bottleneck`, the 3x3 conv over the concatenated FPN levels (1/4 of the input), the last layer
  before the classifier.
- **DPT**: `neck.fusion_stage.layers.<last>`, the last (finest, 1/2 of the input) feature-fusion layer of the neck.
- **timm classifiers** (`TimmWrapperForImageClassification`, `model.timm_model`): ResNet ->
  `timm_model.layer4.<last>`; VGG -> the last module of `timm_model.features` before its final max-pool (the ReLU
  of the last conv block: timm's VGG puts its 7x7 `pre_logits` convs after `features`, so "the last conv" would be
  a 1x1 map); VisionTransformer -> `timm_model.blocks.<last>.norm1` (patch tokens still feed the class token there;
  after the last block they no longer reach the logits), folded to a grid by `token_reshape`.
- **anything else**: the last `nn.Conv2d` (or `nn.Conv3d`) that is not the classifier (out_channels != num_labels),
  else the last one.

Any module can be chosen by name instead (`resolve_target_layers`). Activations that are token sequences (B, N, C)
(ViT, BEiT, DPT, Segformer and Swin blocks) are folded to (B, C, h, w) by `token_reshape`, the class token dropped
(`num_prefix_tokens`); modules returning a tuple or a `ModelOutput` (U-Net decoder blocks, Swin stages, attention
modules) are read through `tap_layers`, which hands pytorch-grad-cam their first tensor.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

LayerSpec = str | nn.Module


def _last_index(module: nn.Module) -> str:
    return str(len(module) - 1)


def _timm_layers(timm_model: nn.Module) -> list[str] | None:
    name = type(timm_model).__name__
    if name == "ResNet" and hasattr(timm_model, "layer4"):
        return [f"timm_model.layer4.{_last_index(timm_model.layer4)}"]
    if name == "VGG" and hasattr(timm_model, "features"):
        children = [n for n, m in timm_model.features.named_children() if not isinstance(m, nn.MaxPool2d)]
        return [f"timm_model.features.{children[-1]}"] if children else None
    if name in ("VisionTransformer", "Eva", "VisionTransformerDistilled") and hasattr(timm_model, "blocks"):
        return [f"timm_model.blocks.{_last_index(timm_model.blocks)}.norm1"]
    return None


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _last_conv(model: nn.Module) -> list[str]:
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d or nn.Conv3d to use as a CAM target layer; pass "
                         "target_layers by module name (see model.named_modules()).")
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    features = [n for n, m in convs if m.out_channels != num_labels]
    return [features[-1] if features else convs[-1][0]]


def default_target_layers(model: nn.Module) -> list[str]:
    """Names of the modules a CAM targets by default for `model` (see the module docstring for the rule per family).

    Args:
        model (`nn.Module`): a segmentation model of the zoo or an image classifier.

    Returns:
        `list[str]`: module names for `model.get_submodule`.
    """
    if _has(model, "unet.decoder.blocks"):
        return [f"unet.decoder.blocks.{_last_index(model.get_submodule('unet.decoder.blocks'))}"]
    if _has(model, "decode_head.linear_fuse"):
        return ["decode_head.linear_fuse"]
    if _has(model, "decode_head.fpn_bottleneck"):
        return ["decode_head.fpn_bottleneck"]
    if _has(model, "neck.fusion_stage.layers"):
        return [f"neck.fusion_stage.layers.{_last_index(model.get_submodule('neck.fusion_stage.layers'))}"]
    timm_model = getattr(model, "timm_model", None)
    if isinstance(timm_model, nn.Module):
        layers = _timm_layers(timm_model)
        if layers:
            return layers
    return _last_conv(model)


def _unknown_layer(model: nn.Module, name: str) -> ValueError:
    names = [n for n, _ in model.named_modules() if n]
    parts = name.split(".")
    parent = ""
    for i in range(len(parts) - 1, 0, -1):  # the longest prefix that exists
        if _has(model, ".".join(parts[:i])):
            parent = ".".join(parts[:i])
            break
    children = [f"{parent}.{c}" if parent else c for c, _ in model.get_submodule(parent).named_children()]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return ValueError(
        f"{type(model).__name__} has no module {name!r}. Modules under {parent or 'the model'!r}: "
        f"{', '.join(children[:40])}{' ...' if len(children) > 40 else ''}.{hint} "
        f"All names: [n for n, _ in model.named_modules()]; the default here is {default_target_layers(model)}.")


def resolve_target_layers(model: nn.Module, target_layers: LayerSpec | Sequence[LayerSpec] | None = None,
                          ) -> list[tuple[str, nn.Module]]:
    """The CAM target layers of `model` as `(name, module)` pairs.

    Args:
        model (`nn.Module`): the model (not a wrapper around it).
        target_layers (`str`, `nn.Module` or a list of them, *optional*): module names for `model.get_submodule`
            (e.g. `"unet.decoder.blocks.3"`, `"beit.layers.3"`) or modules of `model`; `None` gives
            `default_target_layers(model)`.

    Raises:
        ValueError: a name that is no module of `model` (the message lists the modules at the deepest level of the
            name that exists, and close matches), or a module that is not part of `model`.
    """
    if target_layers is None:
        target_layers = default_target_layers(model)
    if isinstance(target_layers, (str, nn.Module)):
        target_layers = [target_layers]
    if len(target_layers) == 0:
        raise ValueError("target_layers is empty: pass None for the default layer or at least one module name.")
    names = {id(m): n for n, m in model.named_modules()}
    resolved = []
    for layer in target_layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in names:
                raise ValueError(f"The {type(layer).__name__} given in target_layers is not a module of "
                                 f"{type(model).__name__}; pass modules of the model itself or their names.")
            resolved.append((names[id(layer)], layer))
            continue
        try:
            resolved.append((layer, model.get_submodule(layer)))
        except AttributeError:
            raise _unknown_layer(model, layer) from None
    return resolved


# -- activation adapters ---------------------------------------------------------------------------------------
def _grid(count: int, height: int, width: int, exact: bool) -> tuple[int, int] | None:
    """`(rows, cols)` with `rows * cols == count` closest to the aspect ratio `height / width`: equal to it when
    `exact`, else within a factor 1.5 (a size that is no multiple of the patch size)."""
    best, best_error = None, math.inf
    for rows in range(1, count + 1):
        if count % rows:
            continue
        cols = count // rows
        error = abs(math.log(rows * width / (cols * height)))
        if (rows * width == cols * height if exact else error <= math.log(1.5)) and error < best_error:
            best, best_error = (rows, cols), error
    return best


def token_grid(num_tokens: int, size: tuple[int, int], num_prefix_tokens: int | None = None) -> tuple[int, int, int]:
    """`(num_prefix_tokens, h, w)` of a token sequence for an input of `size` (height, width).

    With `num_prefix_tokens` given, the remaining tokens must form the grid; otherwise the smallest prefix (class,
    distillation or register tokens, at most 16) that leaves an `h x w` grid with exactly the input's aspect ratio
    is taken (17 tokens for a 64x64 input: 1 class token and 4x4 patches), else the smallest whose grid is within a
    factor 1.5 of it.

    Raises:
        ValueError: no prefix / grid fits.
    """
    height, width = size
    prefixes = [num_prefix_tokens] if num_prefix_tokens is not None else range(0, min(16, num_tokens - 1) + 1)
    for exact in (True, False):
        for prefix in prefixes:
            grid = _grid(num_tokens - prefix, height, width, exact) if num_tokens > prefix else None
            if grid is not None:
                return prefix, *grid
    raise ValueError(f"Cannot fold {num_tokens} tokens into a grid for a {height}x{width} input "
                     f"(num_prefix_tokens={num_prefix_tokens}); pick a layer with a (B, C, h, w) output.")


def token_reshape(size: tuple[int, int], num_prefix_tokens: int | None = None,
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A pytorch-grad-cam `reshape_transform`: (B, N, C) tokens -> (B, C, h, w), the prefix tokens dropped.

    Any other tensor (a (B, C, h, w) map) is returned as it is, so the same transform serves every layer.

    Args:
        size (`(int, int)`): the height and width of the model's input.
        num_prefix_tokens (`int`, *optional*): class/register tokens in front (timm's `num_prefix_tokens`); found
            by `token_grid` when not given.
    """
    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() != 3:
            return tensor
        prefix, rows, cols = token_grid(tensor.shape[1], size, num_prefix_tokens)
        grid = tensor[:, prefix:, :].reshape(tensor.shape[0], rows, cols, tensor.shape[2])
        return grid.permute(0, 3, 1, 2)

    return reshape


def fold_tokens(tokens: torch.Tensor, size: tuple[int, int], num_prefix_tokens: int | None = None) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, h, w) with the prefix tokens dropped (see `token_grid`); other tensors unchanged."""
    return token_reshape(size, num_prefix_tokens)(tokens)


def num_prefix_tokens(model: nn.Module) -> int | None:
    """Tokens in front of the patch tokens: timm's `num_prefix_tokens`; for a transformers model, its embeddings'
    `cls_token` and `distillation_token` (1 for BEiT, DPT and ViT, none for Swin); `None` when not known."""
    prefix = getattr(getattr(model, "timm_model", None), "num_prefix_tokens", None)
    if isinstance(prefix, int):
        return prefix
    for name, module in model.named_modules():
        if name.split(".")[-1] == "embeddings":
            return sum(isinstance(getattr(module, attr, None), torch.Tensor)
                       for attr in ("cls_token", "distillation_token"))
    return None


def reshape_transform_for(model: nn.Module, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The `reshape_transform` for `model` at input `size`: `token_reshape` with `num_prefix_tokens(model)` (found
    by `token_grid` when unknown)."""
    return token_reshape(size, num_prefix_tokens(model))


def _first_tensor(output: Any) -> tuple[Any, Callable[[torch.Tensor], Any]]:
    """The first tensor in a module's output, and how to put a replacement back."""
    if isinstance(output, torch.Tensor):
        return output, lambda new: new
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                def put(new: torch.Tensor, i: int = i) -> Any:
                    items = list(output)
                    items[i] = new
                    return type(output)(items) if isinstance(output, list) else tuple(items)
                return item, put
    if isinstance(output, dict):  # transformers ModelOutput
        for key, item in output.items():
            if isinstance(item, torch.Tensor):
                def put_key(new: torch.Tensor, key: str = key) -> Any:
                    output[key] = new
                    return output
                return item, put_key
    raise TypeError(f"The target layer returned {type(output).__name__} without a tensor; choose another layer.")


class LayerTap(nn.Identity):
    """Stands for one target layer: a forward hook on `layer` passes the first tensor of its output through this
    identity module (so pytorch-grad-cam's hooks on the tap record activations and gradients even when the layer
    returns a tuple) and hands the model a copy (`clone`), so in-place operations after the layer
    (`ReLU(inplace=True)`) cannot change the recorded activation; gradients flow through the copy unchanged.
    `remove()` takes the hook off the layer.

    Args:
        layer (`nn.Module`): the module whose output the CAM reads.
        name (`str`, *optional*): its name in the model, for messages.
    """

    def __init__(self, layer: nn.Module, name: str = "") -> None:
        super().__init__()
        self.name = name
        self._handle = layer.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        tensor, put = _first_tensor(output)
        return put(self(tensor).clone())

    def remove(self) -> None:
        """Take the hook off the layer (safe to call twice)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@contextmanager
def tap_layers(layers: Sequence[tuple[str, nn.Module]]) -> Iterator[list[LayerTap]]:
    """One `LayerTap` per `(name, module)` target layer while the context is open; the hooks are removed after."""
    taps: list[LayerTap] = []
    try:
        for name, module in layers:
            taps.append(LayerTap(module, name))
        yield taps
    finally:
        for tap in taps:
            tap.remove()
