"""`demo3d`: small 3D brain MRI cases with tissue labels, built offline from the MNI ICBM152 2009 template in nilearn.

All cases come from one template (the files of `hfseg.data.demo`: the ICBM 2009a nonlinear symmetric T1 and its
grey/white matter probability maps, 197x233x189 voxels of 1 mm, stored RAS). They differ in resolution, field of view,
shape and intensity, not in anatomy: validation measures robustness to resampling, deformation and contrast, not
generalization to new brains.

Labels, computed in 3D on the 1 mm template (probabilities are the maps' uint8 values / 255), as `demo`'s rule:
2 grey matter (`p_gm >= 0.5` and `p_gm >= p_wm`), 3 white matter (`p_wm >= 0.5` and `p_wm > p_gm`), 1 CSF and
other brain (inside the envelope, neither of those), 0 background. The envelope is `p_gm + p_wm >= 0.1` with its
holes filled in 3D and in every axial slice (the ventricles open to the outside in 3D; filled per slice they count
as CSF, as in `demo`).

Each case `i` (from `numpy.random.default_rng([seed, i])`, so a case does not depend on how many are built):
1. Voxel spacing: isotropic, drawn from 3.0, 3.25, ..., 4.5 mm; case 3 is 3 x 3 x 5 mm (thick axial slices) and
   case 8 is 3.5 x 5 x 3.5 mm (thick coronal slices).
2. Field of view: the brain's bounding box plus a margin of 0-12 mm on each side, at most 60 voxels per axis (a
   random 60-voxel window when larger), so cases are about 30-60 voxels per axis. The case's affine is
   `diag(spacing)` with the window's corner as origin (RAS, mm; spacings multiples of 0.25 mm and origins of 0.5 mm,
   exact in a NIfTI header).
3. Deformation, one map for image and label: a random affine about the brain's centre (rotations up to 10 degrees
   per axis, scales 0.9-1.1 per axis, shift up to 5 mm) plus a smooth elastic displacement (a 4x4x4 grid of
   N(0, 3 mm) offsets upsampled and smoothed), mapping the case's world coordinates into the template's.
4. Resampling: the image is the template T1 sampled trilinearly at 2x2x2 points per voxel and averaged (the voxel's
   box, against aliasing); the label is the 1 mm label map sampled at the voxel centre (nearest).
5. Intensity: the T1 / 255 raised to a gamma of 0.7-1.5, times a smooth bias field (exp of a random quadratic, about
   +-20 %), times a scale of 300-1500, with Rician noise of 1-3 % of that scale. float32, one channel "T1".

Building 10 cases takes a few seconds; `datasets` caches the rows. Splits: nnU-Net's five-fold cross-validation over
the case ids (`fold`, as the `nnunet` loader), so 10 cases give 8 train and 2 validation. `write_nnunet_folder`
writes the same cases as an nnU-Net v2 raw dataset, which `hfseg.data.load("nnunet", folder, fold=k)` reads back as
the same rows and splits.

Template copyright (ICBM 2009a): Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
Neurological Institute, McGill University. Permission to use, copy, modify, and distribute this data and its
documentation for any purpose and without fee is hereby granted, provided that the above copyright notice appear in
all copies. The authors and McGill University make no representations about the suitability of this data for any
purpose. It is provided "as is" without express or implied warranty.
References: Fonov et al., NeuroImage 2011 and 2009; Collins et al., 1999.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from .demo import DEMO_ID2LABEL, _template
from .volumes import build_volume_splits, nnunet_folds, volume_features, volume_row

DEMO3D_ID2LABEL = DEMO_ID2LABEL
CHANNELS = ("T1",)
MAX_SIZE = 60  # voxels per axis
_ANISOTROPIC = {3: (3.0, 3.0, 5.0), 8: (3.5, 5.0, 3.5)}
_VERSION = "1"  # bump when the cases change (part of the cache key)


class _Template(NamedTuple):
    t1: torch.Tensor  # float32 (X, Y, Z), the stored uint8 values
    label: torch.Tensor  # float32 (X, Y, Z) class indices, for sampling
    affine: np.ndarray  # voxel -> world (RAS, mm)
    brain: np.ndarray  # (2, 3) world corners (mm) of the brain's (label > 0) bounding box


@lru_cache(maxsize=1)
def template_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1 float32, label uint8 by the module's rule, affine) of the 1 mm template, in its stored (RAS) order."""
    from scipy.ndimage import binary_fill_holes

    volumes = _template()
    gm, wm = (volumes[key].array.astype(np.float32) / 255 for key in ("gm", "wm"))
    tissue = gm + wm >= 0.1
    envelope = binary_fill_holes(tissue)
    for k in range(tissue.shape[2]):  # axial slices: k runs inferior to superior in the RAS template
        envelope[:, :, k] |= binary_fill_holes(tissue[:, :, k])
    label = envelope.astype(np.uint8)
    label[(gm >= 0.5) & (gm >= wm)] = 2
    label[(wm >= 0.5) & (wm > gm)] = 3
    return volumes["t1"].array.astype(np.float32), label, volumes["t1"].affine


