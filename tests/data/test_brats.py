"""brats2020-h5 and brats2020-nifti: layouts, labels, channel orders, slice filters, every bad input, cache, num_proc,
streaming; brats_regions."""

import sys

import numpy as np
import pytest
import torch
from datasets import Array3D, load_from_disk

import hfseg.data
from hfseg.data import brats
from hfseg.data.brats import BRATS_ID2LABEL, BRATS_REGIONS, DatasetFormatError, brats_regions
from tests.data.fixtures.brats import (DEPTH, H, H5_DIR, NIFTI_DIR, QUIRK_CASE, STORAGE, STORED_SHAPE, W,
                                       label_channels, region_channels, save_nifti, tumour_label,
                                       write_h5, write_h5_slice, write_nifti)


def load(name, root, **kw):
    return hfseg.data.load(name, str(root), **{"cache_dir": str(root.parent / "cache"), **kw})


def rows(dataset):
    """{(case_id, slice): row} with numpy arrays, so rows are matched to the truth by key, not by order."""
    return {(r["case_id"], int(r["slice"])): r for r in dataset.with_format("numpy")}


def all_rows(ds):
    return {key: row for split in ds.values() for key, row in rows(split).items()}


def check_against(ds, truth, keys):
    got = all_rows(ds)
    assert set(got) == set(keys)
    for key, row in got.items():
        assert row["image"].dtype == np.float32
        np.testing.assert_array_equal(row["image"], truth[key].image.astype(np.float32))
        np.testing.assert_array_equal(row["label"], truth[key].label)
        assert list(row["classes"]) == sorted(np.unique(truth[key].label).tolist())


# ---------------------------------------------------------------------------------------------------------------- h5


def test_h5_features_split_and_round_trip(tmp_path):
    truth = write_h5(tmp_path / "d")
    ds = load("brats2020-h5", tmp_path / "d", validation_fraction=0.3)  # data_dir above the h5 folder
    assert ds["train"].features["image"] == Array3D((H, W, 4), "float32")
    assert set(ds["train"].features) == {"image", "label", "case_id", "classes", "slice"}
    assert (len(ds["train"]), len(ds["validation"])) == (8, 4)  # one of three volumes of 4 slices held out
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])
    assert set(ds["train"]["case_id"]) | set(ds["validation"]["case_id"]) == {"volume_1", "volume_2", "volume_10"}
    assert hfseg.data.id2label(ds) == BRATS_ID2LABEL
    check_against(ds, truth, truth)
    assert {3} <= set(np.unique(np.concatenate([np.ravel(r["label"]) for r in all_rows(ds).values()])))
    assert "image channels: t1, t1ce, t2, flair" in ds["train"].info.description


def test_h5_without_h5py_says_which_extra_to_install(tmp_path, monkeypatch):
    write_h5(tmp_path / "d")
    monkeypatch.setitem(sys.modules, "h5py", None)  # h5py is the optional `hdf5` extra
    with pytest.raises(ImportError, match=r'pip install "hfseg\[hdf5\]"'):
        load("brats2020-h5", tmp_path / "d", validation_fraction=0.3)


def test_h5_data_dir_may_be_the_folder_itself_or_any_above(tmp_path):
    truth = write_h5(tmp_path / "d")
    for data_dir in (tmp_path / "d" / H5_DIR, tmp_path / "d" / "BraTS2020_training_data", tmp_path):
        check_against(load("brats2020-h5", data_dir), truth, truth)


def test_h5_save_to_disk_keeps_classes_and_channels(tmp_path):
    write_h5(tmp_path / "d", volumes=(1, 2))
    load("brats2020-h5", tmp_path / "d").save_to_disk(tmp_path / "saved")
    again = load_from_disk(str(tmp_path / "saved"))
    assert hfseg.data.id2label(again) == BRATS_ID2LABEL
    assert "image channels: t1, t1ce, t2, flair" in again["train"].info.description


