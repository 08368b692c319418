"""Explainability: GradCAM-family maps for every model of the zoo and the classifiers, attention-gate maps of the
Attention U-Nets, and overlays (class masks with a legend, TP/FP/FN errors, heatmaps).

`explain(model_or_path, image, label=mask, output_dir=folder)` does it all for one image; `compute_cam`,
`attention_maps` and the `overlay_*` functions are the pieces. For a 3-D model, `compute_cam(model, volume)` gives the
map of one volume (methods: `volume_methods()`).
"""

from ..viz import ERROR_COLORS, overlay_errors, overlay_heatmap, overlay_mask, to_display
from .attention import attention_maps, has_attention_gates
from .cam import CAM_METHODS, LogitsModel, compute_cam, volume_methods
from .explanation import Explanation, explain
from .layers import default_target_layers, fold_tokens, resolve_target_layers

__all__ = [
    "CAM_METHODS",
    "ERROR_COLORS",
    "Explanation",
    "LogitsModel",
    "attention_maps",
    "compute_cam",
    "default_target_layers",
    "explain",
    "fold_tokens",
    "has_attention_gates",
    "overlay_errors",
    "overlay_heatmap",
    "overlay_mask",
    "resolve_target_layers",
    "to_display",
    "volume_methods",
]
