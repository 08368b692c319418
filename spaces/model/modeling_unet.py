"""The hfseg U-Net family as transformers models.

`UNetModel` (encoder + decoder, the AutoModel) and `UNetForSemanticSegmentation` (plus a head and the loss).
Every variant is a switch of [`UNetConfig`], on images (`spatial_dims=2`) or volumes (`spatial_dims=3`); module
names are flat and stable for GradCAM targets: `unet.encoder.stages[i]` (or `unet.encoder.backbone` for timm),
`unet.decoder.blocks[i]`, `unet.decoder.blocks[i].gate`, `head` (and `deep_supervision_heads[j]` with deep
supervision).

Inputs of any size: each spatial axis is zero-padded at its end to a multiple of the encoder's total stride along it
and the outputs are cropped back, so logits always have the input's spatial shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, SemanticSegmenterOutput

from .blocks_unet import (
    LINEAR_MODES,
    AttentionGate,
    GatedChannelTransformation,
    StyleRecalibration,
    UNetConv,
    UNetStage,
    has_inner_hooks,
    layer,
    per_axis,
    recompute,
)
from .configuration_unet import UNetConfig
from .encoder_unet import TIMM_MODULE, build_encoder
from .loss_unet import deep_supervision_loss, segmentation_loss


@dataclass
class UNetModelOutput(BaseModelOutput):
    r"""
    `BaseModelOutput` of [`UNetModel`], plus:

    decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        With `output_decoder_hidden_states=True`: the output of every decoder block but the last (whose output is
        `last_hidden_state`), in decoder order (lowest resolution first), each cropped to the input's extent.
    """

    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class UNetSemanticSegmenterOutput(SemanticSegmenterOutput):
    r"""
    `SemanticSegmenterOutput` of [`UNetForSemanticSegmentation`], plus:

    deep_supervision_logits (`tuple(torch.FloatTensor)`, *optional*):
        Deep supervision (`config.deep_supervision`) in training mode: the logits of the heads on the decoder outputs
        below full resolution, highest resolution first (`logits` itself stays at full resolution). `None` in eval
        mode, where these heads do not run.
    """

    deep_supervision_logits: tuple[torch.FloatTensor, ...] | None = None


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """The channels-last memory format of `x`'s rank: `channels_last` (4-D) or `channels_last_3d` (5-D)."""
    return torch.channels_last if x.dim() == 4 else torch.channels_last_3d


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` (B, C, H, W) or (B, C, X, Y, Z) in the channels-last layout. With one channel both layouts hold the same
    data and `contiguous(memory_format=...)` keeps the default strides, which oneDNN reads as channels-first: a view
    with channels-last strides makes the convolutions that follow use (and produce) channels-last."""
    if x.shape[1] == 1:
        x = x.contiguous()
        spatial = x[0, 0].stride()
        return x.as_strided(x.shape, (math.prod(x.shape[2:]), 1, *spatial))
    return x.contiguous(memory_format=memory_format(x))


def _spatial_shape(dims: int) -> str:
    return "(B, C, H, W)" if dims == 2 else "(B, C, X, Y, Z)"


def crop(x: torch.Tensor, size: tuple[int, ...], padded: tuple[int, ...]) -> torch.Tensor:
    """`x`, a map of the padded input (spatial shape `padded`) at its own resolution, cropped to the extent of the
    unpadded input (spatial shape `size`): `ceil(size * x_size / padded)` per axis."""
    keep = [math.ceil(n * m / p) for n, m, p in zip(size, x.shape[2:], padded)]
    if keep == list(x.shape[2:]):
        return x
    return x[(..., *(slice(0, k) for k in keep))]


class UNetDecoderBlock(nn.Module):
    """Upsample by `scale` (an int or one per axis), optionally gate the skip, join it (concat or add), then a conv
    stage with `kernel_size` (`config.kernel_size` by default).

    The upsampling is a transposed convolution of kernel = stride = `scale` (`upsample="transpose"`; on a timm
    encoder only where `scale` is 2), linear interpolation in the model's dims then a 1x1 convolution, or
    (`upsample="nearest"`) nearest-neighbour interpolation that keeps the `in_channels` (then a 1x1 convolution only
    where an added skip needs `out_channels`).

    Without autograd (`torch.no_grad` / `inference_mode`) a concatenating block writes the gated skip straight into
    the concatenation and frees each intermediate early (`lean_inference = False` turns that off); in training it
    recomputes the gated skip and the concatenation in backward when its stage recomputes (see `blocks_unet`).
    """

    lean_inference = True

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, scale: int | tuple[int, ...],
        config: UNetConfig, kernel_size: int | tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        dims = config.spatial_dims
        scale = per_axis(scale, dims)
        factor = scale[0] if len(set(scale)) == 1 else scale  # one int when isotropic, as in 2-D
        up_channels = out_channels
        if config.upsample == "transpose" and (config.encoder == "conv" or all(s == 2 for s in scale)):
            self.up: nn.Module = layer("transpose", dims)(in_channels, out_channels, factor, stride=factor)
        else:
            mode = "nearest" if config.upsample == "nearest" else LINEAR_MODES[dims]
            upsample = nn.Upsample(scale_factor=factor if isinstance(factor, int) else tuple(map(float, factor)),
                                   mode=mode)
            layers: list[nn.Module] = [upsample] if max(scale) > 1 else []
            if config.upsample == "nearest" and config.skip == "concat":
                up_channels = in_channels
            else:
                layers.append(layer("conv", dims)(in_channels, out_channels, 1))
            self.up = nn.Sequential(*layers)
        self.gate = None
        if skip_channels and config.attention == "gate":
            self.gate = AttentionGate(up_channels, skip_channels, max(skip_channels // 2, 1), config.norm, dims)
        self.skip_proj = None
        if skip_channels and config.skip == "add" and skip_channels != out_channels:
            self.skip_proj = UNetConv(skip_channels, out_channels, 1, "standard", config.norm, config.activation,
                                      dims)
        concat = skip_channels and config.skip == "concat"
        stage_in = up_channels + skip_channels if concat else up_channels
        self.stage = UNetStage(stage_in, out_channels, config.convs_per_block, config, kernel_size)
        self.skip_mode = config.skip

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        concat = skip is not None and self.skip_mode == "concat"
        if concat and self.lean_inference and not torch.is_grad_enabled() and not has_inner_hooks(self):
            return self._forward_without_grad(x, skip)
        x = self._upsample(x, skip)
        if skip is None:
            return self.stage(x), None
        if not concat:
            alpha = None
            if self.gate is not None:
                skip, alpha = self.gate(x, skip)
            return self.stage(x + (self.skip_proj(skip) if self.skip_proj is not None else skip)), alpha
        if self.stage.recomputes() and not has_inner_hooks(self):
            # Training: backward keeps x, skip and the gate map, and recomputes product and concatenation.
            if self.gate is None:
                return self.stage.forward_from_first_conv(recompute(self._join_and_convolve, (), x, skip)), None
            alpha = self.gate.attention_map(x, skip)
            return self.stage.forward_from_first_conv(recompute(self._join_and_convolve, (), x, skip, alpha)), alpha
        alpha = None
        if self.gate is not None:
            skip, alpha = self.gate(x, skip)
        return self.stage(torch.cat([x, skip], dim=1)), alpha

    def _upsample(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None and x.shape[2:] != skip.shape[2:]:
            x = F.interpolate(x, size=skip.shape[2:], mode=LINEAR_MODES[x.dim() - 2])
        return x

    def _join_and_convolve(self, x: torch.Tensor, skip: torch.Tensor, alpha: torch.Tensor | None = None
                           ) -> torch.Tensor:
        """The skip weighted by the gate map `alpha`, concatenated, and the stage's first convolution (no norm)."""
        joined = torch.cat([x, skip if alpha is None else skip * alpha], dim=1)
        return self.stage.convs[0].conv_only(joined)

    def _forward_without_grad(self, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inference with the least memory: the gated skip is written straight into the concatenation, and every
        intermediate is released as soon as the next layer has read it."""
        x = self._upsample(x, skip)
        alpha = self.gate.attention_map(x, skip) if self.gate is not None else None
        dtype = torch.promote_types(x.dtype, skip.dtype if alpha is None else torch.promote_types(skip.dtype,
                                                                                                   alpha.dtype))
        layout = memory_format(x)
        is_channels_last = x.is_contiguous(memory_format=layout) and not x.is_contiguous()
        joined = torch.empty((x.shape[0], x.shape[1] + skip.shape[1], *x.shape[2:]), device=x.device, dtype=dtype,
                             memory_format=layout if is_channels_last else torch.contiguous_format)
        joined[:, : x.shape[1]].copy_(x)
        if alpha is None:
            joined[:, x.shape[1] :].copy_(skip)
        else:
            torch.mul(skip, alpha, out=joined[:, x.shape[1] :])
        del x
        convs = list(self.stage.convs)
        h = convs[0](joined)
        del joined
        for conv in convs[1:]:
            h = conv(h)
        return self.stage.channel_attention(h), alpha


class UNetDecoder(nn.Module):
    """Decoder blocks from the deepest feature map up, then skip-less blocks until the input resolution.

    Block `j` joins the skip of encoder level `l` (the deepest first): it upsamples by the stride between levels `l`
    and `l + 1` (per axis, from `level_strides`) and, on the conv encoder, convolves with the kernel of stage `l`.
    """

    def __init__(self, config: UNetConfig, channels: list[int], level_strides: list[tuple[int, ...]]) -> None:
        super().__init__()
        num_skips = len(channels) - 1
        first = max(level_strides[0])
        extra = int(round(math.log2(first))) if first > 1 else 0
        kernels = None
        if config.encoder == "conv":
            sizes = list(reversed(channels[:-1]))
            kernels = [k[0] if len(set(k)) == 1 else k for k in config.stage_kernel_sizes]
        else:
            sizes = list(config.decoder_hidden_sizes or (256, 128, 64, 32, 16))
        while len(sizes) < num_skips + extra:
            sizes.append(max(sizes[-1] // 2, 8))
        sizes = sizes[: num_skips + extra]
        blocks = []
        in_ch = channels[-1]
        for j in range(num_skips + extra):
            level = num_skips - 1 - j
            kernel = None
            if level >= 0:
                skip_ch = channels[level]
                scale = tuple(b // a for a, b in zip(level_strides[level], level_strides[level + 1]))
                kernel = kernels[level] if kernels is not None else None
            else:
                skip_ch, scale = 0, (2,) * config.spatial_dims
            blocks.append(UNetDecoderBlock(in_ch, skip_ch, sizes[j], scale, config, kernel))
            in_ch = sizes[j]
        self.blocks = nn.ModuleList(blocks)
        self.block_channels = sizes
        self.out_channels = in_ch

    def forward(
        self, features: list[torch.Tensor], keep_block_outputs: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The last block's output, the attention-gate maps, and (with `keep_block_outputs`) the outputs of the
        other blocks, in decoder order."""
        x = features[-1]
        skips = features[-2::-1]
        attentions, outputs = [], []
        for j, block in enumerate(self.blocks):
            if keep_block_outputs and j:
                outputs.append(x)
            x, alpha = block(x, skips[j] if j < len(skips) else None)
            if alpha is not None:
                attentions.append(alpha)
        return x, attentions, outputs


class UNetPreTrainedModel(PreTrainedModel):
    """Weight initialisation (`config.weight_init`) and the transformers plumbing shared by the U-Net models."""

    config_class = UNetConfig
    config: UNetConfig
    base_model_prefix = "unet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def initialize_weights(self) -> None:
        """transformers' `initialize_weights` (`_init_weights` on each module not loaded), then, with
        `weight_init="fan_in"`, timm's zero init of the last norm of each residual block of a timm encoder: a step of
        the block, which `_init_weights` (called only on modules holding parameters) cannot take."""
        super().initialize_weights()
        if self.config.weight_init == "fan_in":
            with torch.no_grad(), init.guard_torch_init_functions():  # loaded weights stay as they are
                for module in self.modules():
                    if getattr(module, TIMM_MODULE, False) and hasattr(module, "zero_init_last"):
                        module.zero_init_last()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            if self.config.weight_init == "fan_in" and not getattr(module, TIMM_MODULE, False):
                init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
            else:
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d, nn.InstanceNorm3d,
                                 nn.LayerNorm)):
            if getattr(module, "weight", None) is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, GatedChannelTransformation):
            init.ones_(module.alpha)
            init.zeros_(module.gamma)
            init.zeros_(module.beta)
        elif isinstance(module, StyleRecalibration):
            init.zeros_(module.cfc)


class UNetModel(UNetPreTrainedModel):
    """Encoder and decoder; `last_hidden_state` is the decoder's full-resolution feature map (B, C, H, W), or
    (B, C, X, Y, Z) for a 3-D model.

    On the CPU a 2-D network runs in the channels-last memory layout (`channels_last_on_cpu`, a class attribute):
    oneDNN then convolves without reordering each activation, which is faster and needs less memory. Values are
    unchanged; `last_hidden_state` and `hidden_states` keep that layout (the head's `logits` are made contiguous).
    A 3-D network does the same in `channels_last_3d` (`channels_last_3d_on_cpu`): measured faster for training
    steps (by about a sixth for a 3-D Attention U-Net, and several times for the depthwise 7x7x7 convolutions of the
    improved U-Nets, whose backward is slow in the default layout).
    """

    channels_last_on_cpu = True
    channels_last_3d_on_cpu = True

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        self.encoder = build_encoder(config)
        self.decoder = UNetDecoder(config, self.encoder.channels, self.encoder.level_strides)
        self.post_init()

    @property
    def stride_per_axis(self) -> tuple[int, ...]:
        """Total stride of the encoder along each spatial axis (the product of `config.stage_strides` along it):
        each axis of an input is padded to a multiple of its entry."""
        levels = self.encoder.level_strides
        return tuple(max(s[axis] for s in levels) for axis in range(len(levels[0])))

    @property
    def stride(self) -> int:
        """Total stride of the encoder, one int for all axes (the least common multiple of `stride_per_axis`): a
        size that is a multiple of it needs no padding on any axis."""
        return math.lcm(*self.stride_per_axis)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_decoder_hidden_states: bool = False,
        **kwargs,
    ) -> UNetModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images of any height and width; for a 3-D model (`config.spatial_dims=3`) volumes
            `(batch_size, num_channels, X, Y, Z)` of any size.
        output_attentions (`bool`, *optional*):
            Return the attention-gate maps: a tuple with one (B, 1, h_i, w_i) map ((B, 1, x_i, y_i, z_i) in 3-D) per
            gated skip, in decoder order (deepest skip first, the full-resolution skip last), each at its skip's own
            resolution (`h_i = ceil(H / stride_i)`), values in [0, 1]. Empty for models without attention gates.
        output_hidden_states (`bool`, *optional*):
            Return the encoder feature maps (shallowest first, at the padded input's strides).
        output_decoder_hidden_states (`bool`, *optional*, defaults to `False`):
            Return the outputs of the decoder blocks below full resolution (see [`UNetModelOutput`]).
        """
        dims = self.config.spatial_dims
        if pixel_values.dim() != dims + 2:
            hint = (" A volume needs a 3-D model (spatial_dims=3)." if dims == 2 and pixel_values.dim() == 5 else
                    " An image needs a 2-D model (spatial_dims=2)." if dims == 3 and pixel_values.dim() == 4 else "")
            raise ValueError(
                f"pixel_values must be {_spatial_shape(dims)} for this {dims}-D model (config.spatial_dims={dims}), "
                f"got shape {tuple(pixel_values.shape)}.{hint}"
            )
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the model expects "
                f"{self.config.num_channels} (config.num_channels)."
            )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        size = tuple(pixel_values.shape[2:])
        pads = [(-n) % s for n, s in zip(size, self.stride_per_axis)]
        x = F.pad(pixel_values, [p for pad in reversed(pads) for p in (0, pad)]) if any(pads) else pixel_values
        padded = tuple(x.shape[2:])
        to_channels_last = self.channels_last_on_cpu if dims == 2 else self.channels_last_3d_on_cpu
        if to_channels_last and x.device.type == "cpu":
            x = channels_last(x)
        features = self.encoder(x)
        hidden, alphas, lower = self.decoder(features, keep_block_outputs=output_decoder_hidden_states)
        hidden = crop(hidden, size, padded)
        attentions = tuple(crop(a, size, padded) for a in alphas) if output_attentions else None
        hidden_states = tuple(features) if output_hidden_states else None
        decoder_hidden_states = tuple(crop(h, size, padded) for h in lower) if output_decoder_hidden_states else None
        output = UNetModelOutput(last_hidden_state=hidden, hidden_states=hidden_states, attentions=attentions,
                                 decoder_hidden_states=decoder_hidden_states)
        return output if return_dict else output.to_tuple()


class UNetForSemanticSegmentation(UNetPreTrainedModel):
    """U-Net with a classification head (a 1x1 convolution, or `config.head_kernel_size`); with `labels`, `forward`
    also returns the configured loss.

    With `config.deep_supervision`, `deep_supervision_heads[j]` is a 1x1 head on decoder block `j`'s output (every
    block but the last, whose output is the `head`'s input): they run in training mode only.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        dims = config.spatial_dims
        self.unet = UNetModel(config)
        self.dropout = layer("dropout", dims)(config.dropout) if config.dropout > 0 else nn.Identity()
        conv = layer("conv", dims)
        k = config.head_kernel_size
        self.head = conv(self.unet.decoder.out_channels, config.num_labels, k, padding=k // 2)
        self.deep_supervision_heads = None
        if config.deep_supervision:
            self.deep_supervision_heads = nn.ModuleList(
                conv(channels, config.num_labels, 1) for channels in self.unet.decoder.block_channels[:-1]
            )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The heads: xavier-uniform with `weight_init="fan_in"`, else as every convolution."""
        heads = [getattr(self, "head", None), *(getattr(self, "deep_supervision_heads", None) or ())]
        if self.config.weight_init == "fan_in" and any(module is head for head in heads):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> UNetSemanticSegmenterOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
            Class indices (0/1 for a binary model), (batch_size, X, Y, Z) for a 3-D model;
            `config.semantic_loss_ignore_index` marks ignored pixels.

        Returns [`UNetSemanticSegmenterOutput`] with `logits` (B, num_labels, *input spatial shape), the loss when
        `labels` are given, the attention-gate maps in `attentions` (see [`UNetModel.forward`]) and, with deep
        supervision in training mode, `deep_supervision_logits` (the loss is then `deep_supervision_loss`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        deep = self.deep_supervision_heads is not None and self.training
        outputs = self.unet(pixel_values, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True,
                            output_decoder_hidden_states=deep)
        logits = self.head(self.dropout(outputs.last_hidden_state)).contiguous()
        extra = None
        if deep:
            extra = tuple(head(self.dropout(h)).contiguous()
                          for head, h in zip(self.deep_supervision_heads, outputs.decoder_hidden_states))[::-1]
        loss = None
        if labels is not None:
            cfg = self.config
            kwargs = dict(loss=cfg.loss, ignore_index=cfg.semantic_loss_ignore_index, class_weights=cfg.class_weights,
                          dice_smooth=cfg.dice_smooth, include_background=cfg.dice_include_background,
                          focal_gamma=cfg.focal_gamma)
            loss = (deep_supervision_loss(logits, extra, labels, **kwargs) if extra
                    else segmentation_loss(logits, labels, **kwargs))
        output = UNetSemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                             attentions=outputs.attentions, deep_supervision_logits=extra)
        return output if return_dict else output.to_tuple()
