"""Configuration of the hfseg U-Net family.

One config describes every U-Net variant of the zoo: the classic U-Net, batch-norm U-Net, VGG16-shaped U-Net,
Attention U-Net, the "improved" separable/large-kernel/additive-skip U-Net, channel attention (GCT, SRM) and
U-Net decoders on timm encoders, on images (`spatial_dims=2`) or volumes (`spatial_dims=3`, with nnU-Net-style
per-stage `strides` and `kernel_sizes` and optional deep supervision). A named preset (see `hfseg.models.presets`)
is only a set of these fields.

This file is self-contained (no hfseg imports) so that a checkpoint saved with `register_for_auto_class` loads
with `trust_remote_code=True` where hfseg is not installed.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from collections.abc import Collection, Iterable
from functools import lru_cache
from numbers import Integral
from typing import Any, Sequence

from transformers import PretrainedConfig

CONV_TYPES = ("standard", "separable")
NORMS = ("none", "batchnorm", "instancenorm", "groupnorm")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")
ATTENTIONS = ("none", "gate")
CHANNEL_ATTENTIONS = ("none", "gct", "srm")
SKIPS = ("concat", "add")
BOTTLENECKS = ("double_conv", "inverted")
UPSAMPLES = ("transpose", "bilinear", "nearest")
WEIGHT_INITS = ("fan_out", "fan_in")
LOSSES = ("ce", "dice", "dice_ce", "focal")


# Keywords that reach a config class (from a saved config.json, or passed on by `from_dict`) and that a transformers
# release from 5.4 on may declare neither in `PretrainedConfig.__init__`'s signature, nor in
# `PretrainedConfig().to_dict()`, nor as a settable property: `auto_map` (written by `save_pretrained` for remote
# code), `attn_implementation`, `experts_implementation`, `num_labels`, `name_or_path` (passed on by `from_dict`,
# popped by `PretrainedConfig.__post_init__`), `torch_dtype` (the old name of `dtype`, in many saved configs),
# `_commit_hash` (added to the loaded dict by transformers 5.4) and `_attn_implementation_autoset` (written by some
# 4.x releases). `use_return_dict` is not one: a read-only property that no release writes.
LEGACY_CONFIG_KEYS = (
    "auto_map", "num_labels", "name_or_path", "attn_implementation", "experts_implementation", "_commit_hash",
    "torch_dtype", "_attn_implementation_autoset",
)


@lru_cache(maxsize=None)
def config_keywords(config_class: type[PretrainedConfig] = PretrainedConfig) -> frozenset[str]:
    """Every keyword `config_class(...)` takes, read from the installed transformers.

    That is its `__init__` parameters, those of `PretrainedConfig.__init__`, the keys of `PretrainedConfig().to_dict()`
    (what `save_pretrained` writes for every config), the settable properties of its classes (`num_labels`,
    `out_indices`, ...), the aliases of its `attribute_map`, and `LEGACY_CONFIG_KEYS`. With the default argument:
    the generic keywords every config takes.
    """
    keys = set(LEGACY_CONFIG_KEYS) | set(PretrainedConfig().to_dict()) | set(config_class.attribute_map)
    for cls in {config_class, PretrainedConfig}:
        keys |= {name for name, p in inspect.signature(cls.__init__).parameters.items()
                 if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for cls in config_class.__mro__:
        keys |= {name for name, value in vars(cls).items() if isinstance(value, property) and value.fset is not None}
    return frozenset(keys)


def check_config_fields(
    owner: str, given: Iterable[str], fields: Collection[str], note: str = "", what: str = "field"
) -> None:
    """Raise a `ValueError` naming each key of `given` that is neither in `fields` nor a generic config keyword,
    with its close matches among both; `owner` and `what` name the config and its keys, `note` ends the message."""
    generic = config_keywords()
    unknown = [key for key in given if key not in fields and key not in generic]
    if not unknown:
        return
    own = sorted(key for key in set(fields) - generic if not key.startswith("_"))
    candidates = own + sorted(key for key in generic if not key.startswith("_"))
    parts = []
    for key in unknown:
        close = [repr(match) for match in difflib.get_close_matches(key, candidates, n=3)]
        hint = f"; did you mean {' or '.join([', '.join(close[:-1]), close[-1]] if close[:-1] else close)}?"
        parts.append(f"Unknown {owner} {what} {key!r}" + (hint if close else "."))
    raise ValueError(
        " ".join(parts) + f" {owner} {what}s: {', '.join(own)}; the generic PretrainedConfig keywords (num_labels, "
        f"id2label, return_dict, output_hidden_states, ...) work as well.{note}"
    )


def _check_choice(field: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {field} {value!r}; allowed values: {', '.join(map(repr, allowed))}.")


def _per_stage(
    field: str, value: Sequence[int | Sequence[int]], num_stages: int, spatial_dims: int
) -> list[list[int]]:
    """`value` (one entry per stage, each an int or `spatial_dims` ints) as one list of `spatial_dims` ints per
    stage, or a `ValueError` saying which entry is wrong."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{field} must be a list with one entry per stage, got {value!r}.")
    if len(value) != num_stages:
        raise ValueError(
            f"{field} needs one entry per stage: {num_stages} (len(hidden_sizes)), got {len(value)} ({list(value)!r})."
        )
    stages = []
    for i, entry in enumerate(value):
        axes = [entry] * spatial_dims if isinstance(entry, Integral) else entry
        if (isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence) or len(axes) != spatial_dims
                or not all(isinstance(a, Integral) and not isinstance(a, bool) for a in axes)):
            raise ValueError(
                f"{field}[{i}] must be an int or {spatial_dims} ints (one per spatial axis, spatial_dims="
                f"{spatial_dims}), got {entry!r}."
            )
        if min(axes) < 1:
            raise ValueError(f"{field}[{i}] must be positive, got {entry!r}.")
        stages.append([int(a) for a in axes])
    return stages


