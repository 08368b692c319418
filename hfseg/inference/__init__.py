"""Prediction from a saved model: `load_model`, then `predict` for what `hfseg.io.read` gives (a volume slice by
slice, a 2D image at once), `predict_logits` / `predict_mask` for one image array, `classify_logits` for a
classifier, `sliding_window` for Gaussian sliding-window logits of a 2D image or 3D volume tensor, and `check_input`
for inputs unlike the training data."""

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
from .sliding import compute_steps, gaussian_importance_map, sliding_window
from .planned import is_planned, predict_planned, volume_probabilities
from .volume import predict, predict_volume

__all__ = [
    "FLIPS",
    "as_unet_processor",
    "check_input",
    "classify_logits",
    "compute_steps",
    "gaussian_importance_map",
    "importance_map",
    "is_classifier",
    "is_planned",
    "load_model",
    "model_name",
    "model_num_labels",
    "normalize",
    "predict",
    "predict_logits",
    "predict_logits_batch",
    "predict_mask",
    "predict_planned",
    "predict_volume",
    "probabilities_to_logits",
    "processor_size",
    "resolve_model_path",
    "sliding_window",
    "volume_probabilities",
    "window_starts",
]
