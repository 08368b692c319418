"""The Gradio demo (the Hugging Face Space in `spaces/`): upload a medical image, see its segmentation explained.

`uploads` reads files (PNG/JPEG/TIFF, DICOM, NIfTI slices), `models` loads and caches models, `areas` measures the
classes, `predict` computes everything shown (`segment` is the UI's entry point), and `ui` builds the `gr.Blocks`.
"""

from .models import DEFAULT_HUB_MODEL, MODEL_ENV, ModelError, default_model, get_model
from .predict import Analysis, analyze, segment
from .uploads import MAX_FILE_BYTES, MAX_SIDE, Upload, UploadError, read_upload

__all__ = [
    "DEFAULT_HUB_MODEL",
    "MAX_FILE_BYTES",
    "MAX_SIDE",
    "MODEL_ENV",
    "Analysis",
    "ModelError",
    "Upload",
    "UploadError",
    "analyze",
    "build_demo",
    "default_model",
    "get_model",
    "launch",
    "read_upload",
    "segment",
]


def __getattr__(name: str):
    # The UI imports gradio (slow): only when asked for.
    if name in ("build_demo", "launch"):
        from . import ui

        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
