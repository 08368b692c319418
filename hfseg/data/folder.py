"""`image-mask-folder`: the generic layout, `images/` and `masks/` paired by file stem.

```
data_dir/images/<stem>.<ext>          data_dir/masks/<stem><mask_suffix>.<ext>
```
or the same pair of folders under `data_dir/train/`, `data_dir/validation/` (and `data_dir/test/`) for a predefined
split. Masks hold class indices, or raw values turned into classes by `value_map` (e.g. `{0: 0, 255: 1}`) or by
`threshold` (foreground = value > threshold).

Instance masks (`instance_masks=True`): each mask holds one id per object (0 = background; a 16-bit PNG or a TIFF
for more than 255 objects, e.g. nuclei). Rows then carry the 3-class boundary target as `label` (classes
background / interior / boundary, `hfseg.data.instances.boundary_target`, `boundary_width` pixels on each object's
side) and the instance map itself as `instances` (uint16), which `hfseg.evaluation` scores PQ and AJI against.
With `boundary=False` the `label` is the plain foreground (background / foreground) and `instances` is kept.

Split grouping: with `group_pattern` (a regex whose first group, matched on the stem, is the patient/case id, e.g.
`r"^(case\\d+)_"`), whole groups go to one split; without it every image is its own group, so the loader cannot
prevent leaks between slices of one patient: give a pattern whenever the names carry the patient.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import numpy as np

from .common import IMAGE_EXTENSIONS, DatasetFormatError, build_splits, grey_mask, check_same_size, read_image, skipping
from .features import classes_present, segmentation_features
from .instances import INSTANCE_ID2LABEL, boundary_target, instance_map
from .splits import group_split

def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetFormatError(f"Folder {folder} is missing: expected images/ and masks/ (see hfseg.data docs).")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    if not files:
        raise DatasetFormatError(f"Folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return files


def pair_files(image_dir: Path, mask_dir: Path, mask_suffix: str = "") -> list[tuple[str, Path, Path]]:
    """(stem, image, mask) triples; an image without a mask or a mask without an image is an error."""
    images, masks = _files(image_dir), _files(mask_dir)
    by_stem = {stem[: len(stem) - len(mask_suffix)] if mask_suffix and stem.endswith(mask_suffix) else stem: path
               for stem, path in masks.items()}
    lonely_images = sorted(set(images) - set(by_stem))
    lonely_masks = sorted(set(by_stem) - set(images))
    if lonely_images:
        raise DatasetFormatError(
            f"{len(lonely_images)} image(s) without a mask, e.g. {images[lonely_images[0]]}: expected "
            f"{mask_dir / (lonely_images[0] + mask_suffix)}.<ext> (check mask_suffix={mask_suffix!r})."
        )
    if lonely_masks:
        raise DatasetFormatError(
            f"{len(lonely_masks)} mask(s) without an image, e.g. {by_stem[lonely_masks[0]]}: expected "
            f"{image_dir / lonely_masks[0]}.<ext>."
        )
    return [(stem, images[stem], by_stem[stem]) for stem in sorted(images)]


def map_mask(mask: np.ndarray, path: Path, num_classes: int, value_map: dict[int, int] | None,
             threshold: float | None) -> np.ndarray:
    """Class indices (uint8) from a raw mask, or a `DatasetFormatError` naming the file and the bad values."""
    mask = grey_mask(mask, path)
    if threshold is not None:
        return (mask > threshold).astype(np.uint8)
    values = np.unique(mask)
    if value_map is not None:
        unknown = [int(v) for v in values if int(v) not in value_map]
        if unknown:
            raise DatasetFormatError(f"Mask {path} has values {unknown[:10]} not in value_map {value_map}.")
        lookup = np.zeros(int(values.max()) + 1, dtype=np.uint8)
        for raw, cls in value_map.items():
            if raw < len(lookup):
                lookup[raw] = cls
        return lookup[mask]
    bad = [int(v) for v in values if v >= num_classes or v < 0]
    if bad:
        raise DatasetFormatError(
            f"Mask {path} has values {bad[:10]} outside the {num_classes} classes; pass value_map (e.g. "
            f"{{0: 0, 255: 1}}) or threshold (e.g. 127), or id2label with more classes."
        )
    return mask.astype(np.uint8)


def read_instances(mask: np.ndarray, path: Path) -> np.ndarray:
    """A uint16 instance map from an instance mask file's pixels, or a `DatasetFormatError` naming the file."""
    try:
        return instance_map(grey_mask(mask, path, "save instance masks as one grey channel"),
                            f"Instance mask {path}").astype(np.uint16)
    except ValueError as err:
        raise DatasetFormatError(f"{err} Save one integer id per object (16-bit PNG or TIFF).") from None


