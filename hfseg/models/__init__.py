"""Models of hfseg: the U-Net family, its presets, the `create_model` zoo, and the `create_classifier` classifiers."""

from .classifiers import (
    SmallCNNConfig,
    SmallCNNForImageClassification,
    available_classifiers,
    create_classifier,
)
from .presets import UNET_PRESETS, unet_preset
from .unet import UNetConfig, UNetForSemanticSegmentation, UNetImageProcessor, UNetModel
from .zoo import FAMILIES, adapt_input_channels, adapt_input_weight, available_models, create_model

__all__ = [
    "FAMILIES",
    "UNET_PRESETS",
    "SmallCNNConfig",
    "SmallCNNForImageClassification",
    "UNetConfig",
    "UNetForSemanticSegmentation",
    "UNetImageProcessor",
    "UNetModel",
    "adapt_input_channels",
    "adapt_input_weight",
    "available_classifiers",
    "available_models",
    "create_classifier",
    "create_model",
    "unet_preset",
]