def test_h5_mask_channels_labels_or_regions(tmp_path):
    truth = write_h5(tmp_path / "r", regions=True)
    with pytest.raises(DatasetFormatError, match=r"volume_1_slice_2.h5 sets more than one mask channel.*"
                                                 r"nested regions \[WT, TC, ET\].*mask_channels='regions'"):
        load("brats2020-h5", tmp_path / "r")
    check_against(load("brats2020-h5", tmp_path / "r", mask_channels="regions"), truth, truth)
    write_h5(tmp_path / "l")
    with pytest.raises(DatasetFormatError, match=r"volume_1_slice_2.h5 has mask channels that are not nested.*"
                                                 r"mask_channels='labels'"):
        load("brats2020-h5", tmp_path / "l", mask_channels="regions")
    with pytest.raises(ValueError, match="mask_channels must be one of"):
        load("brats2020-h5", tmp_path / "l", mask_channels="wt")


def test_h5_stored_and_output_modalities(tmp_path):
    truth = write_h5(tmp_path / "d", volumes=(1, 2))
    stored = ("flair", "t1", "t1ce", "t2")
    got = all_rows(load("brats2020-h5", tmp_path / "d", stored_modalities=stored))
    for key, row in got.items():  # output in t1, t1ce, t2, flair order whatever the stored order
        np.testing.assert_array_equal(row["image"], truth[key].image[..., [1, 2, 3, 0]].astype(np.float32))
    ds = load("brats2020-h5", tmp_path / "d", modalities=("flair", "t1ce"))
    assert ds["train"].features["image"] == Array3D((H, W, 2), "float32")
    for key, row in rows(ds["train"]).items():
        np.testing.assert_array_equal(row["image"], truth[key].image[..., [3, 1]].astype(np.float32))
    with pytest.raises(ValueError, match="modalities must be distinct names among"):
        load("brats2020-h5", tmp_path / "d", modalities=("t1", "t1"))


def test_h5_slice_filters(tmp_path):
    truth = write_h5(tmp_path / "d")
    assert set(all_rows(load("brats2020-h5", tmp_path / "d", slices=(1, 3)))) == {k for k in truth if 1 <= k[1] < 3}
    assert set(all_rows(load("brats2020-h5", tmp_path / "d", slices=range(3, 9)))) == {k for k in truth if k[1] == 3}
    tumour = {k for k, t in truth.items() if t.label.any()}
    assert set(all_rows(load("brats2020-h5", tmp_path / "d", min_tumor_pixels=1))) == tumour
    big = {k for k, t in truth.items() if np.count_nonzero(t.label) >= 25}
    assert set(all_rows(load("brats2020-h5", tmp_path / "d", min_tumor_pixels=25))) == big
    assert set(all_rows(load("brats2020-h5", tmp_path / "d", skip_blank=True))) == {k for k, t in truth.items()
                                                                                   if not t.blank}
    with pytest.raises(DatasetFormatError, match=r"No volume_<v>_slice_<s>.h5 file .* within \(7, 9\)"):
        load("brats2020-h5", tmp_path / "d", slices=(7, 9))
    with pytest.raises(ValueError, match="slices must be"):
        load("brats2020-h5", tmp_path / "d", slices=(3, 1))
    with pytest.raises(DatasetFormatError, match="split is empty.*loosen the filters"):
        load("brats2020-h5", tmp_path / "d", min_tumor_pixels=H * W + 1)


