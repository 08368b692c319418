"""Joint image + label preprocessing and augmentation, applied on the fly with `dataset.with_transform(...)`.

```python
processor = UNetImageProcessor(normalization="percentile", num_channels=1)
augment = AugmentConfig.from_dict({"hflip": 0.5, "rot90": 0.5, "scale": [0.5, 1.0], "gamma": [0.7, 1.5]})
train = ds["train"].with_transform(SegmentationTransform(processor, augment, size=(256, 256), train=True))
val = ds["validation"].with_transform(SegmentationTransform(processor, size=(256, 256)))
train[0]  # {"pixel_values": FloatTensor (C, 256, 256), "labels": LongTensor (256, 256)}
```

Pipeline per item: `processor.to_channels_first` (raw values, float32) and the label as int64 (H, W) class indices;
in training, the geometric ops on image and label together, then the intensity ops on the image; then
`processor.normalize_intensity`; then the resize to `size` (image bilinear antialiased, label nearest-exact, as
`UNetImageProcessor.preprocess`). Evaluation (`train=False`) only converts, normalizes and resizes, so it equals
`processor.preprocess(image, label)`.

Geometric ops, in this order, each with the same random draw for image and label: random resized crop (`scale`,
output `size` directly), horizontal flip, vertical flip, rot90, small-angle rotation, elastic deformation. Labels
are resampled nearest-neighbour only, so they stay exact class indices. Pixels that a rotation or an elastic
deformation brings in from outside the image get the per-channel minimum of the image (the background of MRI,
CT and 8-bit photographs alike) and the label `ignore_index` if given, else 0 (background). rot90 draws k in
{1, 2, 3} when the output is square (the image itself, or `size`, since a quarter turn before the final resize to
a square size equals one after it) and only k = 2 otherwise, so the shape never changes.

Intensity ops (image only) work on the image rescaled per channel to [0, 1] by its own min and max, and map the
result back to the raw range, so `brightness=0.1` means the same on 8-bit, 16-bit and float MRI: gamma
(`x ** g`), contrast (around the channel mean, one factor for all channels), brightness (one offset for all
channels, so RGB colour balance is kept) and Gaussian noise (per pixel). Each applies with probability
`intensity_p`, drawn independently per op. A constant channel has no range and is left unchanged.

Why torchvision v2: it is already a dependency; `tv_tensors.Image` and `tv_tensors.Mask` passed together get the
same random parameters and masks are always resampled nearest-neighbour; it works on float tensors of any channel
count (4 MRI modalities, 16-bit data once converted to float). albumentations would add a dependency and needs
numpy HWC arrays (and its own dtype rules for 16-bit and float data).

Randomness: with `seed=None` every draw comes from torch's global RNG, which the recipe seeds with accelerate's
`set_seed`; a `DataLoader` seeds each worker's torch RNG with `base_seed + worker_id` (a new `base_seed`, drawn
from the main process's RNG, each epoch), so runs are reproducible and workers differ. With an int `seed` the
transform owns a `torch.Generator` and runs each call under `torch.random.fork_rng` seeded from it, leaving the
global RNG untouched; inside a `DataLoader` worker the generator is re-seeded from `seed` and the worker's seed,
so workers and epochs still differ.

Exact resume: `item_rng(seed, epoch, index)` runs a block under torch's CPU RNG forked and seeded by
`item_seed(seed, epoch, index)` (a `np.random.SeedSequence` of the three), so an item's draws depend on those three
numbers only (not on the process, the worker, or what was drawn before); the training recipe applies each item's
transform under it (`hfseg.training.sampling`), so a run killed and resumed mid-epoch augments every item as the
uninterrupted run did.

`expand` is the offline counterpart: the cancer study's flip x4 expansion, written as a new `Dataset`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["AugmentConfig", "SegmentationTransform", "ClassificationTransform", "expand", "EXPAND_OPS", "item_seed",
           "item_rng"]

EXPAND_OPS = ("identity", "hflip", "vflip", "hvflip")
_PROBABILITIES = ("hflip", "vflip", "rot90", "elastic_p", "intensity_p")
_PAIRS = ("scale", "gamma")


# -- configuration -------------------------------------------------------------------------------------------------
@dataclass
class AugmentConfig:
    """Training augmentation; every op is off at its default. See the module docstring for the order and meaning.

    Args:
        hflip, vflip (`float`): probability of a horizontal / vertical flip.
        rot90 (`float`): probability of a rotation by a random multiple of 90 degrees (only 180 on non-square output).
        rotate_degrees (`float`): rotation by an angle drawn in [-rotate_degrees, rotate_degrees] (bilinear image).
        scale (`tuple[float, float]`, *optional*): area fraction range of a random resized crop; output = `size`.
        elastic_alpha, elastic_sigma, elastic_p: `v2.ElasticTransform` magnitude (pixels) and smoothness, and the
            probability it applies; alpha and p are both needed (one without the other is an error).
        brightness (`float`): additive offset in [-b, b], as a fraction of the image's intensity range.
        contrast (`float`): factor in [1 - c, 1 + c] around the mean.
        gamma (`tuple[float, float]`, *optional*): exponent range on the [0, 1]-rescaled image.
        noise_std (`float`): Gaussian noise std, as a fraction of the intensity range.
        intensity_p (`float`): probability each intensity op applies, drawn independently per op.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rot90: float = 0.0
    rotate_degrees: float = 0.0
    scale: tuple[float, float] | None = None
    elastic_alpha: float = 0.0
    elastic_sigma: float = 5.0
    elastic_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: tuple[float, float] | None = None
    noise_std: float = 0.0
    intensity_p: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _PAIRS:
                if value is not None:
                    setattr(self, field.name, _pair(field.name, value))
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"AugmentConfig.{field.name} must be a finite number, got {value!r}.")
            else:
                setattr(self, field.name, float(value))
        self._validate()

    def _validate(self) -> None:
        for name in _PROBABILITIES:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"AugmentConfig.{name} is a probability in [0, 1], got {getattr(self, name)}.")
        if not 0 <= self.rotate_degrees <= 180:
            raise ValueError(f"AugmentConfig.rotate_degrees must be in [0, 180], got {self.rotate_degrees}.")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"AugmentConfig.scale must satisfy 0 < low <= high <= 1 (area fractions), got {self.scale}.")
        if self.gamma is not None and not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"AugmentConfig.gamma must satisfy 0 < low <= high, got {self.gamma}.")
        for name in ("elastic_alpha", "brightness", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if self.elastic_sigma <= 0:
            raise ValueError(f"AugmentConfig.elastic_sigma must be > 0, got {self.elastic_sigma}.")
        if not 0 <= self.contrast < 1:
            raise ValueError(f"AugmentConfig.contrast must be in [0, 1) (factor in [1-c, 1+c]), got {self.contrast}.")
        if (self.elastic_alpha > 0) != (self.elastic_p > 0):
            raise ValueError("AugmentConfig: elastic deformation needs both elastic_alpha > 0 (magnitude) and "
                             f"elastic_p > 0 (probability), got alpha={self.elastic_alpha}, p={self.elastic_p}.")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AugmentConfig:
        """A config from a mapping (a YAML section); `None` or `{}` gives the no-op config. Lists become tuples."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"An augment config must be a mapping of options, got {type(d).__name__}.")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"Unknown augment option(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (pairs as lists), so it dumps to YAML/JSON and `from_dict` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def geometric_enabled(self) -> bool:
        return bool(self.hflip or self.vflip or self.rot90 or self.rotate_degrees or self.scale is not None
                    or self.elastic_p)

    @property
    def intensity_enabled(self) -> bool:
        ops = self.brightness or self.contrast or self.gamma is not None or self.noise_std
        return bool(ops and self.intensity_p)

    @property
    def enabled(self) -> bool:
        """Whether any op can change an item."""
        return self.geometric_enabled or self.intensity_enabled


def _pair(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"AugmentConfig.{name} must be a (low, high) pair or None, got {value!r}.")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"AugmentConfig.{name} must hold two finite numbers, got {value!r}.")
    return float(value[0]), float(value[1])


# -- per-item seeding ----------------------------------------------------------------------------------------------
def item_seed(*key: int) -> int:
    """A 63-bit seed that depends only on `key` (e.g. seed, epoch, sample index), via `np.random.SeedSequence`.

    The key's length is the sequence's `spawn_key`: SeedSequence alone pads its entropy with zeros, so `(s, e)` and
    `(s, e, 0)` would give one seed."""
    if not key or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in key):
        raise ValueError(f"item_seed needs non-negative integers (e.g. seed, epoch, index), got {key!r}.")
    sequence = np.random.SeedSequence([int(k) for k in key], spawn_key=(len(key),))
    low, high = sequence.generate_state(2, dtype=np.uint32)
    return (int(high) << 32 | int(low)) & (2**63 - 1)


@contextmanager
def item_rng(*key: int) -> Iterator[None]:
    """Run the block under torch's CPU RNG forked and seeded with `item_seed(*key)`; the global state is restored
    after, so the block's draws are a function of `key` alone and draw nothing from the caller's RNG.

    Only the CPU generator is seeded (the transforms run on CPU tensors): `torch.manual_seed` would also reseed
    the GPU generators, which the fork does not restore, and costs ~40x more per item."""
    seed = item_seed(*key)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


# -- augmentation ops ----------------------------------------------------------------------------------------------
def _chance(p: float) -> bool:
    return p >= 1 or (p > 0 and torch.rand(()).item() < p)


def _uniform(low: float, high: float) -> float:
    return torch.empty(()).uniform_(low, high).item()


def _geometric(
    image: torch.Tensor, label: torch.Tensor | None, cfg: AugmentConfig, out_size: tuple[int, int], label_fill: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The geometric ops on image (C, H, W) float and label (H, W) int64 (or None), with shared random draws."""
    fill = {tv_tensors.Image: image.flatten(1).amin(1).tolist(), tv_tensors.Mask: label_fill}
    ops: list[v2.Transform] = []
    if cfg.scale is not None:
        ops.append(v2.RandomResizedCrop(list(out_size), scale=cfg.scale, antialias=True))
    if cfg.hflip:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        ops.append(v2.RandomVerticalFlip(cfg.vflip))
    sample: tuple[Any, ...] = (tv_tensors.Image(image),) + ((tv_tensors.Mask(label),) if label is not None else ())
    if ops:
        sample = v2.Compose(ops)(sample)  # a tuple in, a tuple out
    if _chance(cfg.rot90):
        square = out_size[0] == out_size[1] or sample[0].shape[-2] == sample[0].shape[-1]
        quarter_turns = (1, 2, 3) if square else (2,)
        k = quarter_turns[int(torch.randint(len(quarter_turns), ()))]
        sample = tuple(tv_tensors.wrap(torch.rot90(x, k, dims=(-2, -1)), like=x) for x in sample)
    ops = []
    if cfg.rotate_degrees:
        ops.append(v2.RandomRotation(cfg.rotate_degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
    if cfg.elastic_p:
        _check_elastic_size(cfg.elastic_sigma, sample[0].shape[-2:])
        elastic = v2.ElasticTransform(cfg.elastic_alpha, cfg.elastic_sigma, fill=fill)
        ops.append(v2.RandomApply([elastic], p=cfg.elastic_p))
    if ops:
        sample = v2.Compose(ops)(sample)  # a tuple in, a tuple out
    image = sample[0].as_subclass(torch.Tensor)
    return image, (sample[1].as_subclass(torch.Tensor) if label is not None else None)


def _check_elastic_size(sigma: float, size: Sequence[int]) -> None:
    """torchvision blurs the displacement with a kernel of int(8 sigma + 1) pixels, reflect-padded by half of it."""
    half = int(8 * sigma + 1) // 2
    if half >= min(size):
        raise ValueError(f"elastic_sigma={sigma} is too large for an image of size {tuple(size)}: torchvision needs "
                         f"4 * sigma < {min(size)} (the smaller side); lower elastic_sigma.")


def _intensity(image: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """The intensity ops on the per-channel [0, 1]-rescaled image, mapped back to the raw range."""
    p = cfg.intensity_p
    draws = {
        "gamma": cfg.gamma is not None and _chance(p),
        "contrast": bool(cfg.contrast) and _chance(p),
        "brightness": bool(cfg.brightness) and _chance(p),
        "noise": bool(cfg.noise_std) and _chance(p),
    }
    if not any(draws.values()):
        return image
    low = image.amin(dim=(1, 2), keepdim=True)
    span = image.amax(dim=(1, 2), keepdim=True) - low
    x = (image - low) / span.clamp_min(torch.finfo(image.dtype).tiny)
    if draws["gamma"]:
        x = x.clamp(0, 1) ** _uniform(*cfg.gamma)
    if draws["contrast"]:
        mean = x.mean(dim=(1, 2), keepdim=True)
        x = (x - mean) * _uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    if draws["brightness"]:
        x = x + _uniform(-cfg.brightness, cfg.brightness)
    if draws["noise"]:
        x = x + torch.randn_like(x) * cfg.noise_std
    return low + x * span


def _resize(
    image: torch.Tensor, label: torch.Tensor | None, size: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image bilinear antialiased and label nearest-exact, as `UNetImageProcessor.preprocess`."""
    if size is None or tuple(image.shape[-2:]) == size:
        return image, label
    image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if label is not None:
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return image, label


# -- conversion ----------------------------------------------------------------------------------------------------
def _array(value: Any) -> Any:
    """Nested lists (how `datasets` hands out Array2D/Array3D in python format) and PIL images become arrays."""
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float32)
    return np.array(value) if isinstance(value, Image.Image) else value  # a writable copy, for torch.from_numpy


def _label_tensor(label: Any, image_size: tuple[int, int]) -> torch.Tensor:
    """An (H, W) int64 class-index tensor from a PIL image, array, nested list or tensor of the image's size."""
    if isinstance(label, Image.Image):
        array = np.asarray(label)
    elif isinstance(label, torch.Tensor):
        array = label.detach().cpu().numpy()
    else:
        array = np.asarray(label)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2:
        raise ValueError(f"A label must be an (H, W) map of class indices, got shape {array.shape} (an RGB mask "
                         "needs mapping to class indices first).")
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise ValueError("A label must hold integer class indices, got fractional values.")
    if tuple(array.shape) != tuple(image_size):
        raise ValueError(f"Label of size {tuple(array.shape)} (H, W) does not match its image of size "
                         f"{tuple(image_size)}.")
    return torch.from_numpy(array.astype(np.int64))


def _size(size: Sequence[int] | int | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"size must be (height, width) positive integers, got {size!r}.")
    return int(size[0]), int(size[1])


class _Transform:
    """Shared conversion, augmentation and seeding for the segmentation and classification transforms."""

    def __init__(
        self,
        processor: Any,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        size: tuple[int, int] | None = None,
        train: bool = False,
        seed: int | None = None,
        input_data_format: str | None = "channels_last",
    ) -> None:
        self.processor = processor
        self.augment = augment if isinstance(augment, AugmentConfig) else AugmentConfig.from_dict(augment)
        if size is None and getattr(processor, "do_resize", False):
            size = (processor.size["height"], processor.size["width"])
        self.size = _size(size)
        self.train = train
        self.seed = seed
        self.input_data_format = input_data_format
        self._generator: torch.Generator | None = None
        self._generator_key: tuple[int, int | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The generator is rebuilt where the transform lands (a DataLoader worker), from `seed`.
        return {**self.__dict__, "_generator": None, "_generator_key": None}

    @property
    def augmenting(self) -> bool:
        return self.train and self.augment.enabled

    def _image(self, image: Any) -> torch.Tensor:
        array = _array(image)
        fmt = self.input_data_format if isinstance(array, np.ndarray) and array.ndim == 3 else None
        return self.processor.to_channels_first(array, fmt)

    def _process(self, image: torch.Tensor, label: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.augmenting:
            out_size = self.size or tuple(image.shape[-2:])
            label_fill = self.ignore_index if getattr(self, "ignore_index", None) is not None else 0
            if self.augment.geometric_enabled:
                image, label = _geometric(image, label, self.augment, out_size, label_fill)
            image = _intensity(image, self.augment)
        image = self.processor.normalize_intensity(image)
        return _resize(image, label, self.size)

    @contextmanager
    def _rng(self) -> Iterator[None]:
        """Global RNG when `seed` is None; otherwise a fork of it seeded from this transform's generator."""
        if self.seed is None or not self.augmenting:
            yield
            return
        seed = int(torch.randint(2**62, (), generator=self._seeded_generator()))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    def _seeded_generator(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        key = (os.getpid(), info.seed if info is not None else None)
        if self._generator is None or self._generator_key != key:
            seed = self.seed if info is None else (self.seed * 1_000_003 + info.seed) % 2**63
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_key = key
        return self._generator


class SegmentationTransform(_Transform):
    """For `with_transform`: `{"image": [...], "label": [...], ...}` -> `{"pixel_values": [...], "labels": [...]}`.

    `pixel_values` are (C, H, W) float32, `labels` (H, W) int64 class indices; other columns are dropped, and a
    batch without `label` (unlabelled test data) gives `pixel_values` only.

    Args:
        processor (`UNetImageProcessor`): conversion (`to_channels_first`, its `num_channels` check) and
            `normalize_intensity`; its `size` is used when it has `do_resize` and `size` is not given.
        augment (`AugmentConfig` or mapping, *optional*): training augmentation; used only with `train=True`.
        size (`tuple[int, int]`, *optional*): output (height, width); also the random resized crop's output.
        train (`bool`): augment (True) or only convert, normalize and resize (False, deterministic).
        ignore_index (`int`, *optional*): label value for pixels brought in by rotation/elastic (default 0).
        seed (`int`, *optional*): own generator instead of torch's global RNG (see the module docstring).
        input_data_format (`str`, *optional*, defaults to `"channels_last"`): axis order of 3-D arrays, the hfseg
            convention for `Array3D` images (PIL images are always channels last); `None` lets the processor infer.
    """

    def __init__(
        self,
        processor: Any,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        size: tuple[int, int] | None = None,
        train: bool = False,
        ignore_index: int | None = None,
        seed: int | None = None,
        input_data_format: str | None = "channels_last",
    ) -> None:
        super().__init__(processor, augment, size, train, seed, input_data_format)
        self.ignore_index = ignore_index

    def __call__(self, batch: dict[str, list]) -> dict[str, list[torch.Tensor]]:
        labels = batch.get("label")
        pixel_values, out_labels = [], []
        with self._rng():
            for i, raw in enumerate(batch["image"]):
                image = self._image(raw)
                label = _label_tensor(labels[i], tuple(image.shape[-2:])) if labels is not None else None
                image, label = self._process(image, label)
                pixel_values.append(image)
                out_labels.append(label)
        return {"pixel_values": pixel_values, "labels": out_labels} if labels is not None \
            else {"pixel_values": pixel_values}


class ClassificationTransform(_Transform):
    """For `with_transform` on classification data: `{"image", "label": int}` -> `{"pixel_values", "labels"}`.

    The same pipeline as `SegmentationTransform` with the ops applied to the image alone; `labels` are int64 scalar
    tensors. Images of varying sizes need `size` (or `scale`) to be batched. A PIL image whose mode disagrees with
    the processor's `num_channels` (1 or 3) is converted first (RGB to L, grey to RGB, as `hfseg.evaluation`'s
    inference does), so a dataset mixing grey and RGB files (brain-tumor-mri) gives one channel count.

    Args:
        processor, augment, size, train, seed, input_data_format: as for `SegmentationTransform`.
        label_column (`str`, *optional*, defaults to `"label"`): the column holding each image's class index.
        emphasis (`Callable[[np.ndarray], np.ndarray]`, *optional*): preprocessing of every image, in training and
            evaluation alike, before anything else: it takes the decoded image as an array, (H, W) or (H, W, C),
            and returns one in the same layout (any size and dtype), e.g. the segment-then-classify emphasis of a
            segmented region (`hfseg.training.data.build_emphasis`).
    """

    def __init__(
        self,
        processor: Any,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        size: tuple[int, int] | None = None,
        train: bool = False,
        seed: int | None = None,
        input_data_format: str | None = "channels_last",
        label_column: str = "label",
        emphasis: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__(processor, augment, size, train, seed, input_data_format)
        self.label_column = label_column
        self.emphasis = emphasis

    def _prepare(self, raw: Any) -> Any:
        image = match_mode(raw, getattr(self.processor, "num_channels", None))
        if self.emphasis is None:
            return image
        return np.asarray(self.emphasis(np.asarray(image) if isinstance(image, Image.Image) else _array(image)))

    def __call__(self, batch: dict[str, list]) -> dict[str, list[torch.Tensor]]:
        labels = batch.get(self.label_column)
        with self._rng():
            pixel_values = [self._process(self._image(self._prepare(raw)), None)[0] for raw in batch["image"]]
        if labels is None:
            return {"pixel_values": pixel_values}
        return {"pixel_values": pixel_values, "labels": [torch.tensor(int(y), dtype=torch.long) for y in labels]}


def match_mode(image: Any, channels: int | None) -> Any:
    """A PIL image converted to RGB or grey when `channels` is 3 or 1 and its mode has the other count."""
    if isinstance(image, Image.Image):
        if channels == 3 and image.mode != "RGB":
            return image.convert("RGB")
        if channels == 1 and image.mode not in ("L", "I", "I;16", "F"):
            return image.convert("L")
    return image


# -- offline expansion ---------------------------------------------------------------------------------------------
_PIL_OPS = {"hflip": Image.Transpose.FLIP_LEFT_RIGHT, "vflip": Image.Transpose.FLIP_TOP_BOTTOM,
            "hvflip": Image.Transpose.ROTATE_180}
_ARRAY_AXES = {"hflip": (1,), "vflip": (0,), "hvflip": (0, 1)}


def _flip(value: Any, op: str, dtype: str | None) -> Any:
    if value is None or (op == "identity" and isinstance(value, Image.Image)):
        return value
    if isinstance(value, Image.Image):
        return value.transpose(_PIL_OPS[op])
    array = np.asarray(value, dtype=dtype)  # every row an array: pyarrow rejects lists mixed with arrays
    return array if op == "identity" else np.ascontiguousarray(np.flip(array, _ARRAY_AXES[op]))


def _expand_batch(
    batch: dict[str, list], ops: tuple[str, ...], spatial: dict[str, str | None], column: str | None
) -> dict[str, list]:
    out: dict[str, list] = {key: [] for key in batch}
    if column is not None:
        out[column] = []
    for i in range(len(next(iter(batch.values())))):
        for op in ops:
            for key, values in batch.items():
                out[key].append(_flip(values[i], op, spatial[key]) if key in spatial else values[i])
            if column is not None:
                out[column].append(op)
    return out


def expand(
    dataset: datasets.Dataset,
    ops: Sequence[str] = EXPAND_OPS,
    column: str | None = "augmentation",
    num_proc: int | None = None,
) -> datasets.Dataset:
    """The cancer study's offline flip expansion: each row followed by its flipped copies, as a new `Dataset`.

    Every spatial column (an `Image`, `Array2D` or `Array3D` feature: `image`, `label` and any other per-pixel
    map; arrays are (H, W[, C]), the hfseg convention) is flipped exactly the same way (PIL transpose or
    `np.flip`, so 8/16-bit and float values are untouched); `case_id` and every other column are copied, so a
    grouped split of the result stays leak-free, and `classes` is kept (a flip does not change the classes
    present). `ops` are taken from `EXPAND_OPS`, in the order given, row by row. The new string column `column`
    (default `"augmentation"`; `None` for none) names the op of each row. Features of the existing columns are
    kept; the result is cached by `datasets` like any `map` of a dataset read from disk.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expand takes one split (a datasets.Dataset, e.g. ds['train']), got {type(dataset).__name__}.")
    ops = tuple(ops)
    bad = [op for op in ops if op not in EXPAND_OPS]
    if not ops or bad or len(set(ops)) != len(ops):
        raise ValueError(f"ops must be distinct values of {', '.join(EXPAND_OPS)}; got {list(ops)}.")
    if column is not None and column in dataset.column_names:
        raise ValueError(f"The dataset already has a column {column!r}; pass another column name or column=None.")
    spatial = {name: getattr(feature, "dtype", None) for name, feature in dataset.features.items()
               if isinstance(feature, (datasets.Image, datasets.Array2D, datasets.Array3D))}
    spatial = {name: (None if isinstance(dataset.features[name], datasets.Image) else dtype)
               for name, dtype in spatial.items()}
    features = dataset.features.copy()
    if column is not None:
        features[column] = datasets.Value("string")
    return dataset.with_format(None).map(
        _expand_batch, batched=True, fn_kwargs={"ops": ops, "spatial": spatial, "column": column},
        remove_columns=dataset.column_names, features=features, num_proc=num_proc,
        desc=f"Expanding x{len(ops)} ({', '.join(ops)})",
    )
