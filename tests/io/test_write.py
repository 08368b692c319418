"""Masks written next to their images and read back with nibabel, pydicom, highdicom and Pillow: same grid, same
header codes, frames on the right slices, segments named."""

import numpy as np
import nibabel as nib
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from hfseg.io import MedicalFileError, auto_format, format_of, read, read_picture_array, write_mask

from .files import LPS_TO_RAS, PHILIPS_ENHANCED, philips_subset

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
ID2LABEL = {0: "background", 1: "liver", 2: "tumour"}
AFFINE = np.array([[-0.8, 0.1, 0, 30.0], [0, 0.9, 0.05, -12.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])


def labels_for(shape, classes=3, seed=0):
    return np.random.default_rng(seed).integers(0, classes, size=shape).astype(np.uint8)


def nifti_source(tmp_path, data, name="scan.nii.gz", nifti2=False, qform_code=1, sform_code=2):
    image = (nib.Nifti2Image if nifti2 else nib.Nifti1Image)(data, None)
    image.set_qform(AFFINE, code=qform_code)
    image.set_sform(AFFINE, code=sform_code)
    image.header.set_slope_inter(2.0, -5.0)
    image.header.set_xyzt_units("mm", "sec")
    path = tmp_path / name
    nib.save(image, path)
    return path


# -- NIfTI -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("qform_code", "sform_code"), [(1, 2), (2, 0), (0, 4)])
def test_nifti_round_trip_keeps_the_source_grid_and_codes(tmp_path, qform_code, sform_code):
    source_path = nifti_source(tmp_path, np.zeros((6, 5, 4), np.int16), qform_code=qform_code, sform_code=sform_code)
    source = read(source_path)
    mask = labels_for(source.array.shape)
    out = write_mask(mask, source, tmp_path / "out" / "scan_mask.nii.gz")
    assert out.exists() and out.parent.name == "out"
    written, original = nib.load(out), nib.load(source_path)
    assert written.shape == original.shape == (6, 5, 4)
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(original.affine)
    assert int(written.header["qform_code"]) == qform_code and int(written.header["sform_code"]) == sform_code
    np.testing.assert_allclose(written.header.get_qform(), original.header.get_qform(), atol=1e-5)
    assert written.get_data_dtype() == np.uint8
    assert written.header.get_intent()[0] == "label"
    assert written.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)  # the source's scaling is not applied
    back = read(out, dtype="stored")
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-5)


def test_nifti2_source_stays_nifti2(tmp_path):
    source = read(nifti_source(tmp_path, np.zeros((4, 3, 2), np.float32), name="two.nii", nifti2=True))
    out = write_mask(labels_for((4, 3, 2)), source, tmp_path / "two_mask.nii")
    written = nib.load(out)
    assert type(written) is nib.Nifti2Image and int(written.header["sizeof_hdr"]) == 540
    np.testing.assert_allclose(written.affine, AFFINE, atol=1e-5)


def test_4d_source_gives_a_3d_mask(tmp_path):
    path = nifti_source(tmp_path, np.zeros((4, 3, 2, 5), np.float32), name="bold.nii.gz")
    source = read(path, volume=2)
    mask = labels_for((4, 3, 2))
    written = nib.load(write_mask(mask, source, tmp_path / "bold_mask.nii.gz"))
    assert written.shape == (4, 3, 2) and written.header["dim"][0] == 3
    assert written.header.get_zooms() == pytest.approx(nib.load(path).header.get_zooms()[:3])
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)


def test_2d_source_gives_a_2d_mask(tmp_path):
    source = read(nifti_source(tmp_path, np.zeros((7, 3), np.float32), name="flat.nii.gz"))
    assert source.array.shape == (7, 3, 1)
    mask = labels_for((7, 3, 1))
    written = nib.load(write_mask(mask, source, tmp_path / "flat_mask.nii.gz"))
    assert written.shape == (7, 3)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask[:, :, 0])


def test_many_classes_are_uint16(tmp_path):
    source = read(nifti_source(tmp_path, np.zeros((4, 3, 2), np.float32)))
    mask = np.arange(24, dtype=np.int64).reshape(4, 3, 2) * 100
    written = nib.load(write_mask(mask, source, tmp_path / "m.nii.gz"))
    assert written.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)


def test_dicom_series_to_nifti(tmp_path, series):
    image = read(series.folder)
    mask = labels_for(image.array.shape)
    written = nib.load(write_mask(mask, image, tmp_path / "ct_mask.nii.gz"))
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-4)
    assert int(written.header["qform_code"]) == int(written.header["sform_code"]) == 1
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)
    # The mask's voxel (c, r, k) is where the DICOM standard puts pixel (r, c) of slice k.
    for voxel in [(0, 0, 0), (127, 5, 4), (17, 100, 2)]:
        np.testing.assert_allclose(written.affine @ np.r_[voxel, 1], np.r_[series.world(*voxel), 1], atol=1e-4)


