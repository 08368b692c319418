"""`nnunet`: nnU-Net raw datasets (v2, and the Medical Segmentation Decathlon / nnU-Net v1 form) as 3D volumes.

**nnU-Net v2** (`nnUNet_raw/DatasetXXX_Name/`, the folder passed as `data_dir`):
```
dataset.json          # {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1, "TZ": 2},
                      #  "numTraining": 32, "file_ending": ".nii.gz"}
imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...   # one 3D file per channel, numbered as channel_names
labelsTr/<case>.nii.gz
imagesTs/<case>_0000.nii.gz, ...                        # optional: the "test" split, without labels
splits_final.json     # optional: [{"train": [...], "val": [...]}, ...], nnU-Net's own folds
```
Cases are the identifiers in `imagesTr/` and `labelsTr/` (every case needs both). `labels` must be consecutive
integers from 0 (background); region-based labels (a list of values, with `regions_class_order`) and an `ignore`
label are refused, as is a `file_ending` other than `.nii.gz` / `.nii` (convert other files with SimpleITK first).
`modality` is read where `channel_names` is missing, as nnU-Net does.

**Medical Segmentation Decathlon** (`TaskXX_Name/`, also nnU-Net v1's converted tasks): `dataset.json` holds
`modality` ({"0": "FLAIR", "1": "T1w", ...}), `labels` as index -> name ({"0": "background", "1": "edema"}),
`training` ([{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]) and `test` (a list of image paths).
A multi-channel image is one 4D file whose last axis is the channel; where the listed file is missing but
`imagesTr/x_0000.nii.gz`, ... exist (nnU-Net v1's split channels), those are read. Files whose names start with `.`
(macOS `._` copies in the Decathlon archives) are never listed.

Rows (`hfseg.data.volumes.volume_features`): `image` (C, X, Y, Z) float32 in `channel_names` order, read with
`hfseg.io.read_nifti` (the header's scaling applied), `label` uint8, `spacing` from the header's voxel sizes and
`affine` from the first channel, `channels` the channel names, `case_id` the identifier. Every channel and the label
must share the first channel's shape and affine (to 1e-4 relative), and label values must be classes of `labels`.
`numTraining` differing from the cases found is a warning.

Splits by case, as nnU-Net trains: `fold=k` (0..4) holds out fold k of nnU-Net's five-fold cross-validation
(`hfseg.data.volumes.nnunet_folds`: scikit-learn's `KFold(5, shuffle=True, random_state=12345)` over the sorted
case ids) for `validation` and trains on the rest; `fold="all"` trains on every case and validates on all of them
(nnU-Net's `all`). A `splits_final.json` in `data_dir` replaces the generated folds. The test split comes from
`imagesTs/` (v2) or `test` (Decathlon).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..io import MedicalImage, read_nifti
from .common import DatasetFormatError, file_errors, require_dir, skipping
from .volumes import build_volume_splits, check_same_grid, nnunet_folds, to_label, volume_features, volume_row

NAME = "nnunet"
ENDINGS = (".nii.gz", ".nii")
_V2_KEYS = ("labels", "numTraining", "file_ending")
_DECATHLON_KEYS = ("modality", "labels", "training")

# One item per case: (case_id, channel sources, label path or None). A source is (path, volume index or None): a
# channel file of its own, or one volume of a 4D file (Decathlon).
Source = tuple[Path, int | None]
Item = tuple[str, tuple[Source, ...], Path | None]


@dataclass
class Layout:
    """What `dataset.json` and the folders say: channel names, classes, and the cases of each split."""

    form: str  # "nnU-Net v2" or "Decathlon"
    channels: list[str]
    id2label: dict[int, str]
    training: list[Item]
    test: list[Item] = field(default_factory=list)
    declared: int | None = None  # numTraining


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing: expected {what}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"Cannot read {path} ({err}): it must be valid JSON ({what}).") from err


def _require(spec: Mapping[str, Any], keys: Sequence[str], path: Path, form: str) -> None:
    missing = [key for key in keys if key not in spec]
    if missing:
        raise DatasetFormatError(f"{path} lacks {', '.join(map(repr, missing))}, required in a {form} dataset.json: "
                                 "add them.")


def _channels(spec: Mapping[str, Any], key: str, path: Path) -> list[str]:
    """Channel names in index order from `{"0": "T2", "1": "ADC"}`; indices must be 0..C-1."""
    names = spec[key]
    if not isinstance(names, Mapping) or not names:
        raise DatasetFormatError(f"{path}: {key} must map channel indices to names, e.g. {{\"0\": \"CT\"}}.")
    try:
        indexed = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{path}: {key} keys must be channel indices \"0\", \"1\", ..., got "
                                 f"{list(names)}.") from None
    if sorted(indexed) != list(range(len(indexed))):
        raise DatasetFormatError(f"{path}: {key} must number its channels 0..{len(indexed) - 1}, got "
                                 f"{sorted(indexed)}.")
    return [indexed[i] for i in range(len(indexed))]


def _labels(spec: Mapping[str, Any], path: Path) -> dict[int, str]:
    """id2label from v2's name -> value or the Decathlon's "value" -> name; classes must be 0..K-1."""
    labels = spec["labels"]
    if not isinstance(labels, Mapping) or not labels:
        raise DatasetFormatError(f"{path}: labels must map names to values, e.g. {{\"background\": 0, \"liver\": 1}}.")
    regions = [name for name, value in labels.items() if isinstance(value, (list, tuple))]
    if regions:
        raise DatasetFormatError(
            f"{path}: labels {regions} are region-based (lists of label values, nnU-Net's regions_class_order): hfseg "
            "trains one class per label value. Give every class its own integer in labels (and labelsTr)."
        )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):  # v2: name -> value
        id2label = {int(v): str(k) for k, v in labels.items()}
        if len(id2label) != len(labels):
            raise DatasetFormatError(f"{path}: labels gives one value to several names: {dict(labels)}.")
    elif all(re.fullmatch(r"\d+", str(k)) and isinstance(v, str) for k, v in labels.items()):  # "0": "background"
        id2label = {int(k): v for k, v in labels.items()}
    else:
        raise DatasetFormatError(f"{path}: labels must map names to integer values (nnU-Net v2) or indices to names "
                                 f"(Decathlon), got {dict(labels)}.")
    if "ignore" in id2label.values():
        raise DatasetFormatError(f"{path}: the 'ignore' label (sparse annotation) is not supported: remove it, and "
                                 "its voxels from labelsTr, or label them.")
    if sorted(id2label) != list(range(len(id2label))):
        raise DatasetFormatError(f"{path}: label values must be consecutive from 0 (background), got "
                                 f"{sorted(id2label)}; renumber labels and labelsTr.")
    return {i: id2label[i] for i in range(len(id2label))}


def _visible(folder: Path, ending: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.endswith(ending))


def _split_channels(folder: Path, ending: str, n_channels: int) -> dict[str, list[Path]]:
    """`<case>_XXXX<ending>` files of a folder by case; a channel number not in channel_names is an error."""
    cases: dict[str, list[Path]] = {}
    for path in _visible(folder, ending):
        match = re.fullmatch(r"(.+)_(\d{4})" + re.escape(ending), path.name)
        if not match:
            raise DatasetFormatError(f"{path} is not named <case>_XXXX{ending} (XXXX the 4-digit channel number): "
                                     "rename it as nnU-Net expects, or move it out.")
        if int(match.group(2)) >= n_channels:
            raise DatasetFormatError(f"{path} is channel {int(match.group(2))} but dataset.json's channel_names has "
                                     f"{n_channels} channel(s) (0..{n_channels - 1}): add it to channel_names or "
                                     "remove the file.")
        cases.setdefault(match.group(1), []).append(path)
    return cases


def _channel_files(folder: Path, case: str, ending: str, n_channels: int) -> tuple[Source, ...]:
    return tuple((folder / f"{case}_{c:04d}{ending}", None) for c in range(n_channels))


def _v2_layout(root: Path, spec: Mapping[str, Any], path: Path, test: bool) -> Layout:
    key = "channel_names" if "channel_names" in spec else "modality" if "modality" in spec else None
    if key is None:
        _require(spec, ("channel_names", *_V2_KEYS), path, "nnU-Net v2")
    _require(spec, _V2_KEYS, path, "nnU-Net v2")
    channels, id2label = _channels(spec, key, path), _labels(spec, path)
    ending = str(spec["file_ending"])
    if ending not in ENDINGS:
        raise DatasetFormatError(
            f"{path}: file_ending {ending!r} is not read here: hfseg reads nnU-Net datasets of NIfTI files "
            "(.nii.gz, .nii). Convert the images and labels to .nii.gz (e.g. with SimpleITK) and set file_ending."
        )
    images = require_dir(root / "imagesTr", f"imagesTr/<case>_0000{ending} files (nnU-Net v2 raw layout)")
    labels = require_dir(root / "labelsTr", f"labelsTr/<case>{ending} files (nnU-Net v2 raw layout)")
    by_case = _split_channels(images, ending, len(channels))
    label_files = {p.name[: -len(ending)]: p for p in _visible(labels, ending)}
    training = []
    for case in sorted(set(by_case) | set(label_files)):
        training.append((case, _channel_files(images, case, ending, len(channels)),
                         label_files.get(case, labels / f"{case}{ending}")))
    if not training:
        raise DatasetFormatError(f"{images} and {labels} hold no {ending} files: expected imagesTr/<case>_0000{ending}"
                                 f" and labelsTr/<case>{ending}.")
    tests = []
    if test and (root / "imagesTs").is_dir():
        for case in sorted(_split_channels(root / "imagesTs", ending, len(channels))):
            tests.append((case, _channel_files(root / "imagesTs", case, ending, len(channels)), None))
    return Layout("nnU-Net v2", channels, id2label, training, tests, _declared(spec))


def _declared(spec: Mapping[str, Any]) -> int | None:
    try:
        return int(spec.get("numTraining"))
    except (TypeError, ValueError):
        return None


def _stem(name: str) -> str:
    for ending in ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def _decathlon_sources(root: Path, entry: Any, n_channels: int, path: Path) -> tuple[str, tuple[Source, ...]]:
    """The case id and channel sources of a listed image: one 4D (or 3D) file, or v1's `<case>_XXXX` files."""
    if not isinstance(entry, str) or not entry.endswith(ENDINGS):
        raise DatasetFormatError(f"{path}: image entry {entry!r} is not a path to a .nii.gz / .nii file.")
    image = (root / entry).resolve() if not Path(entry).is_absolute() else Path(entry)
    case = _stem(image.name)
    ending = image.name[len(case):]
    split = _channel_files(image.parent, case, ending, n_channels)
    if not image.exists() and split[0][0].exists():  # nnU-Net v1: the channels in their own files
        return case, split
    return case, tuple((image, c) for c in range(n_channels))


