"""The dataset fingerprint nnU-Net v2 plans from: per-case spacing and shapes, and foreground intensities.

Follows nnU-Net's `DatasetFingerprintExtractor` (`nnunetv2/experiment_planning/dataset_fingerprint/`): each case is
cropped to the bounding box of its non-zero voxels (over all channels), and the intensities of its foreground
voxels (label > 0) are pooled over the dataset, per channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import numpy as np

from ..data.volumes import case_arrays

SAMPLES_PER_CASE = 10000
SEED = 1234  # nnU-Net's seed in collect_foreground_intensities
VOLUME_COLUMNS = ("case_id", "image", "label", "spacing", "affine", "channels")
STATISTICS = ("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5")


@dataclass
class Fingerprint:
    """What `plan` needs to know about a dataset, one entry per labelled case (JSON-able via `to_dict`)."""

    case_ids: list[str]
    spacings: list[list[float]]
    shapes: list[list[int]]
    shapes_after_crop: list[list[int]]
    channels: list[str]
    num_classes: int
    intensity_statistics: list[dict[str, float | None]]  # per channel, keys STATISTICS (None: no foreground)
    median_relative_size_after_cropping: float
    relative_sizes_after_cropping: list[float] = field(default_factory=list)

    @property
    def num_cases(self) -> int:
        return len(self.case_ids)

    @property
    def median_spacing(self) -> list[float]:
        return [float(v) for v in np.median(np.asarray(self.spacings, dtype=np.float64), axis=0)]

    @property
    def median_shape(self) -> list[float]:
        return [float(v) for v in np.median(np.asarray(self.shapes, dtype=np.float64), axis=0)]

    @property
    def median_shape_after_crop(self) -> list[float]:
        return [float(v) for v in np.median(np.asarray(self.shapes_after_crop, dtype=np.float64), axis=0)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown fingerprint keys {unknown}; a fingerprint has {sorted(known)}.")
        return cls(**dict(data))

    def summary(self) -> dict[str, Any]:
        """The short version a `Plan` keeps: medians, intensity statistics, the cropping ratio."""
        return {
            "num_cases": self.num_cases,
            "median_spacing": self.median_spacing,
            "median_shape": self.median_shape,
            "median_shape_after_crop": self.median_shape_after_crop,
            "median_relative_size_after_cropping": self.median_relative_size_after_cropping,
            "intensity_statistics": [dict(s) for s in self.intensity_statistics],
        }


def nonzero_bbox(image: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the voxels that are non-zero in any channel of a (C, *spatial) image (nnU-Net's
    `crop_to_nonzero`; its hole filling does not change the box). An all-zero image keeps its full extent."""
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def intensity_statistics(values: np.ndarray) -> dict[str, float | None]:
    """nnU-Net's per-channel statistics of pooled foreground intensities (all None when there are none)."""
    if values.size == 0:
        return dict.fromkeys(STATISTICS)
    values = values.astype(np.float64)
    p00_5, median, p99_5 = np.percentile(values, (0.5, 50.0, 99.5))
    return {"mean": float(values.mean()), "median": float(median), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()),
            "percentile_00_5": float(p00_5), "percentile_99_5": float(p99_5)}


def _sample(values: np.ndarray, samples_per_case: int, rng: np.random.RandomState) -> np.ndarray:
    if values.size <= samples_per_case:
        return values
    return rng.choice(values, samples_per_case, replace=False)


def _num_classes(dataset: datasets.Dataset, max_label: int) -> int:
    inner = getattr(dataset.features.get("classes"), "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return max(len(inner.names), max_label + 1)
    return max_label + 1


def fingerprint(
    dataset: datasets.Dataset | datasets.DatasetDict,
    samples_per_case: int = SAMPLES_PER_CASE,
    seed: int = SEED,
) -> Fingerprint:
    """Fingerprint the labelled cases of a volume dataset (rows as in `hfseg.data.volumes`; a `DatasetDict` gives its
    `train` split). Foreground intensities: all of a case's label > 0 voxels inside its non-zero box, or
    `samples_per_case` of them drawn without replacement with `np.random.RandomState(seed)`.
    """
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise ValueError(f"fingerprint() needs a 'train' split; this DatasetDict has {list(dataset)}.")
        dataset = dataset["train"]
    missing = [c for c in VOLUME_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"fingerprint() needs volume rows ({', '.join(VOLUME_COLUMNS)}); {missing} missing "
                         f"(columns: {dataset.column_names}). Load volumes with a 3D loader (e.g. volumes=True).")
    rng = np.random.RandomState(seed)
    case_ids, spacings, shapes, cropped, relative = [], [], [], [], []
    pooled: list[list[np.ndarray]] = []
    channels: list[str] | None = None
    max_label = 0
    for index in range(len(dataset)):
        case = case_arrays(dataset, index)  # straight from Arrow, in the stored types
        if case.label is None:
            continue
        image, label = case.image, case.label
        if image.shape[1:] != label.shape:
            raise ValueError(f"Case {case.case_id!r}: image {image.shape} is not (C, *label shape) with label "
                             f"{label.shape}; rebuild the dataset with hfseg.data.volumes.volume_row.")
        if channels is None:
            channels = list(case.channels)
            pooled = [[] for _ in range(len(image))]
        if len(image) != len(pooled):
            raise ValueError(f"Case {case.case_id!r} has {len(image)} channels, the first case {len(pooled)}.")
        box = nonzero_bbox(image)
        crop_image, crop_label = image[(slice(None), *box)], label[box]
        foreground = crop_label > 0
        for c in range(len(image)):
            pooled[c].append(_sample(crop_image[c][foreground], samples_per_case, rng))
        case_ids.append(case.case_id)
        spacings.append([float(s) for s in case.spacing])
        shapes.append([int(s) for s in label.shape])
        cropped.append([int(s) for s in crop_label.shape])
        relative.append(float(np.prod(crop_label.shape, dtype=np.float64) / np.prod(label.shape, dtype=np.float64)))
        max_label = max(max_label, int(label.max()) if label.size else 0)
    if not case_ids:
        raise ValueError("fingerprint() found no labelled case (every label is None); plan from the train split.")
    _check_spacings(spacings, case_ids)
    statistics = [intensity_statistics(np.concatenate(values)) for values in pooled]
    return Fingerprint(case_ids, spacings, shapes, cropped, channels or [], _num_classes(dataset, max_label),
                       statistics, float(np.median(relative)), relative)


def as_fingerprint(source: datasets.Dataset | datasets.DatasetDict | Fingerprint | Mapping[str, Any]) -> Fingerprint:
    """A `Fingerprint` from a dataset, a fingerprint, or a fingerprint's `to_dict()`."""
    if isinstance(source, Fingerprint):
        return source
    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        return fingerprint(source)
    if isinstance(source, Mapping):
        return Fingerprint.from_dict(source)
    raise TypeError(f"Expected a datasets.Dataset, a Fingerprint or its dict, got {type(source).__name__}.")


def _check_spacings(spacings: Sequence[Sequence[float]], case_ids: Sequence[str]) -> None:
    for case, spacing in zip(case_ids, spacings):
        if len(spacing) != 3 or not all(np.isfinite(v) and v > 0 for v in spacing):
            raise ValueError(f"Case {case!r} has spacing {spacing}: expected 3 positive mm values, one per array "
                             "axis. Fix the `spacing` column of the dataset.")
