"""Image processor for the hfseg U-Net family: medical intensity normalization, resizing, label maps, and the
nnU-Net-style volume preprocessing (crop, per-channel normalization, resampling) with its inverse.

Self-contained (numpy, torch, PIL, transformers; scipy only for cubic resampling and scikit-image only for the
watershed of `post_process_instance_segmentation`) so that it is copied next to a checkpoint saved for
`trust_remote_code` loading.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

logger = logging.getLogger(__name__)

NORMALIZATIONS = ("zscore", "percentile", "window", "minmax", "mean_std", "none")
# ITU-R 601-2 luma weights, as PIL's `convert("L")`.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
VOLUME_SCHEMES = ("ct", "zscore")
IMAGE_INTERPOLATIONS = ("linear", "cubic")
GEOMETRY_KEYS = ("original_shape", "crop_bbox", "cropped_shape", "original_spacing", "target_spacing",
                 "resampled_shape")
SCORE_TYPES = ("auto", "logits", "probabilities")
INSTANCE_ROLES = ("interior", "boundary")
STD_FLOOR = 1e-8  # nnU-Net's max(std, 1e-8)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _to_numpy(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        array = np.asarray(image)
    elif isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(f"Expected a PIL image, numpy array or torch tensor, got {type(image).__name__}.")
    if not array.dtype.isnative:  # big-endian 16-bit PIL "I;16B", NIfTI volumes read by nibabel: values kept
        array = array.astype(array.dtype.newbyteorder("="))
    if any(stride < 0 for stride in array.strides):  # a flipped view (e.g. a reoriented volume): torch refuses it
        array = np.ascontiguousarray(array)
    return array


def _per_channel(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(C,) values shaped to broadcast over a (C, *spatial) image with `ndim` dimensions."""
    return values.reshape((-1,) + (1,) * (ndim - 1))


def _fill_non_finite(image: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`image` (C, H, W) or (C, X, Y, Z) with NaN and +-inf replaced by its channel's minimum finite value (0 when it
    has none), and how many values were replaced."""
    if not image.is_floating_point():
        return image, 0
    finite = torch.isfinite(image)
    count = int(finite.numel() - int(finite.sum()))
    if count == 0:
        return image, 0
    lowest = torch.where(finite, image, torch.inf).flatten(1).min(1).values
    lowest = torch.where(torch.isfinite(lowest), lowest, torch.zeros_like(lowest))
    return torch.where(finite, image, _per_channel(lowest, image.ndim)), count


def _warn_non_finite(count: int) -> None:
    if count:
        warnings.warn(f"{count} non-finite pixel value(s) (NaN, +inf or -inf) were replaced by the minimum finite "
                      "value of their image channel (0 where a channel has none) before intensity normalization.",
                      stacklevel=3)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of a (3, H, W) image: exactly PIL's `convert("L")` for uint8, float otherwise."""
    if rgb.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(np.moveaxis(rgb, 0, -1)), "RGB").convert("L"))[None]
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
    return np.tensordot(weights, rgb.astype(np.float64), axes=1)[None]


def _is_single(images: Any) -> bool:
    if isinstance(images, (list, tuple)):
        return False
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return images.ndim <= 3
    return True


# -- volume settings: validation ----------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value))


def _int_list(name: str, values: Any, length: int | None = None, low: int = 1, high: int | None = None) -> list[int]:
    """`values` as a list of ints in [low, high), of `length` when given; a ValueError naming `name` otherwise."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray)):
        raise ValueError(f"{name} must be a list of ints, got {values!r}.")
    out = []
    for value in values:
        if not _is_number(value) or int(value) != value or value < low or (high is not None and value >= high):
            bound = f" below {high}" if high is not None else ""
            raise ValueError(f"{name} must hold ints >= {low}{bound}, got {list(values)!r}.")
        out.append(int(value))
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} entries (one per spatial axis), got {out}.")
    return out


def _check_target_spacing(spacing: Any) -> list[float | None] | None:
    if spacing is None:
        return None
    if isinstance(spacing, (str, bytes)) or not isinstance(spacing, (list, tuple, np.ndarray)) or len(spacing) != 3:
        raise ValueError(f"target_spacing must be 3 values in mm (one per array axis, None: that axis is not "
                         f"resampled), or None; got {spacing!r}.")
    if not all(v is None or (_is_number(v) and v > 0) for v in spacing):
        raise ValueError(f"target_spacing entries must be positive mm values or None, got {list(spacing)!r}.")
    return [None if v is None else float(v) for v in spacing]


def _check_spacing(spacing: Any) -> list[float]:
    """The spacing given to `preprocess_volume`: 3 positive finite floats."""
    values = list(spacing) if isinstance(spacing, (list, tuple, np.ndarray, torch.Tensor)) else None
    try:
        values = [float(v) for v in values] if values is not None else None
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be 3 positive values in mm, one per array axis (e.g. MedicalImage.spacing), "
                         f"got {spacing!r}.")
    return values


def _check_channel_entry(index: int, entry: Any) -> dict[str, Any]:
    where = f"channel_normalization[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a dict such as {{'scheme': 'zscore', 'nonzero': False}}, got {entry!r}.")
    scheme = entry.get("scheme")
    if scheme == "ct":
        unknown = sorted(set(entry) - {"scheme", "clip", "mean", "std"})
        clip, mean, std = entry.get("clip"), entry.get("mean"), entry.get("std")
        if not isinstance(clip, (list, tuple)) or len(clip) != 2 or not all(_is_number(v) for v in clip) \
                or clip[0] > clip[1]:
            raise ValueError(f"{where}: scheme 'ct' needs clip=[low, high] (the 0.5 and 99.5 percentiles of the "
                             f"foreground intensities, low <= high), got {clip!r}.")
        if not _is_number(mean) or not _is_number(std) or std < 0:
            raise ValueError(f"{where}: scheme 'ct' needs a finite mean and a finite std >= 0, got mean={mean!r}, "
                             f"std={std!r}.")
        checked = {"scheme": "ct", "clip": [float(clip[0]), float(clip[1])], "mean": float(mean), "std": float(std)}
    elif scheme == "zscore":
        unknown = sorted(set(entry) - {"scheme", "nonzero"})
        nonzero = entry.get("nonzero", False)
        if not isinstance(nonzero, (bool, np.bool_)):
            raise ValueError(f"{where}: 'nonzero' must be true or false, got {nonzero!r}.")
        checked = {"scheme": "zscore", "nonzero": bool(nonzero)}
    else:
        raise ValueError(f"{where}: unknown scheme {scheme!r}; allowed values: {', '.join(VOLUME_SCHEMES)} ('ct' "
                         "with clip, mean and std; 'zscore' with nonzero).")
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} for scheme {scheme!r}.")
    return checked


def _check_channel_normalization(entries: Any) -> list[dict[str, Any]] | None:
    if entries is None:
        return None
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(f"channel_normalization must be a non-empty list with one dict per channel (a plan's "
                         f"'normalization'), or None; got {entries!r}.")
    return [_check_channel_entry(i, entry) for i, entry in enumerate(entries)]


def _check_geometry(geometry: Any) -> dict[str, Any]:
    missing = [k for k in GEOMETRY_KEYS if not isinstance(geometry, dict) or k not in geometry]
    if missing:
        raise ValueError(f"geometry must be the 'geometry' dict preprocess_volume returned; missing key(s): "
                         f"{', '.join(missing)}.")
    shape, cropped = [int(v) for v in geometry["original_shape"]], [int(v) for v in geometry["cropped_shape"]]
    bbox = [[int(lo), int(hi)] for lo, hi in geometry["crop_bbox"]]
    if len(shape) != 3 or len(bbox) != 3 or [hi - lo for lo, hi in bbox] != cropped \
            or not all(0 <= lo < hi <= n for (lo, hi), n in zip(bbox, shape)):
        raise ValueError(f"geometry is inconsistent: crop_bbox {bbox} does not give cropped_shape {cropped} inside "
                         f"original_shape {shape}.")
    return {"original_shape": shape, "crop_bbox": bbox, "cropped_shape": cropped,
            "resampled_shape": [int(v) for v in geometry["resampled_shape"]]}


# -- volume steps ---------------------------------------------------------------------------------------------------
def _nonzero_bbox(volume: torch.Tensor) -> list[list[int]]:
    """Half-open [[lo, hi], ...] bounding box of the voxels non-zero in any channel of (C, X, Y, Z); the whole
    volume when every voxel is zero."""
    mask = (volume != 0).any(0)
    if not bool(mask.any()):
        return [[0, int(n)] for n in mask.shape]
    bbox = []
    for axis in range(mask.ndim):
        hits = mask.any(dim=tuple(a for a in range(mask.ndim) if a != axis)).nonzero()[:, 0]
        bbox.append([int(hits[0]), int(hits[-1]) + 1])
    return bbox


def _resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> list[int]:
    """nnU-Net's new shape: round(shape * spacing / target), at least 1 voxel per axis."""
    new = np.round(np.asarray(spacing, dtype=float) / np.asarray(target, dtype=float) * np.asarray(shape, dtype=float))
    return [max(1, int(n)) for n in new]