def _decathlon_layout(root: Path, spec: Mapping[str, Any], path: Path, test: bool) -> Layout:
    _require(spec, _DECATHLON_KEYS, path, "Medical Segmentation Decathlon")
    channels, id2label = _channels(spec, "modality", path), _labels(spec, path)
    if not isinstance(spec["training"], list) or not spec["training"]:
        raise DatasetFormatError(f"{path}: training must be a non-empty list of {{\"image\": ..., \"label\": ...}}.")
    training = []
    for entry in spec["training"]:
        if not isinstance(entry, Mapping) or "image" not in entry or "label" not in entry:
            raise DatasetFormatError(f"{path}: training entry {entry!r} must have 'image' and 'label' paths.")
        case, sources = _decathlon_sources(root, entry["image"], len(channels), path)
        label = Path(entry["label"]) if Path(entry["label"]).is_absolute() else (root / entry["label"]).resolve()
        training.append((case, sources, label))
    tests = []
    if test:
        for entry in spec.get("test") or []:
            entry = entry.get("image") if isinstance(entry, Mapping) else entry
            case, sources = _decathlon_sources(root, entry, len(channels), path)
            tests.append((case, sources, None))
    return Layout("Decathlon", channels, id2label, training, tests, _declared(spec))


def read_layout(data_dir: str | Path, test: bool = True) -> Layout:
    """The `Layout` of an nnU-Net v2 or Decathlon dataset folder (see the module docstring); files are not read."""
    root = require_dir(data_dir, "an nnU-Net raw dataset folder (DatasetXXX_Name) holding dataset.json")
    path = root / "dataset.json"
    spec = _read_json(path, "the dataset description of an nnU-Net raw dataset (DatasetXXX_Name/dataset.json)")
    if not isinstance(spec, Mapping):
        raise DatasetFormatError(f"{path} must hold a JSON object, got {type(spec).__name__}.")
    if "training" in spec:
        layout = _decathlon_layout(root, spec, path, test)
    elif "channel_names" in spec or "file_ending" in spec:
        layout = _v2_layout(root, spec, path, test)
    else:
        raise DatasetFormatError(f"{path} has neither channel_names and file_ending (nnU-Net v2) nor modality and "
                                 "training (Medical Segmentation Decathlon): it is not an nnU-Net dataset.json.")
    ids = [case for case, _, _ in layout.training]
    if len(set(ids)) != len(ids):
        twice = sorted({c for c in ids if ids.count(c) > 1})
        raise DatasetFormatError(f"{path} lists cases {twice[:5]} more than once: case ids must be unique.")
    if layout.declared is not None and layout.declared != len(ids):
        warnings.warn(f"{path}: numTraining is {layout.declared} but {len(ids)} training cases were found; using "
                      "the cases found.", stacklevel=4)
    return layout


