"""Patch sampling: foreground oversampling rate against the exact expectation, nnU-Net's class locations,
determinism over (seed, epoch, index) through DataLoader workers, 3D and 2D-slice shapes, padding."""

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hfseg.data.augment3d import VolumeAugmentConfig, build_volume_augmentation
from hfseg.data.patches import PatchDataset, foreground_locations


def _case(shape=(24, 24, 24), channels=1, seed=0, case_id="case"):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(channels, *shape)).astype(np.float32),
            "label": np.zeros(shape, np.uint8), "case_id": case_id}


def _binomial_ok(hits: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(hits / n - p) <= sigmas * np.sqrt(p * (1 - p) / n) + 1e-9


def _random_patch_hit_rate(shape, patch, voxels) -> float:
    """P(a uniformly placed patch holds one of `voxels`), by enumerating every placement (the reference)."""
    ranges = [range(0, s - p + 1) for s, p in zip(shape, patch)]
    hits = total = 0
    for start in itertools.product(*ranges):
        total += 1
        hits += any(all(a <= v < a + p for a, v, p in zip(start, voxel, patch)) for voxel in voxels)
    return hits / total


@pytest.mark.parametrize("fraction", [1 / 3, 0.0, 1.0])
def test_foreground_oversampling_rate(fraction):
    case = _case((16, 16, 16))
    voxels = [(3, 12, 7), (4, 12, 7)]  # a two-voxel lesion
    for v in voxels:
        case["label"][v] = 1
    patch, n = (6, 6, 6), 600
    dataset = PatchDataset([case], patch, samples_per_epoch=n, foreground_fraction=fraction, seed=5)
    hits = sum(int(dataset[i]["labels"].sum() > 0) for i in range(n))
    q = _random_patch_hit_rate((16, 16, 16), patch, voxels)
    expected = fraction + (1 - fraction) * q  # forced patches always hold it; random ones with probability q
    assert 0 < q < 0.1
    assert _binomial_ok(hits, n, expected), (hits / n, expected)


def test_a_foreground_patch_is_centred_on_its_voxel_or_shifted_inside():
    case = _case((16, 16, 16))
    case["label"][9, 4, 1] = 1  # inside along axes 0 and 1, near the border along axis 2
    dataset = PatchDataset([case], (6, 6, 6), samples_per_epoch=5, foreground_fraction=1.0)
    for i in range(5):
        assert torch.nonzero(dataset[i]["labels"]).tolist() == [[3, 3, 1]]  # patch // 2, and clamped at start 0


def test_foreground_class_is_chosen_uniformly_not_by_volume():
    case = _case((20, 20, 20))
    case["label"][:6, :6, :6] = 1  # a large class in one corner
    case["label"][17, 17, 17] = 2  # a one-voxel class far from it
    dataset = PatchDataset([case], (4, 4, 4), samples_per_epoch=400, foreground_fraction=1.0, seed=1)
    with_small = sum(int((dataset[i]["labels"] == 2).any()) for i in range(400))
    assert _binomial_ok(with_small, 400, 0.5), with_small / 400


def test_class_locations_follow_nnunet():
    label = np.zeros((30, 30, 30), np.uint8)
    label[:25] = 1  # 22,500 voxels: capped at 10,000
    label[29, 0, :5] = 3  # 5 voxels: all of them
    locations = foreground_locations(label)
    assert sorted(locations) == [1, 3]
    assert locations[1].shape == (10_000, 3) and len(np.unique(locations[1], axis=0)) == 10_000
    assert (label[tuple(locations[1].T)] == 1).all()
    np.testing.assert_array_equal(locations[3], [[29, 0, z] for z in range(5)])
    np.testing.assert_array_equal(foreground_locations(label)[1], locations[1])  # a fixed seed
    big = np.ones((50, 50, 50), np.uint8)  # 1% of 125,000 = 1,250 < 10,000: still the cap
    assert len(foreground_locations(big)[1]) == 10_000
    huge = np.ones((120, 100, 100), np.uint8)  # 1% of 1.2 M = 12,000 > 10,000
    assert len(foreground_locations(huge)[1]) == 12_000


def test_items_are_a_pure_function_of_seed_epoch_and_index():
    cases = [_case(seed=k, case_id=f"c{k}") for k in range(3)]
    for k, case in enumerate(cases):
        case["label"][5 + k:9 + k, 5:9, 5:9] = 1 + k % 2
    augment = build_volume_augmentation(VolumeAugmentConfig(), (8, 8, 8), (0, 1, 2))
    a = PatchDataset(cases, (8, 8, 8), samples_per_epoch=6, seed=3, augmentation=augment)
    b = PatchDataset(cases, (8, 8, 8), samples_per_epoch=6, seed=3,
                     augmentation=build_volume_augmentation(VolumeAugmentConfig(), (8, 8, 8), (0, 1, 2)))
    np.random.seed(1)
    torch.manual_seed(1)
    first = [a[i] for i in range(6)]
    np.random.seed(2)
    torch.manual_seed(2)
    for i in reversed(range(6)):  # another order, other global RNG states, another instance
        assert torch.equal(b[i]["pixel_values"], first[i]["pixel_values"])
        assert torch.equal(b[i]["labels"], first[i]["labels"])
    assert not torch.equal(first[0]["pixel_values"], first[1]["pixel_values"])
    b.set_epoch(1)
    assert b.epoch == 1
    assert all(not torch.equal(b[i]["pixel_values"], first[i]["pixel_values"]) for i in range(6))
    b.set_epoch(0)
    assert torch.equal(b[4]["pixel_values"], first[4]["pixel_values"])  # a resumed run
    other_seed = PatchDataset(cases, (8, 8, 8), samples_per_epoch=6, seed=4, augmentation=augment)
    assert not torch.equal(other_seed[0]["pixel_values"], first[0]["pixel_values"])


def test_dataloader_workers_give_the_same_batches_and_see_set_epoch():
    case = _case((16, 16, 16))
    case["label"][4:8, 4:8, 4:8] = 1
    augment = build_volume_augmentation(VolumeAugmentConfig(), (8, 8, 8), (0, 1, 2))
    dataset = PatchDataset([case], (8, 8, 8), samples_per_epoch=6, seed=0, augmentation=augment)
    reference = {}
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        reference[epoch] = torch.stack([dataset[i]["pixel_values"] for i in range(6)])
    assert not torch.equal(reference[0], reference[1])
    loader = DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        batches = list(loader)
        assert batches[0]["pixel_values"].shape == (3, 1, 8, 8, 8) and batches[0]["labels"].dtype == torch.int64
        assert torch.equal(torch.cat([b["pixel_values"] for b in batches]), reference[epoch])


def test_3d_patch_shapes_and_a_case_smaller_than_the_patch_is_padded():
    case = _case((5, 6, 7), channels=2)
    case["image"] = (np.arange(2 * 5 * 6 * 7, dtype=np.float32) + 1).reshape(2, 5, 6, 7)
    case["label"][...] = 2
    dataset = PatchDataset([case], (8, 8, 8), samples_per_epoch=20, foreground_fraction=0.5, seed=0)
    for i in range(20):
        item = dataset[i]
        assert item["pixel_values"].shape == (2, 8, 8, 8) and item["pixel_values"].dtype == torch.float32
        assert item["labels"].shape == (8, 8, 8) and item["labels"].dtype == torch.int64
        values = item["pixel_values"][item["pixel_values"] != 0]
        assert torch.equal(values.sort().values, torch.from_numpy(case["image"]).flatten().sort().values)
        assert int((item["labels"] == 2).sum()) == 5 * 6 * 7 and int((item["labels"] == 0).sum()) == 8 ** 3 - 210


def test_2d_patches_are_slices_along_slice_axis():
    shape = (10, 12, 6)
    grid = np.indices(shape).astype(np.float32)
    case = {"image": np.stack([grid[0] + 100 * grid[1] + 10_000 * grid[2] + 1, -grid[2]]),
            "label": np.zeros(shape, np.uint8), "case_id": "slices"}
    case["label"][2:4, 3:5, 4] = 1  # foreground on slice 4 only
    dataset = PatchDataset([case], (8, 8), samples_per_epoch=60, foreground_fraction=0.5, seed=2, slice_axis=2)
    fg_slices = 0
    for i in range(60):
        item = dataset[i]
        assert item["pixel_values"].shape == (2, 8, 8) and item["labels"].shape == (8, 8)
        code = item["pixel_values"][0].numpy() - 1
        z = code // 10_000
        assert (z == z[0, 0]).all() and (item["pixel_values"][1].numpy() == -z).all()  # one slice, both channels
        x, y = code % 100, (code % 10_000) // 100
        assert (np.diff(x, axis=0) == 1).all() and (np.diff(y, axis=1) == 1).all()  # an in-plane crop
        fg_slices += int(z[0, 0] == 4)
        assert item["labels"].any() == bool(case["label"][x[:, 0].astype(int)][:, y[0].astype(int), int(z[0, 0])].any())
    assert fg_slices > 60 * 0.4  # at least the forced half lands on the foreground slice
    along_first = PatchDataset([{**case, "image": case["image"].transpose(0, 3, 1, 2),
                                 "label": case["label"].transpose(2, 0, 1)}], (8, 8), samples_per_epoch=2, slice_axis=0)
    code = along_first[0]["pixel_values"][0].numpy() - 1  # (x, y) planes of one z, as before
    assert along_first[0]["pixel_values"].shape == (2, 8, 8) and (code // 10_000 == code[0, 0] // 10_000).all()
    augment = build_volume_augmentation(VolumeAugmentConfig(), (8, 8), (0, 1))
    augmented = PatchDataset([case], (8, 8), samples_per_epoch=4, seed=2, slice_axis=2, augmentation=augment)
    assert augmented[0]["pixel_values"].shape == (2, 8, 8) and augmented[0]["labels"].shape == (8, 8)


def test_invalid_inputs_are_refused_with_the_fix():
    case = _case((8, 8, 8))
    with pytest.raises(ValueError, match="slice_axis"):
        PatchDataset([case], (4, 4), samples_per_epoch=2)
    with pytest.raises(ValueError, match="slice_axis"):
        PatchDataset([case], (4, 4, 4), samples_per_epoch=2, slice_axis=0)
    with pytest.raises(ValueError, match="has no label"):
        PatchDataset([{**case, "label": None}], (4, 4, 4), samples_per_epoch=2)
    with pytest.raises(ValueError, match="same patch_size"):
        PatchDataset([case], (4, 4, 4), samples_per_epoch=2,
                     augmentation=build_volume_augmentation(VolumeAugmentConfig(), (6, 6, 6)))
    with pytest.raises(ValueError, match="same channels"):
        PatchDataset([case, _case((8, 8, 8), channels=2)], (4, 4, 4), samples_per_epoch=2)
    with pytest.raises(ValueError, match="at least one case"):
        PatchDataset([], (4, 4, 4), samples_per_epoch=2)
    with pytest.raises(IndexError):
        PatchDataset([case], (4, 4, 4), samples_per_epoch=2)[2]
