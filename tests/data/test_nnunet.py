"""nnunet: the v2 raw layout and the Decathlon form, rows against the written arrays, nnU-Net's folds and
splits_final.json, imagesTs, every bad input, the cache."""

import json
import warnings

import nibabel as nib
import numpy as np
import pytest

import hfseg.data
from hfseg.data.common import DatasetFormatError
from hfseg.data.volumes import case_arrays, nnunet_folds

from .fixtures import corrupt_keeping_stamp

SHAPE = (6, 7, 5)
CASES = ("prostate_03", "prostate_00", "prostate_07", "prostate_01", "prostate_04")
LABELS = {"background": 0, "PZ": 1, "TZ": 2}
# An LPS affine with anisotropic voxels and an offset, as a converted DICOM gives.
AFFINE = np.array([[-0.5, 0, 0, 30.0], [0, -0.625, 0, 20.5], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])


def save(data, path, affine=AFFINE, slope=None):
    image = nib.Nifti1Image(data, affine)
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def write_v2(root, cases=CASES, test_cases=("prostate_10",), **spec):
    """`root/dataset.json`, imagesTr (T2 float32, ADC int16 with slope 0.5), labelsTr, imagesTs; the truth by case:
    (image (2, X, Y, Z) float32 as read with the slope applied, label uint8)."""
    rng = np.random.default_rng(0)
    truth = {}
    for case in (*cases, *test_cases):
        t2 = rng.normal(100, 20, SHAPE).astype(np.float32)
        adc = rng.integers(0, 2000, SHAPE).astype(np.int16)
        folder = "imagesTs" if case in test_cases else "imagesTr"
        save(t2, root / folder / f"{case}_0000.nii.gz")
        save(adc, root / folder / f"{case}_0001.nii.gz", slope=0.5)
        label = None
        if case not in test_cases:
            label = rng.integers(0, 3, SHAPE).astype(np.uint8)
            save(label, root / "labelsTr" / f"{case}.nii.gz")
        truth[case] = (np.stack([t2, adc.astype(np.float32) * 0.5]), label)
    (root / "imagesTr" / "._prostate_00_0000.nii.gz").write_bytes(b"macOS resource fork")  # never listed
    description = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": LABELS, "numTraining": len(cases),
                   "file_ending": ".nii.gz", **spec}
    (root / "dataset.json").write_text(json.dumps(description))
    return truth


