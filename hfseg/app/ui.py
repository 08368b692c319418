"""The Gradio interface: `build_demo()` gives the `gr.Blocks`, `launch()` serves it.

Layout: model and optional classifier (text boxes), the upload (any supported file) with a slice slider shown for
volumes, the GradCAM class, and the bundled examples on the left; on the right the status, the annotated overlay
with its legend, an image/overlay slider, the area table, GradCAM, attention maps and the classifier's scores.

Events: loading the page or entering a model (Enter, or leaving the box) describes it (classes for GradCAM, legend
colours); a new file sets the slice slider, then segments; moving the slider, picking a class or pressing *Segment*
segments again. The *Segment* button's event is the public API endpoint `/segment`, inputs (model, file, slice index,
GradCAM class, classifier), outputs as `predict.segment`'s (the first one with the legend colours: `{"value",
"color_map"}` to an API client). `launch()` loads and warms up the model in the background while the server starts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from .areas import AREA_HEADERS
from .models import ModelError, default_model, get_model
from .predict import AUTO_CLASS, color_map, segment, warm_up
from .uploads import MAX_FILE_BYTES, MAX_SIDE, SUPPORTED_EXTENSIONS, UploadError, read_upload

TITLE = "hfseg: medical image segmentation"
INTRO = (
    "Segment a medical image with an hfseg model: upload a PNG, JPEG, TIFF, DICOM (`.dcm`) or NIfTI (`.nii`, "
    "`.nii.gz`, pick the axial slice with the slider), or click an example. You get the predicted classes over the "
    "image, their areas (in mm² when the file gives the pixel spacing: DICOM, NIfTI), a GradCAM map for a chosen "
    "class and, for attention U-Nets, the attention gates' maps. A classifier, when given, adds its class "
    f"probabilities. Files up to {MAX_FILE_BYTES // 1024 ** 2} MB and {MAX_SIDE} x {MAX_SIDE} pixels."
)
# Small maps (a 128 x 128 CAM) fill their box instead of staying at their pixel size.
CSS = "#cam img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


def describe_model(name: str) -> tuple[Any, Any, str]:
    """Updates for the GradCAM class choices and the legend colours, and a Markdown line about model `name`."""
    try:
        loaded = get_model(name)
    except ModelError as err:
        return gr.Dropdown(choices=[AUTO_CLASS], value=AUTO_CLASS), gr.AnnotatedImage(), f"⚠️ {err}"
    if loaded.classifier:
        return (gr.Dropdown(choices=[AUTO_CLASS], value=AUTO_CLASS), gr.AnnotatedImage(),
                f"⚠️ `{name}` is an image classifier: enter it as the classifier, and a segmentation model here.")
    labels = loaded.mask_labels
    gates = any(type(m).__name__ == "AttentionGate" for m in loaded.model.modules())
    info = (f"`{name}`: {type(loaded.model).__name__}, {loaded.num_channels} channel"
            f"{'s' * (loaded.num_channels != 1)}, classes {', '.join(labels.values())}"
            f"{'; attention gates' if gates else ''}.")
    return (gr.Dropdown(choices=[AUTO_CLASS, *labels.values()], value=AUTO_CLASS),
            gr.AnnotatedImage(color_map=color_map(labels)), info)


def inspect_file(file: str | None) -> tuple[Any, str]:
    """The slice slider for a new file: shown at the middle slice for a volume, hidden otherwise; and a status."""
    if not file:
        return gr.Slider(visible=False, value=0), ""
    try:
        upload = read_upload(file)
    except UploadError as err:
        return gr.Slider(visible=False, value=0), f"⚠️ {err}"
    if upload.num_slices > 1:
        return (gr.Slider(visible=True, minimum=0, maximum=upload.num_slices - 1, value=upload.slice_index),
                f"**{upload.name}**: {upload.num_slices} slices; segmenting slice {upload.slice_index}...")
    return gr.Slider(visible=False, value=0), f"**{upload.name}**: segmenting..."


def run_segment(model: str, file: str | None, slice_index: float | None, cam_class: str | None,
                classifier: str | None) -> tuple[Any, ...]:
    """`predict.segment` with the legend colours of the model's classes."""
    outputs = segment(model, file, slice_index, cam_class, classifier)
    try:
        colours = color_map(get_model(model).mask_labels) if outputs[0] is not None else None
    except ModelError:
        colours = None
    annotated = gr.AnnotatedImage(value=outputs[0], color_map=colours) if colours else outputs[0]
    return (annotated, *outputs[1:])


