"""hfseg.data.volumes: the volume row features, row and grid checks, nnU-Net's folds against scikit-learn's KFold,
the fast Arrow reader, and the build's small record batches."""

from pathlib import Path

import datasets
import numpy as np
import pytest

from hfseg.data.common import DatasetFormatError
from hfseg.data.volumes import (WRITER_BATCH_SIZE, build_volume_splits, case_arrays, check_same_grid, nnunet_folds,
                                to_label, volume_features, volume_row)
from hfseg.io import MedicalImage

ID2LABEL = {0: "background", 1: "liver", 2: "tumour"}


def _row(case, shape=(3, 4, 2), channels=("CT",), label=True, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(len(channels), *shape)).astype(np.float32)
    mask = rng.integers(0, 3, shape).astype(np.uint8) if label else None
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-10.25, 3.5, 7.0]
    return volume_row(case, image, mask, (0.7, 0.8, 2.5), affine, channels)


def _generate(items):
    for case, shape, label in items:
        yield _row(case, shape, label=label, seed=len(case))


def _build(tmp_path, items, name="test-volumes"):
    return build_volume_splits(name, _generate, {"train": items}, volume_features(ID2LABEL),
                               cache_dir=str(tmp_path / "cache"))["train"]


def test_features_and_row_types():
    features = volume_features(ID2LABEL)
    assert list(features) == ["case_id", "image", "label", "spacing", "affine", "channels", "classes"]
    assert features["classes"].feature.names == ["background", "liver", "tumour"]
    row = _row("a")
    assert row["image"].dtype == np.float32 and row["label"].dtype == np.uint8
    assert row["spacing"] == [0.7, 0.8, 2.5] and row["affine"].dtype == np.float64
    assert row["classes"] == sorted(np.unique(row["label"]).tolist())
    assert _row("t", label=False)["classes"] == []
    with pytest.raises(ValueError, match=r"image must be \(C, X, Y, Z\) with C = 2"):
        volume_row("a", np.zeros((1, 2, 2, 2)), None, (1, 1, 1), np.eye(4), ("T2", "ADC"))
    with pytest.raises(ValueError, match="label .* does not match"):
        volume_row("a", np.zeros((1, 2, 2, 2)), np.zeros((2, 2, 3)), (1, 1, 1), np.eye(4), ("T2",))


def test_rows_round_trip_with_variable_shapes_and_unlabelled_cases(tmp_path):
    items = [("a", (3, 4, 2), True), ("bb", (5, 2, 3), True), ("ccc", (2, 2, 2), False)]
    ds = _build(tmp_path, items)
    numpy_rows = ds.with_format("numpy")
    for index, (case, shape, label) in enumerate(items):
        want = _row(case, shape, label=label, seed=len(case))
        got = case_arrays(ds, index)
        assert got.case_id == case and got.channels == ["CT"]
        assert got.image.dtype == np.float32 and got.image.shape == (1, *shape)
        np.testing.assert_array_equal(got.image, want["image"])
        assert got.spacing == (0.7, 0.8, 2.5) and got.affine.dtype == np.float64
        np.testing.assert_array_equal(got.affine, want["affine"])
        row = numpy_rows[index]
        np.testing.assert_array_equal(row["image"], want["image"])
        if label:
            assert got.label.dtype == np.uint8
            np.testing.assert_array_equal(got.label, want["label"])
            np.testing.assert_array_equal(row["label"], want["label"])  # datasets' numpy format: int64
            assert row["label"].dtype == np.int64
        else:
            assert got.label is None and row["label"] is None and list(row["classes"]) == []


def test_rows_are_written_a_few_at_a_time(tmp_path):
    """Whole volumes are large: the Arrow batches hold at most WRITER_BATCH_SIZE rows (datasets' default, 1000,
    would hold a whole split in memory and overflow a list column's 2**31 values)."""
    ds = _build(tmp_path, [(f"c{i}", (2, 2, 2), True) for i in range(5)])
    sizes = [batch.num_rows for batch in ds.data.to_batches()]
    assert sum(sizes) == 5 and max(sizes) <= WRITER_BATCH_SIZE < 5


