"""Registers the hfseg models with the transformers Auto classes (run once by `import hfseg`)."""

from collections.abc import Iterable

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    PretrainedConfig,
    TimmWrapperConfig,
)
from transformers.models.auto import modeling_auto
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING, AutoVideoProcessor

from .models.classifiers import SmallCNNConfig, SmallCNNForImageClassification
from .models.unet import UNetConfig, UNetForSemanticSegmentation, UNetImageProcessor, UNetModel
from .models.zoo import FAMILIES


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
    _list_for_segmentation_pipeline()
    families = {family.model_class.config_class for family in FAMILIES.values()}
    _register_no_video_processor([UNetConfig, SmallCNNConfig, TimmWrapperConfig, *sorted(families, key=str)])


def _list_for_segmentation_pipeline() -> None:
    """Name `UNetForSemanticSegmentation` among the models of transformers' `image-segmentation` pipeline.

    That pipeline checks the model's class name against copies of the `MODEL_FOR_*_SEGMENTATION_MAPPING_NAMES`
    dicts, and a copy loses what `AutoModelForSemanticSegmentation.register` added, so it logs "... is not supported
    for image-segmentation" for every registered model. Adding our model type to the semantic-segmentation names
    fixes that check and nothing else: the Auto mapping still resolves `UNetConfig` through its registration, and
    it lists only model types that have a transformers config.
    """
    names = modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES
    names.setdefault(UNetConfig.model_type, UNetForSemanticSegmentation.__name__)


def _register_no_video_processor(config_classes: Iterable[type[PretrainedConfig]]) -> None:
    """Register "no video processor" for the zoo's models (those transformers gives none), so that pipelines do not
    ask `Do you wish to run the custom code? [y/N]`.

    Pipelines (transformers 5.11 and later) also try `AutoVideoProcessor` on the model folder. It reads
    `preprocessor_config.json`, turns its `auto_map` entry `image_processing_unet.UNetImageProcessor` into a remote
    `UNetVideoProcessor`, finds no local video processor for the model's config and asks for `trust_remote_code`.
    Registered as None, the config has local code (none), so `AutoVideoProcessor` fails without asking and the
    pipeline goes on without a video processor, as for any image model. (transformers 5.13 to 5.18 ignore this for
    their own configs, e.g. Segformer: there, pass `trust_remote_code=False` to the pipeline.)
    """
    for config_class in config_classes:
        if config_class not in VIDEO_PROCESSOR_MAPPING:
            AutoVideoProcessor.register(config_class, None, exist_ok=True)
