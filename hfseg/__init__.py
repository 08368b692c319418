"""hfseg: a Hugging Face-integrated transfer-learning toolkit for medical image segmentation."""

from ._registration import register as _register
from .models import (
    FAMILIES,
    UNET_PRESETS,
    UNetConfig,
    UNetForSemanticSegmentation,
    UNetImageProcessor,
    UNetModel,
    available_models,
    create_model,
)

__version__ = "0.1.0"

_register()

__all__ = [
    "FAMILIES",
    "UNET_PRESETS",
    "UNetConfig",
    "UNetForSemanticSegmentation",
    "UNetImageProcessor",
    "UNetModel",
    "available_models",
    "create_model",
]