def test_skipped_and_failing_items(tmp_path):
    def generate(items):
        for item in items:
            if item == "bad":
                raise DatasetFormatError("bad.nii.gz is broken: replace it.")
            yield _row(item)

    with pytest.raises(DatasetFormatError, match="bad.nii.gz is broken"):
        build_volume_splits("t", generate, {"train": ["a", "bad"]}, volume_features(ID2LABEL),
                            cache_dir=str(tmp_path / "c"))
    with pytest.raises(TypeError, match="is a list"):
        build_volume_splits("t", generate, {"train": ["a"]}, volume_features(ID2LABEL), gen_kwargs={"x": [1]})


def test_kfold_matches_scikit_learn():
    from sklearn.model_selection import KFold

    for n in (5, 6, 7, 13, 24):
        ids = [f"case_{i:03d}" for i in np.random.default_rng(n).permutation(n)]  # given in any order
        ordered = np.array(sorted(ids))
        for n_folds, seed in ((5, 12345), (3, 7)):
            if n < n_folds:
                continue
            want = [{"train": ordered[tr].tolist(), "val": ordered[va].tolist()}
                    for tr, va in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(ordered)]
            assert nnunet_folds(ids, n_folds, seed) == want
    folds = nnunet_folds([f"c{i}" for i in range(7)])
    assert [len(f["val"]) for f in folds] == [2, 2, 1, 1, 1]
    assert sorted(c for f in folds for c in f["val"]) == sorted(f"c{i}" for i in range(7))
    with pytest.raises(ValueError, match="n_folds must be between 2 and the number of cases"):
        nnunet_folds(["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        nnunet_folds(["a", "a", "b", "c", "d"], 2)


def _volume(shape=(3, 4, 5), affine=None, name="x.nii.gz", values=None):
    array = np.zeros(shape, np.float32) if values is None else values
    return MedicalImage(array, Path(name), "nifti", spacing=(1.0, 1.0, 1.0),
                        affine=np.eye(4) if affine is None else affine)


def test_check_same_grid_names_both_files():
    reference = _volume(name="a_0000.nii.gz")
    check_same_grid(_volume(affine=np.diag([1.00001, 1, 1, 1])), reference)  # float32 header rounding: accepted
    with pytest.raises(DatasetFormatError, match=r"b.nii.gz has shape \(3, 4, 6\) but a_0000.nii.gz has \(3, 4, 5\)"):
        check_same_grid(_volume((3, 4, 6), name="b.nii.gz"), reference)
    moved = np.eye(4)
    moved[0, 3] = 0.5
    with pytest.raises(DatasetFormatError, match=r"b.nii.gz has the affine .* but a_0000.nii.gz has .*one voxel "
                                                 r"grid"):
        check_same_grid(_volume(affine=moved, name="b.nii.gz"), reference, "a label and its images")


def test_to_label():
    good = _volume(values=np.array([[[0.0, 2.0]]], np.float32))
    assert to_label(good, 3, "fix").dtype == np.uint8
    with pytest.raises(DatasetFormatError, match=r"x.nii.gz has values \[3, 7\] outside the classes 0..2: fix it"):
        to_label(_volume(values=np.array([[[0, 3, 7]]], np.int16)), 3, "fix it")
    with pytest.raises(DatasetFormatError, match="non-integer values"):
        to_label(_volume(values=np.array([[[0.5]]], np.float32)), 3, "fix")


def test_case_arrays_reads_a_slice_of_a_dataset(tmp_path):
    ds = _build(tmp_path, [(f"c{i}", (2, 3, i + 1), True) for i in range(3)])
    sub = ds.select([2, 0])
    assert case_arrays(sub, 0).image.shape == (1, 2, 3, 3) and case_arrays(sub, 1).case_id == "c0"
    assert isinstance(sub, datasets.Dataset)
