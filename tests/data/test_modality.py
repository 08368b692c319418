"""`dataset_modality`: every registered dataset says what it images, as a DICOM Modality code."""

import pytest

from hfseg.data import available, dataset_modality

EXPECTED = {
    "demo": "MR",
    "demo3d": "MR",
    "nnunet": None,
    "image-mask-folder": None,
    "oral-epithelium": "SM",
    "liver-voc": "CT",
    "chaos-mr-t2spir": "MR",
    "brats2020-h5": "MR",
    "brats2020-nifti": "MR",
    "uw-madison-gi": "MR",
    "brain-tumor-mri": "MR",
}
DICOM_CODES = {"MR", "CT", "SM", "US", "CR", "DX", "MG", "PT", "NM", "XA", "OCT", "OP", "XC", "ES", "GM"}


def test_every_registered_dataset_has_its_modality():
    assert set(available()) == set(EXPECTED)  # a new loader must declare its modality (and be listed here)
    for name, code in EXPECTED.items():
        assert dataset_modality(name) == code, name
        assert code is None or code in DICOM_CODES


def test_unknown_dataset_is_an_error_listing_the_names():
    with pytest.raises(ValueError, match=r"Unknown dataset 'nope'; available: demo"):
        dataset_modality("nope")
