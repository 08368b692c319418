"""The features every hfseg segmentation dataset shares, and how to read `id2label` back from a dataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np


def segmentation_features(
    id2label: Mapping[int, str],
    group_column: str = "case_id",
    image: datasets.Image | datasets.Array3D | None = None,
    extra: Mapping[str, Any] | None = None,
) -> datasets.Features:
    """`image`, `label` (mask of class indices), the group id, and `classes`: the classes present in the mask.

    `classes` is a list of `ClassLabel`, so the class names travel with the features (through `save_to_disk`,
    parquet and `push_to_hub`) and `id2label(dataset)` can rebuild the model head. `image` defaults to an `Image`
    (8/16-bit grey or RGB, lossless PNG); multi-modality data passes `Array3D((H, W, C), "float32")`, channels
    last like a decoded RGB image. `extra` adds columns (e.g. a grade `ClassLabel`).
    """
    names = [id2label[i] for i in range(len(id2label))]
    return datasets.Features(
        {
            "image": image if image is not None else datasets.Image(),
            "label": datasets.Image(),
            group_column: datasets.Value("string"),
            "classes": datasets.List(datasets.ClassLabel(names=names)),
            **dict(extra or {}),
        }
    )


def classification_features(names: list[str], group_column: str = "case_id") -> datasets.Features:
    """`image`, `label` (a `ClassLabel` of `names`) and the group id, for classification datasets."""
    return datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names)),
         group_column: datasets.Value("string")}
    )


def classes_present(mask: np.ndarray) -> list[int]:
    """Sorted class indices present in a mask."""
    return [int(v) for v in np.unique(mask)]


def id2label(dataset: datasets.Dataset | datasets.DatasetDict) -> dict[int, str]:
    """The class names of an hfseg dataset: its `classes` list of `ClassLabel` or, for classification, `label`."""
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        dataset = next(iter(dataset.values()))
    if isinstance(dataset.features.get("label"), datasets.ClassLabel):
        return dict(enumerate(dataset.features["label"].names))
    feature = dataset.features.get("classes")
    inner = getattr(feature, "feature", None)
    if not isinstance(inner, datasets.ClassLabel):
        raise ValueError("This dataset has no 'classes' list of ClassLabel; it was not built by hfseg.data.load.")
    return dict(enumerate(inner.names))