def _check_files(item: Item) -> None:
    case, sources, label = item
    missing = [source for source, _ in sources if not source.is_file()]
    if label is not None and missing and len(missing) == len(sources):
        raise DatasetFormatError(f"{label} has no image: expected {sources[0][0]} (a case in labelsTr needs its "
                                 "channel files in imagesTr); add them or remove the label.")
    if missing:
        raise DatasetFormatError(f"Case {case} lacks the channel file {missing[0]}: add it (one file per channel of "
                                 "channel_names) or remove the case's other files.")
    if label is not None and not label.is_file():
        raise DatasetFormatError(f"Case {case} has no label: expected {label}; add it, or move the case's images to "
                                 "imagesTs if it is unlabelled.")


def _read_channel(source: Source, n_channels: int) -> MedicalImage:
    path, volume = source
    with file_errors():
        image = read_nifti(path, volume=0 if volume is None else volume, dtype="float32")
    dims = len(image.meta["shape"])
    while dims > 3 and image.meta["shape"][dims - 1] == 1:
        dims -= 1
    if volume is None and dims > 3:
        raise DatasetFormatError(f"{path} is 4D {tuple(image.meta['shape'])}: nnU-Net stores one 3D file per channel "
                                 "(<case>_0000, <case>_0001, ...); split its volumes into such files.")
    if volume is not None:
        count = image.meta["shape"][3] if dims > 3 else 1
        if count != n_channels:
            raise DatasetFormatError(f"{path} holds {count} channel volume(s) {tuple(image.meta['shape'])} but "
                                     f"dataset.json's modality names {n_channels}: the last axis of a Decathlon image "
                                     "is its channel; fix modality or the file.")
    return image


