"""Registers the hfseg models with the transformers Auto classes (run once by `import hfseg`)."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from .models.classifiers import SmallCNNConfig, SmallCNNForImageClassification
from .models.unet import UNetConfig, UNetForSemanticSegmentation, UNetImageProcessor, UNetModel


def register() -> None:
    """Register with the Auto classes, and for `trust_remote_code` loading of saved checkpoints."""
    AutoConfig.register(UNetConfig.model_type, UNetConfig, exist_ok=True)
    AutoModel.register(UNetConfig, UNetModel, exist_ok=True)
    AutoModelForSemanticSegmentation.register(UNetConfig, UNetForSemanticSegmentation, exist_ok=True)
    AutoImageProcessor.register(
        UNetConfig, image_processor_classes={"pil": UNetImageProcessor, "torchvision": UNetImageProcessor},
        exist_ok=True,
    )
    AutoConfig.register(SmallCNNConfig.model_type, SmallCNNConfig, exist_ok=True)
    AutoModelForImageClassification.register(SmallCNNConfig, SmallCNNForImageClassification, exist_ok=True)
    AutoImageProcessor.register(
        SmallCNNConfig, image_processor_classes={"pil": UNetImageProcessor, "torchvision": UNetImageProcessor},
        exist_ok=True,
    )
    # Saved checkpoints carry `auto_map` and a copy of the model code, so they load where hfseg is not installed.
    UNetConfig.register_for_auto_class()
    UNetModel.register_for_auto_class("AutoModel")
    UNetForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
    UNetImageProcessor.register_for_auto_class("AutoImageProcessor")
    SmallCNNConfig.register_for_auto_class()
    SmallCNNForImageClassification.register_for_auto_class("AutoModelForImageClassification")
