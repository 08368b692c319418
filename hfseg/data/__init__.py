"""`datasets` loaders for medical segmentation datasets: `load(name, data_dir, **options)` and `available()`.

Each loader reads its publisher's layout (see its module docstring) into a `DatasetDict` with the features of
`segmentation_features` (or `classification_features`), splits grouped by patient/case where the data has one. The 3D
loaders (`nnunet`, `demo3d`, and `volumes=True` of `brats2020-nifti` and `chaos-mr-t2spir`) give one row per case
with the features of `volume_features` (see `hfseg.data.volumes`).
Loader modules are imported on first use, so format libraries (pydicom, h5py, nibabel) load only when needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, NamedTuple

import datasets

from .common import DatasetFormatError, skipped_items
from .demo import DEMO_ID2LABEL
from .features import classification_features, id2label, segmentation_features
from .modality import dataset_modality
from .splits import group_split
from .volumes import volume_features


class _Loader(NamedTuple):
    module: str
    function: str
    needs_dir: bool
    description: str


_LOADERS: dict[str, _Loader] = {
    "demo": _Loader("demo", "load_demo", False,
                    "brain MRI tissue segmentation from the MNI ICBM152 template in nilearn (no download)"),
    "demo3d": _Loader("demo3d", "load_demo3d", False,
                      "small 3D brain MRI cases resampled and deformed from the MNI ICBM152 template (no download)"),
    "nnunet": _Loader("nnunet", "load_nnunet", True,
                      "nnU-Net raw datasets (v2 or Medical Segmentation Decathlon) as 3D volumes, nnU-Net's folds"),
    "image-mask-folder": _Loader("folder", "load_image_mask_folder", True,
                                 "images/ and masks/ paired by file stem, any 2D image format"),
    "oral-epithelium": _Loader("oral_epithelium", "load_oral_epithelium", True,
                               "OralEpitheliumDB H&E nuclei masks with 4 dysplasia grades (or the cancer study's "
                               "Training/Test folders)"),
    "liver-voc": _Loader("liver_voc", "load_liver_voc", True,
                         "liver CT slices in the ganzang VOC layout (Images/, Labels/, ImageSets/Segmentation)"),
    "chaos-mr-t2spir": _Loader("chaos", "load_chaos_mr_t2spir", True,
                               "CHAOS MR T2-SPIR DICOM slices, liver/kidneys/spleen from the Ground PNGs"),
    "brats2020-h5": _Loader("brats", "load_brats2020_h5", True,
                            "BraTS 2020 Kaggle HDF5 slices, 4 MRI modalities, NCR/ED/ET tumour labels"),
    "brats2020-nifti": _Loader("brats", "load_brats2020_nifti", True,
                               "BraTS 2020 official NIfTI volumes sliced axially, labels 0/1/2/4 -> 0..3"),
    "uw-madison-gi": _Loader("uw_madison", "load_uw_madison_gi", True,
                             "UW-Madison GI tract MRI, 16-bit PNG slices with RLE masks from train.csv"),
    "brain-tumor-mri": _Loader("brain_tumor_mri", "load_brain_tumor_mri", True,
                               "brain tumour MRI classification (glioma/meningioma/notumor/pituitary folders)"),
}


def available() -> dict[str, str]:
    """Loader names with a one-line description each."""
    return {name: loader.description for name, loader in _LOADERS.items()}


def load(name: str, data_dir: str | None = None, **options: Any) -> datasets.DatasetDict:
    """Load the dataset `name` from `data_dir` (in its publisher's layout) as a `DatasetDict`.

    Common options: `validation_fraction`, `seed`, `cache_dir`, `num_proc`, `streaming`, `skip_bad`; see each
    loader's docstring (`help(hfseg.data.loader_function(name))`) for its own.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(_LOADERS)}.")
    function = loader_function(name)
    if loader.needs_dir:
        if data_dir is None:
            raise ValueError(f"Dataset {name!r} needs data_dir, the folder holding its files.")
        return function(data_dir, **options)
    if data_dir is not None:
        raise ValueError(f"Dataset {name!r} is built in and takes no data_dir.")
    return function(**options)


def loader_function(name: str):
    """The function behind `load(name, ...)`, for its docstring and signature."""
    if name not in _LOADERS:
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(_LOADERS)}.")
    loader = _LOADERS[name]
    return getattr(import_module(f".{loader.module}", __name__), loader.function)


__all__ = ["DEMO_ID2LABEL", "DatasetFormatError", "available", "classification_features", "dataset_modality",
           "group_split", "id2label", "load", "loader_function", "segmentation_features", "skipped_items",
           "volume_features"]
