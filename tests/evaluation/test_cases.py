"""Per-case (volume) metrics of `evaluate_model` on hand-made cases: a model that predicts what its image says, so
every number can be checked against the stacked masks with numpy, `hfseg.metrics.surface` and MONAI."""

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg.data.features import classes_present, segmentation_features
from hfseg.evaluation import case_table, evaluate_model
from hfseg.metrics import hausdorff95, hausdorff_distance

ID2LABEL = {0: "background", 1: "organ", 2: "lesion"}
THICKNESS, PIXEL = 3.0, [2.0, 1.0]


class Oracle(nn.Module):
    """Predicts the class id written in each pixel of its (unnormalized) image."""

    def __init__(self, num_labels: int = 3):
        super().__init__()
        self.config = PretrainedConfig(num_labels=num_labels)

    def forward(self, pixel_values: torch.Tensor) -> SemanticSegmenterOutput:
        ids = pixel_values[:, 0].round().long().clamp(0, self.config.num_labels - 1)
        return SemanticSegmenterOutput(logits=F.one_hot(ids, self.config.num_labels).permute(0, 3, 1, 2).float())


ORACLE = (Oracle(), hfseg.UNetImageProcessor(normalization="none", num_channels=1, do_resize=False))


def _volumes(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{case: (pred, label)} (D, H, W) uint8: boxes of organ (slices 0-1) and lesion, the prediction shifted and
    with a stray organ voxel on slice 3 of case `a` (so its HD depends on the slice order and thickness)."""
    rng = np.random.default_rng(seed)
    cases = {}
    for case, depth in (("a", 4), ("b", 2)):
        label = np.zeros((depth, 12, 10), np.uint8)
        label[:2, 2:8, 2:6] = 1
        label[:, 8:11, 6:9] = 2
        pred = np.roll(label, 1, axis=2)
        pred[rng.random(pred.shape) < 0.05] = 2
        if case == "a":
            pred[3, 1, 1] = 1
        label[0, 0, :3] = 255  # ignored pixels
        cases[case] = pred, label
    return cases


ORDER = (("a", 3), ("b", 0), ("a", 0), ("b", 1), ("a", 1), ("a", 2))  # scattered cases, slices out of order


def _dataset(volumes, order=ORDER, **columns) -> datasets.Dataset:
    """The slices of `volumes` in a scattered `order` of (case, slice), with a `slice` column and `columns`."""
    extra = {"slice": datasets.Value("int32"), "pixel_spacing": datasets.List(datasets.Value("float64")),
             "slice_thickness": datasets.Value("float64")}
    rows = {"image": [], "label": [], "case_id": [], "classes": [], "slice": []}
    for case, z in order:
        pred, label = volumes[case]
        rows["image"].append(pred[z])
        rows["label"].append(label[z])
        rows["case_id"].append(case)
        rows["classes"].append(classes_present(label[z][label[z] != 255]))
        rows["slice"].append(z)
    rows.update({name: values for name, values in columns.items()})
    features = segmentation_features(ID2LABEL, extra={k: v for k, v in extra.items() if k in rows})
    return datasets.Dataset.from_dict(rows, features=features)


def _spaced(volumes):
    return _dataset(volumes, pixel_spacing=[PIXEL] * len(ORDER), slice_thickness=[THICKNESS] * len(ORDER))


def _dice(pred: np.ndarray, label: np.ndarray, c: int) -> float:
    keep = label != 255
    p, t = (pred == c) & keep, (label == c) & keep
    return 2 * (p & t).sum() / (p.sum() + t.sum())


def test_case_dice_equals_numpy_on_the_stacked_slices():
    volumes = _volumes()
    result = evaluate_model(ORACLE, _spaced(volumes), batch_size=2)
    cases = result["cases"]
    assert list(cases["per_case"]) == ["a", "b"] and result["num_cases"] == cases["num_cases"] == 2
    assert cases["slice_order"] == "slice column" and result["num_images"] == len(ORDER)
    for case, (pred, label) in volumes.items():
        entry = cases["per_case"][case]
        assert entry["num_slices"] == len(pred) and entry["spacing"] == [THICKNESS, *PIXEL]
        for c in (1, 2):
            assert entry["dice"][c] == pytest.approx(_dice(pred, label, c))
        assert entry["mean_foreground_dice"] == pytest.approx(np.mean([_dice(pred, label, c) for c in (1, 2)]))
    per_case_dice = np.array([[_dice(*volumes[case], c) for c in (1, 2)] for case in "ab"])
    assert result["case_dice"][1:] == pytest.approx(per_case_dice.mean(0).tolist())
    assert cases["std"]["dice"][1:] == pytest.approx(per_case_dice.std(0, ddof=1).tolist())
    assert result["case_mean_foreground_dice"] == pytest.approx(per_case_dice.mean())
    assert result["per_class"]["lesion"]["case_dice"] == pytest.approx(per_case_dice[:, 1].mean())
    assert cases["per_class"]["organ"]["dice_std"] == pytest.approx(per_case_dice[:, 0].std(ddof=1))
    assert cases["mean"]["mean_foreground_dice"] == result["case_mean_foreground_dice"]
    assert cases["spacing"] == {"axes": ["slice", "row", "col"], "slice": "slice_thickness column",
                                "row_col": "pixel_spacing column", "values": [[THICKNESS, *PIXEL]]}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation inside compute_hausdorff_distance
def test_case_surface_distances_are_3d_with_the_slice_thickness():
    compute_hausdorff_distance = pytest.importorskip("monai.metrics").compute_hausdorff_distance

    volumes = _volumes()
    result = evaluate_model(ORACLE, _spaced(volumes))
    spacing = (THICKNESS, *PIXEL)
    for case, (pred, label) in volumes.items():
        entry = result["cases"]["per_case"][case]
        keep = label != 255
        for c in (1, 2):
            p, t = (pred == c) & keep, (label == c) & keep
            assert entry["hd95"][c] == pytest.approx(hausdorff95(p, t, spacing))
            monai_hd = compute_hausdorff_distance(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None],
                                                  spacing=list(spacing))
            assert entry["hd"][c] == pytest.approx(float(monai_hd))
    pred, label = volumes["a"]
    organ = (pred == 1) & (label != 255), (label == 1) & (label != 255)
    # The stray voxel (slice 3, row 1, col 1) is 2 slices, a row and a column from the organ's corner (1, 2, 2);
    # stacked in split order (slices 3, 0, 1, 2) it would be next to it.
    hd = result["cases"]["per_case"]["a"]["hd"][1]
    assert hd == pytest.approx(np.sqrt((2 * THICKNESS) ** 2 + PIXEL[0] ** 2 + PIXEL[1] ** 2))
    in_split_order = [3, 0, 1, 2]
    assert hausdorff_distance(organ[0][in_split_order], organ[1][in_split_order], spacing) == pytest.approx(
        np.sqrt(THICKNESS**2 + PIXEL[0] ** 2 + PIXEL[1] ** 2))
    assert result["case_hd95"][1] == pytest.approx(np.mean([result["cases"]["per_case"][c]["hd95"][1] for c in "ab"]))
    plain = evaluate_model(ORACLE, _dataset(volumes))
    assert plain["cases"]["spacing"]["slice"] == "1 (unknown)" and plain["cases"]["spacing"]["values"] == [[1, 1, 1]]
    assert plain["cases"]["per_case"]["a"]["dice"] == result["cases"]["per_case"]["a"]["dice"]


def test_case_regions_table_and_switches():
    volumes = _volumes()
    data = _spaced(volumes)
    result = evaluate_model(ORACLE, data, regions={"any": [1, 2]}, surface=False)
    for case, (pred, label) in volumes.items():
        keep = label != 255
        p, t = (pred > 0) & keep, (label > 0) & keep
        expected = 2 * (p & t).sum() / (p.sum() + t.sum())
        assert result["cases"]["per_case"][case]["regions"]["any"]["dice"] == pytest.approx(expected)
    assert result["regions"]["any"]["case_dice"] == result["cases"]["regions"]["any"]["dice"]
    assert "hd95" not in result["cases"]["per_case"]["a"] and "case_hd95" not in result
    columns, rows = case_table({"oracle": result, "again": result})
    assert [(r["model"], r["case_id"]) for r in rows] == [("oracle", "a"), ("oracle", "b"), ("again", "a"),
                                                            ("again", "b")]
    assert columns[:6] == ["model", "case_id", "num_slices", "spacing", "dice_organ", "dice_lesion"]
    assert rows[0]["spacing"] == "3 x 2 x 1" and "dice_any" in columns
    assert "cases" not in evaluate_model(ORACLE, data, per_case=False)
    assert "cases" not in evaluate_model(ORACLE, data.remove_columns("case_id"))


def test_slices_of_different_sizes_are_padded_with_a_warning():
    pred, label = np.zeros((2, 6, 6), np.uint8), np.zeros((2, 6, 6), np.uint8)
    label[:, 1:4, 1:4] = pred[:, 1:4, 2:5] = 1
    small = {"a": (pred, label), "b": (pred[:, :4, :5], label[:, :4, :5])}
    data = _dataset(small, order=(("a", 0), ("a", 1), ("b", 0), ("b", 1)))
    rows = {"image": list(data["image"]), "label": list(data["label"]), "case_id": ["a", "a", "a", "a"],
            "classes": list(data["classes"]), "slice": [0, 1, 2, 3]}
    mixed = datasets.Dataset.from_dict(rows, features=data.features)
    with pytest.warns(UserWarning, match="different sizes"):
        result = evaluate_model(ORACLE, mixed)
    stacked = np.concatenate([pred, np.pad(pred[:, :4, :5], ((0, 0), (0, 2), (0, 1)))])
    truth = np.concatenate([label, np.pad(label[:, :4, :5], ((0, 0), (0, 2), (0, 1)), constant_values=255)])
    assert result["cases"]["per_case"]["a"]["dice"][1] == pytest.approx(_dice(stacked, truth, 1))


def test_whole_volumes_are_scored_with_their_spacing_and_class_volumes():
    """Two cases added as volumes: Dice by hand, HD95/ASSD in mm (a one-voxel shift along a 2 mm axis), mL."""
    from hfseg.evaluation.cases import CaseMetrics, case_table

    label = np.zeros((6, 8, 10), np.uint8)
    label[1:5, 2:6, 3:8] = 1  # 4 x 4 x 5 = 80 voxels
    pred = np.roll(label, 1, axis=2)  # shifted by one voxel along the 2 mm axis: overlap 64
    acc = CaseMetrics(None, {0: "background", 1: "tumour"}, {}, None, True, None)
    acc.add_volume("a", pred, label, (1.0, 1.0, 2.0))
    acc.add_volume("b", label, label, (0.5, 0.5, 0.5))
    result = acc.metrics.compute()  # pooled over both cases, as the volume evaluation reports it
    acc.merge_into(result)
    a, b = result["cases"]["per_case"]["a"], result["cases"]["per_case"]["b"]
    assert a["dice"][1] == pytest.approx(2 * 64 / 160)
    assert b["dice"][1] == 1.0 and b["hd95"][1] == 0.0
    assert a["hd95"][1] == pytest.approx(2.0)  # every boundary voxel is at most one 2 mm step away
    assert a["volume_ml"][1] == pytest.approx(80 * 2.0 / 1000) and a["predicted_volume_ml"][1] == a["volume_ml"][1]
    assert b["volume_ml"][1] == pytest.approx(80 * 0.125 / 1000)
    assert a["shape"] == [6, 8, 10] and a["spacing"] == [1.0, 1.0, 2.0]
    assert result["case_mean_foreground_dice"] == pytest.approx((0.8 + 1.0) / 2)
    columns, rows = case_table({"m": result})
    assert "num_slices" not in columns and rows[0]["shape"] == "6 x 8 x 10"
    assert rows[0]["volume_ml_tumour"] == pytest.approx(0.16)
    with pytest.raises(ValueError, match="already scored"):
        acc.add_volume("a", pred, label, (1, 1, 1))
