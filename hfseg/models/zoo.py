"""The model zoo: `create_model` builds any U-Net preset or transformers segmentation family, pretrained or not."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSemanticSegmentation,
    BeitConfig,
    BeitForSemanticSegmentation,
    ConvNextConfig,
    DPTConfig,
    DPTForSemanticSegmentation,
    PretrainedConfig,
    PreTrainedModel,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    SwinConfig,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from .presets import UNET_PRESETS, unet_preset
from .unet.configuration_unet import UNetConfig, check_config_fields, config_keywords
from .unet.modeling_unet import UNetForSemanticSegmentation


@dataclass(frozen=True)
class Family:
    """A transformers segmentation architecture: how to build its config and its default pretrained checkpoint."""

    model_class: type[PreTrainedModel]
    make_config: Callable[..., PretrainedConfig]
    checkpoint: str

    @property
    def config_class(self) -> type[PretrainedConfig]:
        return self.model_class.config_class


def _segformer(hidden_sizes, depths, decoder_hidden_size):
    def make(**kwargs):
        base = dict(hidden_sizes=hidden_sizes, depths=depths, decoder_hidden_size=decoder_hidden_size,
                    num_attention_heads=[1, 2, 5, 8])
        return SegformerConfig(**{**base, **kwargs})
    return make


def _upernet(backbone_cls, backbone_kwargs):
    def make(backbone_config: Mapping[str, Any] | None = None, **kwargs):
        check_config_fields(backbone_cls.__name__, backbone_config or {}, config_keywords(backbone_cls),
                            what="backbone_config field")
        bb = {**backbone_kwargs, "out_features": ["stage1", "stage2", "stage3", "stage4"],
              **dict(backbone_config or {})}
        backbone = backbone_cls(**bb)
        # The auxiliary FCN head reads stage 3.
        stage3 = backbone.embed_dim * 4 if isinstance(backbone, SwinConfig) else backbone.hidden_sizes[2]
        kwargs.setdefault("auxiliary_in_channels", stage3)
        return UperNetConfig(backbone_config=backbone, **kwargs)
    return make


def _convnext(depths, hidden_sizes):
    return _upernet(ConvNextConfig, dict(depths=depths, hidden_sizes=hidden_sizes))


def _swin(embed_dim, depths, heads):
    return _upernet(SwinConfig, dict(embed_dim=embed_dim, depths=depths, num_heads=heads))


def _beit(**base):
    def make(**kwargs):
        return BeitConfig(**{**base, **kwargs})
    return make


SEGFORMER = {
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256),
    "b1": ([64, 128, 320, 512], [2, 2, 2, 2], 256),
    "b2": ([64, 128, 320, 512], [3, 4, 6, 3], 768),
    "b3": ([64, 128, 320, 512], [3, 4, 18, 3], 768),
    "b4": ([64, 128, 320, 512], [3, 8, 27, 3], 768),
    "b5": ([64, 128, 320, 512], [3, 6, 40, 3], 768),
}

FAMILIES: dict[str, Family] = {
    **{f"segformer-{v}": Family(SegformerForSemanticSegmentation, _segformer(*a), f"nvidia/mit-{v}")
       for v, a in SEGFORMER.items()},
    "upernet-convnext-tiny": Family(UperNetForSemanticSegmentation, _convnext([3, 3, 9, 3], [96, 192, 384, 768]),
                                    "openmmlab/upernet-convnext-tiny"),
    "upernet-convnext-small": Family(UperNetForSemanticSegmentation, _convnext([3, 3, 27, 3], [96, 192, 384, 768]),
                                     "openmmlab/upernet-convnext-small"),
    "upernet-convnext-base": Family(UperNetForSemanticSegmentation,
                                    _convnext([3, 3, 27, 3], [128, 256, 512, 1024]), "openmmlab/upernet-convnext-base"),
    "upernet-swin-tiny": Family(UperNetForSemanticSegmentation, _swin(96, [2, 2, 6, 2], [3, 6, 12, 24]),
                                "openmmlab/upernet-swin-tiny"),
    "upernet-swin-small": Family(UperNetForSemanticSegmentation, _swin(96, [2, 2, 18, 2], [3, 6, 12, 24]),
                                 "openmmlab/upernet-swin-small"),
    "upernet-swin-base": Family(UperNetForSemanticSegmentation, _swin(128, [2, 2, 18, 2], [4, 8, 16, 32]),
                                "openmmlab/upernet-swin-base"),
    "dpt-large": Family(DPTForSemanticSegmentation, lambda **kw: DPTConfig(**kw), "Intel/dpt-large-ade"),
    "beit-base": Family(BeitForSemanticSegmentation,
                        _beit(image_size=640, use_relative_position_bias=True, out_indices=[3, 5, 7, 11],
                              use_auxiliary_head=True),
                        "microsoft/beit-base-finetuned-ade-640-640"),
    "beit-large": Family(BeitForSemanticSegmentation,
                         _beit(image_size=640, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                               intermediate_size=4096, use_relative_position_bias=True,
                               out_indices=[7, 11, 15, 23], use_auxiliary_head=True),
                         "microsoft/beit-large-finetuned-ade-640-640"),
}


def available_models() -> list[str]:
    """Every name `create_model` accepts besides checkpoint folders and Hub ids."""
    return list(UNET_PRESETS) + list(FAMILIES)


def _label_kwargs(num_labels: int | None, id2label: Mapping[int, str] | None) -> dict[str, Any]:
    if id2label is not None:
        id2label = {int(k): str(v) for k, v in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} entries.")
        return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if num_labels is not None:
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
        return {"num_labels": num_labels}
    return {}


def adapt_input_weight(weight: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Adapt a pretrained first-layer kernel (out, C, k, k), or (out, C, k, k, k), to `num_channels` inputs, as
    timm's `adapt_input_conv`.

    One channel: the filters summed over input channels (a grey image copied into RGB gives the same response).
    More channels: the pretrained filters repeated cyclically and scaled by `C / num_channels`, so that an input with
    equal channels keeps the pretrained response scale.
    """
    old = weight.shape[1]
    if num_channels == old:
        return weight.clone()
    if num_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(num_channels / old)
    return weight.repeat(1, repeats, *(1,) * (weight.dim() - 2))[:, :num_channels] * (old / num_channels)


