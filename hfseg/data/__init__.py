"""`datasets` loaders for medical segmentation datasets: `load(name, data_dir, **options)` and `available()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets

from .demo import DEMO_ID2LABEL, load_demo
from .features import id2label, segmentation_features
from .folder import load_image_mask_folder
from .splits import group_split

# name -> (loader, needs data_dir, one-line description)
_LOADERS: dict[str, tuple[Callable[..., datasets.DatasetDict], bool, str]] = {
    "demo": (load_demo, False, "brain MRI tissue segmentation from the MNI ICBM152 template in nilearn (no download)"),
    "image-mask-folder": (load_image_mask_folder, True, "images/ and masks/ paired by file stem, any 2D image format"),
}


def available() -> dict[str, str]:
    """Loader names with a one-line description each."""
    return {name: description for name, (_, _, description) in _LOADERS.items()}


def load(name: str, data_dir: str | None = None, **options: Any) -> datasets.DatasetDict:
    """Load the dataset `name` from `data_dir` (in its publisher's layout) as a `DatasetDict`."""
    if name not in _LOADERS:
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(_LOADERS)}.")
    loader, needs_dir, _ = _LOADERS[name]
    if needs_dir:
        if data_dir is None:
            raise ValueError(f"Dataset {name!r} needs data_dir, the folder holding its files.")
        return loader(data_dir, **options)
    if data_dir is not None:
        raise ValueError(f"Dataset {name!r} is built in and takes no data_dir.")
    return loader(**options)


__all__ = ["DEMO_ID2LABEL", "available", "group_split", "id2label", "load", "segmentation_features"]
