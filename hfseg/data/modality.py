"""What each registered dataset images: its DICOM Modality code (`dataset_modality`), saved with a trained model.

The codes are DICOM's (PS3.3 C.7.3.1.1.1): `"MR"` magnetic resonance, `"CT"` computed tomography, `"SM"` slide
microscopy (whole-slide and histology images). A dataset whose layout holds any kind of image (the generic folder
loader) has no modality: None.
"""

from __future__ import annotations

# Per loader name of `hfseg.data.load`: what its images are (see each loader's module docstring).
DATASET_MODALITIES: dict[str, str | None] = {
    "demo": "MR",  # the MNI ICBM152 T1 brain template
    "demo3d": "MR",  # 3D cases made from the same template
    "nnunet": None,  # any nnU-Net dataset: CT, MR, ... (its dataset.json names channels, not a modality code)
    "image-mask-folder": None,  # any 2D images
    "oral-epithelium": "SM",  # H&E histology regions of interest
    "liver-voc": "CT",  # liver CT slices
    "chaos-mr-t2spir": "MR",  # CHAOS MR T2-SPIR DICOM
    "brats2020-h5": "MR",  # BraTS glioma MRI, t1/t1ce/t2/flair
    "brats2020-nifti": "MR",
    "uw-madison-gi": "MR",  # abdominal MRI (MR-Linac) slices
    "brain-tumor-mri": "MR",  # brain MRI JPEGs
}


def dataset_modality(name: str) -> str | None:
    """The DICOM Modality code of the images dataset `name` yields (e.g. `"MR"`), or None when the layout holds any.

    Raises a `ValueError` listing the known names for an unknown `name`.
    """
    if name not in DATASET_MODALITIES:
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(DATASET_MODALITIES)}.")
    return DATASET_MODALITIES[name]
