"""The hfseg U-Net family as transformers models.

`UNetModel` (encoder + decoder, the AutoModel) and `UNetForSemanticSegmentation` (plus a 1x1 head and the loss).
Every variant is a switch of [`UNetConfig`]; module names are flat and stable for GradCAM targets:
`unet.encoder.stages[i]` (or `unet.encoder.backbone` for timm), `unet.decoder.blocks[i]`, `unet.decoder.blocks[i].gate`,
`head`.

Inputs of any size: the image is zero-padded at the bottom and right to a multiple of the encoder's total stride and
the outputs are cropped back, so logits always have the input's height and width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, SemanticSegmenterOutput

from .blocks_unet import (
    AttentionGate,
    GatedChannelTransformation,
    StyleRecalibration,
    UNetConv,
    UNetStage,
    has_inner_hooks,
    recompute,
)
from .configuration_unet import UNetConfig
from .encoder_unet import build_encoder
from .loss_unet import segmentation_loss


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` (B, C, H, W) in the channels-last layout. With one channel both layouts hold the same data and
    `contiguous(memory_format=...)` keeps the default strides, which oneDNN reads as channels-first: a view with
    channels-last strides makes the convolutions that follow use (and produce) channels-last."""
    if x.shape[1] == 1:
        x = x.contiguous()
        return x.as_strided(x.shape, (x.shape[2] * x.shape[3], 1, x.shape[3], 1))
    return x.contiguous(memory_format=torch.channels_last)


