"""Loading a saved model and its image processor: a run folder (`best/`, `final/`), any `save_pretrained` folder,
or a Hub id; transformers image processors are converted to the `UNetImageProcessor` interface inference uses."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.unet.image_processing_unet import UNetImageProcessor

def is_classifier(model: nn.Module) -> bool:
    """Whether `model` is an image classifier (one logit vector per image) rather than a segmentation model."""
    architectures = getattr(getattr(model, "config", None), "architectures", None) or [type(model).__name__]
    return any(name.endswith("ForImageClassification") for name in architectures)


def resolve_model_path(path_or_hub_id: str | os.PathLike) -> str:
    """The folder as a string, or a name shaped like a Hub id (`owner/name`); else a `FileNotFoundError`."""
    text = os.fspath(path_or_hub_id)
    if os.path.isdir(text):
        return text
    if os.path.exists(text) or text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"Model {text!r} not found: expected a folder written by save_pretrained (e.g. runs/demo/best, holding "
            "config.json) or a Hub id 'owner/name'.")
    return text


def load_model(path_or_hub_id: str | os.PathLike, device: str | torch.device | None = None,
               fuse: bool = False, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """A saved model in eval mode and its image processor.

    Args:
        path_or_hub_id (`str`): a `save_pretrained` folder (an hfseg run's `best/` or `final/`) or a Hub id. A
            segmentation model loads with `AutoModelForSemanticSegmentation`, an image classifier (its config's
            `architectures` ends with `ForImageClassification`) with `AutoModelForImageClassification`.
        device (`str`, *optional*): where to put the model; defaults to CUDA when available, else the CPU.
        fuse (`bool`, *optional*, defaults to `False`): fold batch norms into the preceding convolutions
            (`hfseg.models.fuse.fuse_conv_bn`), which speeds up models with timm or other third-party encoders (hfseg's
            own U-Net blocks fold on the fly anyway). The fused model is for inference only: do not save it.
        trust_remote_code (`bool`, *optional*, defaults to `False`): run model code shipped with a checkpoint whose
            classes neither transformers nor hfseg provide. Off, such a checkpoint is an error (never a prompt).

    Returns:
        `(model, processor)`: the processor is `AutoImageProcessor.from_pretrained(path)`; a transformers processor
        without `normalize_intensity` (e.g. `SegformerImageProcessor`) is converted by `as_unet_processor`; a folder
        without `preprocessor_config.json` gets `UNetImageProcessor(normalization="zscore")` and a warning.

    Raises:
        FileNotFoundError: the folder does not exist (and the name is no Hub id).
        OSError: the folder or Hub id holds no loadable model.
    """
    import hfseg  # noqa: F401  (registers the U-Net with the Auto classes)
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSemanticSegmentation,
    )

    source = resolve_model_path(path_or_hub_id)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as err:
        where = "" if os.path.isdir(source) else " (no such local folder, so it was tried as a Hub id)"
        raise OSError(f"Cannot load a model from {source!r}{where}: {err}") from err
    architectures = config.architectures or []
    classifier = any(a.endswith("ForImageClassification") for a in architectures)
    auto = AutoModelForImageClassification if classifier else AutoModelForSemanticSegmentation
    try:
        model = auto.from_pretrained(source, trust_remote_code=trust_remote_code)
    except ValueError as err:  # a config the semantic-segmentation Auto class does not know
        raise ValueError(f"{source!r} holds a {config.model_type!r} model, which is neither a semantic segmentation "
                         f"model nor an image classifier: {err}") from err
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    if fuse:
        from ..models.fuse import fuse_conv_bn

        model = fuse_conv_bn(model)
    try:
        processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError:
        warnings.warn(f"{source!r} has no preprocessor_config.json: using UNetImageProcessor(normalization='zscore') "
                      "at native resolution; save the processor with the model to evaluate it as it was trained.",
                      stacklevel=2)
        processor = UNetImageProcessor(normalization="zscore", num_channels=getattr(config, "num_channels", None))
    return model, as_unet_processor(processor)


def size_of(size: Any) -> tuple[int, int] | None:
    """(height, width) of a processor's `size` (dict or transformers `SizeDict`); a shortest edge s gives (s, s)."""
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    edge = get("shortest_edge")
    return (int(edge), int(edge)) if edge else None


def as_unet_processor(processor: Any) -> Any:
    """`processor` itself if it has `normalize_intensity` (a `UNetImageProcessor`), else an equivalent one.

    A transformers image processor becomes `normalization="mean_std"` with its `image_mean`/`image_std` and
    `rescale_factor` (1 without `do_rescale`; mean 0, std 1 without `do_normalize`) and its size as (height, width)
    (a `shortest_edge` s as s x s: crops are not reproduced).
    """
    if hasattr(processor, "normalize_intensity") and hasattr(processor, "to_channels_first"):
        return processor
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if not getattr(processor, "do_normalize", True) or mean is None or std is None:
        mean, std = [0.0], [1.0]
    rescale = getattr(processor, "rescale_factor", 1 / 255) if getattr(processor, "do_rescale", True) else 1.0
    size = size_of(getattr(processor, "size", None)) if getattr(processor, "do_resize", False) else None
    return UNetImageProcessor(normalization="mean_std", image_mean=list(mean), image_std=list(std),
                              rescale_factor=rescale, do_resize=size is not None,
                              size={"height": size[0], "width": size[1]} if size else None)


def model_num_labels(model: nn.Module) -> int:
    """`model.config.num_labels` (1 for a binary model)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "num_labels", None) is None:
        raise ValueError(f"{type(model).__name__} has no config.num_labels.")
    return int(config.num_labels)


def model_name(path: str | os.PathLike) -> str:
    """A short display name: the folder name, with its parent for an hfseg run's `best`/`final` (`demo/best`); a Hub
    id as it is."""
    text = os.fspath(path)
    if not os.path.exists(text) and text.count("/") == 1:
        return text
    p = Path(text)
    return f"{p.parent.name}/{p.name}" if p.name in ("best", "final") and p.parent.name else (p.name or text)
