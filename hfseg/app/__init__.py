"""The Gradio demo (the Hugging Face Space in `spaces/`): upload a medical image, see its segmentation explained.

`uploads` reads files (PNG/JPEG/TIFF, DICOM, NIfTI slices), `models` says which models a visitor may use
(`ModelPolicy`, set by the operator's environment variables) and loads and caches them, `areas` measures the classes,
`predict` computes everything shown (`segment` is the UI's entry point), and `ui` builds the `gr.Blocks` (it needs
gradio: `pip install "hfseg[app]"`; the rest of `hfseg.app` does not).
"""

from .models import MODEL_ENV, MODELS_ENV, ModelError, ModelPolicy, default_model, get_model
from .predict import Analysis, analyze, segment
from .uploads import MAX_FILE_BYTES, MAX_SIDE, Upload, UploadError, read_upload

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_SIDE",
    "MODELS_ENV",
    "MODEL_ENV",
    "Analysis",
    "ModelError",
    "ModelPolicy",
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
    # The UI imports gradio (slow, and an optional dependency): only when asked for.
    if name in ("build_demo", "launch"):
        from . import ui

        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