class UNetDecoderBlock(nn.Module):
    """Upsample by `scale`, optionally gate the skip, join it (concat or add), then a conv stage.

    Without autograd (`torch.no_grad` / `inference_mode`) a concatenating block writes the gated skip straight into
    the concatenation and frees each intermediate early (`lean_inference = False` turns that off); in training it
    recomputes the gated skip and the concatenation in backward when its stage recomputes (see `blocks_unet`).
    """

    lean_inference = True

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, scale: int, config: UNetConfig):
        super().__init__()
        if scale == 2 and config.upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            layers: list[nn.Module] = [nn.Upsample(scale_factor=scale, mode="bilinear")] if scale > 1 else []
            self.up = nn.Sequential(*layers, nn.Conv2d(in_channels, out_channels, 1))
        self.gate = None
        if skip_channels and config.attention == "gate":
            self.gate = AttentionGate(out_channels, skip_channels, max(skip_channels // 2, 1), config.norm)
        self.skip_proj = None
        if skip_channels and config.skip == "add" and skip_channels != out_channels:
            self.skip_proj = UNetConv(skip_channels, out_channels, 1, "standard", config.norm, config.activation)
        concat = skip_channels and config.skip == "concat"
        stage_in = out_channels + skip_channels if concat else out_channels
        self.stage = UNetStage(stage_in, out_channels, config.convs_per_block, config)
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
        if skip is not None and x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear")
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
        is_channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        joined = torch.empty((x.shape[0], x.shape[1] + skip.shape[1], *x.shape[2:]), device=x.device, dtype=dtype,
                             memory_format=torch.channels_last if is_channels_last else torch.contiguous_format)
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
    """Decoder blocks from the deepest feature map up, then skip-less blocks until the input resolution."""

    def __init__(self, config: UNetConfig, channels: list[int], reductions: list[int]) -> None:
        super().__init__()
        num_skips = len(channels) - 1
        extra = int(round(math.log2(reductions[0]))) if reductions[0] > 1 else 0
        if config.encoder == "conv":
            sizes = list(reversed(channels[:-1]))
        else:
            sizes = list(config.decoder_hidden_sizes or (256, 128, 64, 32, 16))
        while len(sizes) < num_skips + extra:
            sizes.append(max(sizes[-1] // 2, 8))
        sizes = sizes[: num_skips + extra]
        blocks = []
        in_ch = channels[-1]
        for j in range(num_skips + extra):
            level = num_skips - 1 - j
            if level >= 0:
                skip_ch, scale = channels[level], reductions[level + 1] // reductions[level]
            else:
                skip_ch, scale = 0, 2
            blocks.append(UNetDecoderBlock(in_ch, skip_ch, sizes[j], scale, config))
            in_ch = sizes[j]
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_ch

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = features[-1]
        skips = features[-2::-1]
        attentions = []
        for j, block in enumerate(self.blocks):
            x, alpha = block(x, skips[j] if j < len(skips) else None)
            if alpha is not None:
                attentions.append(alpha)
        return x, attentions


class UNetPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers plumbing shared by the U-Net models."""

    config_class = UNetConfig
    config: UNetConfig
    base_model_prefix = "unet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)):
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
    """Encoder and decoder; `last_hidden_state` is the decoder's full-resolution feature map (B, C, H, W).

    On the CPU the network runs in the channels-last memory layout (`channels_last_on_cpu`, a class attribute):
    oneDNN then convolves without reordering each activation, which is faster and needs less memory. Values are
    unchanged; `last_hidden_state` and `hidden_states` keep that layout (the head's `logits` are made contiguous).
    """

    channels_last_on_cpu = True

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        self.encoder = build_encoder(config)
        self.decoder = UNetDecoder(config, self.encoder.channels, self.encoder.reductions)
        self.post_init()

    @property
    def stride(self) -> int:
        """Total stride of the encoder: inputs are padded to a multiple of it."""
        return max(self.encoder.reductions)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images of any height and width.
        output_attentions (`bool`, *optional*):
            Return the attention-gate maps: a tuple with one (B, 1, h_i, w_i) map per gated skip, in decoder order
            (deepest skip first, the full-resolution skip last), each at its skip's own resolution
            (`h_i = ceil(H / stride_i)`), values in [0, 1]. Empty for models without attention gates.
        output_hidden_states (`bool`, *optional*):
            Return the encoder feature maps (shallowest first, at the padded input's strides).
        """
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be (B, C, H, W), got shape {tuple(pixel_values.shape)}.")
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
        height, width = pixel_values.shape[-2:]
        stride = self.stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        x = F.pad(pixel_values, (0, pad_w, 0, pad_h)) if pad_h or pad_w else pixel_values
        if self.channels_last_on_cpu and x.device.type == "cpu":
            x = channels_last(x)
        features = self.encoder(x)
        hidden, alphas = self.decoder(features)
        hidden = hidden[..., :height, :width]
        attentions = None
        if output_attentions:
            full_h, full_w = x.shape[-2:]
            attentions = tuple(
                a[..., : math.ceil(height * a.shape[-2] / full_h), : math.ceil(width * a.shape[-1] / full_w)]
                for a in alphas
            )
        hidden_states = tuple(features) if output_hidden_states else None
        output = BaseModelOutput(last_hidden_state=hidden, hidden_states=hidden_states, attentions=attentions)
        return output if return_dict else output.to_tuple()


class UNetForSemanticSegmentation(UNetPreTrainedModel):
    """U-Net with a 1x1 classification head; with `labels`, `forward` also returns the configured loss."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        self.unet = UNetModel(config)
        self.dropout = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(self.unet.decoder.out_channels, config.num_labels, 1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SemanticSegmenterOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
            Class indices (0/1 for a binary model); `config.semantic_loss_ignore_index` marks ignored pixels.

        Returns `SemanticSegmenterOutput` with `logits` (B, num_labels, H, W) at the input's resolution, the loss
        when `labels` are given, and the attention-gate maps in `attentions` (see [`UNetModel.forward`]).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.unet(pixel_values, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.head(self.dropout(outputs.last_hidden_state)).contiguous()
        loss = None
        if labels is not None:
            cfg = self.config
            loss = segmentation_loss(
                logits, labels, loss=cfg.loss, ignore_index=cfg.semantic_loss_ignore_index,
                class_weights=cfg.class_weights, dice_smooth=cfg.dice_smooth,
                include_background=cfg.dice_include_background, focal_gamma=cfg.focal_gamma,
            )
        output = SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)
        return output if return_dict else output.to_tuple()
