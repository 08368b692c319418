"""Panoptic quality and AJI: hand-made instance maps with known matches, and brute-force references."""

import math

import numpy as np
import pytest
from scipy import ndimage

from hfseg.metrics import (
    aggregated_jaccard_index,
    connected_instances,
    instance_metrics,
    panoptic_quality,
)


def _bar(length: int, runs: list[tuple[int, int, int]]) -> np.ndarray:
    """A 1 x length instance map: each run (start, stop, id) paints columns [start, stop) with id."""
    out = np.zeros((1, length), dtype=np.int64)
    for start, stop, instance in runs:
        out[0, start:stop] = instance
    return out


def _brute_pq(pred: np.ndarray, true: np.ndarray) -> dict:
    pred_ids, true_ids = [i for i in np.unique(pred) if i], [i for i in np.unique(true) if i]
    matches = []
    for t in true_ids:
        for p in pred_ids:
            inter = np.sum((true == t) & (pred == p))
            iou = inter / np.sum((true == t) | (pred == p))
            if iou > 0.5:
                matches.append(iou)
    tp = len(matches)
    fp, fn = len(pred_ids) - tp, len(true_ids) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "pq": sum(matches) / (tp + fp / 2 + fn / 2)}


def _brute_aji(pred: np.ndarray, true: np.ndarray) -> float:
    """Kumar et al. 2017, with HoVer-Net's handling of a true instance that overlaps no prediction."""
    pred_ids = [i for i in np.unique(pred) if i]
    used, c, u = set(), 0, 0
    for t in (i for i in np.unique(true) if i):
        g = true == t
        ious = [np.sum(g & (pred == p)) / np.sum(g | (pred == p)) for p in pred_ids]
        if not ious or max(ious) == 0:
            u += g.sum()
            continue
        best = pred_ids[int(np.argmax(ious))]
        c += np.sum(g & (pred == best))
        u += np.sum(g | (pred == best))
        used.add(best)
    u += sum(np.sum(pred == p) for p in pred_ids if p not in used)
    return c / u


def test_connected_instances_connectivity():
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    assert connected_instances(mask).max() == 1  # diagonal neighbours connect by default (8-connectivity)
    assert connected_instances(mask, connectivity=1).max() == 2
    with pytest.raises(ValueError, match="connectivity"):
        connected_instances(mask, connectivity=3)


def test_identical_maps_with_other_ids():
    true = _bar(10, [(0, 3, 1), (5, 9, 2)])
    pred = _bar(10, [(0, 3, 40), (5, 9, 7)])  # ids need not agree nor be contiguous
    assert panoptic_quality(pred, true) == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 2, "fp": 0, "fn": 0,
                                            "iou_sum": 2.0}
    assert aggregated_jaccard_index(pred, true) == 1.0


def test_iou_of_exactly_one_half_is_not_a_match():
    true = _bar(8, [(0, 8, 1)])
    half = panoptic_quality(_bar(8, [(0, 4, 1)]), true)  # IoU 4 / 8 = 0.5, not > 0.5
    assert (half["tp"], half["fp"], half["fn"], half["pq"]) == (0, 1, 1, 0.0)
    assert math.isnan(half["sq"])  # nothing matched: mean IoU of an empty set
    above = panoptic_quality(_bar(8, [(0, 5, 1)]), true)  # IoU 5 / 8
    assert (above["tp"], above["pq"], above["sq"], above["rq"]) == (1, 5 / 8, 5 / 8, 1.0)


def test_split():
    true = _bar(8, [(0, 8, 1)])
    pred = _bar(8, [(0, 5, 1), (5, 8, 2)])  # IoUs 5/8 (match) and 3/8 (false positive)
    pq = panoptic_quality(pred, true)
    # tp 1, fp 1, fn 0: sq 5/8, rq 1 / (1 + 1/2) = 2/3, pq = 5/8 * 2/3 = 5/12
    assert (pq["tp"], pq["fp"], pq["fn"]) == (1, 1, 0)
    assert pq["sq"] == pytest.approx(5 / 8) and pq["rq"] == pytest.approx(2 / 3) and pq["pq"] == pytest.approx(5 / 12)
    # AJI: the true bar takes pred 1 (C 5, U 8); pred 2 is unused, its 3 pixels join the union -> 5 / 11
    assert aggregated_jaccard_index(pred, true) == pytest.approx(5 / 11)
    # an even split: both IoUs are 0.5, nothing matches; AJI takes the lowest id on the tie -> 4 / (8 + 4)
    even = _bar(8, [(0, 4, 1), (4, 8, 2)])
    assert panoptic_quality(even, true)["pq"] == 0.0
    assert aggregated_jaccard_index(even, true) == pytest.approx(4 / 12)