class UNetConfig(PretrainedConfig):
    r"""
    Configuration of [`UNetForSemanticSegmentation`].

    Args:
        num_channels (`int`, *optional*, defaults to 3):
            Input channels (1 for CT/MRI, 3 for RGB histology, 4 for the BraTS modalities).
        hidden_sizes (`list[int]`, *optional*):
            Channels of each encoder stage of the built-in conv encoder, shallowest first. The encoder downsamples
            `len(hidden_sizes) - 1` times. Defaults to `base_channels * 2**i` for `i` in `0..depth`.
        base_channels (`int`, *optional*, defaults to 64):
            Width of the first stage, used only to derive `hidden_sizes` when it is not given (not stored).
        depth (`int`, *optional*, defaults to 4):
            Number of downsamplings, used only to derive `hidden_sizes` when it is not given (not stored).
        convs_per_stage (`int` or `list[int]`, *optional*, defaults to 2):
            Convolutions in each encoder stage (VGG16: `[2, 2, 3, 3, 3]`). Decoder blocks use `convs_per_block`.
        convs_per_block (`int`, *optional*, defaults to 2):
            Convolutions in each decoder block.
        kernel_size (`int`, *optional*, defaults to 3):
            Kernel of the stage convolutions (the improved U-Net uses 7), on every axis of every stage unless
            `kernel_sizes` is given.
        spatial_dims (`int`, *optional*, defaults to 2):
            2 for images (`pixel_values` (B, C, H, W)) or 3 for volumes (`pixel_values` (B, C, X, Y, Z)): the
            convolutions, poolings, norms and interpolations are then 3-D. Volumes need the built-in conv encoder.
        strides (`list`, *optional*):
            Built-in conv encoder only: one entry per stage (as `hidden_sizes`), each an int or `spatial_dims` ints.
            `strides[0]` must be all 1; `strides[i]` is the max pooling (kernel = stride) before stage `i`, so
            `(1, 2, 2)` keeps the first axis of thick-slice volumes (nnU-Net's `pool_op_kernel_sizes`). The decoder
            upsamples by the same factors. Stored as one list of `spatial_dims` ints per stage; `None`: 2 on every
            axis.
        kernel_sizes (`list`, *optional*):
            Built-in conv encoder only: the odd convolution kernel of each stage (an int or `spatial_dims` ints per
            stage, padding `k // 2` per axis; nnU-Net's `conv_kernel_sizes`); a decoder block uses the kernel of the
            encoder stage at its resolution. Stored as one list of `spatial_dims` ints per stage; `None`:
            `kernel_size` everywhere.
        deep_supervision (`bool`, *optional*, defaults to `False`):
            nnU-Net's deep supervision: 1x1 heads on the decoder outputs below full resolution. In training mode the
            output's `deep_supervision_logits` holds their logits (highest resolution first) and the loss is the
            weighted sum of `loss_unet.deep_supervision_loss`; in eval mode these heads do not run.
        conv_type (`str`, *optional*, defaults to `"standard"`):
            `"standard"` or `"separable"` (depthwise kxk (kxkxk) followed by pointwise 1x1, Chollet 2017).
        norm (`str`, *optional*, defaults to `"none"`):
            `"none"`, `"batchnorm"`, `"instancenorm"` or `"groupnorm"`, placed between conv and activation.
        activation (`str`, *optional*, defaults to `"relu"`):
            `"relu"`, `"leaky_relu"`, `"gelu"` or `"silu"`.
        attention (`str`, *optional*, defaults to `"none"`):
            Skip attention. `"gate"`: additive attention gates of Oktay et al. 2018 on every skip.
        channel_attention (`str`, *optional*, defaults to `"none"`):
            Channel attention at the end of every conv stage and decoder block. `"gct"`: Gated Channel
            Transformation (Yang et al., CVPR 2020), the module the cancer study calls "Global Contextual
            Transformer"; `"srm"`: Style-based Recalibration Module (Lee et al., ICCV 2019), the module the cancer
            study calls "Self-Regularization Mechanism".
        skip (`str`, *optional*, defaults to `"concat"`):
            How a skip joins the decoder: `"concat"` (Ronneberger) or `"add"` (the improved U-Net).
        bottleneck (`str`, *optional*, defaults to `"double_conv"`):
            Deepest stage: the stage's own conv stack, or `"inverted"`: an inverted residual bottleneck (expand
            1x1, depthwise kxk, project 1x1, residual; Sandler et al. 2018) after a 1x1 projection to the width.
        bottleneck_expansion (`int`, *optional*, defaults to 4):
            Expansion factor of the inverted bottleneck.
        upsample (`str`, *optional*, defaults to `"transpose"`):
            `"transpose"` (a transposed convolution of kernel = stride = the level's stride, 2x2 by default),
            `"bilinear"` (linear upsampling in the model's dims, trilinear for volumes, then a 1x1 conv) or
            `"nearest"` (nearest-neighbour upsampling without parameters, as segmentation_models_pytorch's U-Net: the
            block's first convolution then reads the upsampled map at its own width next to the skip; with
            `skip="add"` a 1x1 conv brings it to the block's width).
        head_kernel_size (`int`, *optional*, defaults to 1):
            Odd kernel of the classification head's convolution (3: segmentation_models_pytorch's head). The deep
            supervision heads stay 1x1.
        weight_init (`str`, *optional*, defaults to `"fan_out"`):
            Weight initialisation of a new (not loaded) model. `"fan_out"`: every convolution, a timm encoder's
            included, kaiming-normal with fan-out scaling, every norm at weight 1 and bias 0. `"fan_in"`: the
            decoder's convolutions kaiming-uniform with fan-in scaling and the heads xavier-uniform (as
            segmentation_models_pytorch), the built-in conv encoder as the decoder; a timm encoder as with
            `"fan_out"`, except that the last norm of each residual block starts at weight 0 (timm's ResNet init).
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability before the head (channel dropout: `Dropout2d`, or `Dropout3d` for volumes).
        encoder (`str`, *optional*, defaults to `"conv"`):
            `"conv"`: the built-in conv encoder described by the fields above. Any other value is the name of a timm
            model built with `features_only=True` (e.g. `"resnet34"`, `"convnext_tiny"`, `"efficientnet_b0"`,
            `"vgg16"`); its weights come from `hfseg.create_model(..., pretrained=True)` or the checkpoint.
        encoder_out_indices (`list[int]`, *optional*):
            Feature levels taken from the timm encoder (timm's `out_indices`); all levels when `None`.
        decoder_hidden_sizes (`list[int]`, *optional*):
            Channels of the decoder blocks, deepest first, for timm encoders. Defaults to `(256, 128, 64, 32, 16)`
            cut or extended to the number of blocks. The conv encoder's decoder mirrors `hidden_sizes`.
        loss (`str`, *optional*, defaults to `"ce"`):
            Loss computed by `forward` when `labels` are given: `"ce"`, `"dice"`, `"dice_ce"` or `"focal"`.
        class_weights (`list[float]`, *optional*):
            One weight per class for CE, focal and the Dice mean (for `num_labels == 1`, the positive weight).
        dice_smooth (`float`, *optional*, defaults to 1e-5):
            Smoothing of the soft Dice, which makes a class absent from both target and prediction score 1.
        dice_include_background (`bool`, *optional*, defaults to `False`):
            Whether class 0 enters the Dice mean (multi-class only; nnU-Net leaves it out and lets CE cover it).
        focal_gamma (`float`, *optional*, defaults to 2.0):
            Focusing parameter of the focal loss.
        semantic_loss_ignore_index (`int`, *optional*, defaults to 255):
            Label value ignored by every loss.

    Any other keyword is a generic `PretrainedConfig` one (`num_labels`, `id2label`, `return_dict`, ...); an unknown
    keyword is a `ValueError` that names its close matches. Loading (`from_pretrained`, `from_dict`) is lenient: a
    saved key this version does not know is ignored, with a warning.

    `num_labels == 1` makes a binary model: one logit per pixel, sigmoid losses, threshold 0.5 in post-processing.
    """

    model_type = "hfseg_unet"

    def __init__(
        self,
        num_channels: int = 3,
        hidden_sizes: Sequence[int] | None = None,
        base_channels: int = 64,
        depth: int = 4,
        convs_per_stage: int | Sequence[int] = 2,
        convs_per_block: int = 2,
        kernel_size: int = 3,
        spatial_dims: int = 2,
        strides: Sequence[int | Sequence[int]] | None = None,
        kernel_sizes: Sequence[int | Sequence[int]] | None = None,
        deep_supervision: bool = False,
        conv_type: str = "standard",
        norm: str = "none",
        activation: str = "relu",
        attention: str = "none",
        channel_attention: str = "none",
        skip: str = "concat",
        bottleneck: str = "double_conv",
        bottleneck_expansion: int = 4,
        upsample: str = "transpose",
        head_kernel_size: int = 1,
        weight_init: str = "fan_out",
        dropout: float = 0.0,
        encoder: str = "conv",
        encoder_out_indices: Sequence[int] | None = None,
        decoder_hidden_sizes: Sequence[int] | None = None,
        loss: str = "ce",
        class_weights: Sequence[float] | None = None,
        dice_smooth: float = 1e-5,
        dice_include_background: bool = False,
        focal_gamma: float = 2.0,
        semantic_loss_ignore_index: int = 255,
        **kwargs: Any,
    ) -> None:
        check_config_fields(type(self).__name__, kwargs, config_keywords(type(self)))
        if hidden_sizes is None:
            if depth < 1 or base_channels < 1:
                raise ValueError(f"depth and base_channels must be >= 1, got depth={depth}, base={base_channels}.")
            hidden_sizes = [base_channels * 2**i for i in range(depth + 1)]
        hidden_sizes = [int(h) for h in hidden_sizes]
        if len(hidden_sizes) < 2 or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes needs at least 2 positive entries, got {hidden_sizes}.")
        if isinstance(convs_per_stage, int):
            convs_per_stage = [convs_per_stage] * len(hidden_sizes)
        convs_per_stage = [int(c) for c in convs_per_stage]
        if len(convs_per_stage) != len(hidden_sizes) or min(convs_per_stage) < 1:
            raise ValueError(
                f"convs_per_stage must be a positive int or one entry per stage ({len(hidden_sizes)}), "
                f"got {convs_per_stage}."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}.")
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}.")
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}.")
        if encoder != "conv" and spatial_dims == 3:
            raise ValueError(
                f"encoder={encoder!r} is a timm model, and timm encoders are 2-D: a 3-D U-Net (spatial_dims=3) needs "
                "the built-in conv encoder (encoder='conv')."
            )
        if encoder != "conv" and (strides is not None or kernel_sizes is not None):
            raise ValueError(
                f"strides and kernel_sizes describe the built-in conv encoder; the timm encoder {encoder!r} has its "
                "own. Leave them unset, or use encoder='conv'."
            )
        if strides is not None:
            strides = _per_stage("strides", strides, len(hidden_sizes), spatial_dims)
            if any(s != 1 for s in strides[0]):
                raise ValueError(
                    f"strides[0] must be all 1 (the first stage does not downsample), got {strides[0]}."
                )
        if kernel_sizes is not None:
            kernel_sizes = _per_stage("kernel_sizes", kernel_sizes, len(hidden_sizes), spatial_dims)
            for i, axes in enumerate(kernel_sizes):
                if any(k % 2 == 0 for k in axes):
                    raise ValueError(f"kernel_sizes[{i}] must be odd on every axis, got {axes}.")
        for field, value, allowed in (
            ("conv_type", conv_type, CONV_TYPES),
            ("norm", norm, NORMS),
            ("activation", activation, ACTIVATIONS),
            ("attention", attention, ATTENTIONS),
            ("channel_attention", channel_attention, CHANNEL_ATTENTIONS),
            ("skip", skip, SKIPS),
            ("bottleneck", bottleneck, BOTTLENECKS),
            ("upsample", upsample, UPSAMPLES),
            ("weight_init", weight_init, WEIGHT_INITS),
            ("loss", loss, LOSSES),
        ):
            _check_choice(field, value, allowed)
        if not isinstance(encoder, str) or not encoder:
            raise ValueError(f"encoder must be 'conv' or a timm model name, got {encoder!r}.")
        if (isinstance(head_kernel_size, bool) or not isinstance(head_kernel_size, Integral) or head_kernel_size < 1
                or head_kernel_size % 2 == 0):
            raise ValueError(f"head_kernel_size must be a positive odd int (1 or 3), got {head_kernel_size!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")

        self.num_channels = int(num_channels)
        self.hidden_sizes = hidden_sizes
        self.convs_per_stage = convs_per_stage
        self.convs_per_block = int(convs_per_block)
        self.kernel_size = int(kernel_size)
        self.spatial_dims = int(spatial_dims)
        self.strides = strides
        self.kernel_sizes = kernel_sizes
        self.deep_supervision = bool(deep_supervision)
        self.conv_type = conv_type
        self.norm = norm
        self.activation = activation
        self.attention = attention
        self.channel_attention = channel_attention
        self.skip = skip
        self.bottleneck = bottleneck
        self.bottleneck_expansion = int(bottleneck_expansion)
        self.upsample = upsample
        self.head_kernel_size = int(head_kernel_size)
        self.weight_init = weight_init
        self.dropout = float(dropout)
        self.encoder = encoder
        self.encoder_out_indices = list(encoder_out_indices) if encoder_out_indices is not None else None
        self.decoder_hidden_sizes = list(decoder_hidden_sizes) if decoder_hidden_sizes is not None else None
        self.loss = loss
        self.class_weights = [float(w) for w in class_weights] if class_weights is not None else None
        self.dice_smooth = float(dice_smooth)
        self.dice_include_background = bool(dice_include_background)
        self.focal_gamma = float(focal_gamma)
        self.semantic_loss_ignore_index = int(semantic_loss_ignore_index)
        super().__init__(**kwargs)
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} entries but the model has {self.num_labels} labels."
            )

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> UNetConfig:
        """`PretrainedConfig.from_dict` (which `from_pretrained` and `AutoConfig` call), ignoring with a warning the
        keys of `config_dict` that this version does not know (a config.json from another hfseg version)."""
        known = config_keywords(cls)
        unknown = [key for key in config_dict if key not in known]
        if unknown:
            warnings.warn(
                f"Ignoring {', '.join(map(repr, unknown))} in the saved {cls.__name__}: not a field of this version.",
                stacklevel=2,
            )
            config_dict = {key: value for key, value in config_dict.items() if key in known}
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> UNetConfig:
        """A config read from a JSON file, as leniently as `from_dict`."""
        return cls.from_dict(cls.get_config_dict(json_file)[0])

    @property
    def depth(self) -> int:
        """Number of downsamplings of the conv encoder."""
        return len(self.hidden_sizes) - 1

    @property
    def stage_strides(self) -> list[tuple[int, ...]]:
        """The pooling before each conv stage, per axis: `strides`, or (1, ...) then 2 on every axis."""
        if self.strides is not None:
            return [tuple(s) for s in self.strides]
        return [(1 if i == 0 else 2,) * self.spatial_dims for i in range(len(self.hidden_sizes))]

    @property
    def stage_kernel_sizes(self) -> list[tuple[int, ...]]:
        """The convolution kernel of each conv stage, per axis: `kernel_sizes`, or `kernel_size` everywhere."""
        if self.kernel_sizes is not None:
            return [tuple(k) for k in self.kernel_sizes]
        return [(self.kernel_size,) * self.spatial_dims for _ in self.hidden_sizes]