def _zoom_cubic(volume: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(C, X, Y, Z) resampled to `shape` with cubic splines on the voxel grid (scipy.ndimage.zoom, order 3)."""
    try:
        from scipy import ndimage
    except ImportError as error:  # pragma: no cover - scipy is a dependency of hfseg
        raise ImportError("image_interpolation='cubic' needs scipy (pip install scipy); or set "
                          "image_interpolation='linear'.") from error
    array = volume.numpy()
    zoom = [n / o for n, o in zip(shape, array.shape[1:])]
    out = np.stack([ndimage.zoom(channel, zoom, order=3, mode="nearest", grid_mode=True) for channel in array])
    if list(out.shape[1:]) != list(shape):  # scipy rounds input_shape * zoom; a float slip would show here
        raise RuntimeError(f"Cubic resampling gave shape {out.shape[1:]} instead of {tuple(shape)}.")
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _zscore(values: torch.Tensor) -> tuple[float, float]:
    """Mean and population std (floored at 1e-8) of `values`, in float64; (0, 1) when empty."""
    if values.numel() == 0:
        return 0.0, 1.0
    values = values.double()
    return float(values.mean()), max(float(values.std(unbiased=False)), STD_FLOOR)


def _check_instance_classes(classes: Any) -> dict[str, int] | None:
    if classes is None:
        return None
    if not isinstance(classes, dict) or "interior" not in classes or set(classes) - set(INSTANCE_ROLES):
        raise ValueError(f"instance_classes must be {{'interior': id, 'boundary': id}} ('boundary' optional) or "
                         f"None, got {classes!r}.")
    ids = {role: int(value) for role, value in classes.items() if _is_number(value)}
    if len(ids) != len(classes) or min(ids.values()) < 1 or len(set(ids.values())) != len(ids):
        raise ValueError(f"instance_classes ids must be distinct class ids >= 1 (0 is the background), got "
                         f"{classes!r}.")
    return ids


def resolve_instance_classes(num_labels: int, instance_classes: dict[str, int] | None = None,
                             id2label: dict[int, str] | None = None) -> dict[str, int] | None:
    """The interior/boundary class ids of a model with `num_labels` outputs, or None for a semantic model.

    `instance_classes` when given (checked against `num_labels`), else the classes of `id2label` named
    `interior` and `boundary` (as `hfseg.data.instances.INSTANCE_ID2LABEL`), else None.
    """
    classes = _check_instance_classes(instance_classes)
    if classes is None and id2label:
        names = {str(name).lower(): int(i) for i, name in id2label.items()}
        if all(role in names for role in INSTANCE_ROLES):
            classes = {role: names[role] for role in INSTANCE_ROLES}
    if classes is not None and max(classes.values()) >= num_labels:
        raise ValueError(f"instance_classes {classes} name a class id beyond the model's {num_labels} outputs.")
    return classes


def _foreground_probabilities(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, *spatial) logits -> per-class probabilities (K, ...) and the foreground probability (...)."""
    if logits.shape[0] == 1:
        fg = torch.sigmoid(logits[0].float())
        return torch.stack([1 - fg, fg]), fg
    probs = torch.softmax(logits.float(), dim=0)
    return probs, 1 - probs[0]


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Instances smaller than `min_size` pixels dropped, the rest renumbered 1..N."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(int(min_size), 1)
    keep[0] = False
    lookup = np.zeros(len(sizes), dtype=np.int64)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1)
    return lookup[labels]


