"""The Gradio interface: `build_demo()` gives the `gr.Blocks`, `launch()` serves it (needs `pip install "hfseg[app]"`).

Layout: the model and the optional classifier (dropdowns of the models the `ModelPolicy` offers; typing any folder or
Hub id only when it allows any), the upload (any supported file) with a slice slider shown for
volumes, the GradCAM class, and the bundled examples on the left; on the right the status, the annotated overlay
with its legend, an image/overlay slider, the area table, GradCAM, attention maps and the classifier's scores.

Events: loading the page or choosing a model describes it (classes for GradCAM, legend
colours); a new file sets the slice slider, then segments; moving the slider, picking a class or pressing *Segment*
segments again. The *Segment* button's event is the public API endpoint `/segment`, inputs (model, file, slice index,
GradCAM class, classifier), outputs as `predict.segment`'s (the first one with the legend colours: `{"value",
"color_map"}` to an API client); a model the policy does not offer is refused. Every segmentation event shares one
queue slot (`concurrency_limit=1`): a model call already uses every core. `launch()` sets torch's CPU threads
(`hfseg.threads.configure_threads`), and loads and warms up the default model in the background while the server
starts.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware

from ..threads import configure_threads
from .areas import AREA_HEADERS
from .models import ModelError, ModelPolicy, get_model
from .predict import AUTO_CLASS, color_map, segment, warm_up
from .uploads import MAX_FILE_BYTES, MAX_SIDE, SUPPORTED_EXTENSIONS, UploadError, read_upload

GRADIO_MIN = "6.0"  # pyproject.toml's `app` extra (event listeners with api_visibility=)
INSTALL_HINT = f'pip install "hfseg[app]" (or pip install "gradio>={GRADIO_MIN}")'
try:
    import gradio as gr
except ImportError as err:
    if not (err.name or "").startswith("gradio"):
        raise  # gradio is there but something it imports is broken: that error says what
    raise ModuleNotFoundError(f"The hfseg demo app needs gradio, which is not installed: {INSTALL_HINT}.",
                              name="gradio") from err


def _release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as '6.31.0' or '6.0.0b1'."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


if _release(gr.__version__) < _release(GRADIO_MIN):
    raise ImportError(f"The hfseg demo app needs gradio>={GRADIO_MIN}, but gradio {gr.__version__} is installed: "
                      f'pip install -U "hfseg[app]".')

TITLE = "hfseg: medical image segmentation"
INTRO = (
    "Segment a medical image with an hfseg model: upload a PNG, JPEG, TIFF, DICOM (`.dcm`) or NIfTI (`.nii`, "
    "`.nii.gz`, pick the axial slice with the slider), or click an example. You get the predicted classes over the "
    "image, their areas (in mm² when the file gives the pixel spacing: DICOM, NIfTI), a GradCAM map for a chosen "
    "class and, for attention U-Nets, the attention gates' maps. A classifier, when given, adds its class "
    f"probabilities. Files up to {MAX_FILE_BYTES // 1024 ** 2} MB and {MAX_SIDE} x {MAX_SIDE} pixels."
)
# Waiting events the queue holds (running ones not counted); more are told the queue is full. At about a second an
# answer (a 256 x 256 image on 2 idle cores), the last one waits some 15 s.
MAX_QUEUE = 16
# Small maps (a 128 x 128 CAM) fill their box instead of staying at their pixel size.
CSS = "#cam img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


def _save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """gradio's `processing_utils.save_pil_to_cache`, written atomically (a temporary file renamed into place).

    gradio names a cached image after the hash of its bytes and rewrites it in place (`write_bytes`), so two requests
    with the same answer (two visitors clicking the same example) truncate and rewrite the file one of them is
    downloading: its client gets fewer bytes than announced (`RemoteProtocolError: peer closed connection without
    sending complete message body`). Renamed into place, the path always holds the complete file.
    """
    from gradio import processing_utils

    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    handle, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(target)


def atomic_image_cache() -> None:
    """Make gradio write the images it caches for its outputs atomically (`_save_pil_to_cache`); idempotent."""
    from gradio import processing_utils

    processing_utils.save_pil_to_cache = _save_pil_to_cache


REMOTE_FILE = re.compile(r"/file=\s*https?:", re.IGNORECASE)  # what gradio takes for a URL there


class NoRemoteFiles:
    """ASGI middleware refusing `/gradio_api/file=<URL>`: gradio fetches any public URL given there for whoever asks
    (an open proxy, to the Hub or anywhere); the demo serves only its own files."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and REMOTE_FILE.search(scope.get("path", "")):
            from starlette.responses import PlainTextResponse

            await PlainTextResponse("This demo serves its own files only, not URLs.", status_code=403)(
                scope, receive, send)
            return
        await self.app(scope, receive, send)