def _h5(root, name):
    return root / H5_DIR / name


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: _h5(r, "volume_2_slice_1.h5").write_bytes(b"\x89HDF\r\n\x1a\nbroken"),
         r"Cannot read .*volume_2_slice_1.h5: corrupt or not an HDF5 file"),
        (lambda r: write_h5_slice(_h5(r, "volume_1_slice_0.h5"), np.zeros((H, W, 3)), np.zeros((H, W, 3), np.uint8)),
         r"volume_1_slice_0.h5 has an image of shape \(12, 10, 3\), expected \(rows, cols, 4\).*stored_modalities"),
        (lambda r: write_h5_slice(_h5(r, "volume_2_slice_3.h5"), np.zeros((8, W, 4)), np.zeros((8, W, 3), np.uint8)),
         r"volume_2_slice_3.h5 has an image of shape \(8, 10, 4\) but .*volume_1_slice_0.h5 has \(12, 10, 4\)"),
        (lambda r: write_h5_slice(_h5(r, "volume_2_slice_2.h5"), np.zeros((H, W, 4)), np.zeros((H, W, 4), np.uint8)),
         r"volume_2_slice_2.h5 has a mask of shape \(12, 10, 4\), expected \(12, 10, 3\)"),
        (lambda r: write_h5_slice(_h5(r, "volume_10_slice_1.h5"), np.zeros((H, W, 4)),
                                  label_channels(tumour_label(0)) * 255),
         r"volume_10_slice_1.h5 has mask values \[255\]; its channels must be binary"),
        (lambda r: write_h5_slice(_h5(r, "volume_10_slice_2.h5"), np.full((H, W, 4), b"a", "S1"),
                                  np.zeros((H, W, 3), np.uint8)),
         r"volume_10_slice_2.h5 has a \|S1 image; expected numbers"),
        (lambda r: _only_image(_h5(r, "volume_1_slice_3.h5")),
         r"volume_1_slice_3.h5 has no 'mask' dataset \(keys: \['image'\]\)"),
    ],
)
def test_h5_bad_input_names_the_file(tmp_path, damage, message):
    write_h5(tmp_path / "d")
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load("brats2020-h5", tmp_path / "d")


def _only_image(path):
    import h5py

    with h5py.File(path, "w") as file:
        file.create_dataset("image", data=np.zeros((H, W, 4)))


def test_h5_missing_or_ambiguous_folders(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load("brats2020-h5", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match=r"No volume_<v>_slice_<s>.h5 files under .*empty: expected"):
        load("brats2020-h5", tmp_path / "empty")
    write_h5(tmp_path / "two" / "a", volumes=(1,))
    write_h5(tmp_path / "two" / "b", volumes=(2,))
    with pytest.raises(DatasetFormatError, match="files are in 2 folders .*: pass the one to load as data_dir"):
        load("brats2020-h5", tmp_path / "two")


def test_h5_skip_bad_counts_and_reports(tmp_path):
    write_h5(tmp_path / "d", volumes=(1, 2))
    _h5(tmp_path / "d", "volume_2_slice_1.h5").write_bytes(b"not hdf5")
    with pytest.warns(UserWarning) as record:
        ds = load("brats2020-h5", tmp_path / "d", skip_bad=True, validation_fraction=0.0)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "volume_2_slice_1.h5" in m for m in messages)
    assert any("skipped 1 of 8 train items" in m for m in messages)
    assert len(ds["train"]) == 7
    with pytest.warns(UserWarning, match="skipped 1 of 8 train items"):  # also when read back from the cache
        load("brats2020-h5", tmp_path / "d", skip_bad=True, validation_fraction=0.0)


def test_h5_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    truth = write_h5(tmp_path / "d")
    first = load("brats2020-h5", tmp_path / "d")

    def unreadable(path):
        raise AssertionError(f"{path} read again: the cache was not used")

    monkeypatch.setattr(brats, "_read_h5", unreadable)
    second = load("brats2020-h5", tmp_path / "d")
    assert second["train"]["case_id"] == first["train"]["case_id"]
    check_against(second, truth, truth)