def _input_conv_name(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            return name
    raise ValueError(f"{type(model).__name__} has no Conv2d or Conv3d input layer to adapt.")


def _set_num_channels(config: PretrainedConfig, num_channels: int) -> None:
    if hasattr(config, "num_channels"):
        config.num_channels = num_channels
    backbone = getattr(config, "backbone_config", None)
    if backbone is not None:
        backbone.num_channels = num_channels


def adapt_input_channels(model: PreTrainedModel, num_channels: int) -> PreTrainedModel:
    """A copy of `model` taking `num_channels` inputs, its first conv adapted by `adapt_input_weight`."""
    name = _input_conv_name(model)
    conv = model.get_submodule(name)
    if conv.in_channels == num_channels:
        return model
    if conv.groups != 1:
        raise ValueError(f"Cannot adapt the grouped input convolution {name!r} to {num_channels} channels.")
    config = copy.deepcopy(model.config)
    _set_num_channels(config, num_channels)
    state = model.state_dict()
    state[f"{name}.weight"] = adapt_input_weight(state[f"{name}.weight"], num_channels)
    new = type(model)(config)
    new.load_state_dict(state)
    return new.to(next(model.parameters()).dtype)


def _load_timm_encoder(model: UNetForSemanticSegmentation, pretrained: bool | str) -> None:
    import timm

    cfg = model.config
    kwargs: dict[str, Any] = {"features_only": True, "pretrained": True, "in_chans": cfg.num_channels}
    if cfg.encoder_out_indices is not None:
        kwargs["out_indices"] = tuple(cfg.encoder_out_indices)
    if isinstance(pretrained, str):
        kwargs["pretrained_cfg_overlay"] = {"file": os.fspath(pretrained)}
    source = timm.create_model(cfg.encoder, **kwargs)
    model.unet.encoder.backbone.load_state_dict(source.state_dict())


def check_checkpoint_overrides(config: PretrainedConfig, overrides: Mapping[str, Any], checkpoint: str) -> None:
    """A `ValueError` with close matches for an override that is not a field the checkpoint's config stores (nor a
    generic config keyword): `from_pretrained` would drop it or pass it to the model's `__init__`."""
    check_config_fields(type(config).__name__, overrides, config.to_dict(), what="override",
                        note=f" A checkpoint ({checkpoint!r}) takes overrides of the fields its config stores.")


def _from_checkpoint(
    checkpoint: str, family: str | None, num_channels: int | None, labels: dict[str, Any], overrides: dict[str, Any]
) -> PreTrainedModel:
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except OSError as err:
        raise OSError(f"Cannot load the checkpoint {checkpoint!r} (a local folder or a Hub id): {err}") from err
    if family is not None:
        expected = UNetConfig if family in UNET_PRESETS else FAMILIES[family].model_class.config_class
        expected = expected.model_type
        if config.model_type != expected:
            raise ValueError(
                f"Checkpoint {checkpoint!r} is a {config.model_type!r} model, not a {family!r} ({expected!r}) one."
            )
    check_checkpoint_overrides(config, overrides, checkpoint)
    model = AutoModelForSemanticSegmentation.from_pretrained(
        checkpoint, ignore_mismatched_sizes=bool(labels), **labels, **overrides
    )
    if num_channels is not None:
        model = adapt_input_channels(model, num_channels)
    return model


def create_model(
    name_or_path: str,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    num_channels: int | None = None,
    pretrained: bool | str | None = None,
    **config_kwargs: Any,
) -> PreTrainedModel:
    """Build a segmentation model of the zoo.

    Args:
        name_or_path: a U-Net preset (`unet`, `unet-bn`, `vgg16-unet`, `attention-unet`, `improved-unet`,
            `improved-attention-unet`, `gct-unet`, `srm-unet`, `timm-unet`), a transformers family (`segformer-b0`
            .. `segformer-b5`, `upernet-convnext-{tiny,small,base}`, `upernet-swin-{tiny,small,base}`, `dpt-large`,
            `beit-base`, `beit-large`), or a checkpoint (local folder or Hub id) of any of them.
        num_labels, id2label: the classes of the new head (`num_labels=1` for a binary U-Net).
        num_channels: input channels; a pretrained first layer is adapted (see `adapt_input_weight`).
        pretrained: `True` loads the family's default checkpoint (for `timm-unet`, timm's encoder weights); a string
            is a checkpoint folder or Hub id (for a U-Net on a timm encoder, a weights *file* loads only the encoder).
            The head is replaced when the labels differ.
        **config_kwargs: config fields overriding the preset (for UperNet, `backbone_config={...}` overrides the
            backbone's fields), or overrides of the fields a checkpoint's config stores. Besides the generic
            `PretrainedConfig` keywords, an unknown field is a `ValueError` naming its close matches.
    """
    labels = _label_kwargs(num_labels, id2label)
    is_family = name_or_path in UNET_PRESETS or name_or_path in FAMILIES
    if not is_family:
        if os.path.isdir(name_or_path) or (name_or_path.count("/") == 1 and not os.path.exists(name_or_path)):
            if pretrained not in (None, True):
                raise ValueError("Give a checkpoint either as name_or_path or as pretrained, not both.")
            return _from_checkpoint(name_or_path, None, num_channels, labels, config_kwargs)
        raise ValueError(
            f"Unknown model {name_or_path!r}: not a checkpoint folder or Hub id; allowed names: "
            f"{', '.join(available_models())}."
        )
    family = name_or_path
    if family in UNET_PRESETS:
        kwargs = {**unet_preset(family), **config_kwargs, **labels}
        if num_channels is not None:
            kwargs["num_channels"] = num_channels
        if pretrained is None or pretrained is False:
            return UNetForSemanticSegmentation(UNetConfig(**kwargs))
        if isinstance(pretrained, str) and not os.path.isfile(pretrained):
            return _from_checkpoint(pretrained, family, num_channels, labels, config_kwargs)
        model = UNetForSemanticSegmentation(UNetConfig(**kwargs))
        if model.config.encoder == "conv":
            raise ValueError(
                f"{family!r} with the built-in conv encoder has no published weights: pass a checkpoint folder or "
                "Hub id as `pretrained`, or a timm encoder (`encoder='resnet34'`) to start from timm weights."
            )
        _load_timm_encoder(model, pretrained)
        return model
    spec = FAMILIES[family]
    check_config_fields(spec.config_class.__name__, config_kwargs, config_keywords(spec.config_class))
    if pretrained is None or pretrained is False:
        config = spec.make_config(**config_kwargs, **labels)
        if num_channels is not None:
            _set_num_channels(config, num_channels)
        return spec.model_class(config)
    checkpoint = spec.checkpoint if pretrained is True else pretrained
    return _from_checkpoint(checkpoint, family, num_channels, labels, config_kwargs)
