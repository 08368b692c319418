"""Random training patches from preprocessed volumes, with nnU-Net's foreground oversampling.

```python
augment = build_volume_augmentation(VolumeAugmentConfig(), plan.patch_size, plan.mirror_axes)
train = PatchDataset(cases, patch_size=plan.patch_size, samples_per_epoch=250 * plan.batch_size, seed=0,
                     augmentation=augment, slice_axis=plan.slice_axis)
loader = DataLoader(train, batch_size=plan.batch_size, shuffle=False, num_workers=4)
for epoch in range(epochs):
    train.set_epoch(epoch)  # before iterating: the workers read it, persistent ones too
    for batch in loader: ...  # {"pixel_values": (B, C, *patch) float32, "labels": (B, *patch) int64}
```

A case is a mapping with `image` (float32 (C, *S)), `label` (integer (*S), class indices) and `case_id`: the rows
of a volume dataset (`.with_format("numpy")`) or a list of dicts. A list in memory is fastest: every item indexes
its case again.

Sampling, per item: a case uniformly; then, with probability `foreground_fraction` (nnU-Net's
oversample_foreground_percent, 1/3; nnU-Net forces the last third of each batch, here each item draws on its own,
so the rate holds for any batch size and any split over workers), a foreground patch: a class uniformly among the
foreground classes present in the case, a voxel of it uniformly among its precomputed locations (nnU-Net's
class_locations: up to 10,000 voxels per class per case, or 1% of the class when that is more, drawn once with a
fixed seed), and the patch centred on that voxel; otherwise (or when the case has no foreground) a patch anywhere.
Along an axis where the case is at least as long as the patch, the patch stays inside it (a centred patch is
shifted inwards; the voxel stays in it); where the case is shorter, the case lies inside the patch, at a random
place for a random patch. Outside the case the patch is image 0 and label 0 (background). So a fraction >=
foreground_fraction of patches holds foreground.

2D plans (nnU-Net's 2d configuration): `patch_size` has two ints and `slice_axis` names the array axis slices are
cut along: the item is one slice of the case along it (the foreground voxel's slice, or a random one), cropped in
plane to (C, h, w) over the two other axes in array order.

Reproducibility: item `i` of epoch `e` is a pure function of `(seed, e, i)`: its numpy generator is seeded with
`SeedSequence([seed, e, i])`, and the augmentation's MONAI random state with a seed spawned from it, never a global
generator. So any number of DataLoader workers, and a run resumed at epoch `e`, give the same patches. The epoch
lives in shared memory, so `set_epoch` reaches persistent workers too (call it before iterating the loader).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment3d import crop_padded

MAX_LOCATIONS = 10_000  # nnU-Net's class_locations: at most this many voxels per class per case ...
MIN_COVERAGE = 0.01  # ... unless 1% of the class is more
LOCATIONS_SEED = 1234  # nnU-Net's fixed seed for them


def foreground_locations(label: np.ndarray, seed: int = LOCATIONS_SEED) -> dict[int, np.ndarray]:
    """Voxel indices (N, label.ndim) of each foreground class (label > 0) in `label`, sampled as nnU-Net's
    class_locations: max(min(10,000, n), ceil(1% of n)) of the n voxels of the class, without replacement."""
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(label)
    values = label.reshape(-1)[flat]
    locations = {}
    for cls in np.unique(values):
        where = flat[values == cls]
        count = max(min(MAX_LOCATIONS, len(where)), int(np.ceil(len(where) * MIN_COVERAGE)))
        if count < len(where):
            where = np.sort(rng.choice(where, size=count, replace=False))
        locations[int(cls)] = np.stack(np.unravel_index(where, label.shape), axis=1).astype(np.int64)
    return locations


class PatchDataset(Dataset):
    """`samples_per_epoch` random patches of `cases` per epoch (see the module docstring).

    Args:
        cases (`Sequence[Mapping]`): preprocessed cases with `image` (C, *S), `label` (*S) and `case_id`.
        patch_size (`Sequence[int]`): the patch, one int per spatial axis; two ints with `slice_axis` for 2D.
        samples_per_epoch (`int`): the dataset's length.
        foreground_fraction (`float`, defaults to 1/3): probability that an item is a foreground patch.
        seed (`int`, defaults to 0): with the epoch and the index, the whole draw of an item.
        augmentation (`Callable`, *optional*): `hfseg.data.augment3d.build_volume_augmentation(...)` for the same
            patch size; None gives plain crops.
        slice_axis (`int`, *optional*): for a 2D patch of 3D cases, the array axis slices are cut along.

    Items are `{"pixel_values": float32 (C, *patch), "labels": int64 (*patch)}`.
    """

    def __init__(self, cases: Sequence[Mapping[str, Any]], patch_size: Sequence[int], samples_per_epoch: int,
                 foreground_fraction: float = 1 / 3, seed: int = 0, augmentation: Callable | None = None,
                 slice_axis: int | None = None) -> None:
        self.cases = cases
        self.patch_size = tuple(int(s) for s in patch_size)
        if len(cases) == 0:
            raise ValueError("PatchDataset needs at least one case; the training split is empty.")
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}.")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction is a probability in [0, 1], got {foreground_fraction}.")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed is an int >= 0, got {seed!r}.")
        if len(self.patch_size) not in (2, 3) or min(self.patch_size) < 1:
            raise ValueError(f"patch_size is 2 or 3 positive ints, got {tuple(patch_size)!r}.")
        self.samples_per_epoch, self.foreground_fraction, self.seed = int(samples_per_epoch), foreground_fraction, seed
        if slice_axis is not None and (len(self.patch_size) != 2 or slice_axis not in (0, 1, 2)):
            raise ValueError(f"slice_axis (the array axis 2D slices are cut along: 0, 1 or 2) goes with a 2-int "
                             f"patch_size, got slice_axis {slice_axis!r} and patch_size {self.patch_size}.")
        self.slice_axis = slice_axis
        self.augmentation = augmentation
        aug_size = getattr(augmentation, "patch_size", None)
        if aug_size is not None and tuple(aug_size) != self.patch_size:
            raise ValueError(f"The augmentation was built for patches of {tuple(aug_size)}, the dataset cuts "
                             f"{self.patch_size}: build it with the same patch_size.")
        self._channels: int | None = None
        self.class_locations = [self._check_case(case, k) for k, case in enumerate(cases)]
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def _check_case(self, case: Mapping[str, Any], index: int) -> dict[int, np.ndarray]:
        image, label = np.asarray(case["image"]), case.get("label")
        name = case.get("case_id", f"#{index}")
        if label is None:
            raise ValueError(f"Case {name!r} has no label; patches train on labelled cases only (leave the test "
                             "split out).")
        label = np.asarray(label)
        spatial = len(self.patch_size) + (self.slice_axis is not None)
        if image.ndim != spatial + 1 or label.shape != image.shape[1:]:
            hint = "; 2D patches of 3D cases need slice_axis" if self.slice_axis is None and image.ndim == 4 else ""
            raise ValueError(f"Case {name!r}: image {image.shape} and label {label.shape} do not fit patch_size "
                             f"{self.patch_size}: expected image (C, *S) and label (*S) with {spatial} spatial "
                             f"axes{hint}.")
        if not np.issubdtype(label.dtype, np.integer) or (label.size and label.min() < 0):
            raise ValueError(f"Case {name!r}: the label must hold class indices >= 0, got dtype {label.dtype}.")
        if self._channels is None:
            self._channels = image.shape[0]
        elif image.shape[0] != self._channels:
            raise ValueError(f"Case {name!r} has {image.shape[0]} channels, the first case {self._channels}: every "
                             "case needs the same channels.")
        return foreground_locations(label)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s patches from now on (every worker sees it)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"PatchDataset index {index} out of range for {self.samples_per_epoch} samples.")
        sampling, augmenting = np.random.SeedSequence([self.seed, self.epoch, int(index)]).spawn(2)
        rng = np.random.default_rng(sampling)
        k = int(rng.integers(len(self.cases)))
        case = self.cases[k]
        image, label = np.asarray(case["image"]), np.asarray(case["label"])
        voxel = self._foreground_voxel(rng, self.class_locations[k])
        if self.slice_axis is not None:
            depth = label.shape[self.slice_axis]
            at = int(voxel[self.slice_axis]) if voxel is not None else int(rng.integers(depth))
            image, label = np.take(image, at, axis=self.slice_axis + 1), np.take(label, at, axis=self.slice_axis)
            if voxel is not None:
                voxel = np.delete(voxel, self.slice_axis)
        start = self._patch_start(rng, label.shape, voxel)
        if self.augmentation is None:
            pixel_values = torch.from_numpy(crop_padded(image, start, self.patch_size, copy=False).astype(np.float32))
            labels = torch.from_numpy(crop_padded(label, start, self.patch_size, copy=False).astype(np.int64))
        else:
            self.augmentation.set_random_state(seed=int(augmenting.generate_state(1)[0]))
            out = self.augmentation({"image": image, "label": label, "patch_start": start})
            pixel_values, labels = out["image"].float(), out["label"].long()
        return {"pixel_values": pixel_values, "labels": labels}

    def _foreground_voxel(self, rng: np.random.Generator, locations: dict[int, np.ndarray]) -> np.ndarray | None:
        """A voxel of a random foreground class present in the case with probability foreground_fraction."""
        forced = rng.random() < self.foreground_fraction
        classes = [c for c, where in locations.items() if len(where)]
        if not forced or not classes:
            return None
        where = locations[classes[int(rng.integers(len(classes)))]]
        return where[int(rng.integers(len(where)))]

    def _patch_start(self, rng: np.random.Generator, shape: Sequence[int],
                     voxel: np.ndarray | None) -> tuple[int, ...]:
        """The patch's lower corner: around `voxel` (or anywhere), inside the case along axes it covers."""
        start = []
        for axis, (size, patch) in enumerate(zip(shape, self.patch_size)):
            low, high = min(0, size - patch), max(0, size - patch)
            if voxel is None:
                start.append(int(rng.integers(low, high + 1)))
            else:
                start.append(int(np.clip(int(voxel[axis]) - patch // 2, low, high)))
        return tuple(start)
