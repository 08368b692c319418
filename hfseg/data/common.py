"""What every loader shares: the format error, image reading, and turning per-split item lists into a `DatasetDict`.

A loader lists its items (cheap: file names only), assigns them to splits, and hands `build_splits` a generator
that reads one shard of items. `datasets` then writes the Arrow cache once (in parallel with `num_proc`) and later
loads read it back; `streaming=True` gives an `IterableDatasetDict` that reads the files lazily instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError


class DatasetFormatError(ValueError):
    """A dataset file or folder does not follow the expected layout; the message names the file and the fix."""


def require_dir(path: str | Path, what: str) -> Path:
    """`path` as a `Path`, or a `DatasetFormatError` saying which folder of the layout is missing."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"Folder {path} is missing or not a folder: expected {what}.")
    return path


def read_image(path: Path) -> np.ndarray:
    """Pixels of a PNG/JPEG/TIFF/BMP file as stored (8 or 16 bit, grey or RGB), or a clear error."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"Cannot read {path}: corrupt or not an image ({err}). Replace or remove it.") from err


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Any, mask_path: Any) -> None:
    """Raise when a mask does not match its image pixel for pixel."""
    if image.shape[:2] != mask.shape[:2]:
        raise DatasetFormatError(
            f"Image {image_path} is {image.shape[:2]} but its mask {mask_path} is {mask.shape[:2]} (rows, cols): "
            "masks must match their image pixel for pixel."
        )


def skipping(name: str, items: Sequence[Any], read: Callable[[Any], dict[str, Any] | None], skip_bad: bool,
             ) -> Iterator[dict[str, Any]]:
    """Yield `read(item)` for each item; with `skip_bad`, items raising `DatasetFormatError` are left out.

    Each skipped item is reported in a warning with its error.
    The count of skipped items is recovered by `build_splits` from the row count (so it is also reported when
    the dataset is reloaded from the cache and no generator runs).
    """
    for item in items:
        try:
            row = read(item)
        except DatasetFormatError as err:
            if not skip_bad:
                raise
            warnings.warn(f"{name}: skipping an item: {err}", stacklevel=2)
            continue
        if row is not None:
            yield row


def build_splits(
    name: str,
    generate: Callable[..., Iterator[dict[str, Any]]],
    split_items: Mapping[str, Sequence[Any]],
    features: datasets.Features,
    gen_kwargs: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
    expected_rows: Mapping[str, int] | None = None,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """One dataset per split from `generate(items=<list of that split's items>, **gen_kwargs)`.

    `items` is passed as a list, which `datasets` shards across `num_proc` processes; other `gen_kwargs` must not
    be lists (they would be sharded too: use tuples). Empty splits are left out. A `DatasetFormatError` raised
    while generating surfaces as itself, not wrapped. With `expected_rows` (default: one row per item), a
    shortfall is reported as skipped items in a warning.
    """
    extra = dict(gen_kwargs or {})
    for key, value in extra.items():
        if isinstance(value, list):
            raise TypeError(f"gen_kwargs[{key!r}] is a list, which datasets would shard; pass a tuple.")
    result: dict[str, Any] = {}
    for split, items in split_items.items():
        if not items:
            continue
        kwargs = {"items": list(items), **extra}
        if streaming:
            result[split] = datasets.IterableDataset.from_generator(generate, features=features, gen_kwargs=kwargs,
                                                                    split=datasets.Split(split))
            continue
        try:
            result[split] = datasets.Dataset.from_generator(
                generate, features=features, gen_kwargs=kwargs, cache_dir=cache_dir, split=datasets.Split(split),
                num_proc=num_proc if num_proc and num_proc > 1 and len(items) > 1 else None,
            )
        except datasets.exceptions.DatasetGenerationError as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, DatasetFormatError):
                raise cause from None
            raise
        expected = (expected_rows or {}).get(split, len(items))
        if len(result[split]) < expected:
            warnings.warn(
                f"{name}: skipped {expected - len(result[split])} of {expected} {split} items that could not be "
                "read or did not match the layout (load without skip_bad=True to see the first error).",
                stacklevel=3,
            )
    if not result:
        raise DatasetFormatError(f"{name}: no items found in any split.")
    return datasets.IterableDatasetDict(result) if streaming else datasets.DatasetDict(result)
