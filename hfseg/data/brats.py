"""`brats2020-h5` and `brats2020-nifti`: BraTS 2020 glioma MRI, four modalities, three tumour sub-region labels.

Both loaders give 2D axial slices with the same features: `image` an `Array3D((H, W, C), "float32")` (channels last,
in `modalities` order, default `BRATS_MODALITIES` = t1, t1ce, t2, flair), `label` a uint8 mask of
`BRATS_ID2LABEL` (0 background, 1 necrotic_core = NCR/NET, 2 edema = ED, 3 enhancing_tumor = ET), `case_id`,
`classes`, and `slice` (the axial index, so per-case 3D metrics can restack the slices; `hfseg.io.from_slices` puts
a NIfTI case's stack back in the file's storage order). Intensities are stored as
read, as float32: normalizing them (per channel, per case...) is the model's image processor's job. `brats_regions`
gives the evaluation regions WT/TC/ET of a label map.

**Kaggle HDF5** (awsaf49/brats2020-training-data), `load_brats2020_h5`:
```
BraTS2020_training_data/content/data/volume_<v>_slice_<s>.h5     # v = 1..369, s = 0..154
```
`data_dir` may be that folder or any folder above it (the one folder holding `volume_*_slice_*.h5` is found). Each file
holds `image` (240, 240, 4) float64 and `mask` (240, 240, 3) uint8 with binary channels. H, W and the channel count
are taken from the first file; every file must agree. The CSVs beside the files (`meta_data.csv`,
`BraTS20 Training Metadata.csv`, ...) are ignored: all they hold is derivable from the h5 files, and their
`slice_path` carries a foreign prefix. Two ⚠ facts are parameters:
- `mask_channels="labels"` (default) reads the channels as [NCR/NET, ED, ET] label channels (README of
  marcotallone/deep-learning-project), so no pixel may be set in two of them: a file doing so raises an error that
  names it. `mask_channels="regions"` reads them as the nested regions [WT, TC, ET] some projects name them, turned
  back into labels (ET -> 3, TC minus ET -> 1, WT minus TC -> 2); channels that are not nested are then an error.
- The channel order of `image` is undocumented: it is usually taken as (t1, t1ce, t2, flair) = `BRATS_MODALITIES`,
  and some code says (flair, t1, t1ce, t2). `stored_modalities` names the order in the files; `modalities` picks
  and orders the output channels, so both loaders can give the same channel order.
The map from `volume_<v>` to `BraTS20_Training_XXX` is undocumented, so cases are `volume_<v>`. The files carry no
affine, so their slices are kept as stored; how the Kaggle converter oriented them is undocumented ⚠ (if it kept
nibabel's `volume[:, :, z]`, they are the NIfTI loader's slices transposed).

**Official NIfTI**, `load_brats2020_nifti`:
```
MICCAI_BraTS2020_TrainingData/BraTS20_Training_XXX/BraTS20_Training_XXX_{flair,t1,t1ce,t2,seg}.nii.gz
```
`.nii` is read too (the Kaggle copy awsaf49/brats20-dataset-training-validation is uncompressed). Every folder
holding NIfTI files under `data_dir` is a case, named by its folder. When `<case>_seg.nii[.gz]` is missing, a single
other NIfTI file with "seg" in its name is taken as the segmentation (that Kaggle copy names case 355's
`W39_1998.09.19_Segm.nii`). Validation cases have no segmentation and are an error: load the training folder.
Files are read with `hfseg.io.read_nifti` (modalities as float32, the segmentation as stored) and cut into axial
slices with `hfseg.io.to_slices(volume, affine, "axial")`: each slice is shown as radiology viewers show it (anterior
at the top, the patient's right on the image's left), whatever order the file stores its voxels in, the convention
`hfseg.inference` uses to predict a NIfTI volume with a 2D model. (BraTS stores LPS, so a slice is the stored
`volume[:, :, z]` transposed.) The slice index `z` runs from inferior to superior. Every volume of a case is cut
with the first modality's affine, and they must share its shape and axis order; every case must give one in-plane
size. Labels {0, 1, 2, 4} -> {0, 1, 2, 3} (`BRATS_NIFTI_LABELS`); BraTS 2020 has no label 3, so any other value is
an error (`label_map` reads other years, e.g. 2023's {0, 1, 2, 3}).

Slice selection (both loaders): `slices=(lo, hi)` or `range(lo, hi)` keeps axial indices lo <= s < hi (NIfTI:
counted from the inferior end);
`skip_blank` drops slices whose image is zero in every loaded modality (outside the brain: default True for NIfTI,
False for HDF5, whose files are already one per slice and whose background value is ⚠); `min_tumor_pixels=n` keeps
only slices with at least n tumour pixels (label > 0), as studies training on tumour slices do.

**Volumes** (`load_brats2020_nifti(..., volumes=True)`): one row per case instead of slices, with the features of
`hfseg.data.volumes.volume_features`: `image` (C, X, Y, Z) float32 stacking the `modalities` files channels first, in
the files' own storage order (not reoriented), `label` (X, Y, Z) uint8 mapped by `label_map` as the slices are,
`spacing` and `affine` of the first modality, `channels` the modality names. Every volume of a case must share the
first modality's shape and affine (to 1e-4 relative). The slice options (`slices`, `skip_blank`,
`min_tumor_pixels`) do not apply; passing `slices` or `min_tumor_pixels` with it is an error.

Splits group by case (`volume_<v>` or `BraTS20_Training_XXX`, one patient each): no patient is in two splits. The
skipped-item count of `skip_bad=True` is exact for HDF5 without content filters (one row per file); with
`skip_blank`/`min_tumor_pixels` a skipped file and a dropped slice look alike, so only the per-file warnings of the
first load report it. For NIfTI the count is of cases that gave no row at all.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from nibabel.orientations import aff2axcodes

from ..io import MedicalImage, read_nifti, to_slices
from .common import DatasetFormatError, build_splits, file_errors, skipping
from .features import classes_present, segmentation_features
from .splits import group_split
from .volumes import build_volume_splits, check_same_grid, volume_features, volume_row

if TYPE_CHECKING:
    import h5py

BRATS_ID2LABEL = {0: "background", 1: "necrotic_core", 2: "edema", 3: "enhancing_tumor"}
BRATS_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
BRATS_NIFTI_LABELS = {0: 0, 1: 1, 2: 2, 4: 3}
MASK_CHANNELS = ("labels", "regions")
_H5_NAME = re.compile(r"^volume_(\d+)_slice_(\d+)\.h5$")


def brats_regions(label: np.ndarray | torch.Tensor) -> dict[str, np.ndarray | torch.Tensor]:
    """Boolean masks of the BraTS evaluation regions WT (labels 1, 2, 3), TC (1, 3) and ET (3) of a label map."""
    if isinstance(label, torch.Tensor):
        return {name: torch.isin(label, torch.tensor(values, dtype=label.dtype, device=label.device))
                for name, values in BRATS_REGIONS.items()}
    label = np.asarray(label)
    return {name: np.isin(label, values) for name, values in BRATS_REGIONS.items()}


# ----------------------------------------------------------------------------------------------------------------
# Shared: option checks, slice filters, features


def _check_modalities(modalities: Sequence[str], available: Sequence[str], name: str) -> tuple[str, ...]:
    modalities = tuple(modalities)
    if not modalities or len(set(modalities)) != len(modalities) or not set(modalities) <= set(available):
        raise ValueError(f"{name} must be distinct names among {tuple(available)}, got {modalities}.")
    return modalities


def _slice_range(slices: tuple[int, int] | range | None) -> tuple[int, int] | None:
    if slices is None:
        return None
    if isinstance(slices, range):
        if slices.step != 1:
            raise ValueError(f"slices must be a range with step 1, got {slices}.")
        slices = (slices.start, slices.stop)
    lo, hi = (int(v) for v in slices)
    if not 0 <= lo < hi:
        raise ValueError(f"slices must be (lo, hi) with 0 <= lo < hi, got {slices}.")
    return lo, hi


def _keep(image: np.ndarray, label: np.ndarray, min_tumor_pixels: int, skip_blank: bool) -> bool:
    if skip_blank and not image.any():
        return False
    return int(np.count_nonzero(label)) >= min_tumor_pixels


def _features(height: int, width: int, channels: int) -> datasets.Features:
    return segmentation_features(BRATS_ID2LABEL, image=datasets.Array3D((height, width, channels), "float32"),
                                 extra={"slice": datasets.Value("int32")})


def _row(image: np.ndarray, label: np.ndarray, case_id: str, index: int) -> dict[str, Any]:
    return {"image": image, "label": label, "case_id": case_id, "classes": classes_present(label), "slice": index}


def _probe(items: Sequence[Any], probe: Callable[[Any], Any], skip_bad: bool) -> Any:
    """`probe` of the first item it succeeds on (the first item unless `skip_bad`)."""
    error: DatasetFormatError | None = None
    for item in items:
        try:
            return probe(item)
        except DatasetFormatError as err:
            if not skip_bad:
                raise
            error = err
    raise error  # every item is bad


def _describe(result: datasets.DatasetDict | datasets.IterableDatasetDict, source: str,
              modalities: tuple[str, ...]) -> None:
    """Record the channel order in each split's `info.description` (kept by `save_to_disk`)."""
    labels = ", ".join(f"{i} {name}" for i, name in BRATS_ID2LABEL.items())
    for split in result.values():
        split.info.description = f"BraTS 2020 ({source}); image channels: {', '.join(modalities)}; labels: {labels}."


