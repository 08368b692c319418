"""`demo`: axial brain MRI slices with tissue labels, built offline from the MNI ICBM152 2009 template in nilearn.

Source: the ICBM 2009a nonlinear symmetric T1 template and its grey- and white-matter probability maps, which ship
inside the `nilearn` package (`nilearn/datasets/data/`), 197x233x189 voxels of 1 mm.

Label rule, per voxel of an axial slice (probabilities are the maps' uint8 values / 255):
- 2 grey matter: `p_gm >= 0.5` and `p_gm >= p_wm`;
- 3 white matter: `p_wm >= 0.5` and `p_wm > p_gm`;
- 1 CSF and other brain: inside the brain envelope but neither of the above, where the envelope is
  `p_gm + p_wm >= 0.1` with its holes filled in 2D (so the ventricles count as CSF);
- 0 background: everything else (skull, scalp, air).

Slices: `hfseg.io.to_slices(volume, affine, "axial")` of the template read with `hfseg.io.read_nifti` (stored
RAS, uint8): axial slices displayed as radiology viewers show them, from inferior to superior, anterior at the top and
the patient's right on the image's left, the convention in which `hfseg.inference` cuts a NIfTI volume for a 2D
model, so the demo and a NIfTI volume agree. The symmetric template is exactly left-right symmetric.

Slices whose envelope covers at least `min_brain_fraction` of the largest slice's are kept, cropped to the square
bounding box of all kept envelopes (plus a margin), and resized to `size` x `size` (image bilinear, antialiased;
labels nearest). Images stay uint8 (the template's own stored type).

Split: one template, one "patient", so the unit is a block of `block_size` contiguous slices; whole blocks are drawn
for validation with `seed`. Neighbouring blocks are anatomically close, so validation measures generalization
across the brain's height only.

Template copyright (ICBM 2009a): Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
Neurological Institute, McGill University. Permission to use, copy, modify, and distribute this data and its
documentation for any purpose and without fee is hereby granted, provided that the above copyright notice appear in
all copies. The authors and McGill University make no representations about the suitability of this data for any
purpose. It is provided "as is" without express or implied warranty.
References: Fonov et al., NeuroImage 2011 and 2009; Collins et al., 1999.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from ..io import MedicalImage, read_nifti, to_slices
from .common import CACHE_VERSION
from .features import classes_present, segmentation_features
from .splits import group_split

DEMO_ID2LABEL = {0: "background", 1: "csf_other_brain", 2: "grey_matter", 3: "white_matter"}
_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def _template() -> dict[str, MedicalImage]:
    """The template's `t1`, `gm` and `wm` volumes read with `hfseg.io.read_nifti`, uint8 as stored."""
    folder = resources.files("nilearn") / "datasets" / "data"
    volumes = {}
    for key, name in _FILES.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"The demo needs {name} from the nilearn package; reinstall nilearn (pip install "
                                    "nilearn).")
        volumes[key] = read_nifti(Path(str(path)), dtype="stored")
    return volumes


def _volumes() -> dict[str, np.ndarray]:
    """The template's voxels in storage order (x, y, z) = RAS, uint8 (spaces/examples/make_examples.py reads them)."""
    return {key: volume.array for key, volume in _template().items()}


def template_slices() -> dict[str, np.ndarray]:
    """The template's `t1`, `gm` and `wm` volumes as axial display slices (Z, rows, columns), uint8 as stored."""
    return {key: to_slices(volume.array, volume.affine, "axial", volume.name) for key, volume in _template().items()}


def crop_box(envelopes: list[np.ndarray], min_brain_fraction: float,
             margin: int) -> tuple[list[int], tuple[slice, slice]]:
    """The kept slice indices and the square crop (rows, columns) of the module's rule, from per-slice envelopes."""
    areas = np.array([e.sum() for e in envelopes])
    kept = [z for z in range(len(areas)) if areas[z] >= min_brain_fraction * areas.max()]
    union = np.any([envelopes[z] for z in kept], axis=0)
    rows, cols = np.nonzero(union)
    side = max(np.ptp(rows), np.ptp(cols)) + 1 + 2 * margin
    top = max(0, (rows.min() + rows.max()) // 2 - side // 2)
    left = max(0, (cols.min() + cols.max()) // 2 - side // 2)
    return kept, (slice(top, top + side), slice(left, left + side))


def _square(array: np.ndarray, crop: tuple[slice, slice], size: int, mode: str) -> torch.Tensor:
    """`array[crop]` zero-padded to the crop's full square (at the volume's edge) and resized to `size` x `size`."""
    side = crop[0].stop - crop[0].start
    square = np.zeros((side, side), np.float32)
    patch = array[crop]
    square[: patch.shape[0], : patch.shape[1]] = patch
    options = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(torch.from_numpy(square)[None, None], size=(size, size), mode=mode, **options)[0, 0]


@lru_cache(maxsize=2)
def demo_slices(size: int = 128, min_brain_fraction: float = 0.2, margin: int = 4):
    """(images uint8 (N, size, size), labels uint8 (N, size, size), axial indices z) following the module's rule.

    Memoized: building the train and validation splits reads and slices the template once.
    """
    from scipy.ndimage import binary_fill_holes

    vol = template_slices()
    gm, wm = vol["gm"].astype(np.float32) / 255, vol["wm"].astype(np.float32) / 255
    envelopes = [binary_fill_holes(tissue >= 0.1) for tissue in gm + wm]
    kept, crop = crop_box(envelopes, min_brain_fraction, margin)
    images, labels = [], []
    for z in kept:
        g, w = gm[z], wm[z]
        label = np.where(envelopes[z], 1, 0)
        label[(g >= 0.5) & (g >= w)] = 2
        label[(w >= 0.5) & (w > g)] = 3
        images.append(_square(vol["t1"][z], crop, size, "bilinear").round().clamp(0, 255).to(torch.uint8).numpy())
        labels.append(_square(label, crop, size, "nearest-exact").to(torch.uint8).numpy())
    return np.stack(images), np.stack(labels), kept


def _generate(split: str, size: int, block_size: int, validation_fraction: float, seed: int, min_brain_fraction: float,
              cache_key: str):
    """The rows of one split; `cache_key` only enters the `datasets` fingerprint (which does not see code changes
    in the functions this one calls)."""
    images, labels, zs = demo_slices(size, min_brain_fraction)
    blocks = [f"mni152-block{(z - zs[0]) // block_size:02d}" for z in zs]
    train, validation = group_split(blocks, validation_fraction, seed)
    for i in train if split == "train" else validation:
        yield {"image": images[i], "label": labels[i], "case_id": blocks[i], "classes": classes_present(labels[i])}


def load_demo(
    size: int = 128,
    block_size: int = 8,
    validation_fraction: float = 0.2,
    seed: int = 0,
    min_brain_fraction: float = 0.2,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """The `demo` DatasetDict (train/validation), built once and then read from the `datasets` cache."""
    features = segmentation_features(DEMO_ID2LABEL)
    splits = {}
    for split in ("train", "validation"):
        splits[split] = datasets.Dataset.from_generator(
            _generate, features=features, cache_dir=cache_dir, split=datasets.Split(split),
            gen_kwargs={"split": split, "size": size, "block_size": block_size,
                        "validation_fraction": validation_fraction, "seed": seed,
                        "min_brain_fraction": min_brain_fraction, "cache_key": f"demo|{CACHE_VERSION}"},
        )
    return datasets.DatasetDict(splits)
