"""Prediction from a saved model: `load_model`, then `predict` for what `hfseg.io.read` gives (a volume slice by
slice, a 2D image at once), `predict_logits` / `predict_mask` for one image array, `classify_logits` for a
classifier, and `check_input` for inputs unlike the training data."""

from .loading import as_unet_processor, is_classifier, load_model, model_name, model_num_labels, resolve_model_path
from .checks import check_input
from .image import (
    FLIPS,
    classify_logits,
    importance_map,
    normalize,
    predict_logits,
    predict_logits_batch,
    predict_mask,
    probabilities_to_logits,
    processor_size,
    window_starts,
)
from .volume import predict, predict_volume

__all__ = [
    "FLIPS",
    "as_unet_processor",
    "check_input",
    "classify_logits",
    "importance_map",
    "is_classifier",
    "load_model",
    "model_name",
    "model_num_labels",
    "normalize",
    "predict",
    "predict_logits",
    "predict_logits_batch",
    "predict_mask",
    "predict_volume",
    "probabilities_to_logits",
    "processor_size",
    "resolve_model_path",
    "window_starts",
]