def test_h5_num_proc_and_streaming_give_the_same_rows(tmp_path):
    write_h5(tmp_path / "d")
    cached = all_rows(load("brats2020-h5", tmp_path / "d"))
    parallel = load("brats2020-h5", tmp_path / "d", num_proc=2, cache_dir=str(tmp_path / "cache2"))
    stream = load("brats2020-h5", tmp_path / "d", streaming=True, cache_dir=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()
    streamed = {(r["case_id"], r["slice"]): r for split in stream.values() for r in split}
    for other in (all_rows(parallel), streamed):
        assert set(other) == set(cached)
        for key, row in other.items():
            np.testing.assert_array_equal(np.asarray(row["label"]), cached[key]["label"])
            np.testing.assert_array_equal(np.asarray(row["image"], np.float32), cached[key]["image"])


# ------------------------------------------------------------------------------------------------------------- NIfTI


def test_nifti_round_trip_split_and_kaggle_quirk(tmp_path):
    truth = write_nifti(tmp_path / "d")
    ds = load("brats2020-nifti", tmp_path / "d", validation_fraction=0.3)
    assert ds["train"].features["image"] == Array3D((H, W, 4), "float32")
    assert hfseg.data.id2label(ds) == BRATS_ID2LABEL
    cases = {split: set(ds[split]["case_id"]) for split in ds}
    assert not cases["train"] & cases["validation"] and len(cases["validation"]) == 1
    assert cases["train"] | cases["validation"] == {"BraTS20_Training_001", "BraTS20_Training_002", QUIRK_CASE}
    check_against(ds, truth, [k for k, t in truth.items() if not t.blank])  # default: blank slices dropped
    labels = np.concatenate([np.ravel(r["label"]) for r in all_rows(ds).values()])
    assert set(np.unique(labels)) == {0, 1, 2, 3}  # seg 4 -> 3


def test_nifti_slice_filters_and_modalities(tmp_path):
    truth = write_nifti(tmp_path / "d")
    check_against(load("brats2020-nifti", tmp_path / "d", skip_blank=False), truth, truth)
    assert set(all_rows(load("brats2020-nifti", tmp_path / "d", slices=range(2, 9)))) == {
        k for k, t in truth.items() if k[1] >= 2 and not t.blank}
    assert set(all_rows(load("brats2020-nifti", tmp_path / "d", min_tumor_pixels=1))) == {
        k for k, t in truth.items() if t.label.any()}
    ds = load("brats2020-nifti", tmp_path / "d", modalities=("flair", "t1ce"))
    for key, row in all_rows(ds).items():
        np.testing.assert_array_equal(row["image"], truth[key].image[..., [3, 1]])


def test_nifti_label_map_reads_other_labellings(tmp_path):
    write_nifti(tmp_path / "d", cases=(1, 2))
    case = tmp_path / "d" / NIFTI_DIR / "BraTS20_Training_002"
    seg = np.zeros(STORED_SHAPE, np.uint8)
    seg[2:5, 2:5, 1:3] = 3  # BraTS 2023 style: ET is 3
    save_nifti(seg, case / "BraTS20_Training_002_seg.nii.gz")
    with pytest.raises(DatasetFormatError, match=r"BraTS20_Training_002_seg.nii.gz has values \[3\] outside "
                                                 r"\[0, 1, 2, 4\].*no 3.*pass label_map"):
        load("brats2020-nifti", tmp_path / "d")
    ds = load("brats2020-nifti", tmp_path / "d", label_map={0: 0, 1: 1, 2: 2, 3: 3, 4: 3}, validation_fraction=0.0)
    assert np.count_nonzero(rows(ds["train"])[("BraTS20_Training_002", 1)]["label"] == 3) == 9


@pytest.mark.parametrize("storage", sorted(STORAGE))
def test_nifti_marker_voxel_lands_where_the_display_convention_says(tmp_path, storage):
    """A voxel at a known world point is shown on the row/column radiology viewers show it on: rows run from
    anterior to posterior, columns from the patient's right to left, slices from inferior to superior; whatever
    order the file stores its voxels in. Expected positions come from world coordinates, not from hfseg.io."""
    affine, _ = STORAGE[storage]
    shape = (H, W, DEPTH) if storage == "PLS" else STORED_SHAPE  # the stored shape of (DEPTH, H, W) display slices
    index = (1, 3, 2) if storage != "PLS" else (3, 1, 2)
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    world = (corners @ affine.T)[:, :3]
    x, y, z = affine[:3, :3] @ index + affine[:3, 3]
    expected = (round(z - world[:, 2].min()), round(world[:, 1].max() - y), round(world[:, 0].max() - x))
    folder = tmp_path / "d" / NIFTI_DIR / "BraTS20_Training_001"
    folder.mkdir(parents=True)
    marker = np.zeros(shape, np.int16)
    marker[index] = 7
    for modality in ("t1", "t1ce", "t2", "flair"):
        save_nifti(marker, folder / f"BraTS20_Training_001_{modality}.nii.gz", storage)
    save_nifti((marker > 0).astype(np.uint8), folder / "BraTS20_Training_001_seg.nii.gz", storage)
    ds = load("brats2020-nifti", tmp_path / "d", skip_blank=False, validation_fraction=0.0)
    assert ds["train"].features["image"] == Array3D((H, W, 4), "float32")  # one in-plane size whatever the storage
    got = rows(ds["train"])
    assert set(got) == {("BraTS20_Training_001", z) for z in range(DEPTH)}
    row = got[("BraTS20_Training_001", expected[0])]
    assert list(zip(*np.nonzero(row["image"][..., 0]))) == [expected[1:]]
    assert list(zip(*np.nonzero(row["label"]))) == [expected[1:]]
    # In words, for BraTS' own LPS storage: voxel i=1 is near the patient's right, j=3 near the front.
    if storage == "LPS":
        assert expected == (2, 3, 1)


def test_nifti_cases_stored_in_different_orders_give_the_same_display_slices(tmp_path):
    truth = write_nifti(tmp_path / "d", storage={1: "LPS", 2: "PLS", 355: "RAS"})  # PLS: axes permuted on disk
    ds = load("brats2020-nifti", tmp_path / "d", skip_blank=False)
    assert ds["train"].features["image"] == Array3D((H, W, 4), "float32")
    check_against(ds, truth, truth)
    inferior_first = write_nifti(tmp_path / "i", cases=(1,), storage="LPI")  # slices stored superior to inferior
    got = all_rows(load("brats2020-nifti", tmp_path / "i", skip_blank=False, validation_fraction=0.0))
    for z in range(DEPTH):  # `slice` still counts from the inferior end
        np.testing.assert_array_equal(got[("BraTS20_Training_001", z)]["label"],
                                      inferior_first[("BraTS20_Training_001", z)].label)


def test_nifti_slices_are_the_stored_ones_transposed_for_brats_lps(tmp_path):
    """BraTS stores LPS: the display slice z is the stored `volume[:, :, z]` transposed (what the loader gave before
    hfseg.io's display convention)."""
    write_nifti(tmp_path / "d", cases=(1,))
    import nibabel as nib

    stored = np.asarray(nib.load(str(tmp_path / "d" / NIFTI_DIR / "BraTS20_Training_001" /
                                     "BraTS20_Training_001_seg.nii.gz")).dataobj)
    got = rows(load("brats2020-nifti", tmp_path / "d", skip_blank=False, validation_fraction=0.0)["train"])
    for z in range(DEPTH):
        np.testing.assert_array_equal(got[("BraTS20_Training_001", z)]["label"],
                                      np.where(stored[:, :, z] == 4, 3, stored[:, :, z]).T)


def _case(root, n=2):
    return root / NIFTI_DIR / f"BraTS20_Training_{n:03d}"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (_case(r) / "BraTS20_Training_002_t2.nii.gz").unlink(),
         r"Case .*BraTS20_Training_002 has no t2 volume: expected .*BraTS20_Training_002_t2.nii.gz \(or .nii\)"),
        (lambda r: (_case(r) / "BraTS20_Training_002_seg.nii.gz").unlink(),
         r"Case .*BraTS20_Training_002 has no segmentation.*required: validation and test cases come without one"),
        (lambda r: save_nifti(np.zeros((W, H, 4), np.uint8), _case(r) / "BraTS20_Training_002_seg.nii.gz"),
         r"BraTS20_Training_002_seg.nii.gz has shape \(10, 12, 4\) but .*002_t1.nii.gz has \(10, 12, 5\)"),
        (lambda r: save_nifti(np.zeros((W, 8, DEPTH), np.int16), _case(r) / "BraTS20_Training_002_flair.nii.gz"),
         r"BraTS20_Training_002_flair.nii.gz has shape \(10, 8, 5\) but .*002_t1.nii.gz has \(10, 12, 5\)"),
        (lambda r: [save_nifti(np.zeros((H, W, DEPTH), np.int16), p) for p in _case(r).iterdir()],
         r"BraTS20_Training_002_t1.nii.gz has axial slices of \(10, 12\) voxels \(rows, columns, as displayed\) but "
         r"the first case has \(12, 10\)"),
        (lambda r: save_nifti(np.zeros(STORED_SHAPE, np.uint8), _case(r) / "BraTS20_Training_002_seg.nii.gz", "RAS"),
         r"BraTS20_Training_002_seg.nii.gz stores its voxels in RAS order but .*002_t1.nii.gz in LPS: every volume "
         r"of a case must have one voxel grid"),
        (lambda r: (_case(r) / "BraTS20_Training_002_t1ce.nii.gz").write_bytes(b"garbage"),
         r"Cannot read .*BraTS20_Training_002_t1ce.nii.gz: corrupt or not a NIfTI file"),
        (lambda r: _truncate(_case(r) / "BraTS20_Training_002_t1ce.nii.gz"),
         r"Cannot read .*BraTS20_Training_002_t1ce.nii.gz: corrupt or not a NIfTI file"),
        (lambda r: (_case(r, 355) / "extra_seg.nii").write_bytes(b""),
         r"Case .*BraTS20_Training_355 has several segmentation file\(s\) \['W39_1998.09.19_Segm.nii', "
         r"'extra_seg.nii'\]"),
    ],
)
def test_nifti_bad_input_names_the_file(tmp_path, damage, message):
    write_nifti(tmp_path / "d")
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load("brats2020-nifti", tmp_path / "d")