def watershed_instances(probabilities: np.ndarray | torch.Tensor, instance_classes: dict[str, int] | None = None,
                        threshold: float = 0.5, seed_threshold: float = 0.5, min_size: int = 10,
                        min_seed_size: int = 3, seed_erosion: int = 0, split_depth: float = 2.0) -> np.ndarray:
    """An instance map (int64, 0 = background, 1..N) from per-class probabilities (K, *spatial) by seeded watershed.

    The foreground is `1 - p(background) > threshold`. With `instance_classes` (a boundary model), the seeds are the
    connected components of `p(interior) > seed_threshold` inside the foreground (eroded `seed_erosion` times,
    components under `min_seed_size` pixels dropped), flooded over `p(boundary)` (or, without a boundary class,
    over the negated distance to the background). Without (a semantic model), the seeds are the maxima of the
    foreground's distance transform that stand at least `split_depth` pixels above the saddle to a neighbouring
    maximum (`skimage.morphology.h_maxima`), flooded over the negated distance: touching round blobs are cut at
    their neck. Foreground components that received no seed are kept whole; instances under `min_size` pixels are
    dropped. N-d: 2D maps and 3D volumes alike.
    """
    from scipy import ndimage
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    probs = probabilities.detach().float().cpu().numpy() if isinstance(probabilities, torch.Tensor) \
        else np.asarray(probabilities, dtype=np.float32)
    foreground = (1 - probs[0]) > threshold
    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int64)
    connectivity = ndimage.generate_binary_structure(foreground.ndim, foreground.ndim)
    if instance_classes is not None:
        seeds = (probs[instance_classes["interior"]] > seed_threshold) & foreground
        if seed_erosion > 0:
            seeds = ndimage.binary_erosion(seeds, iterations=int(seed_erosion))
        markers = _remove_small(ndimage.label(seeds)[0], min_seed_size)
        if "boundary" in instance_classes:
            elevation = probs[instance_classes["boundary"]]
        else:
            elevation = -ndimage.distance_transform_edt(foreground)
    else:
        distance = ndimage.distance_transform_edt(foreground)
        peaks = h_maxima(distance, split_depth) if distance.max() > split_depth else foreground
        markers = ndimage.label(peaks.astype(bool) & foreground, structure=connectivity)[0]
        elevation = -distance
    labels = watershed(elevation, markers, mask=foreground)
    orphans, count = ndimage.label(foreground & (labels == 0), structure=connectivity)
    if count:
        labels = np.where(orphans > 0, orphans + labels.max(), labels)
    return _remove_small(labels, min_size)


def _look_like_probabilities(scores: torch.Tensor) -> bool:
    """(K, ...) scores all in [0, 1] that (K > 1) sum to 1 over K at every voxel."""
    if float(scores.min()) < 0 or float(scores.max()) > 1:
        return False
    return scores.shape[0] == 1 or bool(((scores.sum(0) - 1).abs() <= 1e-3).all())

def _segments_info(segmentation: torch.Tensor, probs: torch.Tensor, foreground: torch.Tensor,
                   classes: dict[str, int] | None) -> list[dict[str, Any]]:
    """`{"id", "label_id", "score"}` per instance of `segmentation` (see `post_process_instance_segmentation`)."""
    count = int(segmentation.max())
    if count == 0:
        return []
    flat = segmentation.reshape(-1)
    sizes = torch.bincount(flat, minlength=count + 1).clamp(min=1).double()
    scores = torch.bincount(flat, weights=foreground.reshape(-1).double(), minlength=count + 1) / sizes
    if classes is not None:
        label_ids = [classes["interior"]] * count
    else:
        semantic = probs[1:].argmax(dim=0).reshape(-1) + 1  # the best foreground class of each pixel
        votes = torch.zeros(count + 1, probs.shape[0], dtype=torch.long)
        votes.index_put_((flat, semantic), torch.ones_like(flat), accumulate=True)
        label_ids = votes[1:].argmax(dim=1).tolist()
    return [{"id": i, "label_id": int(label_ids[i - 1]), "score": float(scores[i])} for i in range(1, count + 1)]


