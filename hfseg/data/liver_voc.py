"""`liver-voc`: liver CT slices in the "ganzang_Datasets" VOC layout (xuanxixi's Unet / Att-Unet / Unet_BN).

```
data_dir/Images/<stem>.png                      # 000.png ...: RGB whose three channels are identical
data_dir/Labels/<stem>_mask.png                 # L, values {0, 255}, liver = 255
data_dir/ImageSets/Segmentation/{trainval,train,val,test}.txt    # one stem per line ("000"), no extension
```
Images: with `grayscale=True` (default) an RGB image whose channels are identical is stored as one grey channel;
one whose channels differ is kept RGB (so a dataset could then mix grey and RGB rows; `grayscale=False` keeps every
image as stored).

Labels: 0 background, 1 liver = label value > `threshold` (127). The original code inherits `png <= 127.5 -> 1`
(its class 1 is the black region); this loader uses the liver, as the README figure shows. Label values outside
`label_values` (default (0, 255)) are an error, which catches 0/1 masks that the threshold would read as empty;
pass `label_values=None` to threshold any grey values.

Splits: with `use_imagesets=True` and `ImageSets/Segmentation/` present, `train.txt` -> train, `val.txt` ->
validation and a non-empty `test.txt` -> test (png2txt.py: seed 0, 360/40, empty test). Without train.txt/val.txt,
the stems of `trainval.txt` are re-split as below (a non-empty test.txt is still the test split). A listed stem
missing on disk is an error naming the list and the stem (with `skip_bad=True` it is skipped and counted); a stem in
two lists is an error. ⚠ The published split is per slice and there are no patient ids, so it leaks: slices of one
patient (likely neighbours) sit in train and validation; `case_id` is then the stem.
Re-splitting (`use_imagesets=False`, which ignores ImageSets entirely, or no ImageSets folder) draws
`validation_fraction` of the blocks of `group_size` consecutive stems (numeric order), ⚠ on the guess that
consecutive stems are adjacent slices of one patient; the block (e.g. `"000-009"`) is the `case_id`. That limits,
but cannot rule out, leaks at patients' boundaries. Every image then needs its label and every label its image.

The Arrow cache is keyed by the file list, not the file contents: after editing files in place, load with a new
`cache_dir` (or delete the old one).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .common import IMAGE_EXTENSIONS, DatasetFormatError, build_splits, check_same_size, grey_mask, read_image, require_dir, skipping
from .features import classes_present, segmentation_features
from .splits import group_split

NAME = "liver-voc"
ID2LABEL = {0: "background", 1: "liver"}
LISTS = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}
# An item: (case_id, image path, label path).
Item = tuple[str, Path, Path]


def _stem_key(stem: str) -> tuple[int, int | str]:
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def _files(folder: Path, what: str, suffix: str = "") -> dict[str, Path]:
    """Stem (less `suffix`) -> path of the images in `folder`, which must exist and hold some."""
    require_dir(folder, what)
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.stem.endswith(suffix) and not path.name.startswith("."):
            files[path.stem[: len(path.stem) - len(suffix)]] = path
    if not files:
        raise DatasetFormatError(f"Folder {folder} holds no {what} (<stem>{suffix}.png).")
    return files


def _read_list(path: Path) -> list[str]:
    stems = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for stem in stems:
        if "/" in stem or stem.endswith(".png"):
            raise DatasetFormatError(f"{path} lists {stem!r}: expected bare stems such as '000', one per line.")
    return stems


def _listed_items(lists: dict[str, Path], images: dict[str, Path], labels: dict[str, Path], image_dir: Path,
                  label_dir: Path, label_suffix: str, skip_bad: bool) -> tuple[dict[str, list[Item]], dict[str, int]]:
    """Items of each list (stem as case_id) and the number listed; a stem missing on disk is an error or skipped."""
    split_items, listed, seen = {}, {}, {}
    for split, path in lists.items():
        stems = _read_list(path)
        split_items[split], listed[split] = [], len(stems)
        for stem in stems:
            if stem in seen:
                raise DatasetFormatError(f"Stem {stem!r} is listed in both {seen[stem]} and {path}: remove one.")
            seen[stem] = path
            if stem in images and stem in labels:
                split_items[split].append((stem, images[stem], labels[stem]))
                continue
            where = image_dir / f"{stem}.png" if stem not in images else label_dir / f"{stem}{label_suffix}.png"
            error = f"{path} lists {stem!r} but {where} is missing: add the file or remove the line."
            if not skip_bad:
                raise DatasetFormatError(error)
            warnings.warn(f"{NAME}: skipping an item: {error}", stacklevel=5)
    return split_items, listed


def _resplit_items(stems: Sequence[str], images: dict[str, Path], labels: dict[str, Path], group_size: int,
                   validation_fraction: float, seed: int) -> dict[str, list[Item]]:
    """Train and validation items from whole blocks of `group_size` consecutive stems; the block is the case id."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}.")
    ordered = sorted(stems, key=_stem_key)
    case_of = {}
    for i in range(0, len(ordered), group_size):
        block = ordered[i : i + group_size]
        case_of.update({stem: f"{block[0]}-{block[-1]}" if len(block) > 1 else block[0] for stem in block})
    train, validation = group_split([case_of[s] for s in ordered], validation_fraction, seed)
    return {split: [(case_of[ordered[i]], images[ordered[i]], labels[ordered[i]]) for i in index]
            for split, index in (("train", train), ("validation", validation))}