def load(root, **kw):
    return hfseg.data.load("nnunet", str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


def check_rows(ds, truth):
    for split in ds.values():
        for i in range(len(split)):
            case = case_arrays(split, i)
            image, label = truth[case.case_id]
            np.testing.assert_array_equal(case.image, image)
            if label is None:
                assert case.label is None and split[i]["classes"] == []
            else:
                np.testing.assert_array_equal(case.label, label)
                assert split[i]["classes"] == sorted(np.unique(label).tolist())
            assert case.spacing == (0.5, 0.625, 3.0)
            np.testing.assert_array_equal(case.affine, AFFINE)
            assert case.channels == ["T2", "ADC"]


@pytest.fixture
def v2(tmp_path):
    root = tmp_path / "Dataset042_Prostate"
    return root, write_v2(root)


def test_v2_rows_splits_and_test(v2):
    root, truth = v2
    ds = load(root)
    assert set(ds) == {"train", "validation", "test"}
    fold0 = nnunet_folds(CASES)[0]
    assert ds["train"]["case_id"] == fold0["train"] and ds["validation"]["case_id"] == fold0["val"]
    assert ds["test"]["case_id"] == ["prostate_10"]
    assert hfseg.data.id2label(ds) == {0: "background", 1: "PZ", 2: "TZ"}
    check_rows(ds, truth)
    row = ds["train"].with_format("numpy")[0]
    assert row["image"].dtype == np.float32 and row["image"].shape == (2, *SHAPE)
    assert "channels: T2, ADC" in ds["train"].info.description
    assert "test" not in load(root, test=False)


def test_folds_are_scikit_learn_kfold_over_sorted_ids_and_all(v2):
    from sklearn.model_selection import KFold

    root, _ = v2
    ordered = np.array(sorted(CASES))
    for k, (train, val) in enumerate(KFold(n_splits=5, shuffle=True, random_state=12345).split(ordered)):
        if k == 3:  # one more fold than fold 0 (checked above) shows the order
            ds = load(root, fold=k, test=False)
            assert ds["train"]["case_id"] == ordered[train].tolist()
            assert ds["validation"]["case_id"] == ordered[val].tolist()
    everything = load(root, fold="all", test=False)
    assert everything["train"]["case_id"] == everything["validation"]["case_id"] == ordered.tolist()
    with pytest.raises(ValueError, match=r"fold 5 does not exist in the 5 generated folds: choose 0..4 or 'all'"):
        load(root, fold=5)
    with pytest.raises(ValueError, match="fold must be a fold number or 'all'"):
        load(root, fold="first")


def test_splits_final_json_is_honoured(v2):
    root, truth = v2
    splits = [{"train": ["prostate_00", "prostate_01"], "val": ["prostate_07"]},
              {"train": ["prostate_03"], "val": ["prostate_04", "prostate_00"]}]
    (root / "splits_final.json").write_text(json.dumps(splits))
    ds = load(root, fold=1)
    assert ds["train"]["case_id"] == ["prostate_03"]
    assert ds["validation"]["case_id"] == ["prostate_04", "prostate_00"]
    check_rows(ds, truth)
    with pytest.raises(ValueError, match=r"fold 2 does not exist in .*splits_final.json: choose 0..1"):
        load(root, fold=2)
    (root / "splits_final.json").write_text(json.dumps([{"train": ["prostate_99"], "val": ["prostate_00"]}]))
    with pytest.raises(DatasetFormatError, match=r"splits_final.json names cases \['prostate_99'\]"):
        load(root)


def test_decathlon_4d_images_and_v1_split_channels(tmp_path):
    root = tmp_path / "Task05_Prostate"
    rng = np.random.default_rng(1)
    truth, training = {}, []
    for case in ("prostate_00", "prostate_01", "prostate_02", "prostate_04", "prostate_05"):
        image = rng.normal(size=(*SHAPE, 2)).astype(np.float32)  # the last axis is the channel
        label = rng.integers(0, 3, SHAPE).astype(np.uint8)
        save(image, root / "imagesTr" / f"{case}.nii.gz")
        save(label, root / "labelsTr" / f"{case}.nii.gz")
        truth[case] = (np.moveaxis(image, -1, 0), label)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    test_image = rng.normal(size=(*SHAPE, 2)).astype(np.float32)
    save(test_image, root / "imagesTs" / "prostate_03.nii.gz")
    truth["prostate_03"] = (np.moveaxis(test_image, -1, 0), None)
    spec = {"name": "Prostate", "modality": {"0": "T2", "1": "ADC"},
            "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "numTraining": 5, "numTest": 1,
            "training": training, "test": ["./imagesTs/prostate_03.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(spec))
    ds = load(root, fold="all")
    assert sorted(ds["train"]["case_id"]) == sorted(c for c in truth if c != "prostate_03")
    assert ds["test"]["case_id"] == ["prostate_03"] and hfseg.data.id2label(ds)[2] == "TZ"
    check_rows(ds, truth)
    # nnU-Net v1's converted task: the same list, each channel in its own <case>_XXXX file.
    for case in ("prostate_00", "prostate_01", "prostate_02", "prostate_04", "prostate_05"):
        path = root / "imagesTr" / f"{case}.nii.gz"
        for c in range(2):
            save(truth[case][0][c], root / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        path.unlink()
    check_rows(load(root, fold="all", test=False, cache_dir=str(tmp_path / "cache_v1")), truth)
    spec["modality"] = {"0": "T2"}
    (root / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(DatasetFormatError, match=r"prostate_03.nii.gz holds 2 channel volume\(s\) .* modality names "
                                                 r"1"):
        load(root, fold="all")


def _spec(root, **change):
    spec = json.loads((root / "dataset.json").read_text())
    for key, value in change.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    (root / "dataset.json").write_text(json.dumps(spec))


def _case(root, name, folder="imagesTr"):
    return root / folder / name


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: _case(r, "prostate_07_0001.nii.gz").unlink(),
         r"Case prostate_07 lacks the channel file .*imagesTr/prostate_07_0001.nii.gz: add it"),
        (lambda r: save(np.zeros((6, 7, 4), np.uint8), _case(r, "prostate_03.nii.gz", "labelsTr")),
         r"prostate_03.nii.gz has shape \(6, 7, 4\) but .*prostate_03_0000.nii.gz has \(6, 7, 5\): a label and its "
         r"images must share one voxel grid"),
        (lambda r: save(np.zeros(SHAPE, np.uint8), _case(r, "prostate_03.nii.gz", "labelsTr"), np.diag([1, 1, 3, 1.0])),
         r"labelsTr/prostate_03.nii.gz has the affine .* but .*prostate_03_0000.nii.gz has .*: a label and its images "
         r"must share one voxel grid"),
        (lambda r: save(np.zeros((6, 7, 6), np.float32), _case(r, "prostate_01_0001.nii.gz")),
         r"prostate_01_0001.nii.gz has shape \(6, 7, 6\) but .*prostate_01_0000.nii.gz has \(6, 7, 5\): every channel "
         r"file of a case"),
        (lambda r: save(np.full(SHAPE, 4, np.uint8), _case(r, "prostate_04.nii.gz", "labelsTr")),
         r"Segmentation .*prostate_04.nii.gz has values \[4\] outside the classes 0..2: every label value must be one "
         r"of dataset.json's labels"),
        (lambda r: save(np.zeros(SHAPE, np.uint8), _case(r, "prostate_09.nii.gz", "labelsTr")),
         r"labelsTr/prostate_09.nii.gz has no image: expected .*imagesTr/prostate_09_0000.nii.gz"),
        (lambda r: _case(r, "prostate_00.nii.gz", "labelsTr").unlink(),
         r"Case prostate_00 has no label: expected .*labelsTr/prostate_00.nii.gz"),
        (lambda r: save(np.zeros(SHAPE, np.float32), _case(r, "prostate_00_0002.nii.gz")),
         r"prostate_00_0002.nii.gz is channel 2 but dataset.json's channel_names has 2 channel\(s\)"),
        (lambda r: save(np.zeros((*SHAPE, 2), np.float32), _case(r, "prostate_00_0000.nii.gz")),
         r"prostate_00_0000.nii.gz is 4D \(6, 7, 5, 2\): nnU-Net stores one 3D file per channel"),
        (lambda r: _case(r, "prostate_01_0000.nii.gz").write_bytes(b"garbage"),
         r"Cannot read .*prostate_01_0000.nii.gz: corrupt or not a NIfTI file"),
        (lambda r: (r / "dataset.json").unlink(),
         r"dataset.json is missing: expected the dataset description of an nnU-Net raw dataset"),
        (lambda r: (r / "dataset.json").write_text("{not json"), r"Cannot read .*dataset.json .*valid JSON"),
        (lambda r: _spec(r, file_ending=None, numTraining=None),
         r"dataset.json lacks 'numTraining', 'file_ending', required in a nnU-Net v2 dataset.json"),
        (lambda r: _spec(r, labels={"background": 0, "whole_gland": [1, 2], "TZ": 2}),
         r"labels \['whole_gland'\] are region-based"),
        (lambda r: _spec(r, labels={"background": 0, "PZ": 1, "TZ": 3}),
         r"label values must be consecutive from 0 \(background\), got \[0, 1, 3\]"),
        (lambda r: _spec(r, labels={"background": 0, "PZ": 1, "TZ": 2, "ignore": 3}), r"the 'ignore' label"),
        (lambda r: _spec(r, file_ending=".png"),
         r"file_ending '.png' is not read here: hfseg reads nnU-Net datasets of NIfTI files"),
        (lambda r: _spec(r, file_ending=".nrrd"), r"file_ending '.nrrd' is not read here"),
        (lambda r: _spec(r, channel_names={"0": "T2", "2": "ADC"}), r"channel_names must number its channels 0..1"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*numTraining is")
def test_bad_input_names_the_file(v2, damage, message):
    root, _ = v2
    damage(root)
    with pytest.raises(DatasetFormatError, match=message):
        load(root, fold="all")


def test_missing_folders_and_not_an_nnunet_json(tmp_path):
    with pytest.raises(DatasetFormatError, match="nowhere is missing or not a folder"):
        load(tmp_path / "nowhere")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DatasetFormatError, match="neither channel_names and file_ending .* nor modality and training"):
        load(tmp_path / "d")
    _spec(tmp_path / "d", channel_names={"0": "CT"}, labels=LABELS, numTraining=1, file_ending=".nii.gz")
    with pytest.raises(DatasetFormatError, match="imagesTr is missing or not a folder"):
        load(tmp_path / "d")


def test_num_training_mismatch_is_a_warning(v2):
    root, truth = v2
    _spec(root, numTraining=9)
    with pytest.warns(UserWarning, match="numTraining is 9 but 5 training cases were found"):
        ds = load(root, fold="all")
    check_rows(ds, truth)


def test_skip_bad_leaves_out_a_broken_case(v2):
    root, _ = v2
    _case(root, "prostate_01_0000.nii.gz").write_bytes(b"garbage")
    with pytest.warns(UserWarning) as record:
        ds = load(root, fold="all", skip_bad=True, test=False)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "prostate_01_0000" in m for m in messages)
    assert any("skipped 1 of 5 train cases" in m for m in messages)
    assert "prostate_01" not in ds["train"]["case_id"] and len(ds["train"]) == 4


def test_second_load_comes_from_the_cache(v2):
    root, truth = v2
    first = load(root)
    corrupt_keeping_stamp(_case(root, "prostate_03_0000.nii.gz"))  # a re-read would fail
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = load(root)
    assert second["train"]["case_id"] == first["train"]["case_id"]
    check_rows(second, truth)


def test_streaming_gives_the_same_rows(v2):
    root, truth = v2
    stream = load(root, streaming=True, cache_dir=str(root.parent / "unused"))
    assert not (root.parent / "unused").exists()
    rows = list(stream["validation"])
    assert [r["case_id"] for r in rows] == nnunet_folds(CASES)[0]["val"]
    for row in rows:
        np.testing.assert_array_equal(np.asarray(row["image"], np.float32), truth[row["case_id"]][0])
