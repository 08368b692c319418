"""`uw-madison-gi`: UW-Madison GI Tract Image Segmentation (Kaggle), 16-bit MRI slices with RLE organ masks.

Layout read (`data_dir` holds both; `data_dir` may also be the `train/` folder next to `train.csv`):
```
train.csv                                                   # id,class,segmentation
train/case<N>/case<N>_day<D>/scans/slice_<SSSS>_<W>_<H>_<pw>_<ph>.png
```
`id` is `case<N>_day<D>_slice_<SSSS>`, with one row per class (large_bowel, small_bowel, stomach); an empty
`segmentation` is no mask, and a class row missing for a slice counts as no mask too. The PNG is 16-bit grey (kept
losslessly); its name gives the width W and height H (the array is H rows x W cols: checked against the loaded
PNG, a mismatch is an error) and the pixel spacing in mm along x (`pw`) and y (`ph`). Every slice is listed in
the CSV, so a PNG without CSV rows, or CSV rows without a PNG, is an error.

Label (single-label map): 0 background, 1 large_bowel, 2 small_bowel, 3 stomach, decoded with `rle_decode` on
the PNG's (H, W). ⚠ `rle_order="C"` (row-major) follows the public code that trained on this data (awsaf49's
UWMGI notebooks, quandapro/uw-madison, the LearnOpenCV prep script); the competition's text says pixels are
"numbered from top to bottom, then left to right" (column-major, `"F"`). Check a decoded mask against its image
before training if in doubt.

⚠ Organ masks overlap on some slices (a multi-label task reduced to one label per pixel). `overlap` decides:
- `"priority"` (default): the first class of `priority` that covers the pixel wins. The default priority
  stomach > large_bowel > small_bowel keeps the compact, sharply walled stomach whole and gives the contested
  pixels to the large bowel over the small bowel, the most diffuse class, whose Dice loses least from them;
- `"background"`: overlapping pixels become background, as the public prep script of the 2D derivative does;
- `"error"`: an overlap is a `DatasetFormatError` naming the slice.

Extra columns: `slice` (the CSV id) and `pixel_spacing` ([ph, pw]: mm between rows, then between columns, the
order of the array axes and of DICOM PixelSpacing; the file name gives pw first).

Split grouping: by case (`case_id` = `case<N>`), so no patient's days leak across splits; `group_by="case_day"`
groups by scan day (`case<N>_day<D>`) instead, which mirrors the competition's later-days test cases but lets
one patient appear in both splits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

from .common import DatasetFormatError, build_splits, read_image, skipping
from .features import classes_present, segmentation_features
from .rle import rle_decode
from .splits import group_split

NAME = "uw-madison-gi"
UW_ID2LABEL = {0: "background", 1: "large_bowel", 2: "small_bowel", 3: "stomach"}
CLASSES = ("large_bowel", "small_bowel", "stomach")
DEFAULT_PRIORITY = ("stomach", "large_bowel", "small_bowel")

_ID = re.compile(r"(case\d+)_(day\d+)_slice_(\d+)")
_SCAN = re.compile(r"slice_(\d+)_(\d+)_(\d+)_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)\.png")

# An item: (slice id, case, day, PNG path or "", RLEs in CLASSES order, problem or "").
Item = tuple[str, str, str, str, tuple[str, str, str], str]


def _slice_id(case: str, day: str, number: str) -> str:
    return f"{case}_{day}_slice_{int(number):04d}"


def read_train_csv(path: Path) -> dict[str, tuple[str, str, str]]:
    """Slice id -> its three RLE strings (CLASSES order, "" = no mask), or an error naming the bad row."""
    import pandas as pd

    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing: expected train.csv (id,class,segmentation) next to train/.")
    try:
        table = pd.read_csv(path, dtype=str)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DatasetFormatError(f"Cannot read {path} as CSV ({err}): restore the competition's train.csv.") from err
    missing = {"id", "class", "segmentation"} - set(table.columns)
    if missing:
        raise DatasetFormatError(f"{path} lacks the columns {sorted(missing)}: expected the header "
                                 "id,class,segmentation.")
    table = table.fillna("")
    slices: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for row, (sid, cls, rle) in enumerate(zip(table["id"], table["class"], table["segmentation"]), start=2):
        match = _ID.fullmatch(sid.strip())
        if not match:
            raise DatasetFormatError(f"{path} line {row}: id {sid!r} is not case<N>_day<D>_slice_<SSSS>; fix the row.")
        if cls not in CLASSES:
            raise DatasetFormatError(f"{path} line {row}: class {cls!r} is not one of {list(CLASSES)}; fix the row.")
        key = _slice_id(*match.groups())
        if (key, cls) in seen:
            raise DatasetFormatError(f"{path} line {row}: a second {cls} row for {sid}; remove the duplicate.")
        seen.add((key, cls))
        slices.setdefault(key, ["", "", ""])[CLASSES.index(cls)] = rle.strip()
    if not slices:
        raise DatasetFormatError(f"{path} has no rows: expected three per slice.")
    return {key: tuple(rles) for key, rles in slices.items()}


def list_scans(train_dir: Path) -> dict[str, tuple[str, str, str, str]]:
    """Slice id -> (case, day, PNG path, problem or "") for every PNG under `train/case*/case*_day*/scans/`."""
    if not train_dir.is_dir():
        raise DatasetFormatError(f"Folder {train_dir} is missing: expected train/case<N>/case<N>_day<D>/scans/.")
    scans: dict[str, tuple[str, str, str, str]] = {}
    for path in sorted(train_dir.glob("*/*/scans/*.png")):
        case_dir, day_dir = path.parents[2].name, path.parents[1].name
        match, day_match = _SCAN.fullmatch(path.name), re.fullmatch(r"(case\d+)_(day\d+)", day_dir)
        problem = ""
        if not day_match or day_match.group(1) != case_dir:
            problem = (f"Scan {path} is not under train/case<N>/case<N>_day<D>/scans/: move it into its case and "
                       "day folders.")
            case, day = case_dir, day_dir
        else:
            case, day = day_match.groups()
        if not match and not problem:
            problem = (f"Scan {path} is not named slice_<SSSS>_<W>_<H>_<pw>_<ph>.png: rename it as in the "
                       "competition data.")
        key = _slice_id(case, day, match.group(1)) if match and not problem else f"{day_dir}/{path.stem}"
        if key in scans:
            raise DatasetFormatError(f"Scans {scans[key][2]} and {path} are both {key}: remove one of them.")
        scans[key] = (case, day, str(path), problem)
    if not scans:
        raise DatasetFormatError(f"Folder {train_dir} holds no scans/*.png: expected "
                                 "train/case<N>/case<N>_day<D>/scans/slice_<SSSS>_<W>_<H>_<pw>_<ph>.png.")
    return scans


def pair_items(csv_path: Path, rles: dict[str, tuple[str, str, str]],
               scans: dict[str, tuple[str, str, str, str]]) -> list[Item]:
    """One item per slice, sorted by id; a PNG without CSV rows or CSV rows without a PNG carry a problem."""
    items = []
    for key in sorted(set(rles) | set(scans)):
        if key in scans:
            case, day, png, problem = scans[key]
            if not problem and key not in rles:
                problem = (f"Scan {png} has no rows in {csv_path} (id {key}): every slice is listed there; add its "
                           "three rows (empty segmentation = no mask) or remove the PNG.")
        else:
            case, day = _ID.fullmatch(key).groups()[:2]
            png, problem = "", (f"{csv_path} lists {key} but there is no scan "
                                f"train/{case}/{case}_{day}/scans/slice_{key[-4:]}_<W>_<H>_<pw>_<ph>.png: restore it "
                                "or remove its rows.")
        items.append((key, case, day, png, rles.get(key, ("", "", "")), problem))
    return items


def read_scan(path: str) -> tuple[np.ndarray, list[float]]:
    """The scan's grey pixels (16-bit kept) checked against the W x H in its name, and [ph, pw] in mm."""
    image = read_image(Path(path))
    if image.ndim == 3:
        if not (image == image[..., :1]).all():
            raise DatasetFormatError(f"Scan {path} has differing colour channels: expected a 16-bit grey PNG.")
        image = image[..., 0]
    if image.dtype.kind == "i" and image.min() >= 0 and image.max() <= 65535:
        image = image.astype(np.uint16)  # 16-bit PNGs that an older Pillow opens as 32-bit "I"
    _, width, height, pw, ph = _SCAN.fullmatch(Path(path).name).groups()
    if image.shape != (int(height), int(width)):
        raise DatasetFormatError(
            f"Scan {path} is {image.shape[0]} rows x {image.shape[1]} cols but its name says width {width}, height "
            f"{height}: rename it slice_<SSSS>_{image.shape[1]}_{image.shape[0]}_<pw>_<ph>.png or replace it."
        )
    return image, [float(ph), float(pw)]