def test_single_dicom_to_nifti_and_png(tmp_path):
    image = read(get_testdata_file("CT_small.dcm"))
    mask = labels_for(image.array.shape)
    written = nib.load(write_mask(mask, image, tmp_path / "ct.nii.gz"))
    assert written.shape == (128, 128, 1)
    np.testing.assert_allclose(written.affine[:, [0, 1, 3]], image.affine[:, [0, 1, 3]])
    assert auto_format(image) == "png"
    np.testing.assert_array_equal(read_picture_array(write_mask(mask, image, tmp_path / "ct.png")), mask)


# -- DICOM-SEG ---------------------------------------------------------------------------------------------------
def seg_frames(seg):
    """[(referenced SOPInstanceUID, segment number, ImagePositionPatient, frame, referenced frame number)] of a
    DICOM-SEG, via pydicom (a functional group is per-frame, or shared by all frames)."""
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    shared = seg.SharedFunctionalGroupsSequence[0]
    out = []
    for group, frame in zip(seg.PerFrameFunctionalGroupsSequence, frames):
        def item(keyword, group=group):
            return (group if keyword in group else shared).get(keyword)[0]

        source = item("DerivationImageSequence").SourceImageSequence[0]
        number = int(item("SegmentIdentificationSequence").ReferencedSegmentNumber)
        position = np.array([float(v) for v in item("PlanePositionSequence").ImagePositionPatient])
        out.append((str(source.ReferencedSOPInstanceUID), number, position, frame,
                    int(source.get("ReferencedFrameNumber", 0) or 0)))
    return out


def test_dicom_series_to_dicom_seg(tmp_path, series):
    import highdicom as hd

    image = read(series.folder)
    mask = np.zeros(image.array.shape, np.uint8)
    mask[10:40, 20:60, 1] = 1  # (columns, rows, slice)
    mask[60:70, 5:9, 3] = 2
    mask[90:100, 90:95, 3] = 1
    out = write_mask(mask, image, tmp_path / "ct_seg.dcm", id2label=ID2LABEL, model_name="tiny-unet")
    seg = pydicom.dcmread(out)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.Modality == "SEG"
    assert seg.SeriesInstanceUID != series.uid
    assert seg.FrameOfReferenceUID == image.meta["frame_of_reference_uid"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "tiny-unet"
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == series.uid
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced.ReferencedInstanceSequence} == set(series.sop_uids)
    # Every frame: its source slice, the slice's position, and the mask of that slice and segment.
    frames = seg_frames(seg)
    assert len(frames) == 5 * 2  # every slice, each segment (empty frames kept)
    for uid, number, position, frame, _ in frames:
        k = series.sop_uids.index(uid)
        np.testing.assert_allclose(position, series.positions[k], atol=1e-4)
        np.testing.assert_array_equal(frame, (mask[:, :, k].T == number).astype(frame.dtype))
    # highdicom's own decoding, as a volume on its own grid: the same labels at the same world positions.
    segmentation = hd.seg.segread(out)
    if not hasattr(segmentation, "get_volume"):  # highdicom < 0.24: the frame-by-frame check above is the check
        return
    volume = segmentation.get_volume(combine_segments=True)
    index = np.indices(volume.array.shape).reshape(3, -1)
    ras = LPS_TO_RAS @ volume.affine @ np.r_[index, np.ones((1, index.shape[1]))]
    ours = np.round(np.linalg.solve(image.affine, ras)[:3]).astype(int)
    np.testing.assert_array_equal(volume.array.reshape(-1), mask[ours[0], ours[1], ours[2]])


def test_dicom_seg_of_one_image_and_an_empty_mask(tmp_path):
    image = read(get_testdata_file("CT_small.dcm"))
    out = write_mask(np.zeros((128, 128), np.uint8), image, tmp_path / "empty_seg.dcm")
    seg = pydicom.dcmread(out)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["class 1"]  # one segment, empty
    assert seg.pixel_array.max() == 0
    source_uid = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).SOPInstanceUID)
    assert seg_frames(seg)[0][0] == source_uid


def test_binary_model_label_names_the_segment(tmp_path):
    image = read(get_testdata_file("CT_small.dcm"))
    mask = np.zeros((128, 128), np.uint8)
    mask[5:9, 30:40] = 1
    seg = pydicom.dcmread(write_mask(mask, image, tmp_path / "b.dcm", id2label={0: "lesion"}))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lesion"]
    np.testing.assert_array_equal(seg.pixel_array, mask)


@pytest.mark.skipif(not PHILIPS_ENHANCED.exists(), reason="nibabel's nicom test data is not installed")
def test_enhanced_multiframe_to_dicom_seg_keeps_frame_numbers(tmp_path):
    source_path = tmp_path / "enhanced.dcm"
    stored_order, _ = philips_subset(source_path, count=4)
    image = read(source_path)
    mask = np.zeros(image.array.shape, np.uint8)
    for k in range(4):  # a different square on each slice of the sorted volume
        mask[10 * k: 10 * k + 5, 3:7, k] = 1
    seg = pydicom.dcmread(write_mask(mask, image, tmp_path / "seg.dcm", id2label={1: "brain"}))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(source_path).SeriesInstanceUID
    frames = seg_frames(seg)
    assert sorted(f[4] for f in frames) == [1, 2, 3, 4]  # one frame per source frame
    for _, number, _, frame, frame_number in frames:
        k = int(stored_order[frame_number - 1])  # source frame (1-based) -> original frame = sorted slice
        np.testing.assert_array_equal(frame, (mask[:, :, k].T == number).astype(frame.dtype))


