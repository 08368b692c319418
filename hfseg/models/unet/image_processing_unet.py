"""Image processor for the hfseg U-Net family: medical intensity normalization, resizing, label maps.

Self-contained (numpy, torch, PIL, transformers) so that it is copied next to a checkpoint saved for
`trust_remote_code` loading.
"""

from __future__ import annotations

import logging
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


def _fill_non_finite(image: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`image` (C, H, W) with NaN and +-inf replaced by its channel's minimum finite value (0 when it has none), and
    how many values were replaced."""
    if not image.is_floating_point():
        return image, 0
    finite = torch.isfinite(image)
    count = int(finite.numel() - int(finite.sum()))
    if count == 0:
        return image, 0
    lowest = torch.where(finite, image, torch.inf).flatten(1).min(1).values
    lowest = torch.where(torch.isfinite(lowest), lowest, torch.zeros_like(lowest))
    return torch.where(finite, image, lowest[:, None, None]), count


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


class UNetImageProcessor(BaseImageProcessor):
    r"""
    Prepares medical images for [`UNetForSemanticSegmentation`] (and any model taking `pixel_values`).

    Images may be of any numeric dtype, byte order and memory layout: big-endian arrays (e.g. NIfTI slices read by
    nibabel) are converted to native order and flipped views are copied, values unchanged.

    Non-finite voxels: before any normalization (every mode, `"none"` included), NaN, +inf and -inf are replaced by
    the minimum finite value of the image (of each channel, for a multi-channel image; 0 when it has no finite
    value), with one warning per call naming how many were replaced. Without this, a single NaN makes a z-score mean
    NaN and the whole prediction background.

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
        """Apply the configured normalization to one (C, H, W) image, non-finite values replaced first (warned)."""
        image, count = _fill_non_finite(image)
        _warn_non_finite(count)
        return self._normalize(image)

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        """The configured normalization of one finite (C, H, W) image."""
        mode = self.normalization
        flat = image.flatten(1)
        eps = 1e-8
        if mode == "zscore":
            if self.zscore_nonzero:
                mask = flat != 0
                count = mask.sum(1).clamp(min=1)
                mean = (flat * mask).sum(1) / count
                std = ((((flat - mean[:, None]) * mask) ** 2).sum(1) / count).sqrt()
                out = (image - mean[:, None, None]) / (std[:, None, None] + eps)
                return out * (image != 0)
            mean, std = flat.mean(1), flat.std(1, unbiased=False)
            return (image - mean[:, None, None]) / (std[:, None, None] + eps)
        if mode == "percentile":
            q = torch.tensor(self.percentiles, dtype=flat.dtype) / 100
            bounds = torch.quantile(flat, q, dim=1)
            low, high = bounds[0][:, None, None], bounds[1][:, None, None]
            return (image.clamp(min=low, max=high) - low) / (high - low + eps)
        if mode == "window":
            low = self.window_center - self.window_width / 2
            return (image.clamp(low, low + self.window_width) - low) / self.window_width
        if mode == "minmax":
            low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
            return (image - low) / (high - low + eps)
        if mode == "mean_std":
            channels = image.shape[0]
            mean = torch.tensor(self.image_mean, dtype=image.dtype)
            std = torch.tensor(self.image_std, dtype=image.dtype)
            mean, std = (mean.expand(channels), std.expand(channels)) if mean.numel() == std.numel() == 1 \
                else (mean, std)
            if mean.numel() != channels or std.numel() != channels:
                raise ValueError(f"image_mean/image_std have {mean.numel()} values for a {channels}-channel image.")
            return (image * self.rescale_factor - mean[:, None, None]) / std[:, None, None]
        return image

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
        self, outputs: Any, target_sizes: Sequence[tuple[int, int]] | None = None, threshold: float = 0.5
    ) -> list[torch.Tensor]:
        """Class-index maps (H, W) from model outputs, one per image, upsampled to `target_sizes` if given.

        Multi-class logits are resized bilinearly then arg-maxed; a binary model (one logit channel) is resized
        then thresholded at `threshold` on the sigmoid.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        if target_sizes is not None and len(target_sizes) != logits.shape[0]:
            raise ValueError(f"Got {len(target_sizes)} target sizes for a batch of {logits.shape[0]}.")
        results = []
        for i in range(logits.shape[0]):
            item = logits[i : i + 1]
            if target_sizes is not None:
                item = F.interpolate(item.float(), size=tuple(int(s) for s in target_sizes[i]), mode="bilinear",
                                     align_corners=False)
            if item.shape[1] == 1:
                results.append((torch.sigmoid(item[0, 0]) > threshold).long())
            else:
                results.append(item[0].argmax(dim=0))
        return results
