"""The small CNN image classifier as a transformers model (the brain-tumour study's "customly developed CNN").

`stages[i]` are conv-BN-ReLU blocks (`stages[i].convs[j].conv`, ...) each ending in a 2x2 max pool, then
`pooler` (global average or max), `dropout` and the linear `classifier`. GradCAM targets the last convolution,
`stages[-1].convs[-1].conv`.

Self-contained (single-dot imports only) for `trust_remote_code` loading of saved checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput

from .configuration_small_cnn import SmallCNNConfig


class SmallCNNConv(nn.Module):
    """Conv (same padding) -> batch norm (optional) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, use_batchnorm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                              bias=not use_batchnorm)
        self.norm = nn.BatchNorm2d(out_channels) if use_batchnorm else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SmallCNNStage(nn.Module):
    """`convs_per_block` conv-BN-ReLU layers, then a 2x2 max pool (floor: odd sizes lose their last row/column)."""

    def __init__(self, in_channels: int, out_channels: int, config: SmallCNNConfig) -> None:
        super().__init__()
        layers = [SmallCNNConv(in_channels if i == 0 else out_channels, out_channels, config.kernel_size,
                               config.use_batchnorm) for i in range(config.convs_per_block)]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return self.pool(x) if min(x.shape[-2:]) >= 2 else x  # tiny inputs keep their last 1-pixel map


class SmallCNNPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers plumbing of the small CNN."""

    config_class = SmallCNNConfig
    config: SmallCNNConfig
    base_model_prefix = "small_cnn"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class SmallCNNForImageClassification(SmallCNNPreTrainedModel):
    """Conv blocks, global pooling, dropout and a linear head; with `labels`, `forward` also returns the loss."""

    def __init__(self, config: SmallCNNConfig) -> None:
        super().__init__(config)
        widths = [config.num_channels] + list(config.hidden_sizes)
        self.stages = nn.ModuleList(SmallCNNStage(widths[i], widths[i + 1], config)
                                    for i in range(len(config.hidden_sizes)))
        self.pooler = nn.AdaptiveAvgPool2d(1) if config.global_pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(widths[-1], config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images of any size of at least 1 pixel (global pooling makes the logits size-independent).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices; the loss is cross-entropy (binary cross-entropy on 0/1 labels when `num_labels == 1`).
        output_hidden_states (`bool`, *optional*):
            Return each block's output feature map, shallowest first.

        Returns `ImageClassifierOutput` with `logits` (B, num_labels) and the loss when `labels` are given.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(f"pixel_values must be (B, {self.config.num_channels}, H, W) (config.num_channels), got "
                             f"shape {tuple(pixel_values.shape)}.")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        x = pixel_values
        hidden_states = []
        for stage in self.stages:
            x = stage(x)
            hidden_states.append(x)
        logits = self.classifier(self.dropout(self.pooler(x).flatten(1)))
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.config.num_labels == 1:
                loss = F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.reshape(-1).float())
            else:
                loss = F.cross_entropy(logits, labels.reshape(-1).long())
        output = ImageClassifierOutput(loss=loss, logits=logits,
                                       hidden_states=tuple(hidden_states) if output_hidden_states else None)
        return output if return_dict else output.to_tuple()
