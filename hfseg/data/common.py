"""What every loader shares: the format error, image reading, and turning per-split item lists into a `DatasetDict`.

A loader lists its items (cheap: file names only), assigns them to splits, and hands `build_splits` a generator
that reads one shard of items. `datasets` then writes the Arrow cache once (in parallel with `num_proc`) and later
loads read it back; `streaming=True` gives an `IterableDatasetDict` that reads the files lazily instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..io import MedicalFileError, read_picture_array


# Part of every cache key: bump it when a loader's output for the same files changes (a fix, a new column), so
# caches written by an older version are not served.
CACHE_VERSION = "2"  # 2: BraTS NIfTI and demo slices in hfseg.io's display convention


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class DatasetFormatError(MedicalFileError):
    """A dataset file or folder does not follow the expected layout; the message names the file and the fix.

    A `hfseg.io.MedicalFileError` (so one `except MedicalFileError` catches refused files everywhere); the loaders
    raise this subclass, which `skip_bad` counts, also for the file layer's own errors (`file_errors`).
    """


@contextmanager
def file_errors() -> Iterator[None]:
    """Re-raise a `MedicalFileError` from `hfseg.io` as a `DatasetFormatError` with the same message.

    Its cause stays the library error underneath (pydicom's, Pillow's, nibabel's) when there is one, as before the
    loaders read through `hfseg.io`.
    """
    try:
        yield
    except DatasetFormatError:
        raise
    except MedicalFileError as err:
        raise DatasetFormatError(str(err)) from (err.__cause__ or err)


def require_dir(path: str | Path, what: str) -> Path:
    """`path` as a `Path`, or a `DatasetFormatError` saying which folder of the layout is missing."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"Folder {path} is missing or not a folder: expected {what}.")
    return path


def read_image(path: Path) -> np.ndarray:
    """Pixels of a PNG/JPEG/TIFF/BMP file as stored (8 or 16 bit, grey or RGB; a palette image gives its indices),
    read by `hfseg.io.read_picture_array`; an unreadable file is a `DatasetFormatError` naming it."""
    with file_errors():
        return read_picture_array(path, convert=False)


def grey_mask(mask: np.ndarray, path: Any, fix: str = "save masks as one grey channel") -> np.ndarray:
    """A 2D mask from a grey one or one whose colour channels are identical; differing channels are an error."""
    if mask.ndim == 3:
        if not (mask == mask[..., :1]).all():
            raise DatasetFormatError(f"Mask {path} has differing colour channels: {fix}.")
        mask = mask[..., 0]
    return mask


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

    Each skipped item is reported in a warning with its error, and listed (item, error) in the skip log of the
    split being built, which `build_splits` keeps next to the cache (`skipped_items` reads it back, also when the
    dataset is reloaded from the cache and no generator runs).
    """
    for item in items:
        try:
            row = read(item)
        except DatasetFormatError as err:
            if not skip_bad:
                raise
            warnings.warn(f"{name}: skipping an item: {err}", stacklevel=2)
            _log_skip(item, err)
            continue
        if row is not None:
            yield row


def _paths(node: Any) -> Iterator[Path]:
    if isinstance(node, Path):
        yield node
    elif isinstance(node, (tuple, list)):
        for child in node:
            yield from _paths(child)


def source_stamp(items: Sequence[Any]) -> str:
    """A digest of the size and modification time of every file (or folder's files) named by `items`.

    Part of the cache key, so editing a mask in place (a fix) rebuilds the dataset instead of serving stale rows.
    """
    digest = hashlib.sha1()
    for path in _paths(list(items)):
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
                digest.update(f"{file}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{file}|missing\n".encode())
    return digest.hexdigest()


# The skip log of the split being generated in this process (`datasets` may run shards in worker processes).
_skip_log: Path | None = None
SKIPPED_SUFFIX = ".hfseg-skipped.jsonl"


def _describe(item: Any) -> str:
    paths = list(_paths(item))
    return " ".join(str(p) for p in paths) if paths else str(item)


def _log_skip(item: Any, err: Exception) -> None:
    if _skip_log is not None:
        with open(_skip_log, "a") as handle:
            handle.write(json.dumps({"item": _describe(item), "error": str(err)}) + "\n")


def _keyed(generate: Callable[..., Iterator[dict[str, Any]]], cache_key: str, skip_log: str | None = None,
           **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Runs `generate`, listing skipped items in `<skip_log>.<pid>.part`; `cache_key` only enters the `datasets`
    fingerprint."""
    global _skip_log
    previous = _skip_log
    if skip_log is not None:
        _skip_log = Path(f"{skip_log}.{os.getpid()}.part")
        _skip_log.parent.mkdir(parents=True, exist_ok=True)
        _skip_log.touch()  # the generator ran: the log replaces any earlier one
    try:
        yield from generate(**kwargs)
    finally:
        _skip_log = previous


def _skip_log_base(cache_dir: str | None, key: str, split: str) -> Path:
    root = Path(cache_dir) if cache_dir else Path(datasets.config.HF_DATASETS_CACHE)
    return root / "hfseg_skipped" / hashlib.sha1(f"{key}|{split}".encode()).hexdigest()


def _sidecar(dataset: datasets.Dataset) -> Path | None:
    files = dataset.cache_files
    if not files:
        return None
    arrow = Path(files[0]["filename"])
    return arrow.with_name(arrow.stem + SKIPPED_SUFFIX)


def _keep_skip_log(dataset: datasets.Dataset, base: Path, split: str) -> None:
    """Gather the generator's skip logs (if it ran) into the sidecar next to the split's Arrow cache."""
    parts = sorted(base.parent.glob(base.name + ".*.part")) if base.parent.is_dir() else []
    sidecar = _sidecar(dataset)
    if not parts or sidecar is None:
        return
    rows = []
    for part in parts:
        rows += [{"split": split, **json.loads(line)} for line in part.read_text().splitlines() if line.strip()]
    tmp = sidecar.with_name(sidecar.name + ".part")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, sidecar)
    for part in parts:
        part.unlink(missing_ok=True)


def skipped_items(splits: Mapping[str, Any] | Sequence[Any]) -> list[dict[str, str]]:
    """The items `skip_bad=True` left out of these datasets (a `DatasetDict` or datasets): one
    `{"split", "item", "error"}` per item, read from the record kept next to each split's cache, so a dataset
    reloaded from the cache gives the same list. Streaming datasets keep no record (their items are read lazily)."""
    datasets_ = splits.values() if isinstance(splits, Mapping) else splits
    rows: list[dict[str, str]] = []
    seen: set[Path] = set()
    for dataset in datasets_:
        sidecar = _sidecar(dataset) if isinstance(dataset, datasets.Dataset) else None
        if sidecar is None or sidecar in seen or not sidecar.is_file():
            continue
        seen.add(sidecar)
        rows += [json.loads(line) for line in sidecar.read_text().splitlines() if line.strip()]
    return rows


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
    description: str | None = None,
    writer_batch_size: int | None = None,
    unit: str = "items",
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """One dataset per split from `generate(items=<list of that split's items>, **gen_kwargs)`.

    `items` is passed as a list, which `datasets` shards across `num_proc` processes; other `gen_kwargs` must not
    be lists (they would be sharded too: use tuples). Splits without items are left out; a split whose items all
    get skipped is an error. A `DatasetFormatError` raised while generating surfaces as itself, not wrapped. With
    `expected_rows` (default: one row per item), a shortfall is reported as skipped items in a warning.

    The cache key covers the generator, its arguments, `CACHE_VERSION` and `source_stamp(items)` (sizes and times
    of the files the items name as `Path`s), so edited files are re-read. `description` goes to `info.description`.
    `writer_batch_size`: rows per Arrow batch while writing (default: `datasets`'; small for whole volumes).
    `unit` names the items in messages ("cases" for volumes).
    """
    from .. import __version__
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
        key = f"{name}|{__version__}|{CACHE_VERSION}|{source_stamp(items)}"
        skip_log = _skip_log_base(cache_dir, key, str(split))
        for stale in skip_log.parent.glob(skip_log.name + ".*.part") if skip_log.parent.is_dir() else []:
            stale.unlink(missing_ok=True)  # from a generation that never finished
        try:
            result[split] = datasets.Dataset.from_generator(
                functools.partial(_keyed, generate), features=features,
                gen_kwargs={**kwargs, "cache_key": key, "skip_log": str(skip_log)},
                cache_dir=cache_dir, split=datasets.Split(split),
                num_proc=num_proc if num_proc and num_proc > 1 and len(items) > 1 else None,
                **({"writer_batch_size": writer_batch_size} if writer_batch_size else {}),
            )
        except datasets.exceptions.DatasetGenerationError as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, DatasetFormatError):
                raise cause from None
            raise
        except ValueError as err:
            if "corresponds to no data" not in str(err):
                raise
            raise DatasetFormatError(
                f"{name}: every one of the {len(items)} {split} {unit} was skipped or filtered out, so the {split} split is "
                "empty. Load without skip_bad=True to see the first error, or loosen the filters."
            ) from None
        _keep_skip_log(result[split], skip_log, str(split))
        expected = (expected_rows or {}).get(split, len(items))
        if len(result[split]) < expected:
            warnings.warn(
                f"{name}: skipped {expected - len(result[split])} of {expected} {split} {unit} that could not be "
                "read or did not match the layout (load without skip_bad=True to see the first error).",
                stacklevel=3,
            )
    if not result:
        raise DatasetFormatError(f"{name}: no items found in any split.")
    if description:
        for dataset in result.values():
            dataset.info.description = description
    return datasets.IterableDatasetDict(result) if streaming else datasets.DatasetDict(result)
