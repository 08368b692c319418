"""hfseg: a Hugging Face-integrated transfer-learning toolkit for medical image segmentation."""

from . import threads as _threads  # noqa: F401  (records torch's thread count at import: see hfseg.threads)
from ._registration import register as _register
from .models import (
    FAMILIES,
    UNET_PRESETS,
    SmallCNNConfig,
    SmallCNNForImageClassification,
    UNetConfig,
    UNetForSemanticSegmentation,
    UNetImageProcessor,
    UNetModel,
    available_classifiers,
    available_models,
    create_classifier,
    create_model,
)

__version__ = "0.1.0"

_register()

__all__ = [
    "FAMILIES",
    "UNET_PRESETS",
    "SmallCNNConfig",
    "SmallCNNForImageClassification",
    "UNetConfig",
    "UNetForSemanticSegmentation",
    "UNetImageProcessor",
    "UNetModel",
    "available_classifiers",
    "available_models",
    "create_classifier",
    "create_model",
]