# -- PNG and refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [3, 300])
def test_png_round_trip(tmp_path, classes):
    picture = tmp_path / "photo.png"
    Image.fromarray(np.zeros((9, 11, 3), np.uint8)).save(picture)
    image = read(picture)
    mask = np.random.default_rng(0).integers(0, classes, size=(9, 11))
    out = write_mask(mask, image, tmp_path / "photo_mask.png")
    back = read_picture_array(out)
    assert back.dtype == (np.uint8 if classes < 256 else np.uint16)
    np.testing.assert_array_equal(back, mask)


def test_colour_dicom_mask_is_2d(tmp_path):
    image = read(get_testdata_file("SC_rgb_rle.dcm"))
    assert auto_format(image) == "png"
    mask = labels_for((100, 100))
    np.testing.assert_array_equal(read_picture_array(write_mask(mask, image, tmp_path / "rgb.png")), mask)


def test_mask_inputs(tmp_path):
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(picture)
    image = read(picture)
    tensor = torch.tensor(labels_for((4, 5)), dtype=torch.long)
    np.testing.assert_array_equal(read_picture_array(write_mask(tensor, image, tmp_path / "t.png")), tensor.numpy())
    np.testing.assert_array_equal(read_picture_array(write_mask(np.ones((4, 5), bool), image, tmp_path / "b.png")), 1)
    write_mask(np.full((4, 5), 2.0), image, tmp_path / "f.png")
    with pytest.raises(ValueError, match="integer class indices"):
        write_mask(np.full((4, 5), 0.5), image, tmp_path / "x.png")
    with pytest.raises(ValueError, match="0..65535"):
        write_mask(np.full((4, 5), -1), image, tmp_path / "x.png")


def test_wrong_shape_names_both(tmp_path, series):
    image = read(series.folder)
    with pytest.raises(ValueError, match=r"\(128, 128, 4\).*\(128, 128, 5\)"):
        write_mask(np.zeros((128, 128, 4), np.uint8), image, tmp_path / "m.nii.gz")
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(picture)
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(4, 5\)"):
        write_mask(np.zeros((5, 4), np.uint8), read(picture), tmp_path / "m.png")


def test_formats_that_cannot_hold_the_mask(tmp_path, series):
    volume = read(series.folder)
    with pytest.raises(MedicalFileError, match="volume.*cannot be one PNG"):
        write_mask(np.zeros(volume.array.shape, np.uint8), volume, tmp_path / "v.png")
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(picture)
    with pytest.raises(MedicalFileError, match="no patient geometry"):
        write_mask(np.zeros((4, 5), np.uint8), read(picture), tmp_path / "p.nii.gz")
    nifti = read(nifti_source(tmp_path, np.zeros((4, 3, 2), np.float32)))
    with pytest.raises(MedicalFileError, match="not DICOM.*DICOM-SEG"):
        write_mask(np.zeros((4, 3, 2), np.uint8), nifti, tmp_path / "n.dcm")
    assert not (tmp_path / "v.png").exists() and not (tmp_path / "n.dcm").exists()


def test_format_names():
    assert format_of("a/b.PNG") == "png" and format_of("x.nii") == format_of("x.nii.gz") == "nifti"
    assert format_of("seg.dcm") == "dicom-seg"
    with pytest.raises(ValueError, match=".png, .nii.gz"):
        format_of("mask.jpg")
    with pytest.raises(ValueError, match="Unknown mask format"):
        write_mask(np.zeros((2, 2)), read(get_testdata_file("CT_small.dcm")), "x.png", format="tiff")


def test_dicom_seg_of_a_source_without_type2_patient_attributes(tmp_path):
    """Anonymized or converted series often drop PatientBirthDate, PatientSex, ...: highdicom needs them present."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(tmp_path / "anonymized.dcm")
    image = read(tmp_path / "anonymized.dcm")
    out = write_mask(np.ones((128, 128), np.uint8), image, tmp_path / "seg.dcm", id2label={0: "bg", 1: "body"})
    seg = pydicom.dcmread(out)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.PatientBirthDate == "" and seg.PatientID == ds.PatientID
    assert "PatientBirthDate" not in image.meta["datasets"][0]  # the image as read is unchanged


def test_a_dicom_seg_written_into_its_series_folder_is_not_read_as_a_slice(series, tmp_path):
    image = read(series.folder)
    write_mask((image.array > image.array.mean()).astype(np.uint8), image, series.folder / "mask_seg.dcm")
    again = read(series.folder)  # the SEG (Modality SEG, same folder) is left out, not a second series
    np.testing.assert_array_equal(again.array, image.array)