def test_merge():
    true = _bar(8, [(0, 6, 1), (6, 8, 2)])
    pred = _bar(8, [(0, 8, 1)])  # one prediction covering both: IoU 6/8 with A, 2/8 with B
    pq = panoptic_quality(pred, true)
    # tp 1, fp 0, fn 1: sq 3/4, rq 1 / (1 + 1/2) = 2/3, pq 1/2
    assert (pq["tp"], pq["fp"], pq["fn"]) == (1, 0, 1)
    assert pq["sq"] == pytest.approx(3 / 4) and pq["rq"] == pytest.approx(2 / 3) and pq["pq"] == pytest.approx(1 / 2)
    # AJI: A and B both take the prediction: C = 6 + 2, U = 8 + 8 -> 1/2 (the merged prediction counts twice)
    assert aggregated_jaccard_index(pred, true) == pytest.approx(8 / 16)


def test_true_instance_without_overlap_adds_its_area():
    true = _bar(10, [(0, 4, 1), (8, 10, 2)])
    pred = _bar(10, [(0, 4, 3)])
    # instance 1 matches exactly (C 4, U 4); instance 2 overlaps nothing: U += 2 -> 4 / 6
    assert aggregated_jaccard_index(pred, true) == pytest.approx(4 / 6)
    assert panoptic_quality(pred, true)["pq"] == pytest.approx(1 / 1.5)  # tp 1, fn 1


def test_empty_policy():
    empty, some = np.zeros((4, 4), int), np.zeros((4, 4), int)
    some[1:3, 1:3] = 1
    both = panoptic_quality(empty, empty)
    assert math.isnan(both["pq"]) and math.isnan(both["sq"]) and both["tp"] == both["fp"] == both["fn"] == 0
    assert math.isnan(aggregated_jaccard_index(empty, empty))
    assert panoptic_quality(empty, empty, empty_value=1.0)["pq"] == 1.0
    assert aggregated_jaccard_index(empty, empty, empty_value=1.0) == 1.0
    for pred, true in [(empty, some), (some, empty)]:
        assert panoptic_quality(pred, true)["pq"] == 0.0 and panoptic_quality(pred, true)["rq"] == 0.0
        assert aggregated_jaccard_index(pred, true) == 0.0
    with pytest.raises(ValueError, match="match_iou"):
        panoptic_quality(some, some, match_iou=0.3)


def test_matches_brute_force_on_random_maps():
    rng = np.random.default_rng(0)
    matched = 0
    for _ in range(10):
        true, _ = ndimage.label(ndimage.gaussian_filter(rng.random((48, 48)), 2) > 0.53)  # ~15 blobs
        mask = np.roll(true > 0, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))  # shifted: matches, splits, merges
        mask ^= ndimage.gaussian_filter(rng.random((48, 48)), 1.5) > 0.6  # plus spurious blobs and holes
        pred, _ = ndimage.label(mask)
        pred = np.where(pred > 0, pred * 3 + 11, 0)  # sparse ids
        ours, brute = panoptic_quality(pred, true), _brute_pq(pred, true)
        assert (ours["tp"], ours["fp"], ours["fn"]) == (brute["tp"], brute["fp"], brute["fn"])
        assert ours["pq"] == pytest.approx(brute["pq"])
        assert aggregated_jaccard_index(pred, true) == pytest.approx(_brute_aji(pred, true))
        matched += ours["tp"]
    assert matched > 30  # the maps exercise real matches, not only misses


def test_instance_metrics_from_binary_masks():
    target = np.zeros((6, 6), bool)
    target[0:2, 0:2] = target[4:6, 4:6] = True  # two blobs
    pred = target.copy()
    pred[4:6, 4:6] = False
    out = instance_metrics(pred, target)
    # one blob found exactly, one missed: tp 1, fn 1 -> pq 1 / 1.5; AJI 4 / (4 + 4)
    assert (out["tp"], out["fp"], out["fn"]) == (1, 0, 1)
    assert out["pq"] == pytest.approx(2 / 3) and out["aji"] == pytest.approx(0.5)
    assert (out["aji_intersection"], out["aji_union"]) == (4, 8)
