"""Attention-gate maps of the Attention U-Nets (Oktay et al. 2018), at the input's resolution.

Each gate of an hfseg U-Net built with `attention="gate"` weighs its skip connection with a map `alpha` in [0, 1]
(`model(pixel_values, output_attentions=True).attentions`, one (B, 1, h_i, w_i) map per gated skip, deepest first).
`attention_maps` returns them upsampled bilinearly to the input's size, coarse to fine (an input whose size is not a
multiple of the encoder's stride is zero-padded first, as the model pads it, and the maps cropped after upsampling,
so that they stay aligned with the image). Models without gates (other U-Nets, the transformers families, whose
`attentions` are token-to-token matrices) give an empty list.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def has_attention_gates(model: nn.Module) -> bool:
    """Whether `model` contains attention gates (an hfseg `AttentionGate`, also when loaded as remote code)."""
    return any(type(module).__name__ == "AttentionGate" for module in model.modules())


@torch.no_grad()
def attention_maps(model: nn.Module, pixel_values: torch.Tensor) -> list[np.ndarray]:
    """The attention-gate maps of one image, coarse (deepest gate) to fine.

    Args:
        model (`nn.Module`): an hfseg U-Net; any other model gives `[]`.
        pixel_values (`torch.Tensor`): (1, C, h, w) or (C, h, w), normalized as the model expects.

    Returns:
        `list[np.ndarray]`: one (h, w) float32 map in [0, 1] per gate, upsampled bilinearly (align_corners=False).
    """
    if not has_attention_gates(model):
        return []
    x = pixel_values if pixel_values.dim() == 4 else pixel_values[None]
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"pixel_values must be one image, (1, C, h, w) or (C, h, w); got {tuple(pixel_values.shape)}.")
    height, width = x.shape[-2:]
    stride = getattr(getattr(model, "unet", None), "stride", 1)
    stride = stride if isinstance(stride, int) else 1
    x = F.pad(x, (0, (-width) % stride, 0, (-height) % stride))  # as the model pads: the maps stay aligned
    param = next(model.parameters())
    training = model.training
    model.eval()
    try:
        outputs = model(pixel_values=x.to(device=param.device, dtype=param.dtype), output_attentions=True)
    finally:
        model.train(training)
    maps = []
    for alpha in outputs.attentions or ():
        up = F.interpolate(alpha[:1].float(), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        maps.append(up[0, 0, :height, :width].clamp(0, 1).cpu().numpy().astype(np.float32))
    return maps
