"""The hfseg U-Net family: config, models, image processor, losses."""

from .configuration_unet import UNetConfig
from .image_processing_unet import UNetImageProcessor
from .loss_unet import segmentation_loss, soft_dice_loss
from .modeling_unet import UNetForSemanticSegmentation, UNetModel, UNetPreTrainedModel

__all__ = [
    "UNetConfig",
    "UNetForSemanticSegmentation",
    "UNetImageProcessor",
    "UNetModel",
    "UNetPreTrainedModel",
    "segmentation_loss",
    "soft_dice_loss",
]
