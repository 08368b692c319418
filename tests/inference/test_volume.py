"""`predict` on what `hfseg.io.read` gives: volumes slice by slice in the display convention, real files, a DICOM
series with shuffled file names, NaN voxels, big-endian data, and the modality / intensity checks."""

import copy
import random
import warnings
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.testing import data_path
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg.inference import check_input, predict, predict_logits, predict_logits_batch, predict_volume
from hfseg.io import MedicalImage, read, to_slices


class TopHalf(nn.Module):
    """Class 1 in the top half of every image it sees, class 0 below: shows which way up the model saw a slice."""

    config = SimpleNamespace(num_labels=2)

    def forward(self, pixel_values):
        b, _, h, w = pixel_values.shape
        top = torch.zeros(b, 2, h, w)
        top[:, 1, : h // 2] = 1.0
        top[:, 0, h // 2 :] = 1.0
        return SemanticSegmenterOutput(logits=top + 0 * pixel_values.sum())


class Threshold(nn.Module):
    """Class 1 where the normalized intensity is above 0: a prediction that depends on every pixel's value."""

    config = SimpleNamespace(num_labels=2)

    def forward(self, pixel_values):
        return SemanticSegmenterOutput(logits=torch.cat([-pixel_values[:, :1], pixel_values[:, :1]], 1))


def _processor(**kwargs) -> hfseg.UNetImageProcessor:
    return hfseg.UNetImageProcessor(normalization="zscore", num_channels=1, **kwargs)


def _volume(array: np.ndarray, affine: np.ndarray, **kwargs) -> MedicalImage:
    return MedicalImage(array.astype(np.float32), Path("v.nii.gz"), "nifti", spacing=(1.0, 1.0, 1.0), affine=affine,
                        **kwargs)


@pytest.mark.parametrize("affine", [np.diag([1.0, 1, 1, 1]), np.diag([-1.0, -1, 1, 1]),
                                    np.array([[0, 0, 1.0, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])])
def test_axial_slices_have_anterior_at_the_top_whatever_the_storage_order(affine):
    image = _volume(np.random.default_rng(0).random((6, 8, 10)), affine)
    labels = predict_volume(TopHalf(), _processor(), image, progress=False)
    assert labels.shape == image.array.shape
    world = nib.affines.apply_affine(affine, np.argwhere(np.ones(image.array.shape)))
    anterior = world[:, 1] > np.median(world[:, 1])  # y of RAS+: anterior is larger
    assert (labels.ravel()[anterior] == 1).all() and (labels.ravel()[~anterior] == 0).all()


def test_coronal_and_storage_axis_planes():
    image = _volume(np.random.default_rng(0).random((6, 8, 10)), np.eye(4))
    coronal = predict_volume(TopHalf(), _processor(), image, plane="coronal", progress=False)
    superior = np.arange(10) >= 5  # coronal slices have superior at the top
    assert (coronal[:, :, superior] == 1).all() and (coronal[:, :, ~superior] == 0).all()
    stored = predict_volume(TopHalf(), _processor(), image, plane=2, progress=False)  # slices image.array[:, :, k]
    assert (stored[:3] == 1).all() and (stored[3:] == 0).all()


def test_batched_slices_equal_one_slice_at_a_time():
    rng = np.random.default_rng(1)
    model = hfseg.UNetForSemanticSegmentation(hfseg.UNetConfig(num_channels=1, num_labels=3, base_channels=4,
                                                               depth=2)).eval()
    image = _volume(rng.random((16, 12, 7)) * 100, np.diag([-1.0, 1, 1, 1]))
    labels = predict_volume(model, _processor(), image, batch_size=3, progress=False)
    slices = to_slices(image.array, image.affine, "axial")
    one = [predict_logits(model, _processor(), s).argmax(0).numpy() for s in slices]
    assert np.array_equal(to_slices(labels, image.affine, "axial"), np.stack(one))
    batched = predict_logits_batch(model, _processor(), list(slices), batch_size=4)
    for single, many in zip([predict_logits(model, _processor(), s) for s in slices], batched):
        torch.testing.assert_close(many, single, atol=1e-5, rtol=1e-5)


def _series(folder: Path, slices: list[np.ndarray], shuffle: bool) -> list[Path]:
    """A CT series from pydicom's CT_small.dcm, one file per slice, 2.5 mm apart; file names shuffled."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series, names = generate_uid(), list(range(len(slices)))
    if shuffle:
        random.Random(0).shuffle(names)
    folder.mkdir()
    paths = []
    for k, pixels in enumerate(slices):
        ds = copy.deepcopy(source)
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series, generate_uid(), len(slices) - k
        x, y, z = (float(v) for v in source.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.5 * k]
        ds.PixelData = pixels.astype(source.pixel_array.dtype).tobytes()
        paths.append(folder / f"IM{names[k]:04d}")  # no extension: read by the DICM marker
        ds.save_as(paths[-1])
    return paths


def test_a_shuffled_dicom_series_predicts_as_the_volume_in_patient_order(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    slices = [np.roll(base, 9 * k, axis=1) for k in range(5)]
    _series(tmp_path / "series", slices, shuffle=True)
    image = read(tmp_path / "series")
    # The same volume in patient order, built by hand: (columns, rows, slices) in HU, with the series' affine.
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = np.stack([s * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for s in slices], axis=-1)
    reference = MedicalImage(hu.transpose(1, 0, 2).astype(np.float32), tmp_path / "ref.nii", "nifti",
                             spacing=image.spacing, affine=image.affine)
    assert np.array_equal(image.array, reference.array)
    assert np.allclose(image.affine[:3, 2], [0, 0, 2.5])  # slice step along +z (superior) of RAS+
    model, processor = Threshold(), _processor()
    assert np.array_equal(predict(model, processor, image), predict(model, processor, reference))


def test_nan_voxels_do_not_blank_the_prediction(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.random((20, 20, 4)).astype(np.float32) * 100
    clean = predict(Threshold(), _processor(), _volume(volume, np.eye(4)))
    volume[rng.integers(0, 20, 40), rng.integers(0, 20, 40), 2] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    with pytest.warns(UserWarning, match=r"NaN or infinite voxel"):
        image = read(path)
    labels = predict(Threshold(), _processor(), image)
    assert 0.3 < labels[:, :, 2].mean() < 0.7  # not all background
    assert (labels[:, :, [0, 1, 3]] == clean[:, :, [0, 1, 3]]).all()


def test_the_big_endian_real_mri_predicts_like_its_native_copy():
    image = read(Path(data_path) / "anatomical.nii")  # stored big-endian
    native = _volume(np.asarray(nib.load(Path(data_path) / "anatomical.nii").get_fdata(), "<f4"), image.affine)
    model, processor = Threshold(), _processor()
    labels = predict(model, processor, image)
    assert labels.shape == image.array.shape == (33, 41, 25)
    assert np.array_equal(labels, predict(model, processor, native)) and 0 < labels.mean() < 1


def test_checks_flag_a_ct_through_an_mr_model():
    processor = _processor(modality="MR", intensity_range=[0.0, 255.0])
    ct = _volume(np.random.default_rng(0).normal(-500, 400, (16, 16, 4)), np.eye(4), modality="CT")
    messages = check_input(processor, ct, "spine.dcm")
    assert any("is CT but the model was trained on MR" in m for m in messages)
    assert any("negative intensities" in m for m in messages)
    mr = _volume(np.random.default_rng(0).random((16, 16, 4)) * 1000, np.eye(4), modality="MR")
    assert check_input(processor, mr, "brain.nii") == []  # z-scored: the scale does not matter
    absolute = hfseg.UNetImageProcessor(normalization="none", intensity_range=[0.0, 1.0], num_channels=1)
    assert any("rescale it" in m for m in check_input(absolute, mr, "brain.nii"))
    assert check_input(_processor(), ct, "spine.dcm") == []  # nothing recorded: nothing to compare
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(Threshold(), processor, ct)
    assert any("trained on MR" in str(w.message) for w in caught)


def test_a_volume_array_through_predict_mask_says_how_to_predict_a_volume():
    from hfseg.inference import predict_mask

    volume = read(Path(data_path) / "anatomical.nii").array
    with pytest.raises(ValueError, match=r"looks like a volume.*hfseg.inference.predict"):
        predict_mask(Threshold(), _processor(), volume)