class UNetImageProcessor(BaseImageProcessor):
    r"""
    Prepares medical images for [`UNetForSemanticSegmentation`] (and any model taking `pixel_values`).

    Images may be of any numeric dtype, byte order and memory layout: big-endian arrays (e.g. NIfTI slices read by
    nibabel) are converted to native order and flipped views are copied, values unchanged.

    Non-finite voxels: before any normalization (every mode, `"none"` included), NaN, +inf and -inf are replaced by
    the minimum finite value of the image (of each channel, for a multi-channel image; 0 when it has no finite
    value), with one warning per call naming how many were replaced. Without this, a single NaN makes a z-score mean
    NaN and the whole prediction background.

    Volumes (`preprocess_volume` / `postprocess_volume`), as nnU-Net preprocesses them, so that training and
    inference crop, normalize and resample the same way: non-finite values filled (as above), crop to the bounding
    box of the voxels non-zero in any channel (`crop_to_nonzero`), per-channel normalization
    (`channel_normalization`, before resampling), then resampling of the image (`image_interpolation`) and of the
    label (nearest neighbour) to `target_spacing`. `postprocess_volume` undoes the resampling and the crop of the
    model's scores and gives the mask on the original voxel grid. Volumes keep their stored axis order (no
    reorientation). A 2D plan on volumes (`spatial_dims=2` with `slice_axis`) preprocesses the whole volume the same
    way, without resampling along `slice_axis`; the 2D model then sees the slices along `slice_axis` of that
    preprocessed volume (`volume_to_slices`), and its per-slice scores are stacked back (`slices_to_volume`) before
    `postprocess_volume`. With `channel_normalization` set, `preprocess` (2D images) normalizes with it too.

    Args:
        normalization (`str`, *optional*, defaults to `"zscore"`):
            Per image and channel: `"zscore"` (subtract mean, divide by std), `"percentile"` (clip to the
            `percentiles` then min-max to [0, 1], robust for MRI), `"window"` (CT windowing: clip to
            `window_center +- window_width / 2`, then [0, 1]), `"minmax"` ([0, 1]), `"mean_std"` (fixed
            `image_mean`/`image_std` after `rescale_factor`, as for ImageNet-pretrained encoders), or `"none"`.
        percentiles (`tuple[float, float]`, *optional*, defaults to `(0.5, 99.5)`):
            Clipping percentiles of `"percentile"`.
        window_center, window_width (`float`, *optional*):
            CT window in Hounsfield units for `"window"` (e.g. 40 / 400 for abdominal soft tissue).
        zscore_nonzero (`bool`, *optional*, defaults to `False`):
            Compute z-score statistics over non-zero pixels only (skull-stripped MRI) and keep the background at 0.
        image_mean, image_std (`list[float]`, *optional*):
            Per-channel statistics of `"mean_std"` (one value is broadcast to every channel).
        rescale_factor (`float`, *optional*, defaults to 1/255):
            Scale applied before `"mean_std"` normalization.
        do_resize (`bool`, *optional*, defaults to `False`):
            Resize images (bilinear, antialiased) and label maps (nearest neighbour) to `size`.
        size (`dict`, *optional*):
            `{"height": h, "width": w}`.
        num_channels (`int`, *optional*):
            Expected channel count; it resolves the channel axis. Grey and RGB images are converted to it (an RGB
            image given to a 1-channel processor becomes its luminance, see `match_channels`); any other count is an
            error.
        modality (`str`, *optional*):
            DICOM Modality code of the images the model was trained on (`"MR"`, `"CT"`, `"SM"` for slide microscopy,
            ...); None when unknown. Informational: it does not change preprocessing.
        intensity_range (`list[float]`, *optional*):
            `[low, high]`, the 1st and 99th percentiles of the training images' raw intensities (before
            normalization), to tell whether new images are on the same scale; None when unknown. Informational: it
            does not change preprocessing.
        spatial_dims (`int`, *optional*, defaults to 2):
            2 for a 2D model (images, or slices of volumes with `slice_axis`), 3 for a 3D model taking volumes
            (then only `preprocess_volume` prepares inputs; `preprocess` refuses).
        target_spacing (`list[float | None]`, *optional*):
            Voxel spacing in mm per array axis that `preprocess_volume` resamples to; a None entry (and None for the
            whole field) leaves that axis unresampled. The new size of an axis is
            `round(size * spacing / target_spacing)`, at least 1. With `slice_axis`, its entry must be None.
        slice_axis (`int`, *optional*):
            For a 2D plan on volumes (`spatial_dims=2`): the array axis (0, 1 or 2) the 2D slices are cut along.
        channel_normalization (`list[dict]`, *optional*):
            One dict per channel (a plan's `normalization`), replacing `normalization` when set:
            `{"scheme": "ct", "clip": [low, high], "mean": m, "std": s}` clips to `[low, high]` then computes
            `(x - m) / max(s, 1e-8)` (fixed dataset statistics, for CT);
            `{"scheme": "zscore", "nonzero": bool}` computes `(x - mean) / max(std, 1e-8)` with the statistics of
            the image itself (after the crop), over the voxels non-zero in any channel when `nonzero` is true (the
            other voxels are set to 0), else over all voxels. Unlike nnU-Net, holes inside the non-zero region
            are not filled first.
        crop_to_nonzero (`bool`, *optional*, defaults to `False`):
            Crop volumes to the bounding box of the voxels non-zero in any channel before normalization.
        patch_size (`list[int]`, *optional*):
            The model's training patch (`spatial_dims` ints; for a 2D plan the two in-plane axes in array order),
            for sliding-window inference. Informational: it does not change preprocessing.
        image_interpolation (`str`, *optional*, defaults to `"linear"`):
            Image resampling on the voxel grid (voxel centres aligned): `"linear"` (trilinear, torch's
            `interpolate(..., align_corners=False)`) or `"cubic"` (`scipy.ndimage.zoom(order=3, mode="nearest",
            grid_mode=True)`). Labels are always resampled with the nearest neighbour, scores in
            `postprocess_volume` always linearly.
        mirror_axes (`list[int]`, *optional*):
            Spatial axes (indices into the patch axes) mirrored in augmentation and test-time augmentation.
            Informational: it does not change preprocessing.
        plan (`dict`, *optional*):
            The whole plan the model was trained with (JSON-able), stored as is for the model card.
        instance_classes (`dict[str, int]`, *optional*):
            For `post_process_instance_segmentation`: the class ids of a boundary model's targets,
            `{"interior": 1, "boundary": 2}` (the 3-class target of `hfseg.data.instances`). When None, a model
            whose `id2label` (passed to the method) names classes `interior` and `boundary` uses those; any other
            model is treated as semantic (its non-background classes are the foreground).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        normalization: str = "zscore",
        percentiles: Sequence[float] = (0.5, 99.5),
        window_center: float | None = None,
        window_width: float | None = None,
        zscore_nonzero: bool = False,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        rescale_factor: float = 1 / 255,
        do_resize: bool = False,
        size: dict[str, int] | None = None,
        num_channels: int | None = None,
        modality: str | None = None,
        intensity_range: Sequence[float] | None = None,
        spatial_dims: int = 2,
        target_spacing: Sequence[float | None] | None = None,
        slice_axis: int | None = None,
        channel_normalization: Sequence[dict[str, Any]] | None = None,
        crop_to_nonzero: bool = False,
        patch_size: Sequence[int] | None = None,
        image_interpolation: str = "linear",
        mirror_axes: Sequence[int] | None = None,
        plan: dict[str, Any] | None = None,
        instance_classes: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization {normalization!r}; allowed values: {', '.join(NORMALIZATIONS)}.")
        if normalization == "window" and (window_center is None or window_width is None or window_width <= 0):
            raise ValueError("normalization='window' needs window_center and a positive window_width (HU).")
        if normalization == "mean_std" and (image_mean is None or image_std is None):
            raise ValueError("normalization='mean_std' needs image_mean and image_std.")
        low, high = percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}.")
        if do_resize and (not size or "height" not in size or "width" not in size):
            raise ValueError("do_resize=True needs size={'height': h, 'width': w}.")
        if modality is not None and (not isinstance(modality, str) or not modality.strip()):
            raise ValueError(f"modality must be a DICOM Modality code such as 'MR', 'CT' or 'SM' (or None), "
                             f"got {modality!r}.")
        if intensity_range is not None:
            intensity_range = [float(v) for v in intensity_range]
            if len(intensity_range) != 2 or not intensity_range[0] <= intensity_range[1]:
                raise ValueError(f"intensity_range must be [low, high] with low <= high (or None), "
                                 f"got {intensity_range}.")
        self.normalization = normalization
        self.percentiles = [float(low), float(high)]
        self.window_center = window_center
        self.window_width = window_width
        self.zscore_nonzero = zscore_nonzero
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        self.rescale_factor = rescale_factor
        self.do_resize = do_resize
        self.size = dict(size) if size else None
        self.num_channels = num_channels
        self.modality = modality.strip() if modality is not None else None
        self.intensity_range = intensity_range
        self.instance_classes = _check_instance_classes(instance_classes)
        self._set_volume_fields(spatial_dims, target_spacing, slice_axis, channel_normalization, crop_to_nonzero,
                                patch_size, image_interpolation, mirror_axes, plan)

    def _set_volume_fields(self, spatial_dims: Any, target_spacing: Any, slice_axis: Any, channel_normalization: Any,
                           crop_to_nonzero: Any, patch_size: Any, image_interpolation: Any, mirror_axes: Any,
                           plan: Any) -> None:
        """Validate and set the volume fields (see the class docstring)."""
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        target_spacing = _check_target_spacing(target_spacing)
        if slice_axis is not None:
            if spatial_dims != 2:
                raise ValueError("slice_axis is for 2D plans on volumes: set spatial_dims=2, or slice_axis=None for "
                                 "a 3D model.")
            if not _is_number(slice_axis) or slice_axis not in (0, 1, 2):
                raise ValueError(f"slice_axis must be the array axis 0, 1 or 2 (or None), got {slice_axis!r}.")
            slice_axis = int(slice_axis)
            if target_spacing is not None and target_spacing[slice_axis] is not None:
                raise ValueError(f"target_spacing[{slice_axis}] must be None with slice_axis={slice_axis}: a 2D plan "
                                 f"does not resample along the slice axis (got target_spacing={target_spacing}).")
        elif spatial_dims == 2 and target_spacing is not None:
            raise ValueError("target_spacing with spatial_dims=2 needs slice_axis (the axis 2D slices are cut along).")
        channel_normalization = _check_channel_normalization(channel_normalization)
        if channel_normalization is not None and self.num_channels is not None \
                and len(channel_normalization) != self.num_channels:
            raise ValueError(f"channel_normalization has {len(channel_normalization)} entries but num_channels is "
                             f"{self.num_channels}: give one dict per channel.")
        if not isinstance(crop_to_nonzero, (bool, np.bool_)):
            raise ValueError(f"crop_to_nonzero must be true or false, got {crop_to_nonzero!r}.")
        if patch_size is not None:
            patch_size = _int_list("patch_size", patch_size, length=spatial_dims)
        if image_interpolation not in IMAGE_INTERPOLATIONS:
            raise ValueError(f"Unknown image_interpolation {image_interpolation!r}; allowed values: "
                             f"{', '.join(IMAGE_INTERPOLATIONS)}.")
        if mirror_axes is not None:
            mirror_axes = _int_list("mirror_axes", mirror_axes, low=0, high=spatial_dims)
            if len(set(mirror_axes)) != len(mirror_axes):
                raise ValueError(f"mirror_axes must not repeat an axis, got {mirror_axes}.")
        if plan is not None:
            if not isinstance(plan, dict):
                raise ValueError(f"plan must be a dict (Plan.to_dict()), got {type(plan).__name__}.")
            try:
                json.dumps(plan)
            except (TypeError, ValueError) as error:
                raise ValueError(f"plan must be JSON-able (it is saved in preprocessor_config.json): {error}") \
                    from error
        if spatial_dims == 3 and self.do_resize:
            raise ValueError("do_resize is for 2D images; volumes (spatial_dims=3) are resampled to target_spacing: "
                             "set do_resize=False.")
        self.spatial_dims = int(spatial_dims)
        self.target_spacing = target_spacing
        self.slice_axis = slice_axis
        self.channel_normalization = channel_normalization
        self.crop_to_nonzero = bool(crop_to_nonzero)
        self.patch_size = patch_size
        self.image_interpolation = image_interpolation
        self.mirror_axes = mirror_axes
        self.plan = plan

    # -- conversion ------------------------------------------------------------------------------------------
    def to_channels_first(self, image: Any, input_data_format: str | None = None) -> torch.Tensor:
        """A (C, H, W) float32 tensor from a PIL image, array or tensor (HW, HWC or CHW), values unchanged.

        Any dtype is read as is: uint8, 16-bit (uint16 arrays, PIL "I;16"), int32 (PIL "I") and float (PIL "F").
        With `num_channels` set, the channels are matched as `match_channels` does.
        """
        array = _to_numpy(image)
        if array.dtype == np.uint16 or array.dtype == np.uint32:
            array = array.astype(np.int64)
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3:
            fmt = input_data_format or self._infer_format(array.shape)
            if fmt in ("channels_last", "last"):
                array = np.moveaxis(array, -1, 0)
            elif fmt not in ("channels_first", "first"):
                raise ValueError(f"input_data_format must be 'channels_first' or 'channels_last', got {fmt!r}.")
        else:
            raise ValueError(f"An image must have 2 or 3 dimensions, got shape {array.shape}.")
        return torch.tensor(self.match_channels(array), dtype=torch.float32)  # a copy: PIL arrays are read-only

    def match_channels(self, image: np.ndarray) -> np.ndarray:
        """A (C, H, W) image with `num_channels` channels: grey and RGB are converted, anything else is an error.

        - 3 channels for a 1-channel processor: one channel when the three are equal (a grey image made RGB, as
          transformers' `image-segmentation` pipeline does with every image), else the ITU-R 601-2 luminance
          `L = 0.299 R + 0.587 G + 0.114 B` (PIL's `convert("L")`, exact for uint8), with a one-time warning: a
          colour image is not what a grey (e.g. MRI) model was trained on.
        - 1 channel for a 3-channel processor: the channel repeated three times.
        """
        have, want = image.shape[0], self.num_channels
        if want is None or have == want:
            return image
        if have == 3 and want == 1:
            if np.array_equal(image[0], image[1]) and np.array_equal(image[0], image[2]):
                return image[:1]
            _warn_once("A colour (RGB) image was given to a 1-channel model: it is converted to its ITU-R 601-2 "
                       "luminance (as PIL's convert('L')). Give grey images to avoid this.")
            return _luminance(image)
        if have == 1 and want == 3:
            return np.repeat(image, 3, axis=0)
        raise ValueError(
            f"Image has {have} channels but {want} are expected: give {want}-channel images, (H, W, {want}) or "
            f"({want}, H, W); only grey and RGB are converted into each other (so transformers' RGB-only "
            "image-segmentation pipeline cannot feed this model: call the processor and the model directly)."
        )

    def _infer_format(self, shape: tuple[int, ...]) -> str:
        n = self.num_channels
        if n is None and self.image_mean is not None and len(self.image_mean) > 1:
            n = len(self.image_mean)
        if n is not None and shape[0] == n and shape[-1] != n:
            return "channels_first"
        if n is not None and shape[-1] == n:
            return "channels_last"
        if shape[-1] <= 4 < shape[0]:
            return "channels_last"
        if shape[0] <= 4 < shape[-1]:
            return "channels_first"
        raise ValueError(f"Cannot tell the channel axis of an image of shape {shape}; pass input_data_format.")

    # -- intensity -------------------------------------------------------------------------------------------
    def normalize_intensity(self, image: torch.Tensor) -> torch.Tensor:
        """Apply the configured normalization to one (C, H, W) image (or (C, X, Y, Z) volume), non-finite values
        replaced first (warned)."""
        image, count = _fill_non_finite(image)
        _warn_non_finite(count)
        return self._normalize(image)

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        """The configured normalization of one finite (C, *spatial) image: `channel_normalization` when set, else
        `normalization`."""
        if self.channel_normalization is not None:
            return self._normalize_channels(image)
        mode = self.normalization
        flat = image.flatten(1)
        eps = 1e-8

        def per_channel(values: torch.Tensor) -> torch.Tensor:
            return _per_channel(values, image.ndim)

        if mode == "zscore":
            if self.zscore_nonzero:
                mask = flat != 0
                count = mask.sum(1).clamp(min=1)
                mean = (flat * mask).sum(1) / count
                std = ((((flat - mean[:, None]) * mask) ** 2).sum(1) / count).sqrt()
                out = (image - per_channel(mean)) / (per_channel(std) + eps)
                return out * (image != 0)
            mean, std = flat.mean(1), flat.std(1, unbiased=False)
            return (image - per_channel(mean)) / (per_channel(std) + eps)
        if mode == "percentile":
            q = torch.tensor(self.percentiles, dtype=flat.dtype) / 100
            bounds = torch.quantile(flat, q, dim=1)
            low, high = per_channel(bounds[0]), per_channel(bounds[1])
            return (image.clamp(min=low, max=high) - low) / (high - low + eps)
        if mode == "window":
            low = self.window_center - self.window_width / 2
            return (image.clamp(low, low + self.window_width) - low) / self.window_width
        if mode == "minmax":
            low, high = per_channel(flat.min(1).values), per_channel(flat.max(1).values)
            return (image - low) / (high - low + eps)
        if mode == "mean_std":
            channels = image.shape[0]
            mean = torch.tensor(self.image_mean, dtype=image.dtype)
            std = torch.tensor(self.image_std, dtype=image.dtype)
            mean, std = (mean.expand(channels), std.expand(channels)) if mean.numel() == std.numel() == 1 \
                else (mean, std)
            if mean.numel() != channels or std.numel() != channels:
                raise ValueError(f"image_mean/image_std have {mean.numel()} values for a {channels}-channel image.")
            return (image * self.rescale_factor - per_channel(mean)) / per_channel(std)
        return image

    def _normalize_channels(self, image: torch.Tensor) -> torch.Tensor:
        """`channel_normalization` applied to one finite (C, *spatial) image, channel by channel (nnU-Net's
        CTNormalization and ZScoreNormalization)."""
        entries = self.channel_normalization
        if len(entries) != image.shape[0]:
            raise ValueError(f"The image has {image.shape[0]} channel(s) but channel_normalization has "
                             f"{len(entries)} entries: give images with the channels the model was trained on.")
        nonzero = (image != 0).any(0) if any(e["scheme"] == "zscore" and e["nonzero"] for e in entries) else None
        out = torch.empty_like(image, dtype=torch.float32)
        for c, entry in enumerate(entries):
            x = image[c].float()
            if entry["scheme"] == "ct":
                low, high = entry["clip"]
                out[c] = (x.clamp(low, high) - entry["mean"]) / max(entry["std"], STD_FLOOR)
            elif entry["nonzero"]:
                mean, std = _zscore(x[nonzero])
                out[c] = torch.where(nonzero, (x - mean) / std, torch.zeros((), dtype=x.dtype))
            else:
                mean, std = _zscore(x)
                out[c] = (x - mean) / std
        return out

    # -- pipeline --------------------------------------------------------------------------------------------
    def preprocess(
        self,
        images: Any,
        segmentation_maps: Any | None = None,
        return_tensors: str | None = "pt",
        input_data_format: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Normalize (and resize) images, and turn label maps into (B, H, W) int64 class indices.

        Returns a `BatchFeature` with `pixel_values` (B, C, H, W) float32 and, with `segmentation_maps`, `labels`.
        Non-finite values are replaced as the class docstring says, with one warning for the whole call.
        Images of different sizes need `do_resize=True` (or `return_tensors=None`, which returns lists).
        """
        if kwargs:
            raise TypeError(f"Unexpected arguments: {', '.join(kwargs)}.")
        if self.spatial_dims == 3:
            raise ValueError("This processor prepares volumes for a 3D model (spatial_dims=3): call "
                             "preprocess_volume(image, spacing) with each (C, X, Y, Z) volume and its spacing.")
        single = _is_single(images)
        images = [images] if single else list(images)
        pixel_values, native_sizes, non_finite = [], [], 0
        for image in images:
            tensor, count = _fill_non_finite(self.to_channels_first(image, input_data_format))
            non_finite += count
            tensor = self._normalize(tensor)
            native_sizes.append(tuple(tensor.shape[-2:]))
            if self.do_resize:
                tensor = F.interpolate(tensor[None], size=(self.size["height"], self.size["width"]),
                                       mode="bilinear", antialias=True, align_corners=False)[0]
            pixel_values.append(tensor)
        _warn_non_finite(non_finite)  # once per call, however many images
        data: dict[str, Any] = {"pixel_values": pixel_values}
        if segmentation_maps is not None:
            maps = [segmentation_maps] if _is_single(segmentation_maps) and single else list(segmentation_maps)
            if len(maps) != len(images):
                raise ValueError(f"Got {len(images)} images but {len(maps)} segmentation maps.")
            data["labels"] = [self._prepare_label(m, hw) for m, hw in zip(maps, native_sizes)]
        if return_tensors == "pt":
            for key, values in data.items():
                shapes = {tuple(v.shape) for v in values}
                if len(shapes) > 1:
                    raise ValueError(f"{key} have different sizes {sorted(shapes)}: set do_resize=True and a size.")
                data[key] = torch.stack(values)
        elif return_tensors is not None:
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}.")
        return BatchFeature(data=data)

    def _prepare_label(self, label: Any, image_size: tuple[int, int]) -> torch.Tensor:
        array = _to_numpy(label)
        if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
            array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
        if array.ndim != 2:
            raise ValueError(f"A segmentation map must be (H, W) class indices, got shape {array.shape}.")
        if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
            raise ValueError("A segmentation map must hold integer class indices, got fractional values.")
        label = torch.from_numpy(array.astype(np.int64))
        if tuple(label.shape) != image_size:
            raise ValueError(f"Segmentation map of size {tuple(label.shape)} does not match its image {image_size}.")
        if self.do_resize:
            size = (self.size["height"], self.size["width"])
            label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
        return label

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[Sequence[int]] | None = None, threshold: float = 0.5
    ) -> list[torch.Tensor]:
        """Class-index maps (H, W), or (X, Y, Z) for 3D logits, from model outputs, one per image, resized to
        `target_sizes` (2 or 3 ints each, as the logits) if given.

        Multi-class logits are resized (bilinear, or trilinear for (B, K, X, Y, Z)) then arg-maxed; a binary model
        (one logit channel) is resized then thresholded at `threshold` on the sigmoid.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        if logits.ndim not in (4, 5):
            raise ValueError(f"Expected logits (B, K, H, W) or (B, K, X, Y, Z), got shape {tuple(logits.shape)}.")
        spatial = logits.ndim - 2
        if target_sizes is not None and len(target_sizes) != logits.shape[0]:
            raise ValueError(f"Got {len(target_sizes)} target sizes for a batch of {logits.shape[0]}.")
        results = []
        for i in range(logits.shape[0]):
            item = logits[i : i + 1]
            if target_sizes is not None:
                size = tuple(int(s) for s in target_sizes[i])
                if len(size) != spatial:
                    raise ValueError(f"target_sizes[{i}] = {size} must have {spatial} entries for logits of shape "
                                     f"{tuple(logits.shape)}.")
                item = F.interpolate(item.float(), size=size, mode="bilinear" if spatial == 2 else "trilinear",
                                     align_corners=False)
            if item.shape[1] == 1:
                results.append((torch.sigmoid(item[0, 0]) > threshold).long())
            else:
                results.append(item[0].argmax(dim=0))
        return results

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[Sequence[int]] | None = None,
        threshold: float = 0.5,
        seed_threshold: float = 0.5,
        min_size: int = 10,
        min_seed_size: int = 3,
        seed_erosion: int = 0,
        split_depth: float = 2.0,
        instance_classes: dict[str, int] | None = None,
        id2label: dict[int, str] | None = None,
        mask_threshold: float | None = None,
        overlap_mask_area_threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Instances (nuclei, cells) from model outputs by seeded watershed, one dict per image, as transformers'
        instance post-processors return them.

        A boundary model (3-class target background / interior / boundary, see `instance_classes` in the class
        docstring; or `id2label` naming `interior` and `boundary`, e.g. `model.config.id2label`) is seeded by its
        confident interior and flooded over its boundary probability; any other model (binary or multi-class
        semantic) by the distance-transform maxima of its foreground, which splits touching round blobs at the neck
        (see `watershed_instances` for the parameters). The logits are resized to `target_sizes` (bilinear) first.

        Args:
            outputs: a model output with `.logits`, or logits (B, K, H, W) (or (B, K, X, Y, Z)).
            target_sizes (`list[tuple[int, int]]`, *optional*): the (height, width) of each image's result.
            threshold (`float`, *optional*, defaults to 0.5): foreground where `1 - p(background)` exceeds it.
            seed_threshold, min_size, min_seed_size, seed_erosion, split_depth: see `watershed_instances`.
            instance_classes (`dict[str, int]`, *optional*): overrides the processor's `instance_classes`.
            id2label (`dict[int, str]`, *optional*): the model's classes, read when no `instance_classes` is set.
            mask_threshold (`float`, *optional*): given, the call follows transformers' instance post-processors, as
                `pipeline("image-segmentation")` makes it: `mask_threshold` is then the foreground threshold,
                `threshold` the lowest instance score kept, and `overlap_mask_area_threshold` is unused (watershed
                instances never overlap). A semantic model then answers with one segment per predicted class
                (`id` = `label_id` = the class, `score` None), so the pipeline gives it the class masks it gives
                every semantic segmenter.
            overlap_mask_area_threshold (`float`, *optional*): accepted for the pipeline, unused.

        Returns:
            `list[dict]`: per image `{"segmentation": LongTensor (H, W) of instance ids (0 = background, 1..N),
            "segments_info": [{"id": i, "label_id": class id, "score": mean foreground probability}, ...]}`, where
            `label_id` is the interior class of a boundary model and the most frequent predicted class of the
            instance for a semantic one.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        if not isinstance(logits, torch.Tensor) or logits.ndim not in (4, 5):
            raise ValueError(f"Expected logits (B, K, H, W) or (B, K, X, Y, Z), got "
                             f"{tuple(logits.shape) if hasattr(logits, 'shape') else type(logits).__name__}.")
        if target_sizes is not None and len(target_sizes) != logits.shape[0]:
            raise ValueError(f"Got {len(target_sizes)} target sizes for a batch of {logits.shape[0]}.")
        spatial = logits.ndim - 2
        classes = resolve_instance_classes(logits.shape[1], instance_classes or self.instance_classes, id2label)
        min_score = 0.0
        if mask_threshold is not None:  # transformers' convention (the image-segmentation pipeline)
            if classes is None:
                return [{"segmentation": semantic, "segments_info": [
                    {"id": int(c), "label_id": int(c), "score": None} for c in torch.unique(semantic).tolist()]}
                    for semantic in self.post_process_semantic_segmentation(logits, target_sizes)]
            threshold, min_score = mask_threshold, threshold
        results = []
        for i in range(logits.shape[0]):
            item = logits[i : i + 1].float()
            if target_sizes is not None:
                size = tuple(int(s) for s in target_sizes[i])
                if len(size) != spatial:
                    raise ValueError(f"target_sizes[{i}] = {size} must have {spatial} entries for logits of shape "
                                     f"{tuple(logits.shape)}.")
                item = F.interpolate(item, size=size, mode="bilinear" if spatial == 2 else "trilinear",
                                     align_corners=False)
            probs, foreground = _foreground_probabilities(item[0])
            labels = watershed_instances(probs, classes, threshold, seed_threshold, min_size, min_seed_size,
                                         seed_erosion, split_depth)
            segmentation = torch.from_numpy(labels)
            info = _segments_info(segmentation, probs, foreground, classes)
            dropped = [segment["id"] for segment in info if segment["score"] < min_score]
            if dropped:
                segmentation = torch.where(torch.isin(segmentation, torch.tensor(dropped)), 0, segmentation)
                info = [segment for segment in info if segment["score"] >= min_score]
            results.append({"segmentation": segmentation, "segments_info": info})
        return results

    # -- volumes ---------------------------------------------------------------------------------------------
    def preprocess_volume(self, image: Any, spacing: Sequence[float], label: Any | None = None) -> dict[str, Any]:
        """Prepare one volume as nnU-Net does: fill non-finite values, crop to non-zero, normalize, resample.

        Args:
            image: (C, X, Y, Z) array or tensor, channels first (or (X, Y, Z) for one channel), any numeric dtype.
            spacing: mm per array axis (3 floats).
            label: optional (X, Y, Z) class indices on the same grid.

        Returns:
            A dict with `pixel_values` (C, x', y', z') float32, `labels` (x', y', z') int64 or None, and `geometry`,
            a JSON-able dict for `postprocess_volume`: `original_shape` (X, Y, Z), `crop_bbox` (half-open
            `[[lo, hi], ...]` per axis, in original voxels), `cropped_shape`, `original_spacing`,
            `target_spacing` (the spacing resampled to, with the original one on axes not resampled) and
            `resampled_shape` (x', y', z').
        """
        if self.spatial_dims == 2 and self.slice_axis is None:
            raise ValueError("preprocess_volume needs a volume processor: spatial_dims=3, or spatial_dims=2 with "
                             "slice_axis for a 2D plan on volumes.")
        volume = self._volume_tensor(image)
        spacing = _check_spacing(spacing)
        labels = self._volume_label(label, tuple(volume.shape[1:])) if label is not None else None
        volume, count = _fill_non_finite(volume)
        _warn_non_finite(count)
        shape = [int(n) for n in volume.shape[1:]]
        bbox = _nonzero_bbox(volume) if self.crop_to_nonzero else [[0, n] for n in shape]
        region = tuple(slice(lo, hi) for lo, hi in bbox)
        volume = self._normalize(volume[(slice(None),) + region])
        labels = labels[region] if labels is not None else None
        cropped = [int(n) for n in volume.shape[1:]]
        target = spacing if self.target_spacing is None else \
            [s if t is None else t for s, t in zip(spacing, self.target_spacing)]
        resampled = _resampled_shape(cropped, spacing, target)
        if resampled != cropped:
            if self.image_interpolation == "cubic":
                volume = _zoom_cubic(volume, resampled)
            else:
                volume = F.interpolate(volume[None], size=resampled, mode="trilinear", align_corners=False)[0]
            if labels is not None:
                labels = F.interpolate(labels[None, None].float(), size=resampled, mode="nearest-exact")[0, 0].long()
        geometry = {"original_shape": shape, "crop_bbox": bbox, "cropped_shape": cropped,
                    "original_spacing": spacing, "target_spacing": [float(t) for t in target],
                    "resampled_shape": resampled}
        return {"pixel_values": volume.float().contiguous(),
                "labels": labels.contiguous() if labels is not None else None, "geometry": geometry}

    def postprocess_volume(self, scores: Any, geometry: dict[str, Any], return_probabilities: bool = False, *,
                           score_type: str = "auto", threshold: float = 0.5) -> torch.Tensor:
        """The inverse of `preprocess_volume` for a model's scores: a mask (or probabilities) on the original grid.

        Args:
            scores: (K, x', y', z') (or (1, K, x', y', z')) logits or probabilities on the preprocessed grid.
            geometry: the `geometry` dict `preprocess_volume` returned for this volume.
            return_probabilities: return the (K, X, Y, Z) float32 probabilities instead of the mask.
            score_type: `"logits"`, `"probabilities"`, or `"auto"`: probabilities when every value is in [0, 1]
                and (K > 1) the K values of each voxel sum to 1, logits otherwise.
            threshold: foreground threshold on the probability of a one-channel (binary) model.

        The scores are resampled linearly back to the crop's shape, turned into probabilities (softmax, or sigmoid
        for K == 1) when they are logits, and placed into the original grid, where everything outside the crop is
        background (class 0 has all the probability; for K == 1 the foreground probability is 0). The mask is the
        arg-max (K > 1) or `probability > threshold` (K == 1), int64 (X, Y, Z), on the device of `scores`.
        """
        if score_type not in SCORE_TYPES:
            raise ValueError(f"Unknown score_type {score_type!r}; allowed values: {', '.join(SCORE_TYPES)}.")
        geometry = _check_geometry(geometry)
        scores = torch.as_tensor(_to_numpy(scores) if not isinstance(scores, torch.Tensor) else scores).float()
        if scores.ndim == 5 and scores.shape[0] == 1:
            scores = scores[0]
        if scores.ndim != 4 or list(scores.shape[1:]) != geometry["resampled_shape"]:
            raise ValueError(f"scores must be (K, {', '.join(map(str, geometry['resampled_shape']))}) (the "
                             f"preprocessed grid of this geometry), got shape {tuple(scores.shape)}.")
        channels = scores.shape[0]
        probabilities = score_type == "probabilities" or (score_type == "auto" and _look_like_probabilities(scores))
        if list(scores.shape[1:]) != geometry["cropped_shape"]:
            scores = F.interpolate(scores[None], size=geometry["cropped_shape"], mode="trilinear",
                                   align_corners=False)[0]
        region = tuple(slice(lo, hi) for lo, hi in geometry["crop_bbox"])
        if return_probabilities or channels == 1:
            if not probabilities:
                scores = torch.sigmoid(scores) if channels == 1 else torch.softmax(scores, dim=0)
            if return_probabilities:
                full = scores.new_zeros((channels, *geometry["original_shape"]))
                if channels > 1:
                    full[0] = 1
                full[(slice(None),) + region] = scores
                return full
            inside = (scores[0] > threshold).long()
        else:
            inside = scores.argmax(dim=0)
        mask = torch.zeros(geometry["original_shape"], dtype=torch.int64, device=scores.device)
        mask[region] = inside
        return mask

    def volume_to_slices(self, volume: torch.Tensor) -> torch.Tensor:
        """For a 2D plan: the slices along `slice_axis` of a preprocessed volume as a batch, (C, X, Y, Z) pixel
        values -> (S, C, a, b), or (X, Y, Z) labels -> (S, a, b); the in-plane axes keep their array order."""
        axis = self._slice_axis()
        if volume.ndim not in (3, 4):
            raise ValueError(f"Expected (C, X, Y, Z) pixel values or (X, Y, Z) labels, got shape "
                             f"{tuple(volume.shape)}.")
        return volume.movedim(axis + volume.ndim - 3, 0)

    def slices_to_volume(self, slices: torch.Tensor) -> torch.Tensor:
        """The inverse of `volume_to_slices`: per-slice scores (S, K, a, b) -> (K, X, Y, Z), or (S, a, b) maps ->
        (X, Y, Z)."""
        axis = self._slice_axis()
        if slices.ndim not in (3, 4):
            raise ValueError(f"Expected (S, K, a, b) scores or (S, a, b) maps, got shape {tuple(slices.shape)}.")
        return slices.movedim(0, axis + slices.ndim - 3)

    def _slice_axis(self) -> int:
        if self.slice_axis is None:
            raise ValueError("This processor has no slice_axis: slices are for 2D plans on volumes (spatial_dims=2 "
                             "with slice_axis).")
        return self.slice_axis

    def _volume_tensor(self, image: Any) -> torch.Tensor:
        """A (C, X, Y, Z) float32 copy of a volume given as (C, X, Y, Z) or (X, Y, Z)."""
        array = _to_numpy(image)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"A volume must be (C, X, Y, Z), channels first, or (X, Y, Z); got shape {array.shape}.")
        if self.num_channels is not None and array.shape[0] != self.num_channels:
            raise ValueError(f"The volume has {array.shape[0]} channel(s) but {self.num_channels} are expected: give "
                             f"({self.num_channels}, X, Y, Z) volumes, channels first.")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"A volume must hold numbers, got dtype {array.dtype}.")
        return torch.tensor(array.astype(np.float32, copy=False), dtype=torch.float32)  # a copy: inputs untouched

    def _volume_label(self, label: Any, shape: tuple[int, ...]) -> torch.Tensor:
        array = _to_numpy(label)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if tuple(array.shape) != shape:
            raise ValueError(f"The label has shape {array.shape} but its volume is {shape}: give (X, Y, Z) class "
                             "indices on the volume's grid.")
        if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
            raise ValueError("A label volume must hold integer class indices, got fractional values.")
        return torch.from_numpy(array.astype(np.int64))

