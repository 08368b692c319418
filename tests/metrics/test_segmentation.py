"""`SegmentationMetrics`: the two reductions by hand, ignore_index, optional surface/instance metrics, properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfseg.metrics import (
    SegmentationMetrics,
    confusion_matrix,
    hausdorff95,
    instance_metrics,
    overlap_from_confusion,
)


def _two_images():
    # image A: a 2x2 foreground found exactly (background absent from both sides)
    # image B: one foreground pixel, missed
    target = torch.tensor([[[1, 1], [1, 1]], [[1, 0], [0, 0]]])
    pred = torch.tensor([[[1, 1], [1, 1]], [[0, 0], [0, 0]]])
    return pred, target


def test_dataset_and_image_reductions_by_hand():
    pred, target = _two_images()
    metrics = SegmentationMetrics(num_classes=2, id2label={0: "background", 1: "liver"})
    metrics.update(pred, target)
    out = metrics.compute()
    # dataset: foreground tp 4 + 0, fn 0 + 1 -> dice 8 / 9; background tp 3, fp 1 -> dice 6 / 7
    assert out["dice"] == pytest.approx([6 / 7, 8 / 9])
    assert out["mean_foreground_dice"] == pytest.approx(8 / 9)
    assert out["mean_dice"] == pytest.approx((6 / 7 + 8 / 9) / 2)
    assert out["pixel_accuracy"] == pytest.approx(7 / 8)
    # image: foreground dice (1 + 0) / 2; background undefined in A (absent), 6 / 7 in B
    assert out["image_dice"] == pytest.approx([6 / 7, 1 / 2])
    assert out["image_mean_foreground_dice"] == pytest.approx(1 / 2)
    assert out["image_mean_dice"] == pytest.approx((6 / 7 + 1 / 2) / 2)
    assert out["image_pixel_accuracy"] == pytest.approx((1 + 3 / 4) / 2)
    assert out["num_images"] == 2
    assert out["per_class"]["liver"]["dice"] == pytest.approx(8 / 9)
    assert out["per_class"]["liver"]["image_dice"] == pytest.approx(1 / 2)
    assert set(out["per_class"]) == {"background", "liver"}


def test_empty_score_in_the_image_reduction():
    pred, target = _two_images()
    metrics = SegmentationMetrics(num_classes=2, empty_score=1.0)
    metrics.update(pred, target)
    # background of image A now counts as 1: (1 + 6/7) / 2
    assert metrics.compute()["image_dice"][0] == pytest.approx((1 + 6 / 7) / 2)


def test_matches_the_functions_and_accumulates_over_batches():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (6, 16, 16), generator=g)
    target[:, 0] = 255
    pred = torch.randint(0, 3, (6, 16, 16), generator=g)
    metrics = SegmentationMetrics(3, ignore_index=255)
    metrics.update(pred[:4], target[:4])
    metrics.update(pred[4:], target[4:])
    out = metrics.compute()
    direct = overlap_from_confusion(confusion_matrix(pred, target, 3, ignore_index=255))
    assert out["iou"] == pytest.approx(direct["iou"].tolist())
    assert out["mean_iou"] == pytest.approx(direct["mean_iou"].item())
    per_image = metrics.per_image()
    assert per_image["dice"].shape == (6, 3)
    assert out["image_dice"] == pytest.approx(np.nanmean(per_image["dice"], 0).tolist())
    assert all(isinstance(v, (int, float)) for k, v in out.items() if not isinstance(v, (list, dict)))


def test_ignored_pixels_change_no_metric():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(2, 24, 24))
    target[:, 5:9] = 255
    pred = np.where(rng.random(target.shape) < 0.8, target % 3, 0)
    wrong = pred.copy()
    wrong[:, 5:9] = 2  # different (wrong) predictions under the ignored band only
    results = []
    for p in (pred, wrong):
        metrics = SegmentationMetrics(3, ignore_index=255, surface=True, instance=True)
        metrics.update(torch.from_numpy(p), torch.from_numpy(target))
        results.append(metrics.compute())
    np.testing.assert_equal(results[0], results[1])  # NaN == NaN here


def test_surface_and_instance_flags():
    target = np.zeros((2, 12, 12), dtype=np.int64)
    target[:, 2:5, 2:5] = 1
    target[:, 7:10, 7:10] = 1
    pred = target.copy()
    pred[1, 7:10, 7:10] = 0  # second image misses one blob
    metrics = SegmentationMetrics(2, surface=True, instance=True, spacing=(1.0, 2.0))
    metrics.update(pred, target)
    out = metrics.compute()
    hd = [hausdorff95(pred[i] == 1, target[i] == 1, (1.0, 2.0)) for i in range(2)]
    assert out["image_hd95"][1] == pytest.approx(np.mean(hd)) and math.isnan(out["image_hd95"][0])
    assert out["image_mean_hd95"] == pytest.approx(np.mean(hd))
    per_image = [instance_metrics(pred[i] == 1, target[i] == 1) for i in range(2)]
    assert out["image_pq"][1] == pytest.approx((per_image[0]["pq"] + per_image[1]["pq"]) / 2)  # (1 + 2/3) / 2
    # pooled: tp 2 + 1, fn 0 + 1, summed IoU 3 -> pq 3 / (3 + 1/2)
    assert out["pq"][1] == pytest.approx(3 / 3.5) and out["mean_pq"] == pytest.approx(3 / 3.5)
    # pooled AJI: C 18 + 9, U 18 + 18
    assert out["aji"][1] == pytest.approx(27 / 36)
    assert out["per_class"]["1"]["image_aji"] == pytest.approx((1 + 0.5) / 2)
    # per-image spacing overrides
    metrics = SegmentationMetrics(2, surface=True)
    metrics.update(pred, target, spacing=[(1.0, 1.0), (1.0, 2.0)])
    assert metrics.per_image()["hd95"][1, 1] == pytest.approx(hd[1])


def test_errors():
    with pytest.raises(RuntimeError, match="update"):
        SegmentationMetrics(2).compute()
    with pytest.raises(ValueError, match="batch"):
        SegmentationMetrics(2).update(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


batches = st.integers(2, 5).flatmap(lambda b: st.tuples(
    st.lists(st.lists(st.integers(0, 2), min_size=9, max_size=9), min_size=b, max_size=b),
    st.lists(st.lists(st.integers(0, 2), min_size=9, max_size=9), min_size=b, max_size=b),
    st.permutations(range(b)),
))


@settings(max_examples=40, deadline=None)
@given(batches)
def test_invariant_to_the_order_of_images(case):
    pred, target, order = case
    pred, target = torch.tensor(pred).view(-1, 3, 3), torch.tensor(target).view(-1, 3, 3)
    results = []
    for index in (list(range(len(order))), list(order)):
        metrics = SegmentationMetrics(3)
        for i in index:  # one image per update, in the given order
            metrics.update(pred[i:i + 1], target[i:i + 1])
        results.append(metrics.compute())
    for key in ("mean_dice", "mean_iou", "pixel_accuracy", "image_mean_dice", "image_mean_foreground_iou"):
        a, b = results[0][key], results[1][key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), key
    np.testing.assert_allclose(results[0]["dice"], results[1]["dice"])
    np.testing.assert_allclose(results[0]["image_dice"], results[1]["image_dice"])
