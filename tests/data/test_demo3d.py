"""demo3d: cases made from nilearn's template by the documented steps, their geometry against the template's, the
folds, determinism, the cache, and the nnU-Net folder round trip."""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

import hfseg.data
import hfseg.data.demo3d as demo3d_module
from hfseg.data.demo import _FILES
from hfseg.data.demo3d import DEMO3D_ID2LABEL, make_case, template_volumes, write_nnunet_folder
from hfseg.data.volumes import case_arrays, nnunet_folds
from hfseg.io import read_nifti

IDS = [f"demo3d_{i:03d}" for i in range(10)]


@pytest.fixture(scope="module")
def demo3d(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo3d-cache")
    return hfseg.data.load("demo3d", cache_dir=str(cache)), cache


def _cases(ds):
    return {case.case_id: case for split in ds.values() for case in (case_arrays(split, i) for i in range(len(split)))}


def test_splits_are_nnunet_fold_0_and_rows_have_the_volume_types(demo3d):
    ds, _ = demo3d
    fold = nnunet_folds(IDS)[0]
    assert ds["train"]["case_id"] == fold["train"] and ds["validation"]["case_id"] == fold["val"]
    assert (len(ds["train"]), len(ds["validation"])) == (8, 2)
    assert hfseg.data.id2label(ds) == DEMO3D_ID2LABEL
    row = ds["train"].with_format("numpy")[0]
    assert row["image"].dtype == np.float32 and row["image"].ndim == 4 and row["image"].shape[0] == 1
    assert list(row["channels"]) == ["T1"]


def test_cases_are_small_labelled_and_differ(demo3d):
    cases = _cases(demo3d[0])
    assert sorted(cases) == IDS
    shapes, scales = set(), []
    for case in cases.values():
        assert case.label.dtype == np.uint8 and case.label.shape == case.image.shape[1:]
        assert all(25 <= n <= 60 for n in case.label.shape), case.label.shape
        assert set(np.unique(case.label)) == {0, 1, 2, 3}
        assert case.image.min() >= 0  # Rician noise is a magnitude
        means = [case.image[0][case.label == c].mean() for c in range(4)]
        assert means[0] < means[1] < means[2] < means[3]  # T1: background < CSF < grey < white matter
        shapes.add(case.label.shape)
        scales.append(means[3])
    assert len(shapes) == len(cases)  # every case has its own field of view
    assert max(scales) > 1.5 * min(scales)  # and its own intensity scale


def test_spacing_and_affine_place_each_brain_where_the_template_has_it(demo3d):
    """The world position of the brain (through each case's affine) stays within the deformation's reach of the
    template's (shift <= 5 mm, rotation and scale about the centre, 3 mm elastic), and its volume within the
    scales' range: a wrong origin or spacing would move it by centimetres."""
    gm = read_nifti(Path(str(resources.files("nilearn") / "datasets" / "data" / _FILES["gm"])), dtype="stored")
    _, label, affine = template_volumes()
    np.testing.assert_array_equal(affine, gm.affine)
    brain = label > 0
    centre = affine[:3, :3] @ np.argwhere(brain).mean(0) + affine[:3, 3]
    for case in _cases(demo3d[0]).values():
        np.testing.assert_allclose(np.abs(np.diag(case.affine)[:3]), case.spacing)
        assert case.spacing == tuple(np.sqrt((case.affine[:3, :3] ** 2).sum(0)))
        world = case.affine[:3, :3] @ np.argwhere(case.label > 0).mean(0) + case.affine[:3, 3]
        assert np.linalg.norm(world - centre) < 12, case.case_id
        volume = (case.label > 0).sum() * np.prod(case.spacing)
        assert 0.7 < volume / brain.sum() < 1.35, case.case_id
    assert _cases(demo3d[0])["demo3d_003"].spacing == (3.0, 3.0, 5.0)
    assert _cases(demo3d[0])["demo3d_008"].spacing == (3.5, 5.0, 3.5)
    assert all(3.0 <= s <= 4.5 for i, c in enumerate(IDS) if i not in (3, 8) for s in _cases(demo3d[0])[c].spacing)


def test_label_rule_in_3d_on_the_template():
    data = Path(str(resources.files("nilearn") / "datasets" / "data"))
    gm, wm = (read_nifti(data / _FILES[k], dtype="stored").array.astype(np.float32) / 255 for k in ("gm", "wm"))
    _, label, _ = template_volumes()
    np.testing.assert_array_equal(label == 2, (gm >= 0.5) & (gm >= wm))
    np.testing.assert_array_equal(label == 3, (wm >= 0.5) & (wm > gm))
    tissue = gm + wm >= 0.1
    inside = binary_fill_holes(tissue)
    assert (label[inside] > 0).all() and (label[~tissue] <= 1).all()
    z = label.shape[2] // 2  # a mid axial slice: its filled holes (the ventricles) are CSF
    np.testing.assert_array_equal(label[:, :, z] > 0, binary_fill_holes(tissue[:, :, z]) | inside[:, :, z])
    assert (label[:, :, z] == 1).sum() > (inside[:, :, z] & ~tissue[:, :, z]).sum() > 0


def test_cases_are_deterministic_and_independent_of_the_count(demo3d):
    ds, _ = demo3d
    again = make_case(4)
    stored = _cases(ds)["demo3d_004"]
    np.testing.assert_array_equal(again["image"], stored.image)
    np.testing.assert_array_equal(again["label"], stored.label)
    np.testing.assert_array_equal(again["affine"], stored.affine)
    other = make_case(4, seed=1)
    assert other["image"].shape != again["image"].shape or not np.array_equal(other["image"], again["image"])


def test_second_load_comes_from_the_cache(demo3d, monkeypatch):
    ds, cache = demo3d
    monkeypatch.setattr(demo3d_module, "demo3d_cases", lambda *a: pytest.fail("demo3d was rebuilt"))
    again = hfseg.data.load("demo3d", cache_dir=str(cache))
    assert [f["filename"] for f in again["train"].cache_files] == [f["filename"] for f in ds["train"].cache_files]
    with pytest.raises(ValueError, match="fold must be 0..4 or 'all'"):
        hfseg.data.load("demo3d", fold=5)


def test_fold_all_trains_and_validates_on_every_case(tmp_path):
    ds = hfseg.data.load("demo3d", n_cases=5, fold="all", cache_dir=str(tmp_path))
    assert ds["train"]["case_id"] == ds["validation"]["case_id"] == IDS[:5]


def test_nnunet_folder_round_trip(demo3d, tmp_path):
    ds, _ = demo3d
    folder = write_nnunet_folder(tmp_path / "Dataset990_Demo3D")
    assert sorted(p.name for p in (folder / "imagesTr").iterdir())[:2] == ["demo3d_000_0000.nii.gz",
                                                                         "demo3d_001_0000.nii.gz"]
    for fold in (0, 2):
        nn = hfseg.data.load("nnunet", str(folder), fold=fold, cache_dir=str(tmp_path / "cache"))
        assert set(nn) == {"train", "validation"}
        assert nn["validation"]["case_id"] == nnunet_folds(IDS)[fold]["val"]
    assert hfseg.data.id2label(nn) == DEMO3D_ID2LABEL
    want = _cases(ds)
    for case in _cases(nn).values():
        np.testing.assert_array_equal(case.image, want[case.case_id].image)
        np.testing.assert_array_equal(case.label, want[case.case_id].label)
        assert case.spacing == want[case.case_id].spacing and case.channels == ["T1"]
        np.testing.assert_array_equal(case.affine, want[case.case_id].affine)
