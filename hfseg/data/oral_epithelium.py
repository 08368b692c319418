"""`oral-epithelium`: OralEpitheliumDB H&E nuclei masks with the dysplasia grade, in either of two layouts.

`layout="archive"`, the raw OralEpitheliumDB archive (Zenodo record 17693395):
```
data_dir/Original ROI images/{healthy,mild,moderate,severe}/<stem>.tif          # RGB 8-bit, e.g. healthy-01-roi1
data_dir/Gold_Standard_Semantic_Segmentation/{healthy,...}/<stem>.png            # same stem as the image
```
`layout="study"`, the folders of "Semantic Segmentation with Attention models for Cancer images", its own split:
```
data_dir/Training Images/<stem>.<ext>    data_dir/Training Masks/<stem>[<mask suffix>].<ext>
data_dir/Test Images/<stem>.<ext>        data_dir/Test Masks/<stem>[<mask suffix>].<ext>
```
`layout=None` picks the one whose folders exist. Images are kept as stored (RGB 8-bit).

Labels: 0 background, 1 nucleus = mask value > `threshold` (default 0; `invert=True` for dark nuclei on white).
⚠ The READMEs disagree on the mask PNG (3-channel 8-bit or 1-channel 1-bit) and the foreground value is
unconfirmed, so grey, 1-bit and 3-channel masks with identical channels are all read. With `strict_binary=True` a
mask with more than two distinct values is an error (it is likely an instance or coloured mask, not the semantic
one). Extra column `grade`: a `ClassLabel` healthy/mild/moderate/severe. In the archive it is the folder name; in
the study layout (⚠ naming unknown) it is the stem prefix when that names a grade, otherwise -1 (missing).

Grouping unit: the mouse, `<grade>-<NN>` from stems `<grade>-<NN>-roi<k>` (`group_pattern`, a regex whose first
group is the mouse; ⚠ inferred from the file names). A stem it does not match is its own group: a warning says how
many, because ROIs of one mouse could then leak across splits. `case_id` holds the group. Splits: the archive has
no official split, so `train`/`validation` are drawn by whole mice, per grade when `stratify=True` (each grade
represented, hence up to one extra mouse per grade in validation; plain grouped split when a mouse spans grades).
The study layout keeps its own test set (`Test *`, optional as a pair) and draws `validation` from `Training *`
the same way. ⚠ That the study pairs images and masks by stem is assumed; `mask_suffix=None` accepts the same stem
or the stem plus one of `_mask`, `-mask`, `_gt`, `_label`, `_seg`; a string accepts only that suffix (or none).

The Arrow cache is keyed by the file list, not the file contents: after editing files in place, load with a new
`cache_dir` (or delete the old one).
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .common import IMAGE_EXTENSIONS, DatasetFormatError, build_splits, check_same_size, grey_mask, read_image, require_dir, skipping
from .features import classes_present, segmentation_features
from .splits import group_split

NAME = "oral-epithelium"
GRADES = ("healthy", "mild", "moderate", "severe")
ID2LABEL = {0: "background", 1: "nucleus"}
MASK_SUFFIXES = ("_mask", "-mask", "_gt", "_label", "_seg")
STUDY_FOLDERS = {"train": ("Training Images", "Training Masks"), "test": ("Test Images", "Test Masks")}
# An item: (case_id, grade index or -1, image path, mask path).
Item = tuple[str, int, Path, Path]


def image_files(folder: Path, what: str) -> dict[str, Path]:
    """Stem -> path of the images in `folder`; a missing or empty folder, or a stem twice, is an error."""
    require_dir(folder, what)
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
            continue
        if path.stem in files:
            raise DatasetFormatError(f"{files[path.stem]} and {path} share the stem {path.stem!r}; keep one.")
        files[path.stem] = path
    if not files:
        raise DatasetFormatError(f"Folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): expected {what}.")
    return files


def _mask_key(stem: str, images: dict[str, Path], mask_suffix: str | None) -> str:
    suffixes = MASK_SUFFIXES if mask_suffix is None else (mask_suffix,)
    candidates = [stem] + [stem[: -len(s)] for s in suffixes if s and stem.lower().endswith(s.lower())]
    return next((c for c in candidates if c in images), candidates[-1])


def pair_by_stem(image_dir: Path, mask_dir: Path, mask_suffix: str | None) -> list[tuple[str, Path, Path]]:
    """(stem, image, mask) for every image; an image without a mask (or the reverse) is an error."""
    images = image_files(image_dir, "the images")
    masks: dict[str, Path] = {}
    for stem, path in image_files(mask_dir, "the masks, one per image with the same stem").items():
        key = _mask_key(stem, images, mask_suffix)
        if key in masks:
            raise DatasetFormatError(f"Masks {masks[key]} and {path} both belong to the image {key!r}; keep one.")
        masks[key] = path
    lonely = sorted(set(images) - set(masks))
    if lonely:
        raise DatasetFormatError(
            f"{len(lonely)} image(s) without a mask, e.g. {images[lonely[0]]}: expected {mask_dir / lonely[0]}.png "
            f"(or with a suffix; mask_suffix={mask_suffix!r})."
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DatasetFormatError(
            f"{len(orphans)} mask(s) without an image, e.g. {masks[orphans[0]]}: expected an image "
            f"{image_dir / orphans[0]}.<ext> (check mask_suffix={mask_suffix!r})."
        )
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def mouse_of(stem: str, group_pattern: str) -> str | None:
    """The group (first regex group, else the whole match) of a stem, or None when the pattern does not match."""
    match = re.match(group_pattern, stem)
    if not match:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _grade_of_stem(stem: str) -> int:
    lower = stem.lower()
    return next((i for i, grade in enumerate(GRADES) if lower.startswith(grade)), -1)


def _items(pairs: list[tuple[str, Path, Path]], grades: list[int], group_pattern: str, where: Path,
           warn: bool = True) -> list[Item]:
    groups = [mouse_of(stem, group_pattern) for stem, _, _ in pairs]
    unmatched = [stem for (stem, _, _), group in zip(pairs, groups, strict=True) if group is None]
    if unmatched and warn:  # only where the items are split: a fixed test set cannot leak by grouping
        warnings.warn(
            f"{NAME}: group_pattern {group_pattern!r} does not match {len(unmatched)} stem(s) under {where}, e.g. "
            f"{unmatched[0]!r}; each is its own group, so ROIs of one mouse may leak across splits.",
            stacklevel=3,
        )
    return [(group or stem, grade, image, mask)
            for (stem, image, mask), group, grade in zip(pairs, groups, grades, strict=True)]


def _archive_items(root: Path, images_dir: str, masks_dir: str, mask_suffix: str | None,
                   group_pattern: str) -> list[Item]:
    image_root = require_dir(root / images_dir, "one folder per grade: " + ", ".join(GRADES))
    mask_root = require_dir(root / masks_dir, "one folder of semantic masks per grade: " + ", ".join(GRADES))
    for folder in (image_root, mask_root):
        unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in GRADES)
        if unknown:
            raise DatasetFormatError(f"Unknown grade folder(s) {unknown} in {folder}: expected {', '.join(GRADES)}.")
    present = [g for g in GRADES if (image_root / g).is_dir() or (mask_root / g).is_dir()]
    if not present:
        raise DatasetFormatError(f"{image_root} holds no grade folder: expected {', '.join(GRADES)}.")
    pairs, grades = [], []
    for grade in present:
        found = pair_by_stem(image_root / grade, mask_root / grade, mask_suffix)
        pairs += found
        grades += [GRADES.index(grade)] * len(found)
    return _items(pairs, grades, group_pattern, image_root)


def _study_items(root: Path, mask_suffix: str | None, group_pattern: str) -> dict[str, list[Item]]:
    split_items = {}
    for split, (images, masks) in STUDY_FOLDERS.items():
        if split == "test" and not (root / images).exists() and not (root / masks).exists():
            continue  # the test pair is optional; a half pair is an error below
        pairs = pair_by_stem(root / images, root / masks, mask_suffix)
        grades = [_grade_of_stem(stem) for stem, _, _ in pairs]
        split_items[split] = _items(pairs, grades, group_pattern, root / images, warn=split == "train")
    return split_items


def split_by_mouse(items: Sequence[Item], validation_fraction: float, seed: int,
                   stratify: bool) -> tuple[list[Item], list[Item]]:
    """Train and validation items, whole groups on one side; per grade when `stratify` and no group spans grades."""
    groups = [item[0] for item in items]
    grades_of: dict[str, set[int]] = defaultdict(set)
    for group, grade, _, _ in items:
        grades_of[group].add(grade)
    if not stratify or any(len(g) > 1 for g in grades_of.values()):
        train, validation = group_split(groups, validation_fraction, seed)
    else:
        train, validation = [], []
        for grade in sorted({item[1] for item in items}):
            index = [i for i, item in enumerate(items) if item[1] == grade]
            t, v = group_split([groups[i] for i in index], validation_fraction, seed)
            train += [index[i] for i in t]
            validation += [index[i] for i in v]
    return [items[i] for i in sorted(train)], [items[i] for i in sorted(validation)]


def nucleus_mask(mask: np.ndarray, path: Path, threshold: float, invert: bool, strict_binary: bool) -> np.ndarray:
    """0/1 uint8 from a grey, 1-bit or 3-channel binary mask, or a `DatasetFormatError` naming the file."""
    if mask.ndim == 3:
        if mask.shape[-1] in (2, 4):  # LA / RGBA: an opaque alpha carries nothing
            if not (mask[..., -1] == mask[..., -1].max()).all():
                raise DatasetFormatError(f"Mask {path} has a varying alpha channel; save masks without alpha.")
            mask = mask[..., :-1]
    mask = grey_mask(mask, path, "an instance-coloured mask? Use the binary masks of "
                     "Gold_Standard_Semantic_Segmentation, or save masks as one grey channel")
    if strict_binary:
        values = np.unique(mask)
        if len(values) > 2:
            raise DatasetFormatError(
                f"Mask {path} has {len(values)} distinct values (e.g. {[int(v) for v in values[:6]]}), not a binary "
                "nuclei mask: point to the semantic masks, or pass strict_binary=False to threshold it anyway."
            )
    nucleus = mask <= threshold if invert else mask > threshold
    return nucleus.astype(np.uint8)


def _generate(items: list[Item], threshold: float, invert: bool, strict_binary: bool,
              skip_bad: bool) -> Iterator[dict[str, Any]]:
    def read(item: Item) -> dict[str, Any]:
        case_id, grade, image_path, mask_path = item
        image, mask = read_image(image_path), read_image(mask_path)
        check_same_size(image, mask, image_path, mask_path)
        label = nucleus_mask(mask, mask_path, threshold, invert, strict_binary)
        return {"image": image, "label": label, "case_id": case_id, "classes": classes_present(label), "grade": grade}

    yield from skipping(NAME, items, read, skip_bad)


def _detect_layout(root: Path, images_dir: str) -> str:
    archive, study = (root / images_dir).is_dir(), (root / STUDY_FOLDERS["train"][0]).is_dir()
    if archive and study:
        raise DatasetFormatError(f"{root} holds both '{images_dir}' and 'Training Images': pass layout='archive' or "
                                 "layout='study'.")
    if not archive and not study:
        raise DatasetFormatError(
            f"{root} holds neither '{images_dir}/<grade>/' (the OralEpitheliumDB archive) nor 'Training Images/' (the "
            "study's split): point data_dir at the folder that holds them."
        )
    return "archive" if archive else "study"


def load_oral_epithelium(
    data_dir: str | Path,
    layout: str | None = None,
    threshold: float = 0,
    invert: bool = False,
    strict_binary: bool = True,
    group_pattern: str = r"^([A-Za-z]+-\d+)-roi\d+",
    stratify: bool = True,
    mask_suffix: str | None = None,
    images_dir: str = "Original ROI images",
    masks_dir: str = "Gold_Standard_Semantic_Segmentation",
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load OralEpitheliumDB (see the module docstring) as a `DatasetDict`: `train`, `validation` (and `test`).

    Args:
        layout: `"archive"`, `"study"` or None to detect it from the folders.
        threshold, invert: nucleus = mask value > threshold (<= threshold with `invert`).
        strict_binary: a mask with more than two distinct values is an error.
        group_pattern: regex whose first group is the mouse id in a stem.
        stratify: draw validation mice per grade.
        mask_suffix: None to accept common suffixes (`_mask`, ...), or the one suffix masks carry (study layout).
        images_dir, masks_dir: the archive's folder names.
        skip_bad: skip unreadable or inconsistent pairs (warned and counted) instead of raising.
        num_proc: parallel reads when building the cache; `streaming=True` reads lazily instead.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    layout = layout or _detect_layout(root, images_dir)
    if layout == "archive":
        train, validation = split_by_mouse(_archive_items(root, images_dir, masks_dir, mask_suffix, group_pattern),
                                           validation_fraction, seed, stratify)
        split_items = {"train": train, "validation": validation}
    elif layout == "study":
        study = _study_items(root, mask_suffix, group_pattern)
        train, validation = split_by_mouse(study["train"], validation_fraction, seed, stratify)
        split_items = {"train": train, "validation": validation, "test": study.get("test", [])}
    else:
        raise ValueError(f"layout must be 'archive', 'study' or None, got {layout!r}.")
    features = segmentation_features(ID2LABEL, extra={"grade": datasets.ClassLabel(names=list(GRADES))})
    return build_splits(NAME, _generate, split_items, features, cache_dir=cache_dir, num_proc=num_proc,
                        streaming=streaming, gen_kwargs=dict(threshold=threshold, invert=invert,
                                                             strict_binary=strict_binary, skip_bad=skip_bad))