def _split(items: list[Any], groups: list[str], validation_fraction: float, seed: int) -> dict[str, list[Any]]:
    train, validation = group_split(groups, validation_fraction, seed)
    return {"train": [items[i] for i in train], "validation": [items[i] for i in validation]}


# ----------------------------------------------------------------------------------------------------------------
# Kaggle HDF5


def _has_h5(folder: Path) -> bool:
    return folder.is_dir() and any(_H5_NAME.match(p.name) for p in folder.glob("volume_*_slice_*.h5"))


def find_h5_folder(data_dir: str | Path) -> Path:
    """The one folder at or under `data_dir` holding `volume_<v>_slice_<s>.h5` files."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    for folder in (root, root / "BraTS2020_training_data" / "content" / "data"):
        if _has_h5(folder):
            return folder
    folders = sorted({p.parent for p in root.rglob("volume_*_slice_*.h5") if _H5_NAME.match(p.name)})
    if not folders:
        raise DatasetFormatError(
            f"No volume_<v>_slice_<s>.h5 files under {root}: expected the Kaggle BraTS2020 layout "
            "BraTS2020_training_data/content/data/volume_<v>_slice_<s>.h5 (point data_dir at it or a folder above)."
        )
    if len(folders) > 1:
        raise DatasetFormatError(
            f"volume_*_slice_*.h5 files are in {len(folders)} folders under {root} ({', '.join(map(str, folders[:3]))}"
            f"{', ...' if len(folders) > 3 else ''}): pass the one to load as data_dir."
        )
    return folders[0]


def _list_h5(folder: Path, slices: tuple[int, int] | None) -> list[tuple[str, int, int]]:
    """(path, volume, slice) of every slice file, in volume then slice order, within `slices`."""
    items = []
    for path in folder.glob("volume_*_slice_*.h5"):
        match = _H5_NAME.match(path.name)
        if match:
            volume, index = int(match.group(1)), int(match.group(2))
            if slices is None or slices[0] <= index < slices[1]:
                items.append((str(path), volume, index))
    if not items:
        raise DatasetFormatError(f"No volume_<v>_slice_<s>.h5 file in {folder} has a slice index within {slices}.")
    return sorted(items, key=lambda item: (item[1], item[2]))


def _h5py():
    """h5py (the `hdf5` extra), or an ImportError saying how to install it."""
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            'The BraTS 2020 HDF5 loader needs h5py: pip install "hfseg[hdf5]" (or pip install h5py).'
        ) from err
    return h5py


def _h5_dataset(file: h5py.File, key: str, path: str) -> h5py.Dataset:
    if not isinstance(file.get(key), _h5py().Dataset):
        raise DatasetFormatError(
            f"{path} has no {key!r} dataset (keys: {sorted(file)}): Kaggle BraTS2020 slice files hold 'image' "
            "(H, W, 4) and 'mask' (H, W, 3). Replace or remove the file."
        )
    return file[key]


def _open_h5(path: str, read: Callable[[h5py.File], Any]) -> Any:
    try:
        with _h5py().File(path, "r") as file:
            return read(file)
    except OSError as err:
        raise DatasetFormatError(
            f"Cannot read {path}: corrupt or not an HDF5 file ({err}). Replace or remove it."
        ) from err


def _h5_shape(path: str, n_stored: int) -> tuple[int, int, int]:
    """The image shape of one slice file, without reading its pixels; its channels must match `stored_modalities`."""
    shape = _open_h5(path, lambda file: _h5_dataset(file, "image", path).shape)
    if len(shape) != 3 or shape[2] != n_stored:
        raise DatasetFormatError(
            f"{path} has an image of shape {shape}, expected (rows, cols, {n_stored}) for the {n_stored} "
            "stored_modalities; pass stored_modalities naming its channels."
        )
    return shape


def _read_h5(path: str) -> tuple[np.ndarray, np.ndarray]:
    """`image` and `mask` of one slice file as stored."""
    return _open_h5(path, lambda file: (_h5_dataset(file, "image", path)[()], _h5_dataset(file, "mask", path)[()]))


def _check_h5(path: str, image: np.ndarray, mask: np.ndarray, shape: tuple[int, int, int], reference: str) -> None:
    if image.shape != shape:
        raise DatasetFormatError(
            f"{path} has an image of shape {image.shape} but {reference} has {shape} (rows, cols, modalities): "
            "every slice file must have one shape. Replace or remove it."
        )
    if mask.shape != (*shape[:2], 3):
        raise DatasetFormatError(f"{path} has a mask of shape {mask.shape}, expected {(*shape[:2], 3)} "
                                 "(rows, cols, 3 binary channels) to match its image.")
    for key, array, kinds in (("image", image, "iuf"), ("mask", mask, "biuf")):
        if array.dtype.kind not in kinds:
            raise DatasetFormatError(f"{path} has a {array.dtype} {key}; expected numbers (float64 image, uint8 "
                                     "mask). Replace or remove it.")
    bad = [v.item() for v in np.unique(mask) if v not in (0, 1)]
    if bad:
        raise DatasetFormatError(f"{path} has mask values {bad[:10]}; its channels must be binary (0/1).")


def _labels_from_channels(mask: np.ndarray, path: str) -> np.ndarray:
    """[NCR/NET, ED, ET] label channels -> 1, 2, 3; a pixel in two channels contradicts this reading."""
    overlap = int(np.count_nonzero(np.count_nonzero(mask, axis=-1) > 1))
    if overlap:
        raise DatasetFormatError(
            f"{path} sets more than one mask channel on {overlap} pixel(s), which label channels [NCR/NET, ED, ET] "
            "never do: its channels may be the nested regions [WT, TC, ET]; if so pass mask_channels='regions'."
        )
    label = np.zeros(mask.shape[:2], np.uint8)
    for channel in range(3):
        label[mask[..., channel] != 0] = channel + 1
    return label


def _labels_from_regions(mask: np.ndarray, path: str) -> np.ndarray:
    """Nested [WT, TC, ET] regions -> labels: ET 3, TC minus ET 1, WT minus TC 2."""
    wt, tc, et = (mask[..., channel] != 0 for channel in range(3))
    if (tc & ~wt).any() or (et & ~tc).any():
        raise DatasetFormatError(
            f"{path} has mask channels that are not nested regions (ET inside TC inside WT), as "
            "mask_channels='regions' reads them; if they are label channels [NCR/NET, ED, ET] pass "
            "mask_channels='labels'."
        )
    label = np.zeros(mask.shape[:2], np.uint8)
    label[wt] = 2
    label[tc] = 1
    label[et] = 3
    return label


def _generate_h5(items: list[tuple[str, int, int]], shape: tuple[int, int, int], reference: str,
                 channels: tuple[int, ...], mask_channels: str, min_tumor_pixels: int, skip_blank: bool,
                 skip_bad: bool) -> Iterator[dict[str, Any]]:
    to_label = _labels_from_regions if mask_channels == "regions" else _labels_from_channels

    def read(item: tuple[str, int, int]) -> dict[str, Any] | None:
        path, volume, index = item
        image, mask = _read_h5(path)
        _check_h5(path, image, mask, shape, reference)
        label = to_label(mask, path)
        image = image[..., list(channels)].astype(np.float32)
        if not _keep(image, label, min_tumor_pixels, skip_blank):
            return None
        return _row(image, label, f"volume_{volume}", index)

    yield from skipping("brats2020-h5", items, read, skip_bad)


def load_brats2020_h5(
    data_dir: str | Path,
    mask_channels: str = "labels",
    stored_modalities: Sequence[str] = BRATS_MODALITIES,
    modalities: Sequence[str] = BRATS_MODALITIES,
    slices: tuple[int, int] | range | None = None,
    min_tumor_pixels: int = 0,
    skip_blank: bool = False,
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the Kaggle BraTS 2020 HDF5 slices (see the module docstring), split by volume.

    Args:
        mask_channels: "labels" reads the mask channels as [NCR/NET, ED, ET] (pixels in two channels are an
            error), "regions" as the nested regions [WT, TC, ET] ⚠.
        stored_modalities: the modalities of the files' image channels, in stored order ⚠ (default t1, t1ce, t2,
            flair; some code says flair, t1, t1ce, t2).
        modalities: the output image channels, any of `stored_modalities`, in this order.
        slices: keep slice indices lo <= s < hi only (`(lo, hi)` or `range(lo, hi)`).
        min_tumor_pixels: keep only slices with at least this many tumour pixels (1: slices with tumour).
        skip_blank: drop slices whose image is zero in every output channel.
        skip_bad: skip unreadable or inconsistent files with a warning instead of raising.
    """
    if mask_channels not in MASK_CHANNELS:
        raise ValueError(f"mask_channels must be one of {MASK_CHANNELS}, got {mask_channels!r}.")
    stored = _check_modalities(stored_modalities, BRATS_MODALITIES, "stored_modalities")
    modalities = _check_modalities(modalities, stored, "modalities")
    items = _list_h5(find_h5_folder(data_dir), _slice_range(slices))
    reference, shape = _probe(items, lambda item: (item[0], _h5_shape(item[0], len(stored))), skip_bad)
    split_items = _split(items, [f"volume_{volume}" for _, volume, _ in items], validation_fraction, seed)
    filtered = min_tumor_pixels > 0 or skip_blank  # rows dropped on purpose: the row count says nothing of skips
    result = build_splits(
        "brats2020-h5", _generate_h5, split_items, _features(shape[0], shape[1], len(modalities)),
        gen_kwargs=dict(shape=tuple(shape), reference=reference, channels=tuple(stored.index(m) for m in modalities),
                        mask_channels=mask_channels, min_tumor_pixels=int(min_tumor_pixels),
                        skip_blank=bool(skip_blank), skip_bad=skip_bad),
        cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
        expected_rows={split: 0 for split in split_items} if filtered else None,
    )
    _describe(result, "Kaggle HDF5 slices", modalities)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Official NIfTI