def test_nifti_missing_folders_and_duplicate_cases(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load("brats2020-nifti", tmp_path / "nowhere")
    (tmp_path / "empty" / NIFTI_DIR).mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=r"No NIfTI files \(.nii, .nii.gz\) under .*: expected "
                                                 "MICCAI_BraTS2020_TrainingData/BraTS20_Training_XXX/"):
        load("brats2020-nifti", tmp_path / "empty")
    write_nifti(tmp_path / "two" / "a", cases=(1,))
    write_nifti(tmp_path / "two" / "b", cases=(1,))
    with pytest.raises(DatasetFormatError, match="Case BraTS20_Training_001 is in two folders"):
        load("brats2020-nifti", tmp_path / "two")


def test_nifti_skip_bad_counts_and_reports(tmp_path):
    write_nifti(tmp_path / "d")
    (_case(tmp_path / "d") / "BraTS20_Training_002_flair.nii.gz").write_bytes(b"garbage")
    with pytest.warns(UserWarning) as record:
        ds = load("brats2020-nifti", tmp_path / "d", skip_bad=True, validation_fraction=0.0)
    messages = [str(w.message) for w in record]
    assert any("skipping an item: Cannot read" in m and "002_flair.nii.gz" in m for m in messages)
    assert any("1 of 3 train cases gave no rows" in m and "BraTS20_Training_002" in m for m in messages)
    assert set(ds["train"]["case_id"]) == {"BraTS20_Training_001", QUIRK_CASE}
    with pytest.warns(UserWarning, match="1 of 3 train cases gave no rows"):  # also when read back from the cache
        load("brats2020-nifti", tmp_path / "d", skip_bad=True, validation_fraction=0.0)