def combine_masks(masks: Sequence[np.ndarray], overlap: str, priority: Sequence[str], slice_id: str) -> np.ndarray:
    """One class map (uint8) from the per-class binary masks (CLASSES order), resolving overlaps by `overlap`."""
    stack = np.stack(masks).astype(bool)
    counts = stack.sum(axis=0)
    if overlap == "error" and (counts > 1).any():
        raise DatasetFormatError(
            f"Slice {slice_id}: {int((counts > 1).sum())} pixels belong to two or more classes; pass "
            "overlap='priority' or overlap='background'."
        )
    label = np.zeros(stack.shape[1:], np.uint8)
    for name in reversed(priority):  # the first class of the priority paints last and wins
        cls = CLASSES.index(name)
        label[stack[cls]] = cls + 1
    if overlap == "background":
        label[counts > 1] = 0
    return label


def _generate(items, rle_order, overlap, priority, group_by, skip_bad):
    def read(item: Item) -> dict:
        slice_id, case, day, png, rles, problem = item
        if problem:
            raise DatasetFormatError(problem)
        image, spacing = read_scan(png)
        masks = []
        for cls, rle in zip(CLASSES, rles):
            try:
                masks.append(rle_decode(rle, image.shape, rle_order))
            except DatasetFormatError as err:
                raise DatasetFormatError(
                    f"train.csv id {slice_id}, class {cls}: {err} The scan {png} is {image.shape} (rows, cols); fix "
                    "the segmentation or the rle_order."
                ) from err
        label = combine_masks(masks, overlap, priority, slice_id)
        return {"image": image, "label": label, "case_id": case if group_by == "case" else f"{case}_{day}",
                "classes": classes_present(label), "slice": slice_id, "pixel_spacing": spacing}

    yield from skipping(NAME, items, read, skip_bad)


