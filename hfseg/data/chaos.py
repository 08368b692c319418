"""`chaos-mr-t2spir`: CHAOS MR T2-SPIR slices (DICOM) with liver, kidney and spleen masks (Ground PNGs).

Layout read (the `CHAOS_Train_Sets.zip` archive, Zenodo record 3431873); `data_dir` may be the folder holding
`Train_Sets/`, `Train_Sets/` itself or `Train_Sets/MR/`:
```
Train_Sets/MR/<id>/T2SPIR/DICOM_anon/IMG-<ser>-<nnnnn>.dcm
Train_Sets/MR/<id>/T2SPIR/Ground/IMG-<ser>-<nnnnn>.png       # same stem as its DICOM
```
`T1DUAL/` and `CT/` are ignored. The Test_Sets have no `Ground/` and cannot be loaded.

Image: the DICOM's stored pixel values (`pixel_array`, read through `hfseg.io`) as they are, no rescale slope,
window or flip: uint16 (12-bit MR data stored in 16 bits) kept losslessly in a 16-bit `Image`; an 8-bit DICOM stays
8-bit. The size is the DICOM's Rows x Columns (typically 256 x 256 ⚠, not assumed). A signed DICOM
(PixelRepresentation 1) is accepted when none of its values is negative (cast losslessly to uint16) and is an error
otherwise; pixel data that are not one 2D grey frame (multi-frame, RGB) are an error.

Label: the Ground PNG (8-bit grey) mapped by value range, inclusive (`value_ranges`, defaults from the CHAOS
documentation): 55-70 -> 1 liver (63), 110-135 -> 2 right_kidney (126), 175-200 -> 3 left_kidney (189),
240-255 -> 4 spleen (252); every other value is background, or an error with `unmatched="error"`.

Slice order is the file-name order (the CHAOS evaluation code sorts by name), not ImagePositionPatient: each row
carries its file stem in `slice` and its position in that order within the patient in `slice_index`.

Split grouping: by patient (the `<id>` folder, the `case_id` column), so no patient is in two splits.

**Volumes** (`volumes=True`): one row per patient with the features of `hfseg.data.volumes.volume_features`. The
image is the `DICOM_anon` folder read as one series by `hfseg.io.read` (stored values, as the slices, as float32;
(columns, rows, slices), the slices in hfseg.io's order: by position along the slice normal, or by InstanceNumber
when the files carry no position), with its `spacing` and RAS `affine`; channel "T2SPIR". Each slice's label is the
Ground PNG of that slice's own DICOM file (same stem), mapped as above and transposed like its DICOM slice, so
`label[:, :, k]` pairs with `image[0, :, :, k]` whatever the file names' order. The patients split as the slices do.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import datasets
import numpy as np

from ..io import read
from ..io.dicom import dcmread, decode, open_dataset  # noqa: F401  (dcmread re-exported: other modules import it here)
from .common import DatasetFormatError, build_splits, check_same_size, file_errors, grey_mask, read_image, skipping
from .features import classes_present, segmentation_features
from .splits import group_split
from .volumes import build_volume_splits, volume_features, volume_row

NAME = "chaos-mr-t2spir"
CHAOS_ID2LABEL = {0: "background", 1: "liver", 2: "right_kidney", 3: "left_kidney", 4: "spleen"}
CHAOS_VALUE_RANGES: dict[int, tuple[int, int]] = {1: (55, 70), 2: (110, 135), 3: (175, 200), 4: (240, 255)}

# An item: (patient id, slice stem, slice index, DICOM path or "", Ground PNG path or "").
Item = tuple[str, str, int, str, str]


def find_mr_root(data_dir: str | Path) -> Path:
    """The `MR/` folder under `data_dir` (which may be it, `Train_Sets/` or the folder holding `Train_Sets/`)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    for candidate in (root / "Train_Sets" / "MR", root / "MR", root):
        if candidate.is_dir() and any(p.is_dir() for p in candidate.glob("*/T2SPIR")):
            return candidate
    raise DatasetFormatError(
        f"No MR/<id>/T2SPIR folder found in {root}: pass the folder extracted from CHAOS_Train_Sets.zip (holding "
        "Train_Sets/), Train_Sets/ itself or Train_Sets/MR/."
    )


