"""Surface distances: hand-computed cases and a brute-force reference (explicit boundaries + cdist)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from hfseg.metrics import (
    average_surface_distance,
    directed_average_surface_distance,
    hausdorff95,
    hausdorff_distance,
    surface_distances,
    surface_metrics,
)


def _boundary_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Physical coordinates of mask pixels with a face neighbour outside the mask (or outside the image)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            neighbour = np.roll(padded, shift, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
            inner &= neighbour
    return np.argwhere(mask & ~inner) * np.asarray(spacing, dtype=float)


def _brute_force(pred: np.ndarray, target: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    distances = cdist(_boundary_points(pred, spacing), _boundary_points(target, spacing))
    return distances.min(axis=1), distances.min(axis=0)


def _blobs(rng, shape, count=3) -> np.ndarray:
    """A few random boxes, some touching the image border."""
    mask = np.zeros(shape, dtype=bool)
    for _ in range(count):
        start = [rng.integers(0, n - 2) for n in shape]
        stop = [min(n, s + rng.integers(2, max(3, n // 2))) for s, n in zip(start, shape)]
        mask[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    return mask


def test_two_single_pixels():
    pred, target = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
    target[2, 2], pred[2, 4] = True, True
    # each surface is one pixel, two columns apart
    assert hausdorff95(pred, target) == 2.0
    assert average_surface_distance(pred, target) == 2.0
    # anisotropic: columns are 3 units wide -> 2 * 3
    assert hausdorff95(pred, target, spacing=(1.0, 3.0)) == 6.0
    assert hausdorff_distance(pred, target, spacing=(1.0, 3.0)) == 6.0


def test_shifted_square():
    target = np.zeros((7, 7), bool)
    target[1:4, 1:4] = True  # 3x3 square: 8 boundary pixels around the centre (2, 2)
    pred = np.roll(target, 1, axis=1)  # shifted one column right
    d_pred, d_target = surface_distances(pred, target)
    # pred boundary -> target boundary: (1,2) 0, (1,3) 0, (1,4) 1, (2,2) 1, (2,4) 1, (3,2) 0, (3,3) 0, (3,4) 1
    assert sorted(d_pred.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert sorted(d_target.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]  # mirror image
    assert directed_average_surface_distance(pred, target) == 0.5  # 4 / 8
    assert average_surface_distance(pred, target) == 0.5  # (0.5 + 0.5) / 2
    assert hausdorff_distance(pred, target) == 1.0
    # 16 pooled values, 8 zeros then 8 ones: the 95th percentile sits at rank 14.25 -> 1
    assert hausdorff95(pred, target) == 1.0


def test_union_and_max_conventions_differ():
    target = np.zeros((1, 40), bool)
    target[0, 0:20] = True  # surface: every pixel of the 1-pixel-high bar (20 points)
    pred = np.zeros((1, 40), bool)
    pred[0, 0:30] = True  # 30 points: 20 at distance 0, 10 at distances 1..10
    d_pred, d_target = surface_distances(pred, target)
    assert sorted(d_pred.tolist()) == [0.0] * 20 + list(np.arange(1.0, 11.0))
    assert d_target.tolist() == [0.0] * 20
    union = np.percentile(np.r_[d_pred, d_target], 95)  # 50 values: rank 46.55 -> 7.55
    directed_max = max(np.percentile(d_pred, 95), np.percentile(d_target, 95))  # rank 27.55 of d_pred -> 8.55
    assert hausdorff95(pred, target) == pytest.approx(union) == pytest.approx(7.55)
    assert hausdorff95(pred, target, mode="max") == pytest.approx(directed_max) == pytest.approx(8.55)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 2.0), (3.0, 0.7)])
def test_matches_brute_force_2d(spacing):
    rng = np.random.default_rng(0)
    for _ in range(5):
        pred, target = _blobs(rng, (24, 31)), _blobs(rng, (24, 31))
        d_pred, d_target = _brute_force(pred, target, spacing)
        ours_pred, ours_target = surface_distances(pred, target, spacing)
        np.testing.assert_allclose(np.sort(ours_pred), np.sort(d_pred), rtol=1e-9)
        np.testing.assert_allclose(np.sort(ours_target), np.sort(d_target), rtol=1e-9)
        both = np.r_[d_pred, d_target]
        assert hausdorff95(pred, target, spacing) == pytest.approx(np.percentile(both, 95))
        assert hausdorff_distance(pred, target, spacing) == pytest.approx(both.max())
        assert average_surface_distance(pred, target, spacing) == pytest.approx((d_pred.mean() + d_target.mean()) / 2)
        assert hausdorff95(pred, target, spacing, mode="max") == pytest.approx(
            max(np.percentile(d_pred, 95), np.percentile(d_target, 95)))


def test_matches_brute_force_3d_anisotropic():
    rng = np.random.default_rng(1)
    spacing = (2.5, 0.8, 1.1)
    pred, target = _blobs(rng, (6, 14, 12)), _blobs(rng, (6, 14, 12))
    d_pred, d_target = _brute_force(pred, target, spacing)
    assert hausdorff95(pred, target, spacing) == pytest.approx(np.percentile(np.r_[d_pred, d_target], 95))
    assert average_surface_distance(pred, target, spacing) == pytest.approx((d_pred.mean() + d_target.mean()) / 2)


def test_empty_policy():
    empty, full = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    full[1:3, 1:3] = True
    assert hausdorff95(empty, empty) == 0.0 and average_surface_distance(empty, empty) == 0.0
    for pair in [(empty, full), (full, empty)]:
        assert math.isnan(hausdorff95(*pair)) and math.isnan(average_surface_distance(*pair))
        assert math.isnan(directed_average_surface_distance(*pair))
        assert hausdorff95(*pair, empty_value=float("inf")) == float("inf")
        assert average_surface_distance(*pair, empty_value=5.66) == 5.66
    assert surface_distances(empty, full)[0].size == 0


def test_torch_input_and_argument_checks():
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1:3, 1:3] = True
    assert hausdorff95(mask, mask) == 0.0
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(mask, mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="same shape"):
        hausdorff95(mask, mask[:4])
    with pytest.raises(ValueError, match="mode"):
        hausdorff95(mask, mask, mode="mean")
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_distance(mask, mask, percentile=101)


def test_surface_metrics_per_class():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 3, size=(20, 20))
    target[:, :5] = 0
    pred = np.where(rng.random(target.shape) < 0.8, target, 0)
    target[0, :] = 255  # ignored row: cleared from both masks
    pred[0, :] = 2
    out = surface_metrics(pred, target, 4, spacing=(1.0, 2.0), ignore_index=255)
    assert math.isnan(out["hd95"][0])  # background skipped by default
    assert out["hd95"][3] == 0.0 and out["assd"][3] == 0.0  # class 3 absent from both
    keep = target != 255
    for c in (1, 2):
        p, t = (pred == c) & keep, (target == c) & keep
        assert out["hd95"][c] == pytest.approx(hausdorff95(p, t, (1.0, 2.0)))
        assert out["hd"][c] == pytest.approx(hausdorff_distance(p, t, (1.0, 2.0)))
        assert out["assd"][c] == pytest.approx(average_surface_distance(p, t, (1.0, 2.0)))
    with_background = surface_metrics(pred, target, 4, ignore_index=255, include_background=True)
    assert not math.isnan(with_background["hd95"][0])