def _check_options(rle_order: str, overlap: str, priority: Sequence[str], group_by: str) -> None:
    if rle_order not in ("C", "F"):
        raise ValueError(f"rle_order must be 'C' (row-major, the public code) or 'F' (column-major), got "
                         f"{rle_order!r}.")
    if overlap not in ("priority", "background", "error"):
        raise ValueError(f"overlap must be 'priority', 'background' or 'error', got {overlap!r}.")
    if sorted(priority) != sorted(CLASSES):
        raise ValueError(f"priority must order all of {list(CLASSES)}, got {list(priority)}.")
    if group_by not in ("case", "case_day"):
        raise ValueError(f"group_by must be 'case' or 'case_day', got {group_by!r}.")


def load_uw_madison_gi(
    data_dir: str | Path,
    rle_order: str = "C",
    overlap: str = "priority",
    priority: Sequence[str] = DEFAULT_PRIORITY,
    annotated_only: bool = False,
    group_by: str = "case",
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the UW-Madison GI tract training data (see the module docstring) as a `DatasetDict` split by case.

    Args:
        data_dir: the folder holding `train.csv` and `train/`.
        rle_order: ⚠ `"C"` (row-major, the public code) or `"F"` (column-major, the competition's text).
        overlap: `"priority"`, `"background"` or `"error"` for pixels in two or more organ masks.
        priority: with `overlap="priority"`, the class names from winning to losing.
        annotated_only: keep only slices with at least one organ mask.
        group_by: `"case"` (patient, leak-free) or `"case_day"` (scan day) as the split unit and `case_id`.
        validation_fraction, seed: share of groups held out for validation, and the shuffle seed.
        skip_bad: skip (warn about and count) slices that cannot be read or paired instead of raising.
        cache_dir, num_proc, streaming: `datasets` caching, parallel reading, lazy reading.
    """
    priority = tuple(priority)
    _check_options(rle_order, overlap, priority, group_by)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    if root.name == "train" and not (root / "train.csv").exists() and (root.parent / "train.csv").is_file():
        root = root.parent
    csv_path = root / "train.csv"
    items = pair_items(csv_path, read_train_csv(csv_path), list_scans(root / "train"))
    if not skip_bad:
        # A misplaced or misnamed scan explains the CSV rows left without one: report scans first.
        problem = next((item[5] for item in sorted(items, key=lambda item: not item[3]) if item[5]), "")
        if problem:
            raise DatasetFormatError(problem)
    if annotated_only:
        items = [item for item in items if item[5] or any(item[4])]
    groups = [case if group_by == "case" else f"{case}_{day}" for _, case, day, *_ in items]
    train, validation = group_split(groups, validation_fraction, seed)
    features = segmentation_features(UW_ID2LABEL, extra={
        "slice": datasets.Value("string"), "pixel_spacing": datasets.List(datasets.Value("float64"))})
    return build_splits(NAME, _generate, {"train": [items[i] for i in train],
                                          "validation": [items[i] for i in validation]},
                        features, cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
                        gen_kwargs=dict(rle_order=rle_order, overlap=overlap, priority=priority,
                                        group_by=group_by, skip_bad=skip_bad))
