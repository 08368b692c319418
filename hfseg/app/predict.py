"""What the demo computes for one image: mask, overlay, class areas, GradCAM, attention maps, classifier scores.

`analyze(model, upload, ...)` does the work and raises `UploadError`/`ModelError` for anything the user must fix;
what it can do but doubts (an input unlike the model's training data: a CT through a model trained on MR) is a
note in the status.
`segment(...)` is the UI's (and the API's) entry point: it reads the uploaded file, calls `analyze`, and returns the
output components' values, with every problem as a message in the status text instead of an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..inference import check_input, classify_logits, is_planned, predict_mask, predict_planned
from ..io import MedicalImage, to_slices
from ..explain import explain as explain_image
from ..explain import overlay_mask, to_display
from ..viz import PALETTE
from .areas import class_areas
from .models import LoadedModel, ModelError, ModelPolicy, get_model
from .uploads import Upload, UploadError, read_upload

logger = logging.getLogger(__name__)

AUTO_CLASS = "auto (largest predicted class)"
# Loaded models are shared by every session, GradCAM hooks into them, and one call already uses every core (torch's
# threads, `hfseg.threads.configure_threads`): one model call (prediction, GradCAM, classifier) at a time, whatever
# the model; the UI's queue runs one segmentation at a time too.
_model_lock = threading.RLock()


@dataclass
class Analysis:
    """Everything shown for one image.

    Args:
        display (`np.ndarray`): (H, W, 3) uint8, the image as shown.
        mask (`np.ndarray`): (H, W) int64 predicted classes.
        labels (`dict[int, str]`): names of the mask's values.
        overlay (`np.ndarray`): (H, W, 3) uint8, the mask blended over `display`.
        areas (`list[list]`): `class_areas` rows.
        cam (`np.ndarray`, *optional*): (H, W, 3) uint8 GradCAM heat map over the image, for class `cam_label`.
        attentions (`list[np.ndarray]`): (H, W, 3) uint8 attention-gate maps over the image (gated models only).
        classification (`dict[str, float]`, *optional*): classifier probabilities per class.
        notes (`list[str]`): how the image differs from the models' training data (`hfseg.inference.check_input`:
            another modality, intensities on another scale), then what was done to it (converted to grey...).
        seconds (`float`): time taken.
    """

    display: np.ndarray
    mask: np.ndarray
    labels: dict[int, str]
    overlay: np.ndarray
    areas: list[list[Any]]
    cam: np.ndarray | None = None
    cam_label: str | None = None
    attentions: list[np.ndarray] = field(default_factory=list)
    classification: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# -- channels ----------------------------------------------------------------------------------------------------
def _opaque(alpha: np.ndarray) -> bool:
    return alpha.dtype.kind in "ui" and bool(np.all(alpha == np.iinfo(alpha.dtype).max))


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an (H, W, 3) image: PIL's `convert("L")` for uint8, float32 0.299 R + 0.587 G + 0.114 B
    otherwise."""
    if rgb.dtype == np.uint8:
        from PIL import Image

        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    return (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def match_channels(image: np.ndarray, channels: int, name: str = "The image") -> tuple[np.ndarray, list[str]]:
    """`image` with the channel count a model takes, and notes on what was changed.

    An opaque alpha channel is dropped; RGB becomes grey (`to_grey`) for a one-channel model, and grey is repeated
    for a three-channel one. Any other mismatch is an `UploadError`.
    """
    notes = []
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    have = 1 if image.ndim == 2 else image.shape[2]
    if have in (2, 4) and have != channels and _opaque(image[..., -1]):
        image, have = (image[..., 0] if have == 2 else image[..., :3]), have - 1
        notes.append("dropped its opaque alpha channel")
    if have == channels:
        return image, notes
    if have == 3 and channels == 1:
        return to_grey(image), notes + ["converted RGB to grey for this one-channel model"]
    if have == 1 and channels == 3:
        return np.repeat(image[..., None], 3, axis=2), notes + ["repeated the grey channel into RGB"]
    kinds = {1: "grey", 3: "RGB"}
    want = f"{channels} channel{'s' * (channels != 1)}" + (f" ({kinds[channels]})" if channels in kinds else "")
    raise UploadError(f"{name} has {have} channels but this model takes {want}: upload a "
                      f"{kinds.get(channels, f'{channels}-channel')} image.")


# -- the analysis ------------------------------------------------------------------------------------------------
def label_index(labels: Mapping[int, str], name: str | None) -> int | None:
    """The class index named `name` (or given as its number), None for no name or `AUTO_CLASS`."""
    if name is None or name == "" or name == AUTO_CLASS:
        return None
    for index, label in labels.items():
        if label == name or str(index) == str(name):
            return int(index)
    raise ModelError(f"Unknown class {name!r} for GradCAM; choose one of {', '.join(labels.values())}.")


def classify(classifier: LoadedModel, image: np.ndarray, name: str) -> tuple[dict[str, float], list[str]]:
    """Class probabilities (softmax; sigmoid for one logit) of `classifier` for `image`, and notes."""
    image, notes = match_channels(image, classifier.num_channels, name)
    logits = classify_logits(classifier.model, classifier.processor, image)
    if logits.numel() == 1:
        p = torch.sigmoid(logits).item()
        only = next(iter(classifier.id2label.values()))
        return {only: p, f"not {only}": 1 - p}, notes
    probs = logits.softmax(-1).tolist()
    return {classifier.id2label.get(i, f"class {i}"): float(p) for i, p in enumerate(probs)}, notes


def analyze(model: str, upload: Upload, cam_class: str | None = None, classifier: str | None = None,
            explain: bool = True, policy: ModelPolicy | None = None) -> Analysis:
    """Segment `upload` with the model saved at `model`, and explain and classify it.

    Args:
        model (`str`): a segmentation model's folder or Hub id.
        upload (`Upload`): the image (see `read_upload`).
        cam_class (`str`, *optional*): class name for GradCAM; default the predicted foreground class with the
            largest area.
        classifier (`str`, *optional*): an image classifier's folder or Hub id, whose probabilities are added.
        explain (`bool`, *optional*, defaults to `True`): compute GradCAM and attention maps.
        policy (`ModelPolicy`, *optional*): the models allowed (see `get_model`); None allows any.

    Raises:
        UploadError: the image does not fit the model (channels).
        ModelError: a model is not allowed, cannot be loaded, is of the wrong kind, or the class is unknown.
    """
    start = time.perf_counter()
    seg = get_model(model, policy)
    if seg.classifier:
        raise ModelError(f"{model!r} is an image classifier: choose it as the classifier, and a segmentation model "
                         "as the model.")
    labels = seg.mask_labels
    chosen = label_index(labels, cam_class)
    if is_planned(seg.processor):
        return _analyze_volume(model, seg, upload, start)
    image, notes = match_channels(upload.image, seg.num_channels, upload.name)
    notes = [f"⚠️ {warning}" for warning in check_input(seg.processor, upload, upload.name)] + notes
    explanation = None
    with _model_lock:
        if explain:  # explain() predicts the mask as predict_mask does, then adds the CAM and the gates' maps
            explanation = explain_image(seg.model, image, processor=seg.processor, target=chosen, method="gradcam")
            mask, display = explanation.pred, explanation.image
        else:
            mask, display = predict_mask(seg.model, seg.processor, image).numpy(), to_display(image)
    overlay = overlay_mask(display, mask, labels, legend=False)
    result = Analysis(display, mask, labels, overlay, class_areas(mask, labels, upload.spacing), notes=notes)
    if explanation is not None:
        result.cam, result.cam_label = explanation.overlays["cam"], explanation.target_name
        result.attentions = [explanation.overlays[f"attention_{i}"] for i in range(len(explanation.attentions))]
    if classifier and classifier.strip():
        clf = get_model(classifier, policy)
        if not clf.classifier:
            raise ModelError(f"{classifier!r} is a segmentation model, not an image classifier: choose no classifier "
                             "or an image classifier.")
        with _model_lock:
            result.classification, clf_notes = classify(clf, upload.image, upload.name)
        notes += [f"⚠️ classifier: {warning}" for warning in check_input(clf.processor, upload, upload.name)]
        notes += [f"classifier: {n}" for n in clf_notes]
    result.seconds = time.perf_counter() - start
    return result


# Whole-volume masks of a 3D model, by (model, file, its size and time): moving the slice slider reuses them.
_volume_masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
VOLUME_MASKS_KEPT = 4


def _volume_mask(model: str, seg: LoadedModel, volume: MedicalImage) -> np.ndarray:
    """The mask of the whole `volume` (its storage order) by a planned model, computed once per file."""
    stat = Path(volume.path).stat() if volume.path else None
    key = (model, str(volume.path), stat.st_size if stat else None, stat.st_mtime_ns if stat else id(volume))
    if key in _volume_masks:
        _volume_masks.move_to_end(key)
        return _volume_masks[key]
    with _model_lock:
        mask = predict_planned(seg.model, seg.processor, volume)
    _volume_masks[key] = mask
    while len(_volume_masks) > VOLUME_MASKS_KEPT:
        _volume_masks.popitem(last=False)
    return mask


def _analyze_volume(model: str, seg: LoadedModel, upload: Upload, start: float) -> Analysis:
    """A planned (3D) model: the whole volume is segmented once, and the upload's slice of the mask is shown."""
    if upload.volume is None:
        raise UploadError(f"{upload.name} is one 2D image, but this model segments whole volumes: upload a NIfTI "
                          "volume (.nii, .nii.gz) or a multi-frame DICOM.")
    volume = upload.volume
    if volume.spacing is None:
        raise UploadError(f"{upload.name} states no voxel spacing, which this 3D model needs to resample the volume "
                          "to its training resolution: upload a file whose header gives the spacing.")
    notes = [f"⚠️ {warning}" for warning in check_input(seg.processor, upload, upload.name)]
    mask_volume = _volume_mask(model, seg, volume)
    mask = to_slices(mask_volume, volume.affine, upload.plane, upload.name)[upload.slice_index].astype(np.int64)
    display = to_display(upload.image)
    labels = seg.mask_labels
    overlay = overlay_mask(display, mask, labels, legend=False)
    voxel_ml = volume.voxel_volume() / 1000.0
    present = [(labels.get(int(k), f"class {k}"), int((mask_volume == k).sum()) * voxel_ml)
               for k in np.unique(mask_volume) if k != 0]
    notes.append("3D model: the whole volume was segmented (GradCAM is shown for 2D models only); class volumes: "
                 + (", ".join(f"{name} {ml:.1f} mL" for name, ml in present) or "none found"))
    result = Analysis(display, mask, labels, overlay, class_areas(mask, labels, upload.spacing), notes=notes)
    result.seconds = time.perf_counter() - start
    return result


def warm_up(model: str, policy: ModelPolicy | None = None) -> bool:
    """Load `model` and run one analysis of a small noise image, so that the first user's answer does not pay for
    loading and first-call set-up (a few seconds on a CPU). Returns whether it worked; problems are only logged."""
    try:
        seg = get_model(model, policy)
        if is_planned(seg.processor):  # a 3D model: nothing to warm up without a volume
            return True
        noise = np.random.default_rng(0).integers(0, 255, (64, 64, seg.num_channels), dtype=np.uint8)
        analyze(model, Upload(noise[..., 0] if seg.num_channels == 1 else noise, None, "image", "warm-up"),
                policy=policy)
    except Exception as err:  # a warm-up must never stop the app: the user sees the real error on first use
        logger.warning("warm-up of %s failed: %s", model, err)
        return False
    return True


# -- the UI's entry point ----------------------------------------------------------------------------------------
def color_map(labels: Mapping[int, str]) -> dict[str, str]:
    """Hex colour per class name, from `hfseg.viz.PALETTE` (the overlay's colours)."""
    return {name: "#{:02x}{:02x}{:02x}".format(*PALETTE[k % len(PALETTE)]) for k, name in labels.items()}


def annotations(analysis: Analysis) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """`gr.AnnotatedImage` value: the image and one 0/1 mask per predicted class except background (class 0)."""
    present = [k for k in np.unique(analysis.mask) if k != 0]
    return analysis.display, [((analysis.mask == k).astype(np.float32), analysis.labels.get(int(k), f"class {k}"))
                              for k in present]


def status(analysis: Analysis, upload: Upload, model: str) -> str:
    """Markdown summary: file, size, slice, spacing, time, notes."""
    height, width = analysis.mask.shape
    parts = [f"**{upload.name}**", f"{width} x {height} px"]
    if upload.num_slices > 1:
        parts.append(f"slice {upload.slice_index} of 0-{upload.num_slices - 1}")
    parts.append(f"pixel spacing {upload.spacing[0]:.3g} x {upload.spacing[1]:.3g} mm" if upload.spacing
                 else "pixel spacing unknown (areas in pixels only)")
    parts.append(f"model `{model}`")
    parts.append(f"{analysis.seconds:.2f} s")
    text = " · ".join(parts)
    if analysis.cam_label:
        text += f"\n\nGradCAM class: **{analysis.cam_label}**"
    if analysis.notes:
        text += "\n\n" + "\n".join(f"- {note}" for note in analysis.notes)
    return text


def empty_outputs(message: str) -> tuple[Any, ...]:
    """The outputs of `segment` when there is nothing to show, with `message` as the status."""
    return None, None, [], None, [], None, message


def segment(model: str, file: str | None, slice_index: float | None = None, cam_class: str | None = None,
            classifier: str | None = None, name: str | None = None, policy: ModelPolicy | None = None,
            ) -> tuple[Any, ...]:
    """The demo's one action: read `file`, analyze it (`analyze`, with `policy`), and return the output values.

    Returns:
        `(annotated, slider, areas, cam, attentions, classification, status)`: the `gr.AnnotatedImage` value, the
        `gr.ImageSlider` pair (image, overlay), the area table rows (`AREA_HEADERS`), the GradCAM image, a list of
        (attention map, caption) for a gallery, the classifier's `{class: probability}` and a Markdown status. On any
        problem all but the status are empty and the status says what to do; nothing is raised.
    """
    if not file:
        return empty_outputs("Upload an image (PNG, JPEG, TIFF, DICOM or NIfTI) or pick an example.")
    index = None if slice_index is None else int(slice_index)
    try:
        upload = read_upload(file, slice_index=index, name=name)
        analysis = analyze(model, upload, cam_class, classifier, policy=policy)
    except (UploadError, ModelError) as err:
        return empty_outputs(f"⚠️ {err}")
    except Exception as err:  # a model failing on an odd input must not reach the user as a stack trace
        logger.exception("segmentation failed")
        return empty_outputs(f"⚠️ Segmentation failed: {type(err).__name__}: {err}")
    captions = [f"attention gate {i}" for i in range(len(analysis.attentions))]
    shown = policy.label(model) if policy else model
    return (annotations(analysis), (analysis.display, analysis.overlay), analysis.areas, analysis.cam,
            list(zip(analysis.attentions, captions)), analysis.classification, status(analysis, upload, shown))

