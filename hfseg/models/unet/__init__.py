"""The hfseg U-Net family: config, models, image processor, losses."""

from .configuration_unet import UNetConfig
from .image_processing_unet import UNetImageProcessor
from .loss_unet import deep_supervision_loss, deep_supervision_weights, segmentation_loss, soft_dice_loss
from .modeling_unet import (
    UNetForSemanticSegmentation,
    UNetModel,
    UNetModelOutput,
    UNetPreTrainedModel,
    UNetSemanticSegmenterOutput,
)

__all__ = [
    "UNetConfig",
    "UNetForSemanticSegmentation",
    "UNetImageProcessor",
    "UNetModel",
    "UNetModelOutput",
    "UNetPreTrainedModel",
    "UNetSemanticSegmenterOutput",
    "deep_supervision_loss",
    "deep_supervision_weights",
    "segmentation_loss",
    "soft_dice_loss",
]