@lru_cache(maxsize=1)
def _sampling_template() -> _Template:
    t1, label, affine = template_volumes()
    inside = [np.flatnonzero(np.any(label > 0, axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    corners = np.array([[ix[0] for ix in inside], [ix[-1] for ix in inside]], np.float64)
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    return _Template(torch.from_numpy(t1), torch.from_numpy(label.astype(np.float32)), affine,
                     np.array([world.min(0), world.max(0)]))


def _rotation(angles: np.ndarray) -> np.ndarray:
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sample(volume: torch.Tensor, voxels: np.ndarray, mode: str) -> np.ndarray:
    """`volume` (X, Y, Z) at continuous voxel coordinates (N, 3); zero outside."""
    size = np.array(volume.shape, np.float64)
    grid = (voxels / (size - 1) * 2 - 1)[:, ::-1].copy()  # grid_sample wants (z, y, x) for an (X, Y, Z) input
    grid = torch.from_numpy(grid).float().view(1, 1, 1, -1, 3)
    out = F.grid_sample(volume[None, None], grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out.view(-1).numpy()


def _smooth_field(rng: np.random.Generator, sigma_mm: float) -> torch.Tensor:
    """A smooth random displacement field (3, 16, 16, 16) in mm over the field of view ([-1, 1]^3)."""
    from scipy.ndimage import gaussian_filter

    coarse = torch.from_numpy(rng.normal(0.0, sigma_mm, (1, 3, 4, 4, 4))).float()
    fine = F.interpolate(coarse, size=(16, 16, 16), mode="trilinear", align_corners=True)[0].numpy()
    return torch.from_numpy(gaussian_filter(fine, sigma=(0, 2, 2, 2), mode="nearest"))


def _field_at(field: torch.Tensor, unit: np.ndarray) -> np.ndarray:
    """The field (3, 16, 16, 16) at points (N, 3) in [-1, 1]^3 coordinates of the field of view."""
    grid = torch.from_numpy(unit[:, ::-1].copy()).float().view(1, 1, 1, -1, 3)
    out = F.grid_sample(field[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(3, -1).T.numpy().astype(np.float64)


def _window(lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray, rng: np.random.Generator,
            ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Origin (mm, multiples of 0.5) and shape of the case grid: the brain's box plus 0-12 mm margins, capped."""
    start = lo - rng.uniform(0, 12, 3)
    extent = hi + rng.uniform(0, 12, 3) - start
    shape = np.ceil(extent / spacing).astype(int)
    over = np.maximum(shape - MAX_SIZE, 0)
    start = start + rng.uniform(0, 1, 3) * over * spacing
    return np.round(start * 2) / 2, tuple(int(n) for n in np.minimum(shape, MAX_SIZE))


def make_case(index: int, seed: int = 0) -> dict[str, Any]:
    """The volume row of case `index` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    template = _sampling_template()
    spacing = np.array(_ANISOTROPIC.get(index) or (rng.choice(np.arange(3.0, 4.51, 0.25)),) * 3, np.float64)
    lo, hi = template.brain
    origin, shape = _window(lo, hi, spacing, rng)
    centre = (lo + hi) / 2
    matrix = _rotation(np.deg2rad(rng.uniform(-10, 10, 3))) @ np.diag(rng.uniform(0.9, 1.1, 3))
    shift = rng.uniform(-5, 5, 3)
    field = _smooth_field(rng, 3.0)
    to_voxels = np.linalg.inv(template.affine)
    extent = np.maximum((np.array(shape) - 1) * spacing, 1e-6)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    deform = np.eye(4)
    deform[:3, :3] = matrix
    deform[:3, 3] = centre - matrix @ centre + shift
    to_template = torch.from_numpy(to_voxels @ deform @ affine)[:3]  # case voxel -> template voxel (affine part)
    to_unit = torch.from_numpy(np.concatenate([np.diag(2 * spacing / extent), -np.ones((3, 1))], axis=1))
    mm_to_voxels = torch.from_numpy(to_voxels[:3, :3])

    # Every voxel centre through the deformation: the affine map, plus the elastic displacement (mm) at that point.
    centres = torch.from_numpy(np.indices(shape).reshape(3, -1).T.astype(np.float64))
    homogeneous = torch.cat([centres, torch.ones(len(centres), 1, dtype=torch.float64)], dim=1)
    unit = (homogeneous @ to_unit.T).numpy()  # the field of view as [-1, 1]^3
    moved = (homogeneous @ to_template.T + torch.from_numpy(_field_at(field, unit)) @ mm_to_voxels.T).numpy()
    labels = _sample(template.label, moved, "nearest").reshape(shape).round().astype(np.uint8)
    # 2x2x2 points per voxel (+-1/4 voxel), moved by the affine part only: the elastic field barely changes within.
    offsets = (np.indices((2, 2, 2)).reshape(3, -1).T + 0.5) / 2 - 0.5
    fine = (moved[:, None, :] + (offsets @ to_template.numpy()[:, :3].T)[None]).reshape(-1, 3)
    image = _sample(template.t1, fine, "bilinear").reshape(-1, len(offsets)).mean(1).reshape(shape) / 255.0

    unit = unit.reshape(*shape, 3)
    terms = [unit[..., a] for a in range(3)] + [unit[..., a] * unit[..., b] for a in range(3) for b in range(a, 3)]
    bias = np.exp(sum(c * t for c, t in zip(rng.normal(0, 0.08, len(terms)), terms, strict=True)))
    gamma, scale, noise = rng.uniform(0.7, 1.5), rng.uniform(300, 1500), rng.uniform(0.01, 0.03)
    signal = np.clip(image, 0, None) ** gamma * bias * scale
    noisy = np.hypot(signal + rng.normal(0, noise * scale, shape), rng.normal(0, noise * scale, shape))
    return volume_row(f"demo3d_{index:03d}", noisy[None].astype(np.float32), labels, spacing, affine, CHANNELS)


@lru_cache(maxsize=64)
def _memo_case(index: int, seed: int) -> dict[str, Any]:
    return make_case(index, seed)


def demo3d_cases(n_cases: int = 10, seed: int = 0) -> tuple[dict[str, Any], ...]:
    """The rows of cases 0..n_cases-1 (memoized: the splits and `write_nnunet_folder` build each case once)."""
    return tuple(_memo_case(i, seed) for i in range(n_cases))


def _check(n_cases: int, fold: int | str) -> int | str:
    """`fold` as an int or "all" (a digit string from a command line too), after checking it and `n_cases`."""
    if isinstance(fold, str) and fold.isdigit():
        fold = int(fold)
    if n_cases < 5 and fold != "all":
        raise ValueError(f"n_cases must be at least 5 for nnU-Net's five folds, got {n_cases} (or use fold='all').")
    if fold != "all" and fold not in range(5):
        raise ValueError(f"fold must be 0..4 or 'all', got {fold!r}.")
    return fold


def _generate(items: list[int], n_cases: int, seed: int, version: str):
    """The rows of the listed cases; `version` only enters the `datasets` fingerprint."""
    cases = demo3d_cases(n_cases, seed)
    for i in items:
        yield cases[i]


def load_demo3d(n_cases: int = 10, fold: int | str = 0, seed: int = 0,
                cache_dir: str | None = None) -> datasets.DatasetDict:
    """The `demo3d` DatasetDict (see the module docstring), built once and then read from the `datasets` cache.

    Args:
        n_cases: how many cases to build (ids `demo3d_000`, ...).
        fold: nnU-Net's fold held out for validation (0..4), or `"all"` (train and validate on every case).
        seed: the seed the cases are drawn with (not the split's: folds are nnU-Net's).
        cache_dir: where `datasets` writes the Arrow cache.
    """
    fold = _check(n_cases, fold)
    ids = [f"demo3d_{i:03d}" for i in range(n_cases)]
    if fold == "all":
        train = validation = ids
    else:
        split = nnunet_folds(ids)[fold]
        train, validation = split["train"], split["val"]
    split_items = {"train": [ids.index(c) for c in train], "validation": [ids.index(c) for c in validation]}
    return build_volume_splits("demo3d", _generate, split_items, volume_features(DEMO3D_ID2LABEL),
                               gen_kwargs=dict(n_cases=n_cases, seed=seed, version=_VERSION), cache_dir=cache_dir,
                               description=f"demo3d: {n_cases} cases resampled and deformed from the MNI ICBM152 "
                                           f"2009a template, fold {fold}; channels: T1.")


def write_nnunet_folder(path: str | Path, n_cases: int = 10, seed: int = 0) -> Path:
    """Write the cases as an nnU-Net v2 raw dataset folder (`dataset.json`, `imagesTr/`, `labelsTr/`, `.nii.gz`).

    Without a `splits_final.json`: nnU-Net's generated folds over these ids are the `fold`s of `load_demo3d`.
    Returns the folder.
    """
    import nibabel as nib

    folder = Path(path)
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    cases = demo3d_cases(n_cases, seed)
    for row in cases:
        for c, channel in enumerate(row["image"]):
            image = nib.Nifti1Image(channel, row["affine"])
            image.header.set_xyzt_units("mm")
            nib.save(image, str(folder / "imagesTr" / f"{row['case_id']}_{c:04d}.nii.gz"))
        label = nib.Nifti1Image(row["label"], row["affine"])
        label.header.set_xyzt_units("mm")
        nib.save(label, str(folder / "labelsTr" / f"{row['case_id']}.nii.gz"))
    spec = {
        "name": "Demo3D",
        "description": "Brain tissue cases resampled and deformed from the MNI ICBM152 2009a template (hfseg demo3d).",
        "reference": "Fonov et al., NeuroImage 2011 and 2009; Collins et al., 1999.",
        "licence": "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
                   "Institute, McGill University; see hfseg.data.demo3d for the permission notice.",
        "channel_names": {str(i): name for i, name in enumerate(CHANNELS)},
        "labels": {name: i for i, name in DEMO3D_ID2LABEL.items()},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(spec, indent=2) + "\n")
    return folder
