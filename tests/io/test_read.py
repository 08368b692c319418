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


# -- checked by content ------------------------------------------------------------------------------------------------
def test_content_kind_by_magic_bytes(tmp_path):
    import gzip

    import nibabel as nib

    from hfseg.io import content_kind

    png = picture(tmp_path / "a.png")
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "b.jpg")
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "c.tif")
    nifti = tmp_path / "d.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), nifti)
    nifti2 = tmp_path / "e.nii"
    nib.save(nib.Nifti2Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), nifti2)
    packed = tmp_path / "f.gz"
    packed.write_bytes(gzip.compress(nifti.read_bytes()))
    other = tmp_path / "g.gz"
    other.write_bytes(gzip.compress(b"hello"))
    text = tmp_path / "h.txt"
    text.write_text("Patient: anonymous, 37 años\n")
    binary = tmp_path / "i.bin"
    binary.write_bytes(bytes(range(256)))
    assert content_kind(png) == ("picture", "PNG image")
    assert content_kind(tmp_path / "b.jpg") == ("picture", "JPEG image")
    assert content_kind(tmp_path / "c.tif") == ("picture", "TIFF image")
    assert content_kind(get_testdata_file("CT_small.dcm")) == ("dicom", "DICOM file")
    assert content_kind(nifti) == content_kind(nifti2) == ("nifti", "NIfTI volume")
    assert content_kind(packed) == ("nifti", "gzip-compressed NIfTI volume")
    assert content_kind(other) == ("gzip", "gzip archive")
    assert content_kind(text) == ("text", "text file")
    assert content_kind(binary) is None and content_kind(tmp_path / "missing") is None


def test_read_refuses_a_file_whose_content_is_another_type(tmp_path):
    renamed = tmp_path / "scan.dcm"
    renamed.write_bytes(picture(tmp_path / "a.png").read_bytes())
    with pytest.raises(MedicalFileError, match="scan.dcm: it is named as a DICOM file but holds a PNG image"):
        read(renamed)
    dicom_as_png = tmp_path / "ct.png"
    dicom_as_png.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    with pytest.raises(MedicalFileError, match="holds a DICOM file; rename it to .dcm"):
        read(dicom_as_png)
    text = tmp_path / "notes.nii"
    text.write_text("not a volume")
    with pytest.raises(MedicalFileError, match="notes.nii: corrupt or not a NIfTI file \\(it holds text\\)"):
        read(text)
    as_jpeg = tmp_path / "photo.png"  # within pictures, Pillow reads by content
    Image.fromarray(np.full((3, 4), 7, np.uint8)).save(as_jpeg, format="JPEG")
    assert read(as_jpeg).array.shape == (3, 4)
