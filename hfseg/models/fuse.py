"""Batch-norm folding for inference: `fuse_conv_bn(model)` folds every batch norm that directly follows a
convolution into that convolution's weights and bias.

The hfseg U-Nets already fold their own conv + batch-norm pairs on the fly in eval mode (see
`hfseg.models.unet.blocks_unet`); this module does it once and for good, for any model: the timm encoder of a
`timm-unet` (ResNet-style `convN`/`bnN` siblings and `downsample` sequences), Segformer's decode head, smp models,
anything whose pairs sit next to each other in an `nn.Sequential`. The folded model is for inference only: its batch
norms become `nn.Identity`, so its state dict no longer matches its config (do not `save_pretrained` it).

A pair is folded when (1) a `BatchNorm2d` directly follows a `Conv2d` in an `nn.Sequential`, or (2) a module has
children named `conv<k>` and `bn<k>` (torchvision/timm ResNet blocks, whose forward applies `bn<k>` right after
`conv<k>`). With `example` inputs the result is checked against the original model and rule (2) is dropped if the
outputs differ, then everything if they still differ.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from .unet.blocks_unet import fold_batch_norm

__all__ = ["fuse_conv_bn", "fused_conv"]


def fused_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A new `Conv2d` computing `norm(conv(x))` with the norm's running statistics."""
    fused = copy.deepcopy(conv)
    weight, bias = fold_batch_norm(conv, norm)
    fused.weight = nn.Parameter(weight.detach().clone(), requires_grad=conv.weight.requires_grad)
    fused.bias = nn.Parameter(bias.detach().clone(), requires_grad=conv.weight.requires_grad)
    return fused


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d and norm.running_mean is not None
            and conv.out_channels == norm.num_features)


def _sequential_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                if _foldable(module._modules[a], module._modules[b]):
                    yield module, a, b


def _named_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            continue
        children = module._modules
        for name in children:
            match = re.fullmatch(r"conv(\d*)", name)
            if match and f"bn{match.group(1)}" in children and _foldable(children[name],
                                                                         children[f"bn{match.group(1)}"]):
                yield module, name, f"bn{match.group(1)}"


def _fold(model: nn.Module, named: bool) -> int:
    pairs = list(_sequential_pairs(model)) + (list(_named_pairs(model)) if named else [])
    for parent, conv_name, norm_name in pairs:
        parent._modules[conv_name] = fused_conv(parent._modules[conv_name], parent._modules[norm_name])
        parent._modules[norm_name] = nn.Identity()
    return len(pairs)


def _outputs(model: nn.Module, example: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    out = model(**example)
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if hasattr(out, "values") else out
    return [v for v in values if isinstance(v, torch.Tensor)]


def _matches(a: nn.Module, b: nn.Module, example: dict[str, torch.Tensor], rtol: float) -> bool:
    with torch.inference_mode():
        for x, y in zip(_outputs(a, example), _outputs(b, example)):
            scale = y.float().abs().max().clamp_min(1.0)
            if not torch.allclose(x.float(), y.float(), rtol=0, atol=rtol * float(scale)):
                return False
    return True


@torch.no_grad()
def fuse_conv_bn(model: nn.Module, example: dict[str, torch.Tensor] | torch.Tensor | None = None,
                 rtol: float = 1e-4) -> nn.Module:
    """A copy of `model` in eval mode with its conv + batch-norm pairs folded (see the module docstring).

    Args:
        model (`nn.Module`): any model; it is not modified.
        example (`dict` or `torch.Tensor`, *optional*): inputs (`pixel_values` when a tensor) to check the folded
            model against the original; without it the pairs are folded unchecked.
        rtol (`float`, *optional*, defaults to 1e-4): allowed difference, relative to the largest output value.

    Returns:
        `nn.Module`: the folded copy, in eval mode, for inference only (its state dict differs from `model`'s).
    """
    reference = model if not model.training else copy.deepcopy(model).eval()
    if isinstance(example, torch.Tensor):
        example = {"pixel_values": example}
    for named in (True, False):
        fused = copy.deepcopy(model).eval()
        count = _fold(fused, named)
        if example is None or count == 0 or _matches(fused, reference, example, rtol):
            return fused
    warnings.warn(f"Folding batch norms changed the outputs of {type(model).__name__}; returning it unfused.",
                  stacklevel=2)
    return copy.deepcopy(model).eval()
