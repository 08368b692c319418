"""Prediction from a saved model: `load_model`, then `predict_logits` / `predict_mask` for one image,
`predict_volume` for a volume with a 2D model, `classify_logits` for a classifier."""

from .loading import as_unet_processor, is_classifier, load_model, model_name, model_num_labels, resolve_model_path
from .predict import (
    FLIPS,
    classify_logits,
    importance_map,
    normalize,
    predict_logits,
    predict_mask,
    probabilities_to_logits,
    processor_size,
    window_starts,
)

__all__ = [
    "FLIPS",
    "as_unet_processor",
    "classify_logits",
    "importance_map",
    "is_classifier",
    "load_model",
    "model_name",
    "model_num_labels",
    "normalize",
    "predict_logits",
    "predict_mask",
    "probabilities_to_logits",
    "processor_size",
    "resolve_model_path",
    "window_starts",
]