def _patient_dirs(mr_root: Path, patients: Iterable[str | int] | None, skip_bad: bool) -> list[Path]:
    folders = {p.name: p for p in sorted(mr_root.iterdir()) if p.is_dir() and not p.name.startswith((".", "__"))}
    if patients is not None:
        wanted = sorted({str(p) for p in patients})
        unknown = [p for p in wanted if p not in folders]
        if unknown:
            raise DatasetFormatError(f"Patients {unknown} not found in {mr_root}; available: {sorted(folders)}.")
        folders = {p: folders[p] for p in wanted}
    kept = []
    for name, folder in folders.items():
        if (folder / "T2SPIR").is_dir():
            kept.append(folder)
            continue
        message = f"Patient folder {folder} has no T2SPIR/ folder: restore it, or pass patients= without {name!r}."
        if not skip_bad:
            raise DatasetFormatError(message)
        warnings.warn(f"{NAME}: skipping a patient: {message}", stacklevel=3)
    return kept


def _files(folder: Path, suffix: str, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        hint = " (the CHAOS Test_Sets have no ground truth)" if folder.name == "Ground" else ""
        raise DatasetFormatError(f"Folder {folder} is missing: expected {what}{hint}.")
    files = {p.stem: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == suffix}
    if not files:
        raise DatasetFormatError(f"Folder {folder} holds no {suffix} files: expected {what}.")
    return files


def patient_items(folder: Path) -> list[Item]:
    """The slices of one patient in file-name order; a DICOM without a Ground PNG (or the reverse) keeps an empty
    path, so that reading it raises (and `skip_bad` can count it)."""
    series = folder / "T2SPIR"
    dicoms = _files(series / "DICOM_anon", ".dcm", "IMG-<ser>-<nnnnn>.dcm files")
    grounds = _files(series / "Ground", ".png", "IMG-<ser>-<nnnnn>.png masks with the DICOMs' stems")
    stems = sorted(set(dicoms) | set(grounds))
    return [(folder.name, stem, index, str(dicoms.get(stem, "")), str(grounds.get(stem, "")))
            for index, stem in enumerate(stems)]


def _check_pair(item: Item) -> None:
    patient, stem, _, dicom, ground = item
    if not ground:
        raise DatasetFormatError(
            f"DICOM {dicom} has no Ground mask: expected {Path(dicom).parents[1] / 'Ground' / (stem + '.png')}; "
            "restore it or remove the DICOM."
        )
    if not dicom:
        raise DatasetFormatError(
            f"Ground mask {ground} has no DICOM: expected {Path(ground).parents[1] / 'DICOM_anon' / (stem + '.dcm')};"
            " restore it or remove the mask."
        )


def read_dicom(path: str | Path) -> np.ndarray:
    """The stored pixel values of a one-frame grey DICOM (Rows x Columns), unsigned, or a clear error.

    Read through `hfseg.io` (`open_dataset`, which also accepts a bare data set without file meta, and `decode`):
    no modality LUT, window or flip.
    """
    with file_errors():
        ds = open_dataset(Path(path))
        if "PixelData" not in ds:
            raise DatasetFormatError(f"DICOM {path} has no pixel data: replace it with the archive's file.")
        pixels = decode(ds, Path(path))
    expected = (int(ds.Rows), int(ds.Columns))
    if pixels.shape != expected:
        raise DatasetFormatError(
            f"DICOM {path} holds pixel data of shape {pixels.shape}, not one grey {expected} frame (Rows x Columns):"
            " multi-frame and colour DICOMs are not CHAOS T2SPIR slices; remove it."
        )
    return _unsigned(pixels, path)


def _unsigned(pixels: np.ndarray, path: str | Path) -> np.ndarray:
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels
    if pixels.dtype.kind in "iu" and pixels.size and pixels.min() >= 0 and pixels.max() <= 65535:
        return pixels.astype(np.uint16)
    raise DatasetFormatError(
        f"DICOM {path} has {pixels.dtype} pixel values from {pixels.min()} to {pixels.max()}: only values 0..65535 "
        "fit a 16-bit image; rescale the series to unsigned 16 bit first."
    )


def map_ground(mask: np.ndarray, path: str | Path, value_ranges: Mapping[int, tuple[int, int]],
               unmatched: str) -> np.ndarray:
    """Class indices (uint8) from a Ground PNG's grey values by inclusive range; other values are background or,
    with `unmatched="error"`, an error naming the file and the values."""
    mask = grey_mask(mask, path, "expected an 8-bit grey Ground PNG")
    if mask.dtype != np.uint8:
        raise DatasetFormatError(
            f"Ground mask {path} is {mask.dtype}, not 8-bit grey with 63/126/189/252 (a 1-bit mask is a CT liver "
            "ground truth): point data_dir at the MR T2SPIR grounds."
        )
    lookup = np.zeros(256, dtype=np.uint8)
    matched = np.zeros(256, dtype=bool)
    matched[0] = True
    for cls, (low, high) in value_ranges.items():
        lookup[low : high + 1] = cls
        matched[low : high + 1] = True
    if unmatched == "error":
        bad = np.unique(mask[~matched[mask]])
        if bad.size:
            raise DatasetFormatError(
                f"Ground mask {path} has values {bad[:10].tolist()} outside value_ranges {dict(value_ranges)}: "
                "widen the ranges or pass unmatched='background'."
            )
    return lookup[mask]


def _generate(items, value_ranges, unmatched, skip_bad):
    ranges = dict(value_ranges)

    def read(item: Item) -> dict:
        _check_pair(item)
        patient, stem, index, dicom, ground = item
        image, mask = read_dicom(dicom), read_image(Path(ground))
        check_same_size(image, mask, dicom, ground)
        label = map_ground(mask, ground, ranges, unmatched)
        return {"image": image, "label": label, "case_id": patient, "classes": classes_present(label),
                "slice": stem, "slice_index": index}

    yield from skipping(NAME, items, read, skip_bad)


def read_patient_volume(folder: Path, value_ranges: Mapping[int, tuple[int, int]], unmatched: str) -> dict:
    """The volume row of one patient: the T2SPIR series and its Ground PNGs stacked in the series' slice order."""
    series = folder / "T2SPIR" / "DICOM_anon"
    slices = patient_items(folder)
    for item in slices:
        _check_pair(item)
    items = {stem: (dicom, ground) for _, stem, _, dicom, ground in slices}
    with file_errors():
        volume = read(series, dtype="stored")
    if volume.array.ndim != 3 or volume.affine is None:
        raise DatasetFormatError(f"{series} is not one grey DICOM series (got {volume.array.shape}): remove the "
                                 "files that are not T2SPIR slices.")
    if volume.spacing is None:
        raise DatasetFormatError(f"{series} states no PixelSpacing: restore the archive's DICOM files.")
    files = [Path(ds.filename) for ds in volume.meta["datasets"]]
    if len(files) != len(items):
        raise DatasetFormatError(f"{series} gave {len(files)} slices from its {len(items)} files: restore the "
                                 "archive's files.")
    label = np.zeros(volume.array.shape, np.uint8)
    for k, path in enumerate(files):
        dicom, ground = items[path.stem]
        mask = map_ground(read_image(Path(ground)), ground, value_ranges, unmatched)
        if mask.shape != volume.array.shape[1::-1]:
            raise DatasetFormatError(f"Ground mask {ground} is {mask.shape} but its DICOM {dicom} is "
                                     f"{volume.array.shape[1::-1]} (rows, cols): masks must match their image pixel "
                                     "for pixel.")
        label[:, :, k] = mask.T  # a series slice is its DICOM's (rows, columns) transposed
    return volume_row(folder.name, volume.array[None].astype(np.float32), label, volume.spacing, volume.affine,
                      ("T2SPIR",))


def _generate_volumes(items, value_ranges, unmatched, skip_bad):
    ranges = dict(value_ranges)
    yield from skipping(NAME, items, lambda item: read_patient_volume(item[0], ranges, unmatched), skip_bad)


def _check_ranges(value_ranges: Mapping[int, tuple[int, int]]) -> tuple[tuple[int, tuple[int, int]], ...]:
    checked = []
    for cls, bounds in sorted(value_ranges.items()):
        low, high = (int(v) for v in bounds)
        if int(cls) not in CHAOS_ID2LABEL or int(cls) == 0 or not 0 < low <= high <= 255:
            raise ValueError(f"value_ranges entry {cls}: {bounds} must map a class 1..4 to (low, high) grey values "
                             "with 0 < low <= high <= 255.")
        checked.append((int(cls), (low, high)))
    spans = sorted(bounds for _, bounds in checked)
    for (_, high), (low, _) in zip(spans, spans[1:]):
        if low <= high:
            raise ValueError(f"value_ranges overlap: {dict(checked)}.")
    return tuple(checked)


def load_chaos_mr_t2spir(
    data_dir: str | Path,
    patients: Iterable[str | int] | None = None,
    value_ranges: Mapping[int, tuple[int, int]] | None = None,
    unmatched: str = "background",
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
    volumes: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load CHAOS MR T2-SPIR (see the module docstring) as a `DatasetDict` split by patient.

    Args:
        data_dir: the folder holding `Train_Sets/`, `Train_Sets/` or `Train_Sets/MR/`.
        patients: patient ids (the `MR/<id>` folder names, e.g. `[1, 2, 5]`) to load; default all.
        value_ranges: class index -> inclusive (low, high) Ground grey values; default `CHAOS_VALUE_RANGES`.
        unmatched: `"background"` (the CHAOS rule) or `"error"` for Ground values outside every range.
        validation_fraction, seed: share of patients held out for validation, and the shuffle seed.
        skip_bad: skip (warn about and count) slices that cannot be read or paired instead of raising.
        cache_dir, num_proc, streaming: `datasets` caching, parallel reading, lazy reading.
        volumes: one row per patient, the whole series (see the module docstring).
    """
    if unmatched not in ("background", "error"):
        raise ValueError(f"unmatched must be 'background' or 'error', got {unmatched!r}.")
    ranges = _check_ranges(CHAOS_VALUE_RANGES if value_ranges is None else value_ranges)
    mr_root = find_mr_root(data_dir)
    if volumes:
        folders = _patient_dirs(mr_root, patients, skip_bad)
        if not folders:
            raise DatasetFormatError(f"No T2SPIR series found under {mr_root}.")
        # An item: the patient folder, and its series and Ground folders (whose files enter the cache key).
        items = [(f, f / "T2SPIR" / "DICOM_anon", f / "T2SPIR" / "Ground") for f in folders]
        train, validation = group_split([folder.name for folder in folders], validation_fraction, seed)
        split_items = {"train": [items[i] for i in train], "validation": [items[i] for i in validation]}
        return build_volume_splits(NAME, _generate_volumes, split_items, volume_features(CHAOS_ID2LABEL),
                                   gen_kwargs=dict(value_ranges=ranges, unmatched=unmatched, skip_bad=skip_bad),
                                   cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
    items = [item for folder in _patient_dirs(mr_root, patients, skip_bad) for item in patient_items(folder)]
    if not items:
        raise DatasetFormatError(f"No T2SPIR slices found under {mr_root}.")
    if not skip_bad:
        for item in items:
            _check_pair(item)
    train, validation = group_split([item[0] for item in items], validation_fraction, seed)
    features = segmentation_features(
        CHAOS_ID2LABEL, extra={"slice": datasets.Value("string"), "slice_index": datasets.Value("int32")}
    )
    return build_splits(NAME, _generate, {"train": [items[i] for i in train],
                                          "validation": [items[i] for i in validation]},
                        features, gen_kwargs=dict(value_ranges=ranges, unmatched=unmatched, skip_bad=skip_bad),
                        cache_dir=cache_dir, num_proc=num_proc, streaming=streaming)