def test_nifti_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    truth = write_nifti(tmp_path / "d")
    first = load("brats2020-nifti", tmp_path / "d")

    def unreadable(case, *args):
        raise AssertionError(f"{case} read again: the cache was not used")

    monkeypatch.setattr(brats, "_read_case", unreadable)
    second = load("brats2020-nifti", tmp_path / "d")
    assert second["train"]["case_id"] == first["train"]["case_id"]
    check_against(second, truth, [k for k, t in truth.items() if not t.blank])


def test_nifti_num_proc_and_streaming_give_the_same_rows(tmp_path):
    write_nifti(tmp_path / "d")
    cached = all_rows(load("brats2020-nifti", tmp_path / "d", validation_fraction=0.0))
    parallel = load("brats2020-nifti", tmp_path / "d", validation_fraction=0.0, num_proc=2,
                    cache_dir=str(tmp_path / "cache2"))
    stream = load("brats2020-nifti", tmp_path / "d", streaming=True, cache_dir=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists()
    streamed = {(r["case_id"], r["slice"]): r for split in stream.values() for r in split}
    for other in (all_rows(parallel), streamed):
        assert set(other) == set(cached)
        for key, row in other.items():
            np.testing.assert_array_equal(np.asarray(row["label"]), cached[key]["label"])
            np.testing.assert_array_equal(np.asarray(row["image"], np.float32), cached[key]["image"])


# ----------------------------------------------------------------------------------------------------------- regions


def test_brats_regions_on_a_hand_made_label_map():
    label = np.array([[0, 1, 2],
                      [3, 2, 0]], np.uint8)
    regions = brats_regions(label)
    np.testing.assert_array_equal(regions["WT"], [[0, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(regions["TC"], [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(regions["ET"], [[0, 0, 0], [1, 0, 0]])
    assert set(regions) == set(BRATS_REGIONS) and regions["WT"].dtype == bool
    as_tensor = brats_regions(torch.from_numpy(label).long())
    for name in BRATS_REGIONS:
        assert as_tensor[name].dtype == torch.bool
        np.testing.assert_array_equal(as_tensor[name].numpy(), regions[name])
    np.testing.assert_array_equal(region_channels(label)[..., 1], regions["TC"])  # the fixture's region writer agrees


# ------------------------------------------------------------------------------------------------- NIfTI volumes


def test_nifti_volumes_are_the_stored_arrays_stacked_channels_first(tmp_path):
    """volumes=True: one row per case, each modality file's stored array (as nibabel reads it, not reoriented)
    stacked in `modalities` order, the seg mapped 4 -> 3, spacing and affine from the header; the same case split
    as the slices."""
    import nibabel as nib

    from hfseg.data.volumes import case_arrays

    write_nifti(tmp_path / "d", storage={1: "LPS", 2: "PLS", 355: "RAS"})
    ds = load("brats2020-nifti", tmp_path / "d", volumes=True, validation_fraction=0.3)
    slices = load("brats2020-nifti", tmp_path / "d", validation_fraction=0.3)
    for split in ("train", "validation"):
        assert sorted(ds[split]["case_id"]) == sorted(set(slices[split]["case_id"]))
    assert hfseg.data.id2label(ds) == BRATS_ID2LABEL
    for split in ds.values():
        for i in range(len(split)):
            case = case_arrays(split, i)
            folder = tmp_path / "d" / NIFTI_DIR / case.case_id
            files = {p.name: p for p in folder.iterdir()}
            suffix = ".nii" if case.case_id == QUIRK_CASE else ".nii.gz"
            stored = [nib.load(str(files[f"{case.case_id}_{m}{suffix}"])) for m in ("t1", "t1ce", "t2", "flair")]
            np.testing.assert_array_equal(case.image, np.stack([np.asarray(s.dataobj, np.float32) for s in stored]))
            seg = np.asarray(nib.load(str(next(p for p in files.values() if "seg" in p.name.lower()))).dataobj)
            np.testing.assert_array_equal(case.label, np.where(seg == 4, 3, seg))
            np.testing.assert_array_equal(case.affine, stored[0].affine)
            assert case.spacing == (1.0, 1.0, 1.0) and case.channels == ["t1", "t1ce", "t2", "flair"]
    two = load("brats2020-nifti", tmp_path / "d", volumes=True, modalities=("flair", "t1ce"), validation_fraction=0.0)
    assert case_arrays(two["train"], 0).channels == ["flair", "t1ce"]
    with pytest.raises(ValueError, match="do not apply with volumes=True"):
        load("brats2020-nifti", tmp_path / "d", volumes=True, slices=(1, 3))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: save_nifti(np.zeros(STORED_SHAPE, np.uint8), _case(r) / "BraTS20_Training_002_seg.nii.gz", "RAS"),
         r"002_seg.nii.gz has the affine .* but .*002_t1.nii.gz has .*every volume of a case must share one voxel "
         r"grid"),
        (lambda r: save_nifti(np.zeros((W, 8, DEPTH), np.int16), _case(r) / "BraTS20_Training_002_flair.nii.gz"),
         r"002_flair.nii.gz has shape \(10, 8, 5\) but .*002_t1.nii.gz has \(10, 12, 5\)"),
        (lambda r: (_case(r) / "BraTS20_Training_002_t2.nii.gz").unlink(),
         r"Case .*BraTS20_Training_002 has no t2 volume"),
    ],
)
def test_nifti_volumes_bad_input_names_the_file(tmp_path, damage, message):
    write_nifti(tmp_path / "d")
    damage(tmp_path / "d")
    with pytest.raises(DatasetFormatError, match=message):
        load("brats2020-nifti", tmp_path / "d", volumes=True)
