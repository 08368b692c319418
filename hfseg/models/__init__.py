"""Models of hfseg: the U-Net family, its presets, and the `create_model` zoo."""

from .presets import UNET_PRESETS, unet_preset
from .unet import UNetConfig, UNetForSemanticSegmentation, UNetImageProcessor, UNetModel
from .zoo import FAMILIES, adapt_input_channels, adapt_input_weight, available_models, create_model

__all__ = [
    "FAMILIES",
    "UNET_PRESETS",
    "UNetConfig",
    "UNetForSemanticSegmentation",
    "UNetImageProcessor",
    "UNetModel",
    "adapt_input_channels",
    "adapt_input_weight",
    "available_models",
    "create_model",
    "unet_preset",
]
