"""On-the-fly augmentation of 3D patches (and the 2D slices of nnU-Net's 2d configuration), nnU-Net style.

```python
augment = build_volume_augmentation(VolumeAugmentConfig(), patch_size=(64, 64, 64), mirror_axes=(0, 1, 2))
augment.set_random_state(seed=1234)  # every draw below comes from this seed
out = augment({"image": image, "label": label, "patch_start": (10, 20, 5)})
out["image"]  # float32 tensor (C, 64, 64, 64); out["label"]: int64 tensor (64, 64, 64)
```

The input is the whole case (`image` (C, *S), `label` (*S), or one slice of each in 2D) and the lower corner of
the patch in its grid (`patch_start`; the patch may reach outside the case, where it is image 0 and label 0, i.e.
background). The pipeline is nnU-Net v2's training transforms, in its order and with its ranges
(`VolumeAugmentConfig()` holds them):

1. Spatial (`RandSpatialPatchd`, image bilinear, label nearest, one draw for both): rotation (p 0.2; each axis
   uniform in +-30 degrees in 3D, +-180 in 2D) and scaling (p 0.2; one factor in 0.7-1.4 for all axes, > 1 zooms
   out), drawn independently, about the patch centre; elastic deformation (off by default, as in nnU-Net v2).
   When none applies (64% of the patches at the defaults) the patch is an exact crop, with no resampling.
   Otherwise the stage crops the region of the case the drawn transform reads (the patch's corners mapped through
   it, plus one voxel), so rotated and zoomed-out patches show the case, not empty corners, and resamples it with
   MONAI's `Affined`; then, when elastic is drawn, `Rand3DElasticd` / `Rand2DElasticd` on a patch grown by the
   deformation's reach.
2. Intensity, image only: Gaussian noise (`RandGaussianNoised`, p 0.1), Gaussian blur (`RandGaussianSmoothd`,
   p 0.2, sigma 0.5-1), multiplicative brightness per channel (`RandScaleIntensityd`, p 0.15, 0.75-1.25),
   contrast per channel about its mean, clipped to its range (`RandChannelContrastd`, p 0.15, 0.75-1.25: MONAI's
   `ScaleIntensityFixedMean` with `preserve_range`, nnU-Net's ContrastAugmentation), simulated low resolution
   (`RandSimulateLowResolutiond`, p 0.25, zoom 0.5-1, nearest down, linear up), gamma on the inverted image
   (`RandAdjustContrastd(invert_image=True, retain_stats=True)`, p 0.1), then gamma (p 0.3), both 0.7-1.5 and
   keeping the mean and std.
3. Mirroring (`RandFlipd`, image and label), p 0.5 per axis in `mirror_axes`.

Steps 2 and 3 run on the patch plus a border of real context (4 sigma of the largest blur, cut off at the end),
since MONAI's Gaussian filter pads with zeros and would otherwise darken the patch's faces.

Why MONAI: it is maintained and tested, its transforms are channel-first and work in 2D and 3D alike, its
dictionary transforms give image and label one spatial draw, and each random transform draws only from its own
`numpy.random.RandomState`, set with `set_random_state(seed=...)` (a `Compose` seeds its members from its seed),
never from numpy's or torch's global generators: a patch is a pure function of the seed, so DataLoader workers
and resumed runs repeat it (`hfseg.data.patches.PatchDataset` seeds each item). Call `set_random_state` before
use: until then MONAI's transforms share one default state. Two stages are thin wrappers of MONAI's
deterministic transforms with their own draws: `RandSpatialPatchd`, because `RandAffined` has one probability for
rotation and scaling together, draws the scale per axis, and always resamples a fixed input; and
`RandChannelContrastd`, because `RandScaleIntensityFixedMeand` draws a factor per channel only from MONAI 1.6,
which needs torch 2.8.

Differences from nnU-Net: the noise std is uniform in [0, sqrt(noise_variance)] (nnU-Net draws the variance);
blur, low resolution and gamma take one draw for all channels, and low resolution one zoom for all axes (nnU-Net
draws per channel, and per axis); nnU-Net's "dummy 2D" augmentation of very anisotropic 3D patches is not switched
on by itself (`rotation_degrees=(180, 0, 0)` rotates in the plane of axes 1 and 2 only). Cost, on one CPU core: about
27 ms per 64^3 patch of one channel at the defaults (73 ms for four channels; 1 ms for a plain crop). MONAI's 3D
elastic deformation adds about 0.8 s per 64^3 patch (its Gaussian filter, sigma 9-13, on a full-size displacement
field), so leave `elastic_p` at 0 in 3D unless the data loader has cores to spare.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Affined,
    Compose,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
    RandScaleIntensityd,
    RandSimulateLowResolutiond,
    ScaleIntensityFixedMean,
)
from monai.transforms.utils import create_rotate, create_scale
from monai.utils import MAX_SEED

_PAIRS = ("scale_range", "elastic_sigma", "elastic_magnitude", "elastic_magnitude_2d", "blur_sigma",
          "brightness_range", "contrast_range", "lowres_zoom", "gamma_range")


@dataclass(frozen=True)
class VolumeAugmentConfig:
    """Patch augmentation; the defaults are nnU-Net v2's. `VolumeAugmentConfig.none()` switches every op off.

    Args:
        rotation_p (`float`): probability of a rotation about the patch centre.
        rotation_degrees (`float` or `tuple[float, ...]`, *optional*): each angle is uniform in +-this; one value
            for every axis or one per axis (3 in 3D, 1 in 2D). None: nnU-Net's, 30 in 3D and 180 in 2D.
        scale_p, scale_range: probability and range of one scale factor for all axes (> 1 zooms out).
        elastic_p (`float`): probability of an elastic deformation (0: nnU-Net v2 has it off).
        elastic_sigma, elastic_magnitude: 3D (`Rand3DElasticd`): a displacement field of uniform(-1, 1) noise
            smoothed by a Gaussian of `elastic_sigma` voxels, times `elastic_magnitude` (nnU-Net v1's sigma and
            alpha ranges).
        elastic_spacing_2d, elastic_magnitude_2d: 2D (`Rand2DElasticd`): control points every `spacing` pixels,
            displaced by a normal offset of std `magnitude` pixels.
        noise_p, noise_variance: probability of Gaussian noise and its largest variance.
        blur_p, blur_sigma: probability and sigma range (voxels) of a Gaussian blur.
        brightness_p, brightness_range: probability and range of a multiplicative brightness factor per channel.
        contrast_p, contrast_range: probability and range of a contrast factor per channel, about the channel
            mean, clipped to the channel's range.
        lowres_p, lowres_zoom: probability and zoom range of a down (nearest) and up (linear) resampling.
        gamma_p, gamma_inverted_p, gamma_range: probabilities of a gamma on the image and on the inverted image,
            and the gamma range; both keep the image's mean and std.
        mirror_p (`float`): probability of a flip along each of the mirror axes.
    """

    rotation_p: float = 0.2
    rotation_degrees: float | tuple[float, ...] | None = None
    scale_p: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    elastic_p: float = 0.0
    elastic_sigma: tuple[float, float] = (9.0, 13.0)
    elastic_magnitude: tuple[float, float] = (0.0, 900.0)
    elastic_spacing_2d: float = 24.0
    elastic_magnitude_2d: tuple[float, float] = (0.0, 3.5)
    noise_p: float = 0.1
    noise_variance: float = 0.1
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    brightness_p: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    contrast_p: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    lowres_p: float = 0.25
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    gamma_p: float = 0.3
    gamma_inverted_p: float = 0.1
    gamma_range: tuple[float, float] = (0.7, 1.5)
    mirror_p: float = 0.5

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_p") and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"Volume augmentation option {field.name!r} is a probability in [0, 1], "
                                 f"got {value!r}.")
        for name in _PAIRS:
            value = getattr(self, name)
            if not (isinstance(value, (tuple, list)) and len(value) == 2 and value[0] <= value[1]):
                raise ValueError(f"Volume augmentation option {name!r} is a [low, high] pair with low <= high, "
                                 f"got {value!r}.")
        positive = {"scale_range": 0, "blur_sigma": 0, "gamma_range": 0, "lowres_zoom": 0, "elastic_sigma": 0}
        for name, bound in positive.items():
            if getattr(self, name)[0] <= bound:
                raise ValueError(f"Volume augmentation option {name!r} must be > 0, got {getattr(self, name)!r}.")
        if self.lowres_zoom[1] > 1:
            raise ValueError(f"'lowres_zoom' is a downsampling factor in (0, 1], got {self.lowres_zoom!r}.")
        if self.brightness_range[0] <= 0 or self.contrast_range[0] <= 0:
            raise ValueError("'brightness_range' and 'contrast_range' are factors > 0, got "
                             f"{self.brightness_range!r} and {self.contrast_range!r}.")
        if self.noise_variance < 0 or self.elastic_spacing_2d <= 0 or min(self.elastic_magnitude) < 0 \
                or min(self.elastic_magnitude_2d) < 0:
            raise ValueError("'noise_variance' and the elastic magnitudes must be >= 0 and 'elastic_spacing_2d' > 0.")
        degrees = self.rotation_degrees
        if degrees is not None and not all(isinstance(d, (int, float)) and d >= 0
                                           for d in (degrees if isinstance(degrees, tuple) else (degrees,))):
            raise ValueError(f"'rotation_degrees' is an angle >= 0 or one per axis, got {degrees!r}.")

    @classmethod
    def none(cls) -> VolumeAugmentConfig:
        """Every op off: the augmentation is then an exact crop."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.endswith("_p")})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> VolumeAugmentConfig:
        """A config from a mapping (a YAML section) over the defaults; `None` or `{}` gives the defaults."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"A volume augmentation config must be a mapping of options, got {type(d).__name__}.")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"Unknown volume augmentation option(s) {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(valid)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (pairs as lists), so it dumps to YAML/JSON and `from_dict` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def crop_padded(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float = 0,
                copy: bool = True) -> np.ndarray:
    """`array[..., start:start + size]` over its last `len(size)` axes, `fill` where the window leaves the array.
    With `copy=False` a window inside the array is a view of it."""
    start, size = np.asarray(start, dtype=np.int64), np.asarray(size, dtype=np.int64)
    spatial = np.asarray(array.shape[array.ndim - len(size):])
    lo, hi = np.maximum(start, 0), np.minimum(start + size, spatial)
    lead = (slice(None),) * (array.ndim - len(size))
    if np.all(lo == start) and np.all(hi == start + size):  # inside: no fill
        window = array[lead + tuple(slice(a, b) for a, b in zip(lo, hi))]
        return np.array(window) if copy else window
    out = np.full(array.shape[:array.ndim - len(size)] + tuple(size), fill, dtype=array.dtype)
    if np.all(hi > lo):
        src = lead + tuple(slice(a, b) for a, b in zip(lo, hi))
        dst = lead + tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        out[dst] = array[src]
    return out


class RandSpatialPatchd(Randomizable):
    """Cut the patch at `data["patch_start"]` out of `data["image"]` (C, *S) and `data["label"]` (*S), rotated,
    scaled and elastically deformed about its centre with one draw for both (see the module docstring).

    Returns `{"image": float32 tensor (C, *patch), "label": int64 tensor (1, *patch)}`. After a call, `matrix` is
    the drawn (d+1, d+1) matrix mapping patch coordinates to case coordinates, both about the patch centre.
    """

    def __init__(self, patch_size: Sequence[int], rotation_p: float, rotation_radians: Sequence[float],
                 scale_p: float, scale_range: tuple[float, float], elastic_p: float = 0.0,
                 elastic: Randomizable | None = None, elastic_margin: int = 0) -> None:
        self.patch_size = np.asarray(patch_size, dtype=np.int64)
        self.spatial_dims = len(patch_size)
        self.rotation_p, self.rotation_radians = rotation_p, tuple(rotation_radians)
        self.scale_p, self.scale_range = scale_p, scale_range
        self.elastic_p, self.elastic, self.elastic_margin = elastic_p, elastic, elastic_margin
        self.matrix = np.eye(self.spatial_dims + 1)
        self._resample = self._deform = False

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> RandSpatialPatchd:
        super().set_random_state(seed, state)
        if self.elastic is not None:
            self.elastic.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def randomize(self, data: Any = None) -> None:
        # Every parameter is drawn each time, so the stream does not depend on which ops apply.
        rotate = self.R.uniform() < self.rotation_p
        angles = [self.R.uniform(-r, r) for r in self.rotation_radians]
        scale = self.R.uniform() < self.scale_p
        factor = self.R.uniform(*self.scale_range)
        self._deform = bool(self.R.uniform() < self.elastic_p) and self.elastic is not None
        d = self.spatial_dims
        rotation = create_rotate(d, angles if d == 3 else angles[0]) if rotate else np.eye(d + 1)
        scaling = create_scale(d, [factor] * d) if scale else np.eye(d + 1)
        self.matrix = np.asarray(rotation @ scaling, dtype=np.float64)
        self._resample = bool(rotate or scale)

    def __call__(self, data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        self.randomize()
        image, label = np.asarray(data["image"]), np.asarray(data["label"])[None]
        start = np.asarray(data["patch_start"], dtype=np.int64)
        if len(start) != self.spatial_dims or image.ndim != self.spatial_dims + 1:
            raise ValueError(f"A {self.spatial_dims}D patch needs a (C, *spatial) image and a {self.spatial_dims}-int "
                             f"patch_start, got image shape {image.shape} and patch_start {tuple(start)}.")
        p = self.patch_size
        margin = self.elastic_margin if self._deform else 0
        out_size = p + 2 * margin
        if not (self._resample or self._deform):  # an exact crop
            return {"image": torch.from_numpy(crop_padded(image, start, p, copy=False).astype(np.float32)),
                    "label": torch.from_numpy(crop_padded(label, start, p, copy=False).astype(np.int64))}
        # The region the transform reads: the output grid's corners mapped through the linear part, whose largest
        # |coordinate| per axis is |A| @ half-extent, plus one voxel for the linear interpolation.
        reach = np.abs(self.matrix[:-1, :-1]) @ ((out_size - 1) / 2) + (1 if self._resample else 0)
        grow = np.maximum(0, np.ceil(reach - (p - 1) / 2)).astype(np.int64)
        region = {"image": torch.from_numpy(crop_padded(image, start - grow, p + 2 * grow, copy=False)
                                            .astype(np.float32)),
                  "label": torch.from_numpy(crop_padded(label, start - grow, p + 2 * grow, copy=False)
                                            .astype(np.float32))}
        if self._resample:
            region = Affined(keys=("image", "label"), affine=self.matrix, spatial_size=tuple(int(s) for s in out_size),
                             mode=("bilinear", "nearest"), padding_mode="zeros")(region)
        if self._deform:
            region = self.elastic(region)
        return {"image": _plain(region["image"]).float(), "label": _plain(region["label"]).round().long()}


class RandChannelContrastd(Randomizable):
    """nnU-Net's contrast augmentation on `data["image"]`: with probability `prob`, each channel becomes
    `(x - mean) * f + mean` clipped to the channel's [min, max], one `f` per channel uniform in `factors`, through
    MONAI's `ScaleIntensityFixedMean` (MONAI's `RandScaleIntensityFixedMeand` draws a factor per channel only
    from MONAI 1.6 on, which needs torch 2.8)."""

    def __init__(self, prob: float, factors: tuple[float, float]) -> None:
        self.prob, self.factors = prob, factors
        self._apply, self._factors = False, np.ones(0)

    def randomize(self, data: Any = None) -> None:
        self._apply = bool(self.R.uniform() < self.prob)
        self._factors = self.R.uniform(*self.factors, size=int(data))

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        d = dict(data)
        image = _plain(d["image"])
        self.randomize(image.shape[0])
        if self._apply:
            d["image"] = torch.cat([
                _plain(ScaleIntensityFixedMean(factor=f - 1.0, preserve_range=True, fixed_mean=True)(channel[None]))
                for channel, f in zip(image, self._factors)])
        return d


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A MONAI MetaTensor as a plain tensor (no metadata travels to the collate function)."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)


class VolumeAugmentation(Randomizable):
    """The pipeline `build_volume_augmentation` returns: `augment(data) -> {"image", "label"}` (see the module
    docstring), seeded through `set_random_state(seed=...)`.

    The spatial stage cuts the patch with a border of `halo` voxels of real context on every side, the other ops
    run on that, and the border is cut off at the end: MONAI's Gaussian blur pads with zeros, which would
    otherwise darken the patch's faces.
    """

    def __init__(self, spatial: RandSpatialPatchd, others: Compose, patch_size: Sequence[int],
                 mirror_axes: Sequence[int], halo: int = 0) -> None:
        self.spatial, self.others = spatial, others
        self.patch_size = tuple(int(s) for s in patch_size)
        self.mirror_axes = tuple(mirror_axes)
        self.halo = int(halo)

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> VolumeAugmentation:
        super().set_random_state(seed, state)
        self.spatial.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        self.others.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def randomize(self, data: Any = None) -> None:
        """Each stage draws its own parameters when called."""

    def __call__(self, data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        start = np.asarray(data["patch_start"], dtype=np.int64) - self.halo
        out = self.others(self.spatial({**data, "patch_start": start}))
        inner = (slice(None),) + tuple(slice(self.halo, self.halo + s) for s in self.patch_size)
        return {"image": _plain(out["image"])[inner].float().contiguous(),
                "label": _plain(out["label"])[inner][0].long().contiguous()}


def build_volume_augmentation(config: VolumeAugmentConfig, patch_size: Sequence[int],
                              mirror_axes: Sequence[int] = ()) -> VolumeAugmentation:
    """The augmentation of `config` for patches of `patch_size` (2 or 3 ints), flipping along `mirror_axes`
    (indices into the patch axes, the plan's `mirror_axes`)."""
    patch_size = tuple(int(s) for s in patch_size)
    dims = len(patch_size)
    if dims not in (2, 3) or min(patch_size) < 1:
        raise ValueError(f"patch_size is 2 or 3 positive ints, got {patch_size!r}.")
    mirror_axes = tuple(int(a) for a in mirror_axes)
    if any(a < 0 or a >= dims for a in mirror_axes) or len(set(mirror_axes)) != len(mirror_axes):
        raise ValueError(f"mirror_axes are distinct indices into the {dims} patch axes, got {mirror_axes!r}.")
    # MONAI's GaussianFilter truncates at 4 sigma: that many voxels of context keep the blur off the zero padding.
    halo = int(math.ceil(4.0 * config.blur_sigma[1])) if config.blur_p > 0 else 0
    grown = tuple(s + 2 * halo for s in patch_size)
    spatial = RandSpatialPatchd(grown, config.rotation_p, _rotation_radians(config, dims), config.scale_p,
                                config.scale_range, config.elastic_p, *_elastic(config, grown))
    linear = "trilinear" if dims == 3 else "bilinear"
    others = [
        RandGaussianNoised("image", prob=config.noise_p, std=math.sqrt(config.noise_variance), sample_std=True),
        RandGaussianSmoothd("image", sigma_x=config.blur_sigma, sigma_y=config.blur_sigma, sigma_z=config.blur_sigma,
                            prob=config.blur_p),
        RandScaleIntensityd("image", factors=_around_one(config.brightness_range), prob=config.brightness_p,
                            channel_wise=True),
        RandChannelContrastd(prob=config.contrast_p, factors=config.contrast_range),
        RandSimulateLowResolutiond("image", prob=config.lowres_p, downsample_mode="nearest", upsample_mode=linear,
                                   zoom_range=config.lowres_zoom),
        RandAdjustContrastd("image", prob=config.gamma_inverted_p, gamma=config.gamma_range, invert_image=True,
                            retain_stats=True),
        RandAdjustContrastd("image", prob=config.gamma_p, gamma=config.gamma_range, invert_image=False,
                            retain_stats=True),
        *(RandFlipd(("image", "label"), prob=config.mirror_p, spatial_axis=axis) for axis in mirror_axes),
    ]
    return VolumeAugmentation(spatial, Compose(others), patch_size, mirror_axes, halo)


def _around_one(factors: tuple[float, float]) -> tuple[float, float]:
    """MONAI's intensity factors multiply by (1 + f)."""
    return (factors[0] - 1.0, factors[1] - 1.0)


def _rotation_radians(config: VolumeAugmentConfig, dims: int) -> tuple[float, ...]:
    axes = 3 if dims == 3 else 1
    degrees = config.rotation_degrees
    if degrees is None:
        degrees = 30.0 if dims == 3 else 180.0
    degrees = tuple(degrees) if isinstance(degrees, (tuple, list)) else (degrees,) * axes
    if len(degrees) != axes:
        raise ValueError(f"rotation_degrees has one angle or one per rotation axis ({axes} for {dims}D patches), "
                         f"got {config.rotation_degrees!r}.")
    return tuple(math.radians(d) for d in degrees)


def _elastic(config: VolumeAugmentConfig, patch_size: tuple[int, ...]) -> tuple[Randomizable | None, int]:
    """The MONAI elastic transform at `patch_size` and the margin (voxels) it reads beyond the patch: three times
    the largest displacement std, so the deformation pulls in the case, not padding."""
    if config.elastic_p == 0:
        return None, 0
    keys, modes = ("image", "label"), ("bilinear", "nearest")
    if len(patch_size) == 3:
        # uniform(-1, 1) noise (std 1/sqrt(3)) smoothed by a normalised Gaussian keeps std (2 sqrt(pi) sigma)^(-3/2).
        std = config.elastic_magnitude[1] / math.sqrt(3) * (2 * math.sqrt(math.pi) * config.elastic_sigma[0]) ** -1.5
        elastic = Rand3DElasticd(keys, sigma_range=config.elastic_sigma, magnitude_range=config.elastic_magnitude,
                                 spatial_size=patch_size, prob=1.0, mode=modes, padding_mode="zeros")
    else:
        std = config.elastic_magnitude_2d[1]
        elastic = Rand2DElasticd(keys, spacing=config.elastic_spacing_2d, magnitude_range=config.elastic_magnitude_2d,
                                 spatial_size=patch_size, prob=1.0, mode=modes, padding_mode="zeros")
    return elastic, int(math.ceil(3 * std)) + 1
