"""What every 3D loader shares: the volume row features, row checks, nnU-Net's case folds, and the cached build.

One row per case (`volume_features`): `case_id`, `image` float32 (C, X, Y, Z) channels first, `label` uint8
(X, Y, Z) class indices (None for an unlabelled test case), `spacing` (mm per array axis), `affine` (4x4 voxel ->
RAS+ world, mm), `channels` (their names) and `classes` (the classes present, a list of `ClassLabel`, so
`hfseg.data.id2label(dataset)` works). Arrays keep their file's storage order: nothing is reoriented.

Storage: nested `datasets.List` of numbers, not `datasets.Nifti` (in `datasets` since 4.x, present in the minimum
4.8.3 and in 5.x). A `Nifti` value is one file decoded to a nibabel image, so a row could not hold the stacked,
channels-first volume of several channel files (nnU-Net's `<case>_0000`, `<case>_0001`), a channel of a 4D Decathlon
file, a DICOM series, or the resampled demo cases that have no file; the grid and label checks would also be left
to every reader. The arrays cost disk (float32, uncompressed: a BraTS case is 143 MB in the Arrow cache, the NIfTI
files 5 MB) and are written a few rows at a time (`WRITER_BATCH_SIZE`), so a large case never builds up in memory.

Reading: `.with_format("numpy")` gives ndarrays, but `datasets`' numpy formatter casts every integer to int64 and
every float to float32 (so `label` comes back int64 and `spacing`/`affine` float32), and converts nested lists
element-list by element-list (about 1.5 s for a BraTS case). `case_arrays(dataset, i)` reads one case straight from
Arrow in its stored types (uint8 label, float64 spacing and affine), in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import datasets
import numpy as np

from ..io import MedicalImage
from .common import DatasetFormatError, build_splits
from .features import classes_present

# Rows per Arrow record batch: a few whole cases (a batch is held in memory before it is written, and one list
# column of a batch holds at most 2**31 values).
WRITER_BATCH_SIZE = 2
# Relative tolerance when the affines of a case's files are compared (nnU-Net compares spacing, origin and
# direction the same loose way: float32 headers and converters' rounding differ a little).
AFFINE_TOLERANCE = 1e-4

_L = datasets.List


def volume_features(id2label: Mapping[int, str]) -> datasets.Features:
    """The features of a volume dataset row (see the module docstring), with `classes` named by `id2label`."""
    names = [id2label[i] for i in range(len(id2label))]
    return datasets.Features({
        "case_id": datasets.Value("string"),
        "image": _L(_L(_L(_L(datasets.Value("float32"))))),
        "label": _L(_L(_L(datasets.Value("uint8")))),
        "spacing": _L(datasets.Value("float64")),
        "affine": _L(_L(datasets.Value("float64"))),
        "channels": _L(datasets.Value("string")),
        "classes": _L(datasets.ClassLabel(names=names)),
    })


def volume_row(case_id: str, image: np.ndarray, label: np.ndarray | None, spacing: Sequence[float],
               affine: np.ndarray, channels: Sequence[str]) -> dict[str, Any]:
    """One row of `volume_features`: `image` (C, X, Y, Z) as float32, `label` (X, Y, Z) as uint8 or None."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 4 or image.shape[0] != len(channels):
        raise ValueError(f"{case_id}: image must be (C, X, Y, Z) with C = {len(channels)} channels, got {image.shape}.")
    if label is not None:
        if label.shape != image.shape[1:]:
            raise ValueError(f"{case_id}: label {label.shape} does not match the image's grid {image.shape[1:]}.")
        label = np.ascontiguousarray(label, dtype=np.uint8)
    spacing = [float(s) for s in spacing]
    affine = np.asarray(affine, dtype=np.float64)
    if len(spacing) != 3 or affine.shape != (4, 4):
        raise ValueError(f"{case_id}: spacing must be 3 floats and affine 4x4, got {spacing} and {affine.shape}.")
    return {"case_id": case_id, "image": image, "label": label, "spacing": spacing, "affine": affine,
            "channels": list(channels), "classes": [] if label is None else classes_present(label)}


class VolumeCase(NamedTuple):
    """One case of a volume dataset in its stored types."""

    case_id: str
    image: np.ndarray  # float32 (C, X, Y, Z)
    label: np.ndarray | None  # uint8 (X, Y, Z), None for a test case
    spacing: tuple[float, float, float]
    affine: np.ndarray  # float64 (4, 4)
    channels: list[str]


def _nested(column: Any, dims: int, dtype: Any) -> np.ndarray | None:
    """A nested list scalar of `dims` levels as an ndarray, from its flat values and list lengths."""
    if not column.is_valid:
        return None
    array, shape = column.values, []
    shape.append(len(array))
    for _ in range(dims - 1):
        shape.append(len(array[0]) if len(array) else 0)
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"A ragged nested list of {values.size} values cannot be a {shape} array.")
    return values.astype(dtype, copy=False).reshape(shape)


