"""`create_classifier`: the image classifiers of the grading and tumour-type studies, as transformers models.

timm architectures are wrapped in transformers' `TimmWrapperForImageClassification` (saved and reloaded natively by
`AutoModelForImageClassification`, no remote code); the small CNN is hfseg's own `SmallCNNForImageClassification`.

| name        | model                                                                                          |
|-------------|------------------------------------------------------------------------------------------------|
| `resnet18`  | timm `resnet18`                                                                                |
| `resnet50`  | timm `resnet50`                                                                                |
| `vgg16`     | timm `vgg16_bn`: VGG16 with batch norm, which trains from scratch (plain VGG16 does not at timm's |
|             | initialisation without tricks) and has ImageNet weights in timm (`vgg16_bn.tv_in1k`)           |
| `vit-tiny`  | timm `vit_tiny_patch16_224`, `img_size` set to `image_size`                                    |
| `vit-small` | timm `vit_small_patch16_224`, `img_size` set to `image_size`                                   |
| `small-cnn` | `SmallCNNForImageClassification` (conv-BN-ReLU-maxpool blocks, global pooling, dropout, linear) |

A new timm classifier starts from timm's own initialisation (the wrapper's generic `normal(0.02)` re-init would
make deep plain CNNs untrainable), so `create_classifier("resnet18")` equals `timm.create_model("resnet18")`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    PreTrainedModel,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
)

from ..zoo import adapt_input_weight, check_checkpoint_overrides
from .configuration_small_cnn import SmallCNNConfig
from .modeling_small_cnn import SmallCNNForImageClassification

SMALL_CNN = "small-cnn"


@dataclass(frozen=True)
class TimmClassifier:
    """A timm architecture under an hfseg name: its timm name, default `model_args`, and whether it takes
    `img_size` (a ViT's position embeddings are built for one input size)."""

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    sized: bool = False
    patch_size: int | None = None


TIMM_CLASSIFIERS: dict[str, TimmClassifier] = {
    "resnet18": TimmClassifier("resnet18"),
    "resnet50": TimmClassifier("resnet50"),
    "vgg16": TimmClassifier("vgg16_bn"),
    "vit-tiny": TimmClassifier("vit_tiny_patch16_224", sized=True, patch_size=16),
    "vit-small": TimmClassifier("vit_small_patch16_224", sized=True, patch_size=16),
}


def available_classifiers() -> list[str]:
    """Every name `create_classifier` accepts besides checkpoint folders and Hub ids."""
    return list(TIMM_CLASSIFIERS) + [SMALL_CNN]


def _labels(num_labels: int | None, id2label: Mapping[int, str] | None) -> dict[str, Any]:
    """Config label kwargs; `num_labels` is always given with `id2label` (TimmWrapperConfig needs both)."""
    if id2label is not None:
        id2label = {int(k): str(v) for k, v in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} entries.")
        return {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if num_labels is not None:
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
        return {"num_labels": int(num_labels)}
    return {}


def _image_size(spec: TimmClassifier, name: str, image_size: int | Sequence[int] | None) -> list[int] | None:
    if image_size is None or not spec.sized:
        return None
    size = [int(image_size)] * 2 if isinstance(image_size, int) else [int(s) for s in image_size]
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    if spec.patch_size and any(s % spec.patch_size for s in size):
        raise ValueError(f"{name!r} cuts images into {spec.patch_size}x{spec.patch_size} patches: image_size "
                         f"{tuple(size)} must be a multiple of {spec.patch_size} (e.g. 224 x 224).")
    return size


def _timm_model(config: TimmWrapperConfig, pretrained: bool | str) -> TimmWrapperForImageClassification:
    """The wrapper around a timm model built by timm itself (its own init, or its pretrained weights adapted to
    `in_chans` and with a new head for `num_labels`, by timm's `load_pretrained`)."""
    import timm

    kwargs: dict[str, Any] = dict(config.model_args or {})
    if isinstance(pretrained, str):
        kwargs["pretrained_cfg_overlay"] = {"file": os.fspath(pretrained)}
    source = timm.create_model(config.architecture, pretrained=bool(pretrained), num_classes=config.num_labels,
                               **kwargs)
    with torch.device("meta"):  # only the wrapper: its own timm model is replaced by `source` at once
        model = TimmWrapperForImageClassification(config)
    model.timm_model = source
    return model


def _channels(model: PreTrainedModel) -> int:
    config = model.config
    if isinstance(config, TimmWrapperConfig):
        return int((config.model_args or {}).get("in_chans", 3))
    return int(config.num_channels)


def adapt_classifier_channels(model: PreTrainedModel, num_channels: int) -> PreTrainedModel:
    """A copy of the classifier taking `num_channels` inputs, its first conv adapted by `adapt_input_weight`
    (summed for one channel, repeated and rescaled for more: timm's `adapt_input_conv` rule)."""
    if _channels(model) == num_channels:
        return model
    name = next((n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)), None)
    if name is None:
        raise ValueError(f"{type(model).__name__} has no Conv2d input layer to adapt to {num_channels} channels.")
    config = copy.deepcopy(model.config)
    if isinstance(config, TimmWrapperConfig):
        config.model_args = {**(config.model_args or {}), "in_chans": int(num_channels)}
    else:
        config.num_channels = int(num_channels)
    state = model.state_dict()
    state[f"{name}.weight"] = adapt_input_weight(state[f"{name}.weight"], num_channels)
    new = _timm_model(config, False) if isinstance(config, TimmWrapperConfig) else type(model)(config)
    new.load_state_dict(state)
    return new.to(next(model.parameters()).dtype)


def _expected(name: str) -> tuple[str, str | None]:
    """(model_type, timm architecture or None) of a classifier name."""
    if name == SMALL_CNN:
        return SmallCNNConfig.model_type, None
    return TimmWrapperConfig.model_type, TIMM_CLASSIFIERS[name].architecture


def _from_checkpoint(checkpoint: str, name: str | None, num_channels: int | None, labels: dict[str, Any],
                     overrides: dict[str, Any]) -> PreTrainedModel:
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except OSError as err:
        raise OSError(f"Cannot load the classifier {checkpoint!r} (a local folder or a Hub id): {err}") from err
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForImageClassification") for a in architectures):
        raise ValueError(f"{checkpoint!r} holds a {', '.join(architectures)}, not an image classifier: segmentation "
                         "models are built by hfseg.create_model (recipe task: segmentation).")
    if name is not None:
        model_type, architecture = _expected(name)
        found = getattr(config, "architecture", None)
        if config.model_type != model_type or (architecture is not None and found != architecture):
            raise ValueError(f"Checkpoint {checkpoint!r} is a {found or config.model_type!r} model, not a {name!r} "
                             f"({architecture or model_type!r}) one.")
    check_checkpoint_overrides(config, overrides, checkpoint)
    model = AutoModelForImageClassification.from_pretrained(
        checkpoint, ignore_mismatched_sizes=bool(labels), **labels, **overrides)
    if num_channels is not None:
        model = adapt_classifier_channels(model, num_channels)
    return model


def _is_checkpoint(path: str) -> bool:
    return os.path.isdir(path) or (path.count("/") == 1 and not os.path.exists(path))


def create_classifier(
    name_or_path: str,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    num_channels: int | None = None,
    pretrained: bool | str | None = None,
    image_size: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """Build an image classifier: a timm architecture (as `TimmWrapperForImageClassification`) or the small CNN.

    Args:
        name_or_path: `resnet18`, `resnet50`, `vgg16` (timm `vgg16_bn`), `vit-tiny`, `vit-small`, `small-cnn` (see
            the module docstring), or a saved classifier (folder or Hub id).
        num_labels, id2label: the classes of the head.
        num_channels: input channels (default 3). With pretrained weights, timm adapts the first layer (summed
            filters for 1 channel, repeated and rescaled for more); a saved classifier's first layer is adapted the
            same way (`adapt_classifier_channels`).
        pretrained: `True` loads timm's pretrained weights for the architecture (downloaded from the Hub); a
            path to a weights *file* loads that file through timm (`pretrained_cfg_overlay=dict(file=...)`), with
            the same channel and head adaptation; a saved *folder* (or Hub id) of the same kind is loaded with
            `from_pretrained`, its head replaced when the labels differ. The small CNN has no published weights.
        image_size: `(height, width)` (or one int) of the inputs, for the ViTs (`img_size`, a multiple of 16);
            the CNNs pool globally and take any size, so it is ignored for them.
        **kwargs: `SmallCNNConfig` fields for the small CNN (`hidden_sizes`, `dropout`, ...), or timm model
            arguments for the others (`drop_rate`, `drop_path_rate`, ...); overrides of the fields a checkpoint's
            config stores for checkpoints. An unknown config field is a `ValueError` naming its close matches.
    """
    labels = _labels(num_labels, id2label)
    if name_or_path not in available_classifiers():
        if _is_checkpoint(name_or_path):
            if pretrained not in (None, True):
                raise ValueError("Give a checkpoint either as name_or_path or as pretrained, not both.")
            return _from_checkpoint(name_or_path, None, num_channels, labels, kwargs)
        raise ValueError(f"Unknown classifier {name_or_path!r}: not a checkpoint folder or Hub id; allowed names: "
                         f"{', '.join(available_classifiers())}.")
    name = name_or_path
    if isinstance(pretrained, str) and not os.path.isfile(pretrained):
        return _from_checkpoint(pretrained, name, num_channels, labels, kwargs)
    if name == SMALL_CNN:
        if pretrained:
            raise ValueError("small-cnn has no published weights: pass pretrained=<a folder saved by "
                             "save_pretrained>, or train it from scratch (pretrained=None).")
        return SmallCNNForImageClassification(SmallCNNConfig(num_channels=num_channels or 3, **labels, **kwargs))
    spec = TIMM_CLASSIFIERS[name]
    model_args = {**spec.model_args, **kwargs, "in_chans": int(num_channels or 3)}
    size = _image_size(spec, name, image_size)
    if size is not None:
        model_args["img_size"] = size
    config = TimmWrapperConfig(architecture=spec.architecture, model_args=model_args, **labels)
    return _timm_model(config, pretrained or False)
