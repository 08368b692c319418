"""Pictures shared by the training panels, the evaluation reports, the explanations, the model cards and the app.

- `palette`: `PALETTE`, `colorize`, `class_color`: the class colours.
- `display`: `to_display` (any image as (H, W, 3) uint8), `grey`, `scale_to_uint8` (percentile windowing).
- `legend`: `legend_strip`, `with_legend`: swatches and names below a picture.
- `overlay`: `overlay_mask` (classes with a legend), `overlay_errors` / `error_masks` (TP/FP/FN in `ERROR_COLORS`),
  `blend`, `label_array`.
- `heatmap`: `heatmap_colors`, `overlay_heatmap` (CAMs, attention maps).
- `panels`: `grid`, `with_title`, `prediction_panel` (the training run's panels).

Only numpy, PIL, matplotlib and torch are used here: every other part of hfseg may import it.
"""

from .display import grey, scale_to_uint8, to_display
from .heatmap import heatmap_colors, overlay_heatmap, resize_map
from .legend import legend_strip, with_legend
from .overlay import ERROR_COLORS, blend, error_masks, label_array, overlay_errors, overlay_mask
from .palette import PALETTE, class_color, colorize
from .panels import grid, prediction_panel, with_title

__all__ = [
    "ERROR_COLORS",
    "PALETTE",
    "blend",
    "class_color",
    "colorize",
    "error_masks",
    "grey",
    "grid",
    "heatmap_colors",
    "label_array",
    "legend_strip",
    "overlay_errors",
    "overlay_heatmap",
    "overlay_mask",
    "prediction_panel",
    "resize_map",
    "scale_to_uint8",
    "to_display",
    "with_legend",
    "with_title",
]
