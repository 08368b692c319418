"""Encoders of the hfseg U-Net family: the built-in conv encoder and any timm `features_only` model.

An encoder maps (B, C, H, W) (or (B, C, X, Y, Z) for the 3-D conv encoder) to a list of feature maps, shallowest
first, and exposes `channels`, `level_strides` (the stride of each map with respect to the input, per spatial axis)
and `reductions` (the largest of them, per map).
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from .blocks_unet import InvertedBottleneck, UNetConv, UNetStage, layer

# Attribute set on every module of a timm backbone: `weight_init="fan_in"` initialises them as timm does.
TIMM_MODULE = "_hfseg_timm_module"


class UNetConvEncoder(nn.Module):
    """Conv stages (`stages[i]`), each but the first preceded by a max pooling of kernel = stride =
    `config.stage_strides[i]` (2x2 by default), with the kernels of `config.stage_kernel_sizes`.

    The first convolution, on the raw input channels, is always a standard one (also in separable models), so that
    the input layer is one dense kernel that `hfseg.create_model` can adapt to another channel count.
    """

    def __init__(self, config) -> None:
        super().__init__()
        sizes, strides, kernels = config.hidden_sizes, config.stage_strides, config.stage_kernel_sizes
        kernels = [k[0] if len(set(k)) == 1 else k for k in kernels]  # one int when isotropic, as in 2-D
        pool = layer("maxpool", config.spatial_dims)
        stem = UNetStage(config.num_channels, sizes[0], config.convs_per_stage[0], config, kernels[0])
        stem.convs[0] = UNetConv(config.num_channels, sizes[0], kernels[0], "standard", config.norm,
                                 config.activation, config.spatial_dims)
        stages = [stem]
        for i in range(1, len(sizes)):
            if i == len(sizes) - 1 and config.bottleneck == "inverted":
                block: nn.Module = InvertedBottleneck(sizes[i - 1], sizes[i], config, kernels[i])
            else:
                block = UNetStage(sizes[i - 1], sizes[i], config.convs_per_stage[i], config, kernels[i])
            stride = strides[i][0] if len(set(strides[i])) == 1 else strides[i]
            stages.append(nn.Sequential(pool(stride), block))
        self.stages = nn.ModuleList(stages)
        self.channels = list(sizes)
        self.level_strides: list[tuple[int, ...]] = []
        total = (1,) * config.spatial_dims
        for stride in strides:
            total = tuple(t * s for t, s in zip(total, stride))
            self.level_strides.append(total)
        self.reductions = [max(s) for s in self.level_strides]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _import_timm():
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a dependency of hfseg
        raise ImportError("A U-Net on a timm encoder needs timm: pip install timm") from err
    return timm


class UNetTimmEncoder(nn.Module):
    """A timm model with `features_only=True` (random weights; pretrained ones are loaded by `create_model`)."""

    def __init__(self, config) -> None:
        super().__init__()
        timm = _import_timm()
        name = config.encoder
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=5)
            hint = f" Close timm names: {', '.join(close)}." if close else ""
            raise ValueError(
                f"Unknown encoder {name!r}: the encoder must be 'conv' (the built-in U-Net encoder) or the name of a "
                f"timm model supporting features_only (see timm.list_models()).{hint}"
            )
        kwargs = {"features_only": True, "pretrained": False, "in_chans": config.num_channels}
        if config.encoder_out_indices is not None:
            kwargs["out_indices"] = tuple(config.encoder_out_indices)
        try:
            self.backbone = timm.create_model(name, **kwargs)
        except (RuntimeError, TypeError, AssertionError) as err:
            raise ValueError(f"timm model {name!r} cannot be used as a U-Net encoder ({err}).") from err
        for module in self.backbone.modules():
            setattr(module, TIMM_MODULE, True)
        self.channels = list(self.backbone.feature_info.channels())
        self.reductions = list(self.backbone.feature_info.reduction())
        self.level_strides = [(r, r) for r in self.reductions]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.backbone(x))


def build_encoder(config) -> nn.Module:
    """The encoder named by `config.encoder`."""
    return UNetConvEncoder(config) if config.encoder == "conv" else UNetTimmEncoder(config)
