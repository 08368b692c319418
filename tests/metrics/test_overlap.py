"""Confusion matrix and overlap metrics: hand-computed cases, an independent numpy path, sklearn, properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfseg.metrics import confusion_matrix, overlap_from_confusion
from hfseg.metrics.overlap import PER_CLASS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _scores(pred, target, k, ignore_index=None, empty_score=None):
    return overlap_from_confusion(confusion_matrix(torch.as_tensor(pred), torch.as_tensor(target), k, ignore_index),
                                  empty_score)


def _numpy_reference(pred: np.ndarray, target: np.ndarray, k: int, ignore_index=None) -> dict[str, np.ndarray]:
    """Per-class metrics from boolean masks, without any confusion matrix."""
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    out = {name: np.full(k, np.nan) for name in PER_CLASS}
    for c in range(k):
        p, t = (pred == c) & keep, (target == c) & keep
        tp, fp, fn = np.sum(p & t), np.sum(p & ~t), np.sum(~p & t)
        tn = np.sum(keep) - tp - fp - fn
        for name, num, den in [("dice", 2 * tp, 2 * tp + fp + fn), ("iou", tp, tp + fp + fn),
                               ("precision", tp, tp + fp), ("recall", tp, tp + fn), ("specificity", tn, tn + fp),
                               ("fpr", fp, tn + fp), ("fnr", fn, tp + fn)]:
            out[name][c] = num / den if den else np.nan
    return out


def test_hand_computed_three_classes():
    target = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
    cm = confusion_matrix(pred, target, 3)
    # rows = target: class 0 -> pred (0, 1); class 1 -> pred (1, 1); class 2 -> pred (2, 0)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = overlap_from_confusion(cm)
    # tp = (1, 2, 1), fp = column sums (2, 3, 1) - tp = (1, 1, 0), fn = row sums (2, 2, 2) - tp = (1, 0, 1)
    # tn = 6 - tp - fp - fn = (3, 3, 4)
    expected = {
        "dice": [2 / 4, 4 / 5, 2 / 3],  # 2tp / (2tp + fp + fn)
        "iou": [1 / 3, 2 / 3, 1 / 2],  # tp / (tp + fp + fn)
        "precision": [1 / 2, 2 / 3, 1 / 1],  # tp / (tp + fp)
        "recall": [1 / 2, 2 / 2, 1 / 2],  # tp / (tp + fn)
        "specificity": [3 / 4, 3 / 4, 4 / 4],  # tn / (tn + fp)
        "fpr": [1 / 4, 1 / 4, 0 / 4],
        "fnr": [1 / 2, 0 / 2, 1 / 2],
    }
    for name, values in expected.items():
        assert s[name].tolist() == pytest.approx(values), name
    assert s["pixel_accuracy"].item() == pytest.approx(4 / 6)  # 1 + 2 + 1 correct of 6
    assert s["mean_pixel_accuracy"].item() == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert s["mean_dice"].item() == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert s["mean_foreground_dice"].item() == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert s["mean_foreground_iou"].item() == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_class_absent_from_both_is_nan_and_excluded_from_means():
    s = _scores([[0, 1, 1]], [[0, 1, 0]], 3)
    # class 2 appears nowhere: every ratio involving its positives is 0/0
    for name in ("dice", "iou", "precision", "recall", "fnr"):
        assert math.isnan(s[name][2].item()), name
    assert s["specificity"][2].item() == 1.0  # tn / (tn + 0): no false positive is possible
    # class 0: tp 1, fn 1 -> dice 2/3; class 1: tp 1, fp 1 -> dice 2/3; class 2 is not counted as 0 or 1
    assert s["mean_dice"].item() == pytest.approx(2 / 3)
    assert s["mean_foreground_dice"].item() == pytest.approx(2 / 3)


def test_empty_score_counts_absent_classes():
    s = _scores([[0, 1, 1]], [[0, 1, 0]], 3, empty_score=1.0)
    assert s["dice"][2].item() == 1.0 and s["iou"][2].item() == 1.0 and s["recall"][2].item() == 1.0
    assert s["fnr"][2].item() == 0.0
    assert s["mean_dice"].item() == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # classes present somewhere are untouched by empty_score
    assert s["dice"][0].item() == pytest.approx(2 / 3)


def test_predicted_but_absent_from_target_is_zero_dice():
    s = _scores([[0, 2, 2]], [[0, 0, 0]], 3)
    # class 2: tp 0, fp 2, fn 0 -> dice 0 / 2 = 0, iou 0, precision 0; recall 0/0 undefined
    assert s["dice"][2].item() == 0.0 and s["iou"][2].item() == 0.0 and s["precision"][2].item() == 0.0
    assert math.isnan(s["recall"][2].item())
    assert s["dice"][0].item() == pytest.approx(2 / 4)  # class 0: tp 1, fn 2 -> 2 / (2 + 0 + 2)
    assert s["mean_foreground_dice"].item() == 0.0  # class 1 absent (NaN, skipped), class 2 is 0


def test_missed_class_has_zero_dice_and_recall_but_undefined_precision():
    s = _scores([[0, 0, 0]], [[0, 1, 1]], 2)
    assert s["dice"][1].item() == 0.0 and s["recall"][1].item() == 0.0 and s["fnr"][1].item() == 1.0
    assert math.isnan(s["precision"][1].item())  # never predicted: tp / (tp + fp) = 0 / 0


def test_everything_ignored_is_all_nan():
    s = _scores([[0, 1]], [[255, 255]], 2, ignore_index=255)
    assert math.isnan(s["pixel_accuracy"].item()) and math.isnan(s["mean_dice"].item())


def test_ignored_pixels_with_wrong_predictions_change_nothing():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(2, 8, 8))
    pred = rng.integers(0, 3, size=(2, 8, 8))
    ignored = rng.random((2, 8, 8)) < 0.3
    base = confusion_matrix(pred, np.where(ignored, 255, target), 3, ignore_index=255)
    wrong = np.where(ignored, (target + 1) % 3, pred)  # every ignored pixel now mispredicted
    assert torch.equal(confusion_matrix(wrong, np.where(ignored, 255, target), 3, ignore_index=255), base)
    # and the result equals simply dropping those pixels
    assert torch.equal(base, confusion_matrix(pred[~ignored], target[~ignored], 3))


def test_ignore_index_does_not_turn_iou_into_recall():
    target = [[1, 1, 0, 0, 255]]
    pred = [[1, 0, 1, 0, 1]]
    s = _scores(pred, target, 2, ignore_index=255)
    # class 1 over the 4 counted pixels: tp 1, fn 1, fp 1 (the ignored pixel's prediction is not a FP)
    assert s["iou"][1].item() == pytest.approx(1 / 3)  # 1 / (1 + 1 + 1)
    assert s["recall"][1].item() == pytest.approx(1 / 2)  # 1 / (1 + 1)
    assert s["iou"][1].item() != s["recall"][1].item()


def test_out_of_range_values_raise_with_the_values():
    with pytest.raises(ValueError, match=r"\[7, 9\]"):
        confusion_matrix(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0, 7, 9]]), 3)
    with pytest.raises(ValueError, match="-1"):
        confusion_matrix(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, -1]]), 3, ignore_index=255)
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(torch.tensor([[0, 5]]), torch.tensor([[0, 1]]), 3)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(torch.rand(1, 2), torch.tensor([[0, 1]]), 3)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long), 3)
    # a predicted out-of-range value at an ignored pixel is not an error (it is dropped)
    assert confusion_matrix(torch.tensor([[9, 1]]), torch.tensor([[255, 1]]), 2, ignore_index=255).sum() == 1


@pytest.mark.parametrize("device", DEVICES)
def test_per_image_matrices_sum_to_the_pooled_one(device):
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (3, 5, 6), generator=g).to(device)
    pred = torch.randint(0, 4, (3, 5, 6), generator=g).to(device)
    target[0, 0] = 255
    per_image = confusion_matrix(pred, target, 4, ignore_index=255, per_image=True)
    assert per_image.shape == (3, 4, 4) and per_image.device.type == device
    assert torch.equal(per_image.sum(0), confusion_matrix(pred, target, 4, ignore_index=255))
    for i in range(3):
        assert torch.equal(per_image[i], confusion_matrix(pred[i], target[i], 4, ignore_index=255))
    assert per_image[0].sum() == 5 * 6 - 6


@pytest.mark.parametrize("ignore_index", [None, 255])
def test_matches_independent_numpy_reference(ignore_index):
    rng = np.random.default_rng(2)
    k = 4
    target = rng.integers(0, k, size=(3, 16, 16))
    target[:, :2] = 0  # class 3 is also made absent from one image below
    target[1][target[1] == 3] = 1
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, k, size=target.shape))
    if ignore_index is not None:
        target = np.where(rng.random(target.shape) < 0.1, ignore_index, target)
    for i in range(3):
        ours = _scores(pred[i], target[i], k, ignore_index)
        reference = _numpy_reference(pred[i], target[i], k, ignore_index)
        for name in PER_CLASS:
            np.testing.assert_allclose(ours[name].numpy(), reference[name], rtol=1e-12, err_msg=name)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    k = 5
    target = rng.integers(0, k - 1, size=400)  # class 4 never in the target
    pred = np.where(rng.random(400) < 0.6, target, rng.integers(0, k, size=400))
    labels = list(range(k))
    cm = confusion_matrix(pred, target, k)
    np.testing.assert_array_equal(cm.numpy(), metrics.confusion_matrix(target, pred, labels=labels))
    s = overlap_from_confusion(cm)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        target, pred, labels=labels, average=None, zero_division=np.nan)
    np.testing.assert_allclose(s["precision"].numpy(), precision)
    np.testing.assert_allclose(s["recall"].numpy(), recall)
    np.testing.assert_allclose(s["dice"].numpy(), f1)
    assert not torch.isnan(s["iou"]).any()  # class 4 is predicted, so its IoU is defined (0)
    np.testing.assert_allclose(s["iou"].numpy(), metrics.jaccard_score(target, pred, labels=labels, average=None))
    assert s["pixel_accuracy"].item() == pytest.approx(metrics.accuracy_score(target, pred))
    assert s["mean_pixel_accuracy"].item() == pytest.approx(metrics.balanced_accuracy_score(target, pred))


label_maps = st.integers(1, 4).flatmap(lambda b: st.tuples(
    st.integers(2, 4),
    st.lists(st.lists(st.integers(0, 3), min_size=12, max_size=12), min_size=b, max_size=b),
    st.lists(st.lists(st.integers(0, 3), min_size=12, max_size=12), min_size=b, max_size=b),
))


@settings(max_examples=60, deadline=None)
@given(label_maps)
def test_dice_is_a_function_of_iou(case):
    k, pred, target = case
    pred, target = torch.tensor(pred) % k, torch.tensor(target) % k
    s = overlap_from_confusion(confusion_matrix(pred, target, k))
    defined = ~torch.isnan(s["iou"])
    assert torch.equal(defined, ~torch.isnan(s["dice"]))
    iou = s["iou"][defined]
    torch.testing.assert_close(s["dice"][defined], 2 * iou / (1 + iou))
