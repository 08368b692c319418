"""`read` and `list_inputs`: what kind a path is, what a folder gives, and the refusals before any decoding."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from hfseg.io import MedicalFileError, file_kind, list_inputs, read

from .files import write_series


def picture(path, value=0):
    Image.fromarray(np.full((3, 4), value, np.uint8)).save(path)
    return path


def test_file_kinds(tmp_path):
    assert file_kind(tmp_path) == "dicom-series"
    assert file_kind("a.nii") == file_kind("b.NII.GZ") == "nifti"
    assert file_kind("c.dcm") == file_kind("d.IMA") == "dicom"
    assert file_kind("e.jpeg") == file_kind("f.TIF") == "picture"
    marked = tmp_path / "IM0001"  # no extension, but the DICM marker at byte 128
    marked.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    assert file_kind(marked) == "dicom"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedicalFileError, match="unsupported file type.*PNG, JPEG.*DICOM.*NIfTI"):
        file_kind(tmp_path / "notes.txt")
    assert read(marked).modality == "CT"


def test_refusals_before_reading(tmp_path):
    with pytest.raises(MedicalFileError, match="does not exist"):
        read(tmp_path / "missing.png")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(MedicalFileError, match="empty"):
        read(tmp_path / "empty.dcm")
    big = picture(tmp_path / "big.png")
    with pytest.raises(MedicalFileError, match="over the 0 MB limit"):
        read(big, max_bytes=10)
    assert read(big, max_bytes=os.path.getsize(big)).array.shape == (3, 4)


def test_stem_and_repr(tmp_path):
    image = read(get_testdata_file("CT_small.dcm"))
    assert image.stem == "CT_small" and image.name == "CT_small.dcm"
    assert "CT_small.dcm" in repr(image) and "CT" in repr(image)
    assert image.voxel_volume() == pytest.approx(0.661468 ** 2)


def test_list_inputs_picture_folder(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    names = ["b.png", "a.jpg", "c.tif"]
    for name in names:
        picture(folder / name)
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "LICENSE").write_text("not a picture")
    (folder / "sub").mkdir()
    picture(folder / "sub" / "deeper.png")
    assert list_inputs([folder]) == [folder / n for n in sorted(names)]  # sorted, not recursive


def test_list_inputs_series_folder_is_one_input(tmp_path):
    series = write_series(tmp_path / "series", n=3, size=16)
    (series.folder / "README.txt").write_text("x")
    assert list_inputs([series.folder]) == [series.folder]
    nested = write_series(tmp_path / "study" / "s1", n=2, size=16)
    assert list_inputs([tmp_path / "study"]) == [tmp_path / "study"]
    assert read(list_inputs([tmp_path / "study"])[0]).meta["series_uid"] == nested.uid


def test_list_inputs_mixed_folder(tmp_path):
    folder = tmp_path / "mixed"
    series = write_series(folder, n=2, size=16)
    picture(folder / "photo.png")
    volume = folder / "scan.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), volume)
    inputs = list_inputs([folder])
    assert inputs == [folder / "photo.png", volume, folder]  # the pictures and NIfTI files, then the DICOMs
    assert read(inputs[-1]).meta["series_uid"] == series.uid  # the folder as a series reads only its DICOMs


def test_list_inputs_files_and_missing_paths_kept(tmp_path):
    image = picture(tmp_path / "x.png")
    missing = tmp_path / "nope.dcm"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list_inputs([image, missing, empty]) == [image, missing, empty]
    with pytest.raises(MedicalFileError, match="no DICOM images"):
        read(empty)