def case_arrays(dataset: datasets.Dataset, index: int) -> VolumeCase:
    """Row `index` of a volume dataset read straight from Arrow: fast, and in its stored types."""
    table = dataset.with_format("arrow")[index]
    get = lambda name: table.column(name)[0]  # noqa: E731
    return VolumeCase(
        case_id=get("case_id").as_py(),
        image=_nested(get("image"), 4, np.float32),
        label=_nested(get("label"), 3, np.uint8),
        spacing=tuple(float(s) for s in get("spacing").as_py()),
        affine=np.asarray(get("affine").as_py(), dtype=np.float64),
        channels=list(get("channels").as_py()),
    )


def check_same_grid(volume: MedicalImage, reference: MedicalImage, what: str = "every file of a case") -> None:
    """A `DatasetFormatError` unless `volume` has `reference`'s shape and, within `AFFINE_TOLERANCE` (relative to
    the largest entry), its affine."""
    if volume.array.shape[:3] != reference.array.shape[:3]:
        raise DatasetFormatError(
            f"{volume.path} has shape {volume.array.shape[:3]} but {reference.path} has {reference.array.shape[:3]}: "
            f"{what} must share one voxel grid (resample it onto the other's grid)."
        )
    a, b = np.asarray(volume.affine), np.asarray(reference.affine)
    if np.abs(a - b).max() > AFFINE_TOLERANCE * max(1.0, np.abs(b).max()):
        raise DatasetFormatError(
            f"{volume.path} has the affine {np.round(a, 4).tolist()} but {reference.path} has "
            f"{np.round(b, 4).tolist()}: {what} must share one voxel grid (same spacing, origin and direction); "
            "resample it onto the other's grid or fix its header."
        )


def to_label(seg: MedicalImage, num_classes: int, fix: str) -> np.ndarray:
    """A segmentation's values as uint8 class indices 0..num_classes-1, or an error listing the values outside."""
    array = seg.array
    if array.dtype.kind == "f":
        rounded = np.round(array)
        if not np.array_equal(rounded, array):
            raise DatasetFormatError(f"Segmentation {seg.path} holds non-integer values (e.g. "
                                     f"{array[rounded != array].ravel()[0]:g}): save labels as integers.")
        array = rounded
    elif array.dtype.kind not in "biu":
        raise DatasetFormatError(f"Segmentation {seg.path} stores {array.dtype} values: save labels as integers.")
    values = np.unique(array)
    bad = [v.item() for v in values if not 0 <= v < num_classes]
    if bad:
        raise DatasetFormatError(f"Segmentation {seg.path} has values {[int(v) for v in bad[:10]]} outside the "
                                 f"classes 0..{num_classes - 1}: {fix}.")
    return array.astype(np.uint8)


def nnunet_folds(case_ids: Sequence[str], n_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """nnU-Net's cross-validation folds: `[{"train": [...], "val": [...]}, ...]` over the sorted case ids.

    The same as nnU-Net's `generate_crossval_split` (scikit-learn's `KFold(n_splits, shuffle=True,
    random_state=seed)` over the sorted ids), without scikit-learn: the indices are shuffled by
    `np.random.RandomState(seed)`, the first `n % n_folds` folds get one case more, and both lists keep the
    sorted order.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("case_ids must be unique.")
    if not 2 <= n_folds <= len(ids):
        raise ValueError(f"n_folds must be between 2 and the number of cases ({len(ids)}), got {n_folds}: with fewer "
                         "cases train on all of them (fold='all') or give splits_final.json.")
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_folds, len(ids) // n_folds)
    sizes[: len(ids) % n_folds] += 1
    folds, start = [], 0
    for size in sizes:
        held = np.zeros(len(ids), bool)
        held[order[start : start + size]] = True
        start += size
        folds.append({"train": [ids[i] for i in np.flatnonzero(~held)], "val": [ids[i] for i in np.flatnonzero(held)]})
    return folds


def build_volume_splits(
    name: str,
    generate: Callable[..., Iterator[dict[str, Any]]],
    split_items: Mapping[str, Sequence[Any]],
    features: datasets.Features,
    gen_kwargs: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
    description: str | None = None,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """One dataset per split from `generate(items=<that split's items>, **gen_kwargs)`, one row per item.

    `hfseg.data.common.build_splits` with `WRITER_BATCH_SIZE` rows per Arrow batch (whole volumes are large): the
    same cache key (the generator, its arguments, `CACHE_VERSION`, the hfseg version and `source_stamp(items)`), the
    same errors, and a warning when items were skipped. Splits without items are left out.
    """
    return build_splits(name, generate, split_items, features, gen_kwargs=gen_kwargs, cache_dir=cache_dir,
                        num_proc=num_proc, streaming=streaming, description=description,
                        writer_batch_size=WRITER_BATCH_SIZE, unit="cases")