def example_files(folder: str | os.PathLike | None) -> list[str]:
    """The supported files in `folder`, sorted by name (none when it is None or missing)."""
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(str(p) for p in Path(folder).iterdir()
                  if p.is_file() and p.name.lower().endswith(SUPPORTED_EXTENSIONS))


def build_demo(model: str | None = None, examples: Sequence[str] | str | os.PathLike | None = None) -> gr.Blocks:
    """The demo's `gr.Blocks`.

    Args:
        model (`str`, *optional*): the model shown at start; default `default_model()` (`$HFSEG_MODEL` or the Hub
            demo model).
        examples (`list[str]` or `str`, *optional*): example files, or a folder of them (`example_files`).
    """
    files = example_files(examples) if isinstance(examples, (str, os.PathLike)) else list(examples or [])
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=1):
                model_box = gr.Textbox(value=model or default_model(), label="Segmentation model",
                                       info="A local run folder (e.g. runs/demo/best) or a Hub id (owner/name); "
                                            "press Enter to load.")
                model_info = gr.Markdown()
                classifier_box = gr.Textbox(value="", label="Classifier (optional)",
                                            info="An image classifier's folder or Hub id; leave empty for none.")
                file = gr.File(label="Image: PNG, JPEG, TIFF, DICOM or NIfTI", type="filepath", elem_id="upload")
                slice_slider = gr.Slider(minimum=0, maximum=MAX_SIDE, step=1, value=0, label="Axial slice",
                                         visible=False)
                cam_class = gr.Dropdown(choices=[AUTO_CLASS], value=AUTO_CLASS, label="GradCAM class")
                run = gr.Button("Segment", variant="primary", elem_id="segment")
                if files:
                    gr.Examples([[f] for f in files], inputs=[file], label="Examples", cache_examples=False,
                                example_labels=[Path(f).name for f in files])
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                annotated = gr.AnnotatedImage(label="Segmentation", show_legend=True, format="png", height=420,
                                              elem_id="overlay")
                compare = gr.ImageSlider(label="Image | overlay", format="png", type="numpy", max_height=420)
                areas = gr.Dataframe(headers=AREA_HEADERS, label="Area per class", interactive=False)
                with gr.Row():
                    cam = gr.Image(label="GradCAM", format="png", interactive=False, height=320, elem_id="cam")
                    attentions = gr.Gallery(label="Attention gates (attention U-Nets)", format="png", columns=2,
                                            height=320, object_fit="contain")
                scores = gr.Label(label="Classifier (when one is given)", num_top_classes=5)

        inputs = [model_box, file, slice_slider, cam_class, classifier_box]
        outputs = [annotated, compare, areas, cam, attentions, scores, status]
        describe = dict(fn=describe_model, inputs=[model_box], outputs=[cam_class, annotated, model_info],
                        api_visibility="private")
        demo.load(**describe)
        model_box.submit(**describe)
        model_box.blur(**describe)
        # One segmentation at a time: the cached models are shared, and GradCAM hooks into them.
        once = dict(concurrency_limit=1, concurrency_id="segment")
        run.click(run_segment, inputs, outputs, api_name="segment", **once)
        file.change(inspect_file, [file], [slice_slider, status], api_visibility="private").then(
            run_segment, inputs, outputs, api_visibility="private", **once)
        slice_slider.release(run_segment, inputs, outputs, api_visibility="private", **once)
        cam_class.input(run_segment, inputs, outputs, api_visibility="private", **once)
    return demo


def launch(model: str | None = None, examples: Sequence[str] | str | os.PathLike | None = None,
           **kwargs: Any) -> gr.Blocks:
    """Build the demo and serve it (`gr.Blocks.launch(**kwargs)`), refusing uploads over `MAX_FILE_BYTES`; the
    model is loaded and warmed up (`warm_up`) in the background meanwhile."""
    model = model or default_model()
    threading.Thread(target=warm_up, args=(model,), daemon=True).start()
    demo = build_demo(model, examples)
    folder = [str(examples)] if isinstance(examples, (str, os.PathLike)) else []
    kwargs.setdefault("max_file_size", MAX_FILE_BYTES)
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("allowed_paths", folder)
    demo.launch(**kwargs)
    return demo
