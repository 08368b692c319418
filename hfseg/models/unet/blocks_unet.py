"""Building blocks of the hfseg U-Net family: conv stacks, attention gates, channel attention.

Every block is built for images or volumes (`spatial_dims` 2 or 3, see `layer`): Conv2d/Conv3d, BatchNorm2d/3d, ...;
channel attention reduces over all spatial axes. Self-contained (torch only) so that it is copied next to a
checkpoint saved for `trust_remote_code` loading.

Speed and memory (same parameters, same state-dict keys, same results up to float rounding):
- **Inference** (eval mode): a convolution followed by batch norm runs as one convolution with the norm folded into
  its weights and bias (computed on the fly from the current running statistics, so nothing is stored and the model
  can go back to training), and ReLU / leaky ReLU work in place.
- **Training**: the cheap layers between two convolutions of a stage (norm and activation) are not kept for the
  backward pass but recomputed there (`recompute`, a non-reentrant `torch.utils.checkpoint` that stops as soon as
  the convolution's input is rebuilt, so the convolution itself never runs twice; batch norms do not update their
  running statistics a second time). The decoder recomputes its gated, concatenated skip the same way.
Both fall back to the plain layer-by-layer path when a submodule has hooks (GradCAM-style taps see every layer),
under `torch.compile` (whose own partitioner recomputes cheap ops) and for norms other than batch, instance and group
norm. Switches (class attributes, or per instance): `UNetConv.fold_in_eval`, `AttentionGate.fold_in_eval`,
`UNetStage.recompute`; in `modeling_unet`, `UNetDecoderBlock.lean_inference` and `UNetModel.channels_last_on_cpu`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_globals
from torch.utils.checkpoint import checkpoint


_LAYERS: dict[int, dict[str, type[nn.Module]]] = {
    2: {"conv": nn.Conv2d, "transpose": nn.ConvTranspose2d, "maxpool": nn.MaxPool2d, "batchnorm": nn.BatchNorm2d,
        "instancenorm": nn.InstanceNorm2d, "dropout": nn.Dropout2d},
    3: {"conv": nn.Conv3d, "transpose": nn.ConvTranspose3d, "maxpool": nn.MaxPool3d, "batchnorm": nn.BatchNorm3d,
        "instancenorm": nn.InstanceNorm3d, "dropout": nn.Dropout3d},
}
LINEAR_MODES = {2: "bilinear", 3: "trilinear"}


def layer(kind: str, spatial_dims: int) -> type[nn.Module]:
    """The torch layer class of `kind` ("conv", "transpose", "maxpool", "batchnorm", "instancenorm", "dropout")
    for `spatial_dims` 2 (images) or 3 (volumes)."""
    if spatial_dims not in _LAYERS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    return _LAYERS[spatial_dims][kind]


def per_axis(value: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """`value` (an int or one int per axis) as a tuple of `spatial_dims` ints."""
    return (int(value),) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)


def same_padding(kernel_size: int | Sequence[int]) -> int | tuple[int, ...]:
    """The padding `k // 2` (per axis) that keeps the size under an odd kernel."""
    return kernel_size // 2 if isinstance(kernel_size, int) else tuple(k // 2 for k in kernel_size)


def make_norm(norm: str, channels: int, spatial_dims: int = 2) -> nn.Module:
    """Normalization layer by name; `"none"` gives an identity."""
    if norm == "batchnorm":
        return layer("batchnorm", spatial_dims)(channels)
    if norm == "instancenorm":
        return layer("instancenorm", spatial_dims)(channels, affine=True)
    if norm == "groupnorm":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """Activation layer by name; `inplace` applies to ReLU and leaky ReLU (whose backward needs only the output)."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "leaky_relu":
        return nn.LeakyReLU(inplace=inplace)
    return {"gelu": nn.GELU, "silu": nn.SiLU}[name]()


# -- speed and memory helpers ---------------------------------------------------------------------------------------
_RECOMPUTABLE_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm)
_FOLDABLE_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


