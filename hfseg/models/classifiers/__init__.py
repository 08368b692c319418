"""Image classifiers for the grading and tumour-type studies: timm architectures and the small CNN."""

from .configuration_small_cnn import SmallCNNConfig
from .factory import TIMM_CLASSIFIERS, adapt_classifier_channels, available_classifiers, create_classifier
from .modeling_small_cnn import SmallCNNForImageClassification, SmallCNNPreTrainedModel

__all__ = [
    "TIMM_CLASSIFIERS",
    "SmallCNNConfig",
    "SmallCNNForImageClassification",
    "SmallCNNPreTrainedModel",
    "adapt_classifier_channels",
    "available_classifiers",
    "create_classifier",
]