def describe_model(name: str, policy: ModelPolicy | None = None) -> tuple[Any, Any, str]:
    """Updates for the GradCAM class choices and the legend colours, and a Markdown line about model `name`."""
    try:
        loaded = get_model(name, policy)
    except ModelError as err:
        return gr.Dropdown(choices=[AUTO_CLASS], value=AUTO_CLASS), gr.AnnotatedImage(), f"⚠️ {err}"
    if loaded.classifier:
        return (gr.Dropdown(choices=[AUTO_CLASS], value=AUTO_CLASS), gr.AnnotatedImage(),
                f"⚠️ `{name}` is an image classifier: choose it as the classifier, and a segmentation model here.")
    labels = loaded.mask_labels
    gates = any(type(m).__name__ == "AttentionGate" for m in loaded.model.modules())
    shown = policy.label(name) if policy else name
    info = (f"`{shown}`: {type(loaded.model).__name__}, {loaded.num_channels} channel"
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
                classifier: str | None, policy: ModelPolicy | None = None) -> tuple[Any, ...]:
    """`predict.segment` with the legend colours of the model's classes."""
    outputs = segment(model, file, slice_index, cam_class, classifier, policy=policy)
    try:
        colours = color_map(get_model(model, policy).mask_labels) if outputs[0] is not None else None
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


def as_policy(models: ModelPolicy | str | os.PathLike | None) -> ModelPolicy:
    """`models` itself, a policy offering just the one folder or Hub id given, or for None the operator's
    (`ModelPolicy.from_environment()`, without a bundled model)."""
    if isinstance(models, ModelPolicy):
        return models
    return ModelPolicy.only(models) if models is not None else ModelPolicy.from_environment()


def _model_pickers(policy: ModelPolicy) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The segmentation model and classifier dropdowns: the offered models, and free text only with `allow_any`."""
    typed = " or type a local run folder or a Hub id (owner/name) and press Enter" if policy.allow_any else ""
    model = gr.Dropdown(choices=policy.choices(policy.models), value=policy.default, label="Segmentation model",
                        allow_custom_value=policy.allow_any, info=f"Choose a model{typed}.")
    classifier = gr.Dropdown(choices=[("none", ""), *policy.choices(policy.classifiers)], value="",
                             label="Classifier (optional)", allow_custom_value=policy.allow_any,
                             visible=bool(policy.classifiers) or policy.allow_any,
                             info=f"An image classifier whose class probabilities are added{typed}.")
    return model, classifier


def build_demo(models: ModelPolicy | str | os.PathLike | None = None,
               examples: Sequence[str] | str | os.PathLike | None = None, max_queue: int | None = MAX_QUEUE
               ) -> gr.Blocks:
    """The demo's `gr.Blocks`, its queue set (see the module docstring).

    Args:
        models (`ModelPolicy` or `str`, *optional*): the models offered (`as_policy`): a policy, one folder or Hub
            id, or None for the operator's environment variables (`hfseg.app.models`).
        examples (`list[str]` or `str`, *optional*): example files, or a folder of them (`example_files`).
        max_queue (`int`, *optional*, defaults to `MAX_QUEUE`): waiting events the queue holds before it tells
            visitors it is full; None for no limit.
    """
    atomic_image_cache()
    policy = as_policy(models)
    files = example_files(examples) if isinstance(examples, (str, os.PathLike)) else list(examples or [])

    def describe(name: str) -> tuple[Any, Any, str]:
        return describe_model(name, policy)

    def segment_event(model: str, file: str | None, slice_index: float | None, cam_class: str | None,
                      classifier: str | None) -> tuple[Any, ...]:
        return run_segment(model, file, slice_index, cam_class, classifier, policy)

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=1):
                model_box, classifier_box = _model_pickers(policy)
                model_info = gr.Markdown()
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
        details = dict(fn=describe, inputs=[model_box], outputs=[cam_class, annotated, model_info],
                       api_visibility="private")
        demo.load(**details)
        model_box.input(**details)
        # One segmentation at a time, in one queue slot shared by every event that runs a model: the cached models
        # are shared, GradCAM hooks into them, and one model call already uses every core.
        once = dict(concurrency_limit=1, concurrency_id="segment")
        run.click(segment_event, inputs, outputs, api_name="segment", **once)
        file.change(inspect_file, [file], [slice_slider, status], api_visibility="private").then(
            segment_event, inputs, outputs, api_visibility="private", **once)
        slice_slider.release(segment_event, inputs, outputs, api_visibility="private", **once)
        cam_class.input(segment_event, inputs, outputs, api_visibility="private", **once)
    demo.queue(max_size=max_queue, default_concurrency_limit=1)
    return demo


def launch(models: ModelPolicy | str | os.PathLike | None = None,
           examples: Sequence[str] | str | os.PathLike | None = None, max_queue: int | None = MAX_QUEUE,
           **kwargs: Any) -> gr.Blocks:
    """Build the demo (`build_demo(models, examples, max_queue)`) and serve it (`gr.Blocks.launch(**kwargs)`),
    refusing uploads over `MAX_FILE_BYTES`, serving no local file but the examples (`allowed_paths`) and fetching no
    URL for a visitor (`NoRemoteFiles`). Sets torch's CPU threads first (`configure_threads`: the available cores,
    unless `OMP_NUM_THREADS` says otherwise); the default model is loaded and warmed up (`warm_up`) in the
    background."""
    configure_threads()
    policy = as_policy(models)
    if policy.default:
        threading.Thread(target=warm_up, args=(policy.default, policy), daemon=True).start()
    demo = build_demo(policy, examples, max_queue)
    folder = [str(examples)] if isinstance(examples, (str, os.PathLike)) else []
    kwargs.setdefault("max_file_size", MAX_FILE_BYTES)
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("allowed_paths", folder)
    app_kwargs = dict(kwargs.get("app_kwargs") or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(NoRemoteFiles)]
    kwargs["app_kwargs"] = app_kwargs
    demo.launch(**kwargs)
    return demo
