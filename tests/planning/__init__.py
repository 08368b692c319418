"""Planning tests, and their helpers: tiny volume datasets in hfseg's row format, fingerprints without data."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np

from hfseg.planning import Fingerprint


def volume_dataset(cases: Sequence[dict], class_names: Sequence[str] = ("background", "organ", "tumour"),
                   channels: Sequence[str] = ("CT",)) -> datasets.Dataset:
    """`cases`: dicts with `image` (C, X, Y, Z), `label` (X, Y, Z) or None, and `spacing`."""
    features = datasets.Features({
        "case_id": datasets.Value("string"),
        "image": datasets.List(datasets.List(datasets.List(datasets.List(datasets.Value("float32"))))),
        "label": datasets.List(datasets.List(datasets.List(datasets.Value("uint8")))),
        "spacing": datasets.List(datasets.Value("float64")),
        "affine": datasets.List(datasets.List(datasets.Value("float64"))),
        "channels": datasets.List(datasets.Value("string")),
        "classes": datasets.List(datasets.ClassLabel(names=list(class_names))),
    })
    rows = {name: [] for name in features}
    for i, case in enumerate(cases):
        label = case["label"]
        rows["case_id"].append(f"case_{i}")
        rows["image"].append(np.asarray(case["image"], dtype=np.float32))
        rows["label"].append(None if label is None else np.asarray(label, dtype=np.uint8))
        rows["spacing"].append([float(s) for s in case["spacing"]])
        rows["affine"].append(np.diag([*case["spacing"], 1.0]).tolist())
        rows["channels"].append(list(channels))
        rows["classes"].append([] if label is None else sorted(int(v) for v in np.unique(label)))
    return datasets.Dataset.from_dict(rows, features=features)


CT_STATS = {"mean": 50.0, "median": 48.0, "std": 30.0, "min": -100.0, "max": 300.0,
            "percentile_00_5": -50.0, "percentile_99_5": 250.0}


def synthetic_fingerprint(shape: Sequence[int], spacing: Sequence[float], num_cases: int = 20,
                          channels: Sequence[str] = ("CT",), num_classes: int = 3, relative_size: float = 1.0,
                          spacings: Sequence[Sequence[float]] | None = None,
                          shapes: Sequence[Sequence[int]] | None = None) -> Fingerprint:
    """A fingerprint of `num_cases` identical cases (or the given per-case spacings/shapes), no data needed."""
    spacings = [list(s) for s in spacings] if spacings is not None else [list(spacing)] * num_cases
    shapes = [list(s) for s in shapes] if shapes is not None else [list(shape)] * len(spacings)
    return Fingerprint(
        case_ids=[f"case_{i}" for i in range(len(spacings))], spacings=spacings, shapes=shapes,
        shapes_after_crop=shapes, channels=list(channels), num_classes=num_classes,
        intensity_statistics=[dict(CT_STATS) for _ in channels],
        median_relative_size_after_cropping=relative_size, relative_sizes_after_cropping=[relative_size] * len(shapes),
    )