def _generate(items, num_classes, value_map, threshold, group_pattern, skip_bad, boundary_width=None):
    # boundary_width: None for class masks; 0 for instance masks with a foreground label; else the boundary width
    def read(item):
        stem, image_path, mask_path = item
        image, mask = read_image(image_path), read_image(mask_path)
        check_same_size(image, mask, image_path, mask_path)
        row = {}
        if boundary_width is not None:
            instances = read_instances(mask, mask_path)
            label = boundary_target(instances, boundary_width) if boundary_width else (instances > 0).astype(np.uint8)
            row["instances"] = instances
        else:
            label = map_mask(mask, mask_path, num_classes, value_map, threshold)
        return {"image": image, "label": label, "case_id": _group(stem, group_pattern),
                "classes": classes_present(label), **row}

    yield from skipping("image-mask-folder", items, read, skip_bad)


def _group(stem: str, pattern: str | None) -> str:
    if pattern is None:
        return stem
    match = re.search(pattern, stem)
    if not match:
        raise DatasetFormatError(f"group_pattern {pattern!r} does not match the file stem {stem!r}.")
    return match.group(1) if match.groups() else match.group(0)


def load_image_mask_folder(
    data_dir: str | Path,
    images: str = "images",
    masks: str = "masks",
    mask_suffix: str = "",
    id2label: dict[int, str] | None = None,
    value_map: dict[int, int] | None = None,
    threshold: float | None = None,
    group_pattern: str | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
    instance_masks: bool = False,
    boundary: bool = True,
    boundary_width: int = 1,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the generic images/masks layout (see the module docstring) as a `DatasetDict`.

    `instance_masks=True` reads each mask as an instance map (one id per object) and gives the 3-class boundary
    target in `label` (background / interior / boundary, boundary `boundary_width` pixels wide on each side of an
    object) and the map in `instances`; `id2label`, `value_map` and `threshold` do not apply then. With
    `boundary=False`, `label` is background / foreground instead (a semantic model scored on true instances).

    `skip_bad=True` skips unreadable or inconsistent pairs instead of failing; they are counted and reported in a
    warning. Without it the first bad pair raises a `DatasetFormatError` naming the file and the fix.
    `num_proc` reads files in parallel when building the cache; `streaming=True` reads them lazily instead.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    if instance_masks:
        if id2label is not None or value_map is not None or threshold is not None:
            raise DatasetFormatError("instance_masks=True sets the classes (background, interior, boundary) itself: "
                                     "leave id2label, value_map and threshold unset.")
        if int(boundary_width) < 1:
            raise DatasetFormatError(f"boundary_width must be >= 1 pixel, got {boundary_width}.")
        id2label = dict(INSTANCE_ID2LABEL) if boundary else None
    id2label = {int(k): v for k, v in (id2label or {0: "background", 1: "foreground"}).items()}
    features = segmentation_features(id2label, extra={"instances": datasets.Image()} if instance_masks else None)
    predefined = [s for s in ("train", "validation", "test") if (root / s / images).is_dir()]
    if predefined:
        split_pairs = {s: pair_files(root / s / images, root / s / masks, mask_suffix) for s in predefined}
    else:
        pairs = pair_files(root / images, root / masks, mask_suffix)
        groups = [_group(stem, group_pattern) for stem, _, _ in pairs]
        train, validation = group_split(groups, validation_fraction, seed)
        split_pairs = {"train": [pairs[i] for i in train], "validation": [pairs[i] for i in validation]}
    return build_splits("image-mask-folder", _generate, split_pairs, features, cache_dir=cache_dir,
                        num_proc=num_proc, streaming=streaming,
                        gen_kwargs=dict(num_classes=len(id2label), value_map=value_map, threshold=threshold,
                                        group_pattern=group_pattern, skip_bad=skip_bad,
                                        **_instance_kwargs(instance_masks, boundary, boundary_width)))


def _instance_kwargs(instance_masks: bool, boundary: bool, boundary_width: int) -> dict[str, int]:
    """`_generate`'s `boundary_width` (0: a foreground label); none for class masks, keeping their cache keys."""
    return {"boundary_width": int(boundary_width) if boundary else 0} if instance_masks else {}