def _nifti_stem(path: Path) -> str | None:
    """The lower-case name without `.nii`/`.nii.gz`, or None for other files."""
    name = path.name.lower()
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def find_cases(data_dir: str | Path) -> list[Path]:
    """Every folder at or under `data_dir` holding NIfTI files, sorted; case ids (folder names) must be unique."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder.")
    cases = sorted({p.parent for p in root.rglob("*.nii*") if _nifti_stem(p) is not None and p.is_file()})
    if not cases:
        raise DatasetFormatError(
            f"No NIfTI files (.nii, .nii.gz) under {root}: expected MICCAI_BraTS2020_TrainingData/"
            "BraTS20_Training_XXX/BraTS20_Training_XXX_{flair,t1,t1ce,t2,seg}.nii.gz."
        )
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise DatasetFormatError(f"Case {case.name} is in two folders, {seen[case.name]} and {case}: keep one "
                                     "copy (case ids must be unique to split by patient).")
        seen[case.name] = case
    return cases


def case_files(case: Path, modalities: Sequence[str]) -> tuple[dict[str, Path], Path]:
    """The volume of each modality and the segmentation of a case folder, or an error naming what is missing."""
    files = {p: _nifti_stem(p) for p in case.iterdir() if p.is_file() and _nifti_stem(p) is not None}
    volumes = {}
    for modality in BRATS_MODALITIES:
        found = sorted(p for p, stem in files.items() if stem.endswith(f"_{modality}"))
        if len(found) > 1:
            raise DatasetFormatError(f"Case {case} has several {modality} volumes ({', '.join(p.name for p in found)})"
                                     ": keep one.")
        if found:
            volumes[modality] = found[0]
        elif modality in modalities:
            raise DatasetFormatError(f"Case {case} has no {modality} volume: expected "
                                     f"{case / f'{case.name}_{modality}.nii.gz'} (or .nii).")
    segs = sorted(p for p, stem in files.items() if stem == f"{case.name.lower()}_seg")
    if not segs:  # any single other "seg" file, e.g. Kaggle's case 355: W39_1998.09.19_Segm.nii
        segs = sorted(p for p, stem in files.items() if "seg" in stem and p not in volumes.values())
    if len(segs) != 1:
        raise DatasetFormatError(
            f"Case {case} has {'no' if not segs else 'several'} segmentation file(s) "
            f"{[p.name for p in segs] if segs else ''}: expected {case / f'{case.name}_seg.nii.gz'} (or .nii). The "
            "segmentation is required: validation and test cases come without one, load the training folder only."
        )
    return {m: volumes[m] for m in modalities}, segs[0]


def _read_nifti(path: Path, image: bool) -> MedicalImage:
    """A NIfTI volume through `hfseg.io.read_nifti`: float32 intensities (scaling applied) for an image, stored
    values for a segmentation."""
    with file_errors():
        return read_nifti(path, dtype="float32" if image else "stored")


def _axial(array: np.ndarray, reference: MedicalImage) -> np.ndarray:
    """`(slices, rows, columns, ...)` of a volume on `reference`'s grid, in hfseg's display convention
    (`hfseg.io.to_slices`, axial: inferior to superior, anterior at the top, the patient's right on the left)."""
    with file_errors():
        return to_slices(array, reference.affine, "axial", reference.name)


def _nifti_shape(case: Path, modalities: Sequence[str]) -> tuple[int, ...]:
    """The shape `(slices, rows, columns)` of a case's first modality cut into axial display slices."""
    volume = _read_nifti(case_files(case, modalities)[0][modalities[0]], image=True)
    return _axial(volume.array, volume).shape


def _remap_seg(seg: np.ndarray, path: Path, label_map: Mapping[int, int]) -> np.ndarray:
    values = np.unique(seg)
    bad = [v.item() for v in values if v.item() not in label_map]
    if bad:
        raise DatasetFormatError(
            f"Segmentation {path} has values {bad[:10]} outside {sorted(label_map)}: BraTS 2020 labels are 0 "
            "background, 1 NCR/NET, 2 ED and 4 ET (no 3). For another labelling pass label_map, e.g. "
            "{0: 0, 1: 1, 2: 2, 3: 3} for BraTS 2023."
        )
    label = np.zeros(seg.shape, np.uint8)
    for raw, cls in label_map.items():
        label[seg == raw] = cls
    return label


def _read_case(case: Path, modalities: tuple[str, ...], label_map: Mapping[int, int],
               in_plane: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(image (D, H, W, C) float32, label (D, H, W) uint8) of one case folder as axial display slices (inferior to
    superior), every volume checked: one voxel grid per case, one in-plane size for all cases."""
    volumes, seg_path = case_files(case, modalities)
    images = [_read_nifti(volumes[m], image=True) for m in modalities]
    seg = _read_nifti(seg_path, image=False)
    reference = images[0]
    axes = aff2axcodes(reference.affine)
    for volume in (*images, seg):
        if volume.array.shape != reference.array.shape:
            raise DatasetFormatError(f"{volume.path} has shape {volume.array.shape} but {reference.path} has "
                                     f"{reference.array.shape}: every volume of a case must have one voxel grid.")
        if aff2axcodes(volume.affine) != axes:
            raise DatasetFormatError(
                f"{volume.path} stores its voxels in {''.join(map(str, aff2axcodes(volume.affine)))} order but "
                f"{reference.path} in {''.join(map(str, axes))}: every volume of a case must have one voxel grid "
                "(resample or reorient it onto the other modalities' grid, or fix its header)."
            )
    # One transform for all: the label and every channel stay voxel for voxel on the first modality's grid.
    image = _axial(np.stack([volume.array for volume in images], axis=-1), reference)
    if image.shape[1:3] != in_plane:
        raise DatasetFormatError(f"{reference.path} has axial slices of {image.shape[1:3]} voxels (rows, columns, as "
                                 f"displayed) but the first case has {in_plane}: every case must have one in-plane "
                                 "size.")
    return image, _remap_seg(_axial(seg.array, reference), seg_path, label_map)


def _generate_nifti(items: list[str], in_plane: tuple[int, int], modalities: tuple[str, ...],
                    label_map: tuple[tuple[int, int], ...], slices: tuple[int, int] | None, min_tumor_pixels: int,
                    skip_blank: bool, skip_bad: bool) -> Iterator[dict[str, Any]]:
    def read(item: str) -> list[dict[str, Any]]:
        case = Path(item)
        image, label = _read_case(case, modalities, dict(label_map), in_plane)
        lo, hi = slices or (0, label.shape[0])
        rows = []
        for z in range(lo, min(hi, label.shape[0])):
            slice_image, slice_label = np.ascontiguousarray(image[z]), np.ascontiguousarray(label[z])
            if _keep(slice_image, slice_label, min_tumor_pixels, skip_blank):
                rows.append(_row(slice_image, slice_label, case.name, z))
        return rows  # all of a case or none of it: an error part-way through skips the whole case

    for rows in skipping("brats2020-nifti", items, read, skip_bad):
        yield from rows


def read_case_volume(case: Path, modalities: tuple[str, ...], label_map: Mapping[int, int]) -> dict[str, Any]:
    """The volume row of one case folder: the modalities stacked channels first, on the first one's grid."""
    files, seg_path = case_files(case, modalities)
    images = [_read_nifti(files[m], image=True) for m in modalities]
    seg = _read_nifti(seg_path, image=False)
    for volume in (*images[1:], seg):
        check_same_grid(volume, images[0], "every volume of a case")
    image = np.stack([volume.array for volume in images])
    label = _remap_seg(seg.array, seg_path, label_map)
    return volume_row(case.name, image, label, images[0].spacing, images[0].affine, modalities)


def _generate_volumes(items: list[Path], modalities: tuple[str, ...], label_map: tuple[tuple[int, int], ...],
                      skip_bad: bool) -> Iterator[dict[str, Any]]:
    yield from skipping("brats2020-nifti", items, lambda case: read_case_volume(case, modalities, dict(label_map)),
                        skip_bad)


def _warn_empty_cases(result: datasets.DatasetDict | datasets.IterableDatasetDict,
                      split_items: Mapping[str, Sequence[str]]) -> None:
    """Warn about cases that gave no row (skipped, or no slice passed the filters); also on a cached reload."""
    for split, dataset in result.items():
        if not isinstance(dataset, datasets.Dataset):
            continue  # streaming: nothing read yet
        present = set(dataset.unique("case_id"))
        missing = [case for case in split_items[split] if Path(case).name not in present]
        if missing:
            warnings.warn(
                f"brats2020-nifti: {len(missing)} of {len(split_items[split])} {split} cases gave no rows, e.g. "
                f"{missing[0]}: skipped as unreadable (skip_bad=True; load without it to see the error) or no slice "
                "passed slices/skip_blank/min_tumor_pixels.",
                stacklevel=3,
            )


def load_brats2020_nifti(
    data_dir: str | Path,
    modalities: Sequence[str] = BRATS_MODALITIES,
    label_map: Mapping[int, int] | None = None,
    slices: tuple[int, int] | range | None = None,
    skip_blank: bool = True,
    min_tumor_pixels: int = 0,
    validation_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    streaming: bool = False,
    volumes: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the official BraTS 2020 NIfTI volumes as axial slices (see the module docstring), split by case.

    Each case is read once and gives all its slices, so `num_proc` shares out cases. With `volumes=True` each case
    is one row of `hfseg.data.volumes.volume_features` instead (the same case split).

    Args:
        modalities: the image channels, in this order (default t1, t1ce, t2, flair, as the HDF5 loader).
        label_map: raw segmentation value -> class (default `BRATS_NIFTI_LABELS`, {0: 0, 1: 1, 2: 2, 4: 3}).
        slices: keep axial indices lo <= z < hi only (`(lo, hi)` or `range(lo, hi)`), z counted from inferior.
        skip_blank: drop slices whose image is zero in every modality (outside the brain).
        min_tumor_pixels: keep only slices with at least this many tumour pixels (1: slices with tumour).
        skip_bad: skip unreadable or inconsistent cases with a warning instead of raising.
        volumes: one row per case, the whole volume channels first (see the module docstring).
    """
    modalities = _check_modalities(modalities, BRATS_MODALITIES, "modalities")
    label_map = {int(k): int(v) for k, v in (label_map or BRATS_NIFTI_LABELS).items()}
    if not set(label_map.values()) <= set(BRATS_ID2LABEL):
        raise ValueError(f"label_map must map to the classes {sorted(BRATS_ID2LABEL)}, got {label_map}.")
    if volumes:
        if slices is not None or min_tumor_pixels:
            raise ValueError("slices and min_tumor_pixels select slices: they do not apply with volumes=True.")
        cases = find_cases(data_dir)
        split_items = _split(cases, [case.name for case in cases], validation_fraction, seed)
        result = build_volume_splits(
            "brats2020-nifti", _generate_volumes, split_items, volume_features(BRATS_ID2LABEL),
            gen_kwargs=dict(modalities=modalities, label_map=tuple(sorted(label_map.items())), skip_bad=skip_bad),
            cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
        )
        _describe(result, "NIfTI volumes, one row per case in storage order", modalities)
        return result
    cases = [str(case) for case in find_cases(data_dir)]
    shape = _probe(cases, lambda case: _nifti_shape(Path(case), modalities), skip_bad)
    split_items = _split(cases, [Path(case).name for case in cases], validation_fraction, seed)
    result = build_splits(
        "brats2020-nifti", _generate_nifti, split_items, _features(shape[1], shape[2], len(modalities)),
        gen_kwargs=dict(in_plane=tuple(shape[1:3]), modalities=modalities, label_map=tuple(sorted(label_map.items())),
                        slices=_slice_range(slices), min_tumor_pixels=int(min_tumor_pixels),
                        skip_blank=bool(skip_blank), skip_bad=skip_bad),
        cache_dir=cache_dir, num_proc=num_proc, streaming=streaming,
        expected_rows={split: 0 for split in split_items},  # rows per case vary: cases are counted below instead
    )
    _warn_empty_cases(result, split_items)
    _describe(result, "NIfTI volumes, axial slices in radiological display", modalities)
    return result