def _check_pairs(stems: Sequence[str], images: dict[str, Path], labels: dict[str, Path], image_dir: Path,
                 label_dir: Path, label_suffix: str) -> None:
    lonely = sorted(set(stems) - set(labels), key=_stem_key)
    if lonely:
        raise DatasetFormatError(f"{len(lonely)} image(s) without a label, e.g. {images[lonely[0]]}: expected "
                                 f"{label_dir / (lonely[0] + label_suffix)}.png.")
    orphans = sorted(set(labels) - set(images), key=_stem_key)
    if orphans:
        raise DatasetFormatError(f"{len(orphans)} label(s) without an image, e.g. {labels[orphans[0]]}: expected "
                                 f"{image_dir / orphans[0]}.png.")


def grey_image(image: np.ndarray, grayscale: bool) -> np.ndarray:
    """One channel when `grayscale` and the three channels are identical; otherwise the pixels as stored."""
    if grayscale and image.ndim == 3 and image.shape[-1] == 3 and (image == image[..., :1]).all():
        return image[..., 0]
    return image


def liver_mask(label: np.ndarray, path: Path, threshold: float, label_values: tuple[int, ...] | None) -> np.ndarray:
    """0/1 uint8 liver mask from a grey (or identical-channel) label PNG, or an error naming the file."""
    label = grey_mask(label, path, "save labels as one grey channel")
    if label_values is not None:
        bad = sorted(set(np.unique(label).tolist()) - set(label_values))
        if bad:
            raise DatasetFormatError(
                f"Label {path} has values {bad[:10]} outside {sorted(label_values)}: for 0/1 labels pass threshold=0 "
                "and label_values=(0, 1); to threshold any grey values pass label_values=None."
            )
    return (label > threshold).astype(np.uint8)


def _generate(items: list[Item], threshold: float, label_values: tuple[int, ...] | None, grayscale: bool,
              skip_bad: bool) -> Iterator[dict[str, Any]]:
    def read(item: Item) -> dict[str, Any]:
        case_id, image_path, label_path = item
        image, label = read_image(image_path), read_image(label_path)
        check_same_size(image, label, image_path, label_path)
        mask = liver_mask(label, label_path, threshold, label_values)
        return {"image": grey_image(image, grayscale), "label": mask, "case_id": case_id,
                "classes": classes_present(mask)}

    yield from skipping(NAME, items, read, skip_bad)


def _imageset_lists(folder: Path) -> dict[str, Path]:
    """The list files to use: train/val (both or neither), a non-empty test; {} means re-split trainval."""
    present = {split: folder / name for split, name in LISTS.items() if (folder / name).is_file()}
    if ("train" in present) != ("validation" in present):
        missing = LISTS["validation"] if "train" in present else LISTS["train"]
        raise DatasetFormatError(f"{folder} has only one of train.txt/val.txt: add {folder / missing} or remove both "
                                 "(trainval.txt is then re-split), or pass use_imagesets=False.")
    if "test" in present and not _read_list(present["test"]):
        del present["test"]  # png2txt.py writes an empty test.txt
    return present


def _split_items(list_dir: Path, images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path,
                 use_imagesets: bool, group_size: int, label_suffix: str, validation_fraction: float, seed: int,
                 skip_bad: bool) -> tuple[dict[str, list[Item]], dict[str, int]]:
    """Items per split (see the module docstring) and the number of items listed per split."""
    if not (use_imagesets and list_dir.is_dir()):
        _check_pairs(list(images), images, labels, image_dir, label_dir, label_suffix)
        return _resplit_items(list(images), images, labels, group_size, validation_fraction, seed), {}
    lists = _imageset_lists(list_dir)
    if "train" in lists:
        return _listed_items(lists, images, labels, image_dir, label_dir, label_suffix, skip_bad)
    trainval = list_dir / "trainval.txt"
    if not trainval.is_file():
        raise DatasetFormatError(f"{list_dir} has no train.txt/val.txt nor trainval.txt: add them, or pass "
                                 "use_imagesets=False to split Images/ by validation_fraction.")
    listed, expected = _listed_items({"trainval": trainval, **lists}, images, labels, image_dir, label_dir,
                                     label_suffix, skip_bad)
    stems = [stem for stem, _, _ in listed.pop("trainval")]
    expected.pop("trainval")
    return {**_resplit_items(stems, images, labels, group_size, validation_fraction, seed), **listed}, expected


def load_liver_voc(
    data_dir: str | Path,
    use_imagesets: bool = True,
    group_size: int = 10,
    threshold: float = 127,
    label_values: tuple[int, ...] | None = (0, 255),
    grayscale: bool = True,
    label_suffix: str = "_mask",
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the ganzang liver VOC layout (see the module docstring) as a `DatasetDict`.

    Args:
        use_imagesets: use `ImageSets/Segmentation/*.txt` when present (the published, per-slice, leaking split).
        group_size: consecutive stems per group when re-splitting by `validation_fraction`.
        threshold: liver = label value > threshold.
        label_values: the raw label values allowed, or None to threshold anything.
        grayscale: store identical-channel RGB images as one grey channel.
        label_suffix: `Labels/<stem><label_suffix>.png`.
        skip_bad: skip unreadable or inconsistent items (warned and counted) instead of raising.
        num_proc: parallel reads when building the cache; `streaming=True` reads lazily instead.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    image_dir, label_dir = root / "Images", root / "Labels"
    images = _files(image_dir, "CT slice images")
    labels = _files(label_dir, "liver labels", label_suffix)
    split_items, expected = _split_items(root / "ImageSets" / "Segmentation", images, labels, image_dir, label_dir,
                                         use_imagesets, group_size, label_suffix, validation_fraction, seed, skip_bad)
    return build_splits(NAME, _generate, split_items, segmentation_features(ID2LABEL), cache_dir=cache_dir,
                        num_proc=num_proc, streaming=streaming, expected_rows=expected,
                        gen_kwargs=dict(threshold=threshold, grayscale=grayscale, skip_bad=skip_bad,
                                        label_values=None if label_values is None else tuple(label_values)))