def has_hooks(modules: Iterable[nn.Module]) -> bool:
    """Whether any of `modules` (or the global module hooks) has a forward or backward hook."""
    if (_module_globals._global_forward_hooks or _module_globals._global_forward_pre_hooks
            or _module_globals._global_backward_hooks or _module_globals._global_backward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in modules)


def foldable_batch_norm(norm: nn.Module) -> bool:
    """Whether `norm` is a plain `BatchNorm2d` / `BatchNorm3d` normalizing with its running statistics (eval mode)."""
    return (type(norm) in _FOLDABLE_NORMS and not norm.training and norm.running_mean is not None
            and norm.running_var is not None)


def fold_batch_norm(conv: nn.Conv2d | nn.Conv3d, norm: nn.BatchNorm2d | nn.BatchNorm3d
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution equal to `norm(conv(x))` with the norm's running statistics."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    scale = scale.reshape(-1, *(1,) * (conv.weight.dim() - 1))
    return conv.weight * scale.to(conv.weight.dtype), shift.to(conv.weight.dtype)


def conv_norm(conv: nn.Conv2d | nn.Conv3d, norm: nn.Module, x: torch.Tensor, fold: bool = True) -> torch.Tensor:
    """`norm(conv(x))`, as one convolution with folded weights when the norm is a batch norm in eval mode."""
    if fold and foldable_batch_norm(norm) and not has_hooks((conv, norm)):
        weight, bias = fold_batch_norm(conv, norm)
        return conv._conv_forward(x, weight, bias)
    return norm(conv(x))


def has_inner_hooks(module: nn.Module) -> bool:
    """Whether a submodule of `module` (not `module` itself) has hooks, which a fused path would bypass."""
    return has_hooks(m for m in module.modules() if m is not module)


def recompute_active(module: nn.Module) -> bool:
    """Whether `module` should recompute its cheap layers in backward: training, gradients on, not compiling."""
    return (module.training and torch.is_grad_enabled() and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling())


@contextmanager
def frozen_running_stats(modules: Sequence[nn.Module]):
    """Batch norms among `modules` leave their running statistics and batch count as they are.

    Momentum 0 keeps the running mean and variance (the norm still saves the same tensors for backward, as the
    recomputation requires), and the batch counter is restored afterwards.
    """
    norms = [m for module in modules for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def recompute(fn: Callable[..., Any], modules: Sequence[nn.Module], *args: torch.Tensor) -> Any:
    """`fn(*args)` keeping only `args` (and what `fn` returns) for the backward pass, which runs `fn` again.

    A non-reentrant `torch.utils.checkpoint` (it stops recomputing as soon as the saved tensors are rebuilt, so a
    convolution ending `fn` does not run twice). In the recomputation the batch norms inside `modules` use the
    same batch statistics without updating their running statistics a second time.
    """
    calls = [0]

    def run(*inputs: torch.Tensor) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            return fn(*inputs)
        with frozen_running_stats(modules):
            return fn(*inputs)

    return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=False)


class UNetConv(nn.Sequential):
    """One convolution, standard or depthwise-separable, followed by norm and activation.

    In eval mode a batch norm is folded into the convolution (`conv_norm`; `fold_in_eval = False` turns that off);
    the activation works in place.
    """

    fold_in_eval = True

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], conv_type: str, norm: str,
        activation: str, spatial_dims: int = 2,
    ) -> None:
        bias = norm == "none"
        conv = layer("conv", spatial_dims)
        padding = same_padding(kernel_size)
        if conv_type == "separable":
            layers: list[nn.Module] = [
                conv(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels, bias=False),
                conv(in_channels, out_channels, 1, bias=bias),
            ]
        else:
            layers = [conv(in_channels, out_channels, kernel_size, padding=padding, bias=bias)]
        norm_layer = make_norm(norm, out_channels, spatial_dims)
        super().__init__(*layers, norm_layer, make_activation(activation, inplace=True))

    @property
    def recomputable(self) -> bool:
        """Whether the norm saves its input for backward (batch, instance or group norm), so that recomputing
        norm and activation instead of keeping their output saves memory."""
        return type(self[-2]) in _RECOMPUTABLE_NORMS

    def conv_only(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution(s), without norm and activation."""
        *convs, _, _ = self._modules.values()
        for conv in convs:
            x = conv(x)
        return x

    def norm_act(self, x: torch.Tensor) -> torch.Tensor:
        """Norm and activation of a `conv_only` output."""
        return self[-1](self[-2](x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *convs, norm, act = self._modules.values()
        for conv in convs[:-1]:
            x = conv(x)
        return act(conv_norm(convs[-1], norm, x, self.fold_in_eval))


class GatedChannelTransformation(nn.Module):
    """GCT: Gated Channel Transformation (Yang et al., CVPR 2020), l2 embedding mode.

    `s_c = alpha_c * ||x_c||_2`, `n_c = gamma_c * sqrt(C) * s_c / ||s||_2`, `y = x * (1 + tanh(n_c + beta_c))`.
    With the paper's initialisation (alpha=1, gamma=beta=0) the module starts as the identity.
    """

    def __init__(self, channels: int, eps: float = 1e-5, spatial_dims: int = 2) -> None:
        super().__init__()
        shape = (1, channels, *(1,) * spatial_dims)
        self.alpha = nn.Parameter(torch.ones(shape))
        self.gamma = nn.Parameter(torch.zeros(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, x.dim()))
        embedding = (x.pow(2).sum(dim=spatial, keepdim=True) + self.eps).sqrt() * self.alpha
        norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.eps).sqrt()
        return x * (1.0 + torch.tanh(embedding * norm + self.beta))


class StyleRecalibration(nn.Module):
    """SRM: Style-based Recalibration Module (Lee et al., ICCV 2019).

    Style pooling (per-channel mean and standard deviation over all spatial axes), style integration by a
    channel-wise fully connected layer (two weights per channel, zero-initialised as in the reference code), batch
    norm and a sigmoid gate multiplying the input. Like the reference, its batch norm needs more than one sample per batch in training.
    """

    def __init__(self, channels: int, eps: float = 1e-5, spatial_dims: int = 2) -> None:
        super().__init__()
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = layer("batchnorm", spatial_dims)(channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, x.dim()))
        mean = x.mean(dim=spatial)
        std = (x.var(dim=spatial) + self.eps).sqrt()
        z = mean * self.cfc[:, 0] + std * self.cfc[:, 1]
        return x * torch.sigmoid(self.bn(z.reshape(*z.shape, *(1,) * len(spatial))))


def make_channel_attention(name: str, channels: int, spatial_dims: int = 2) -> nn.Module:
    """Channel attention by name (`"none"`, `"gct"`, `"srm"`)."""
    if name == "gct":
        return GatedChannelTransformation(channels, spatial_dims=spatial_dims)
    if name == "srm":
        return StyleRecalibration(channels, spatial_dims=spatial_dims)
    return nn.Identity()


class UNetStage(nn.Module):
    """A stack of `num_convs` convolutions, then optional channel attention; `kernel_size` (an int or one per axis)
    defaults to `config.kernel_size`.

    In training, the norm and activation between two convolutions are recomputed in backward instead of kept
    (see the module docstring); `recompute = False` (class or instance attribute) turns that off.
    """

    recompute = True

    def __init__(
        self, in_channels: int, out_channels: int, num_convs: int, config,
        kernel_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        kernel_size = config.kernel_size if kernel_size is None else kernel_size
        convs = [
            UNetConv(in_channels if i == 0 else out_channels, out_channels, kernel_size, config.conv_type,
                     config.norm, config.activation, config.spatial_dims)
            for i in range(num_convs)
        ]
        self.convs = nn.Sequential(*convs)
        self.channel_attention = make_channel_attention(config.channel_attention, out_channels, config.spatial_dims)

    def recomputes(self) -> bool:
        """Whether this call takes the recomputing path (training, a recomputable norm, no hooks)."""
        return (self.recompute and recompute_active(self) and all(c.recomputable for c in self.convs)
                and not has_inner_hooks(self))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recomputes():
            return self.forward_from_first_conv(self.convs[0].conv_only(x))
        return self.channel_attention(self.convs(x))

    def forward_from_first_conv(self, z: torch.Tensor) -> torch.Tensor:
        """The stage given the first convolution's output `z` (before its norm), recomputing norm and activation
        between convolutions in backward. For the recomputing path only (see `recomputes`)."""
        convs = list(self.convs)
        for prev, conv in zip(convs, convs[1:]):
            z = recompute(lambda t, p=prev, c=conv: c.conv_only(p.norm_act(t)), (prev,), z)
        return self.channel_attention(convs[-1].norm_act(z))


class InvertedBottleneck(nn.Module):
    """Inverted residual bottleneck: 1x1 expansion, depthwise kxk, 1x1 projection, added to its input; `kernel_size`
    (an int or one per axis) defaults to `config.kernel_size`."""

    def __init__(
        self, in_channels: int, out_channels: int, config, kernel_size: int | Sequence[int] | None = None
    ) -> None:
        super().__init__()
        hidden = out_channels * config.bottleneck_expansion
        k = config.kernel_size if kernel_size is None else kernel_size
        dims, norm, act = config.spatial_dims, config.norm, config.activation
        conv = layer("conv", dims)
        self.project_in = UNetConv(in_channels, out_channels, 1, "standard", norm, act, dims)
        self.expand = UNetConv(out_channels, hidden, 1, "standard", norm, act, dims)
        self.depthwise = nn.Sequential(
            conv(hidden, hidden, k, padding=same_padding(k), groups=hidden, bias=norm == "none"),
            make_norm(norm, hidden, dims),
            make_activation(act),
        )
        self.project_out = nn.Sequential(conv(hidden, out_channels, 1, bias=norm == "none"),
                                         make_norm(norm, out_channels, dims))
        self.channel_attention = make_channel_attention(config.channel_attention, out_channels, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)
        return self.channel_attention(x + self.project_out(self.depthwise(self.expand(x))))


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net (Oktay et al. 2018).

    `alpha = sigmoid(psi(relu(W_g g + W_x x)))` with 1x1 convolutions (each followed by batch norm when the model
    uses batch norm), and the output is `x * alpha`. The gate `g` (decoder features) is brought to the skip's
    resolution before the gate, so `alpha` has shape (B, 1, h, w) (or (B, 1, x, y, z)) at the skip's resolution.
    """

    def __init__(
        self, gate_channels: int, skip_channels: int, inter_channels: int, norm: str, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        bias = norm == "none"
        conv = layer("conv", spatial_dims)
        self.gate_proj = nn.Sequential(conv(gate_channels, inter_channels, 1, bias=True),
                                       make_norm(norm, inter_channels, spatial_dims))
        self.skip_proj = nn.Sequential(conv(skip_channels, inter_channels, 1, bias=bias),
                                       make_norm(norm, inter_channels, spatial_dims))
        self.psi = nn.Sequential(conv(inter_channels, 1, 1, bias=True), make_norm(norm, 1, spatial_dims))
        self.relu = nn.ReLU(inplace=True)

    fold_in_eval = True

    def _project(self, proj: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if len(proj) == 2 and not has_hooks((proj,)):
            return conv_norm(proj[0], proj[1], x, self.fold_in_eval)
        return proj(x)

    def attention_map(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`alpha` (B, 1, *skip spatial shape) alone."""
        inner = self._project(self.gate_proj, gate)
        other = self._project(self.skip_proj, skip)
        # A fresh tensor no backward needs: add in place, unless a hook holds on to it.
        inner = inner + other if has_hooks(self.gate_proj.modules()) else inner.add_(other)
        return torch.sigmoid(self._project(self.psi, self.relu(inner)))

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.attention_map(gate, skip)
        return skip * alpha, alpha
