"""Building blocks of the hfseg U-Net family: conv stacks, attention gates, channel attention.

Self-contained (torch only) so that it is copied next to a checkpoint saved for `trust_remote_code` loading.
"""

from __future__ import annotations

import torch
from torch import nn


def make_norm(norm: str, channels: int) -> nn.Module:
    """Normalization layer by name; `"none"` gives an identity."""
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if norm == "instancenorm":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "groupnorm":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


def make_activation(name: str) -> nn.Module:
    """Activation layer by name."""
    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU}[name]()


class UNetConv(nn.Sequential):
    """One convolution, standard or depthwise-separable, followed by norm and activation."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, conv_type: str, norm: str, activation: str
    ) -> None:
        bias = norm == "none"
        if conv_type == "separable":
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels,
                          bias=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=bias),
            ]
        else:
            layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)]
        super().__init__(*layers, make_norm(norm, out_channels), make_activation(activation))


class GatedChannelTransformation(nn.Module):
    """GCT: Gated Channel Transformation (Yang et al., CVPR 2020), l2 embedding mode.

    `s_c = alpha_c * ||x_c||_2`, `n_c = gamma_c * sqrt(C) * s_c / ||s||_2`, `y = x * (1 + tanh(n_c + beta_c))`.
    With the paper's initialisation (alpha=1, gamma=beta=0) the module starts as the identity.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding = (x.pow(2).sum(dim=(2, 3), keepdim=True) + self.eps).sqrt() * self.alpha
        norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.eps).sqrt()
        return x * (1.0 + torch.tanh(embedding * norm + self.beta))


class StyleRecalibration(nn.Module):
    """SRM: Style-based Recalibration Module (Lee et al., ICCV 2019).

    Style pooling (per-channel mean and standard deviation), style integration by a channel-wise fully connected
    layer (two weights per channel, zero-initialised as in the reference code), batch norm and a sigmoid gate
    multiplying the input. Like the reference, its batch norm needs more than one sample per batch in training.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        std = (x.var(dim=(2, 3)) + self.eps).sqrt()
        z = (mean * self.cfc[:, 0] + std * self.cfc[:, 1])[:, :, None, None]
        return x * torch.sigmoid(self.bn(z))


def make_channel_attention(name: str, channels: int) -> nn.Module:
    """Channel attention by name (`"none"`, `"gct"`, `"srm"`)."""
    if name == "gct":
        return GatedChannelTransformation(channels)
    if name == "srm":
        return StyleRecalibration(channels)
    return nn.Identity()


class UNetStage(nn.Module):
    """A stack of `num_convs` convolutions, then optional channel attention."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, config) -> None:
        super().__init__()
        convs = [
            UNetConv(in_channels if i == 0 else out_channels, out_channels, config.kernel_size, config.conv_type,
                     config.norm, config.activation)
            for i in range(num_convs)
        ]
        self.convs = nn.Sequential(*convs)
        self.channel_attention = make_channel_attention(config.channel_attention, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_attention(self.convs(x))


class InvertedBottleneck(nn.Module):
    """Inverted residual bottleneck: 1x1 expansion, depthwise kxk, 1x1 projection, added to its input."""

    def __init__(self, in_channels: int, out_channels: int, config) -> None:
        super().__init__()
        hidden = out_channels * config.bottleneck_expansion
        k = config.kernel_size
        self.project_in = UNetConv(in_channels, out_channels, 1, "standard", config.norm, config.activation)
        self.expand = UNetConv(out_channels, hidden, 1, "standard", config.norm, config.activation)
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, k, padding=k // 2, groups=hidden, bias=config.norm == "none"),
            make_norm(config.norm, hidden),
            make_activation(config.activation),
        )
        self.project_out = nn.Sequential(nn.Conv2d(hidden, out_channels, 1, bias=config.norm == "none"),
                                         make_norm(config.norm, out_channels))
        self.channel_attention = make_channel_attention(config.channel_attention, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)
        return self.channel_attention(x + self.project_out(self.depthwise(self.expand(x))))


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net (Oktay et al. 2018).

    `alpha = sigmoid(psi(relu(W_g g + W_x x)))` with 1x1 convolutions (each followed by batch norm when the model
    uses batch norm), and the output is `x * alpha`. The gate `g` (decoder features) is brought to the skip's
    resolution before the gate, so `alpha` has shape (B, 1, h, w) at the skip's resolution.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.gate_proj = nn.Sequential(nn.Conv2d(gate_channels, inter_channels, 1, bias=True),
                                       make_norm(norm, inter_channels))
        self.skip_proj = nn.Sequential(nn.Conv2d(skip_channels, inter_channels, 1, bias=bias),
                                       make_norm(norm, inter_channels))
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1, bias=True), make_norm(norm, 1))
        self.relu = nn.ReLU()

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.sigmoid(self.psi(self.relu(self.gate_proj(gate) + self.skip_proj(skip))))
        return skip * alpha, alpha