def read_case(item: Item, channels: Sequence[str], num_classes: int) -> dict[str, Any]:
    """The volume row of one case: its channels stacked channels first, checked against each other and the label."""
    _check_files(item)
    case, sources, label_path = item
    volumes = [_read_channel(source, len(channels)) for source in sources]
    reference = volumes[0]
    for volume in volumes[1:]:
        check_same_grid(volume, reference, "every channel file of a case")
    label = None
    if label_path is not None:
        with file_errors():
            seg = read_nifti(label_path, dtype="stored")
        check_same_grid(seg, reference, "a label and its images")
        label = to_label(seg, num_classes, "every label value must be one of dataset.json's labels")
    image = np.stack([volume.array for volume in volumes])
    return volume_row(case, image, label, reference.spacing, reference.affine, channels)


def _generate(items: list[Item], channels: tuple[str, ...], num_classes: int, skip_bad: bool,
              ) -> Iterator[dict[str, Any]]:
    yield from skipping(NAME, items, lambda item: read_case(item, channels, num_classes), skip_bad)


def _folds(root: Path, ids: list[str], fold: int | str, n_folds: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) case ids of `fold`: from `splits_final.json` when present, else nnU-Net's folds."""
    if isinstance(fold, str) and fold.isdigit():
        fold = int(fold)
    if fold == "all":
        return ids, ids
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)):
        raise ValueError(f"fold must be a fold number or 'all', got {fold!r}.")
    path = root / "splits_final.json"
    if path.is_file():
        folds = _read_json(path, "nnU-Net's list of folds [{\"train\": [...], \"val\": [...]}, ...]")
        if not isinstance(folds, list) or not all(isinstance(f, Mapping) and {"train", "val"} <= set(f) for f in folds):
            raise DatasetFormatError(f"{path} must be a list of {{\"train\": [...], \"val\": [...]}}, one per fold.")
        source = str(path)
    else:
        folds, source = nnunet_folds(ids, n_folds, seed), f"the {n_folds} generated folds"
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} does not exist in {source}: choose 0..{len(folds) - 1} or 'all'.")
    train, validation = list(folds[fold]["train"]), list(folds[fold]["val"])
    unknown = sorted(set(train + validation) - set(ids))
    if unknown:
        raise DatasetFormatError(f"{path} names cases {unknown[:5]} that are not in the dataset: regenerate it or "
                                 "remove them.")
    return train, validation


