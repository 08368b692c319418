"""`brain-tumor-mri`: the Brain Tumor MRI Dataset (masoudnickparvar, Kaggle), a classification dataset.

```
data_dir/Training/{glioma,meningioma,notumor,pituitary}/Tr-{gl,me,no,pi}_NNNN.jpg
data_dir/Testing/{glioma,meningioma,notumor,pituitary}/Te-{gl,me,no,pi}_NNNN.jpg
```
Features (`classification_features`): `image`, `label` (a `ClassLabel` of the class folder names, in `classes`
order: by default the four published names) and `case_id`, the file stem. Images are JPEGs of varying sizes,
stored grey (L) or RGB: by default the original file bytes are kept (no re-encoding, no resizing; resize in your
transforms) and decode to whatever mode the file has; `grayscale=True` converts every image to L.

Splits: `test` = `Testing/` (optional: without that folder there is no test split); `train` and `validation` from
`Training/`, `validation_fraction` of each class drawn with `seed` (stratified by class). ⚠ The data merges
figshare, SARTAJ and Br35H and has no patient ids, so slices of one patient may sit in two splits, and duplicated
images across Training and Testing are not detected: patient leakage cannot be controlled.

Errors: a missing `Training/` folder, a missing or empty class folder, a corrupt image, each naming the path, and,
with the default classes, a folder of another name (e.g. `no_tumor` from an older release). An explicit
`classes=[...]` loads those folders only, in that label order, and leaves other folders out.

The Arrow cache is keyed by the file list, not the file contents: after editing files in place, load with a new
`cache_dir` (or delete the old one).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError

from .common import IMAGE_EXTENSIONS, DatasetFormatError, build_splits, require_dir, skipping
from .features import classification_features
from .splits import group_split

NAME = "brain-tumor-mri"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
# An item: (case_id = file stem, class index, path).
Item = tuple[str, int, Path]


def class_items(folder: Path, classes: Sequence[str], strict: bool = True) -> list[Item]:
    """Items of every class folder under `folder` (Training/ or Testing/), in class then file order.

    With `strict`, a folder not named in `classes` is an error; otherwise it is left out.
    """
    require_dir(folder, "one folder per class: " + ", ".join(classes))
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if unknown and strict:
        raise DatasetFormatError(f"Unknown class folder(s) {unknown} in {folder}: expected {', '.join(classes)} (pass "
                                 "classes=[...] to load other class names or a subset).")
    items = []
    for index, name in enumerate(classes):
        class_dir = require_dir(folder / name, f"the {name!r} images (or pass classes= without {name!r})")
        files = [p for p in sorted(class_dir.iterdir())
                 if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
        if not files:
            raise DatasetFormatError(f"Class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        items += [(path.stem, index, path) for path in files]
    return items


def stratified_split(items: Sequence[Item], validation_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Train and validation items: `validation_fraction` of each class's stems, drawn with `seed`."""
    train, validation = [], []
    for label in sorted({item[1] for item in items}):
        of_class = [item for item in items if item[1] == label]
        t, v = group_split([item[0] for item in of_class], validation_fraction, seed)
        train += [of_class[i] for i in t]
        validation += [of_class[i] for i in v]
    return train, validation


def read_encoded(path: Path, grayscale: bool) -> dict[str, Any] | np.ndarray:
    """The file's bytes once they decode fully (or L pixels with `grayscale`), else an error naming the file."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated JPEG fails here, not at training time
            if grayscale:
                return np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"Cannot read {path}: corrupt or not an image ({err}). Replace or remove it.") from err
    return {"bytes": data, "path": None}


def _generate(items: list[Item], grayscale: bool, skip_bad: bool) -> Iterator[dict[str, Any]]:
    def read(item: Item) -> dict[str, Any]:
        case_id, label, path = item
        return {"image": read_encoded(path, grayscale), "label": label, "case_id": case_id}

    yield from skipping(NAME, items, read, skip_bad)


def load_brain_tumor_mri(
    data_dir: str | Path,
    classes: Sequence[str] | None = None,
    grayscale: bool = False,
    training: str = "Training",
    testing: str = "Testing",
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the Brain Tumor MRI classification folders (see the module docstring) as a `DatasetDict`.

    Args:
        classes: class folder names in label order (other folders are left out); None for the four published
            names glioma, meningioma, notumor, pituitary (another folder is then an error).
        grayscale: convert every image to L; otherwise keep the files as stored (L or RGB JPEG).
        training, testing: the split folder names.
        validation_fraction: the share of each class of `training` held out for validation, drawn with `seed`.
        skip_bad: skip unreadable images (warned and counted) instead of raising.
        num_proc: parallel reads when building the cache; `streaming=True` reads lazily instead.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    if isinstance(classes, str):
        raise ValueError(f"classes must be a list of folder names, got the string {classes!r}.")
    strict = classes is None
    classes = tuple(classes or CLASSES)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes has repeated names: {list(classes)}.")
    train, validation = stratified_split(class_items(root / training, classes, strict), validation_fraction, seed)
    test = class_items(root / testing, classes, strict) if (root / testing).exists() else []
    return build_splits(NAME, _generate, {"train": train, "validation": validation, "test": test},
                        classification_features(list(classes)), cache_dir=cache_dir, num_proc=num_proc,
                        streaming=streaming, gen_kwargs=dict(grayscale=grayscale, skip_bad=skip_bad))