def load_nnunet(
    data_dir: str | Path,
    fold: int | str = 0,
    n_folds: int = 5,
    seed: int = 12345,
    test: bool = True,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load an nnU-Net raw dataset folder (see the module docstring) as one volume row per case.

    Args:
        data_dir: the dataset folder holding `dataset.json` (`nnUNet_raw/DatasetXXX_Name` or a Decathlon task).
        fold: the cross-validation fold held out for `validation` (0..n_folds-1), or `"all"` (train and validate on
            every case, as nnU-Net's `all`).
        n_folds, seed: nnU-Net's fold generation (5 folds, seed 12345); unused with `splits_final.json`.
        test: add the `test` split from `imagesTs/` (v2) or `test` (Decathlon) when there is one.
        skip_bad: skip unreadable or inconsistent cases with a warning instead of raising.
        cache_dir, num_proc, streaming: `datasets` caching, parallel reading, lazy reading.
    """
    layout = read_layout(data_dir, test=test)
    root = Path(data_dir)
    if not skip_bad:
        for item in (*layout.training, *layout.test):
            _check_files(item)
    by_id = {item[0]: item for item in layout.training}
    train, validation = _folds(root, sorted(by_id), fold, n_folds, seed)
    split_items = {"train": [by_id[c] for c in train], "validation": [by_id[c] for c in validation],
                   "test": layout.test}
    labels = ", ".join(f"{i} {name}" for i, name in layout.id2label.items())
    return build_volume_splits(
        NAME, _generate, split_items, volume_features(layout.id2label),
        gen_kwargs=dict(channels=tuple(layout.channels), num_classes=len(layout.id2label), skip_bad=skip_bad),
        cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
        description=f"nnU-Net raw dataset {root.name} ({layout.form}), fold {fold}; channels: "
                    f"{', '.join(layout.channels)}; labels: {labels}.",
    )
