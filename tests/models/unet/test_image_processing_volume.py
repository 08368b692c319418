"""Volume preprocessing of the U-Net image processor and its inverse: normalization by hand, crop, resampling
against scipy, round trips, saving, errors, 2D plans on volumes, 3D post-processing."""

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor

import hfseg
from hfseg import UNetImageProcessor

CT = {"scheme": "ct", "clip": [-100.0, 200.0], "mean": 40.0, "std": 80.0}


def _volume_processor(**kwargs) -> UNetImageProcessor:
    return UNetImageProcessor(spatial_dims=3, **kwargs)


def _blob(shape=(24, 24, 24), radius=8.0, center=None) -> np.ndarray:
    """A smooth ellipsoid of class 1 with a core of class 2, int64."""
    grid = np.indices(shape).astype(float)
    center = np.asarray(center if center is not None else [n / 2 - 0.3 for n in shape])[:, None, None, None]
    axes = np.array([1.0, 1.3, 0.8])[:, None, None, None]
    r = np.sqrt((((grid - center) / axes) ** 2).sum(0))
    return (r < radius).astype(np.int64) + (r < radius / 2)


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(labels, classes).permute(3, 0, 1, 2).float()


def _dice(a: np.ndarray, b: np.ndarray, k: int) -> float:
    return 2 * float(((a == k) & (b == k)).sum()) / float((a == k).sum() + (b == k).sum())


# -- normalization ---------------------------------------------------------------------------------------------
def test_ct_clips_then_uses_the_plan_statistics_and_zscore_uses_the_image_s():
    rng = np.random.default_rng(0)
    image = np.stack([rng.uniform(-500, 600, (6, 5, 4)), rng.uniform(0, 50, (6, 5, 4))]).astype(np.float32)
    proc = _volume_processor(channel_normalization=[CT, {"scheme": "zscore", "nonzero": False}])
    out = proc.preprocess_volume(image, [1, 1, 1])["pixel_values"].numpy()
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (np.clip(image[0], -100, 200) - 40) / 80, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], (image[1] - image[1].mean()) / image[1].std(), rtol=1e-4, atol=1e-5)
    flat = _volume_processor(channel_normalization=[dict(CT, std=0.0)]).preprocess_volume(image[:1], [1, 1, 1])
    np.testing.assert_allclose(flat["pixel_values"][0].numpy(), (np.clip(image[0], -100, 200) - 40) / 1e-8,
                               rtol=1e-5)  # std floored at 1e-8, as nnU-Net


def test_zscore_nonzero_uses_the_voxels_non_zero_in_any_channel_and_zeros_the_rest():
    rng = np.random.default_rng(1)
    image = np.zeros((2, 6, 6, 5), dtype=np.float32)
    image[0, 1:5, 1:5, 1:4] = rng.uniform(1, 10, (4, 4, 3))
    image[1, 2:6, 1:5, 1:4] = rng.uniform(100, 200, (4, 4, 3))  # its region reaches where channel 0 is 0
    image[0, 2, 2, 2] = 0  # a zero inside both regions' union: still inside the mask
    mask = (image != 0).any(0)
    proc = _volume_processor(channel_normalization=[{"scheme": "zscore", "nonzero": True}] * 2)
    out = proc.preprocess_volume(image, [1, 1, 1])["pixel_values"].numpy()
    for c in range(2):
        inside = image[c][mask]
        np.testing.assert_allclose(out[c][mask], (inside - inside.mean()) / inside.std(), rtol=1e-4, atol=1e-5)
        assert (out[c][~mask] == 0).all()
    everywhere = _volume_processor(channel_normalization=[{"scheme": "zscore", "nonzero": False}] * 2)
    out = everywhere.preprocess_volume(image, [1, 1, 1])["pixel_values"].numpy()
    np.testing.assert_allclose(out[1], (image[1] - image[1].mean()) / image[1].std(), rtol=1e-4, atol=1e-5)


def test_without_channel_normalization_the_processor_normalization_covers_the_whole_volume():
    image = np.random.default_rng(2).uniform(0, 9, (2, 5, 4, 3))
    out = _volume_processor().preprocess_volume(image, [1, 1, 1])["pixel_values"].numpy()
    for c in range(2):
        np.testing.assert_allclose(out[c], (image[c] - image[c].mean()) / image[c].std(), rtol=1e-4, atol=1e-5)
    window = _volume_processor(normalization="window", window_center=5, window_width=4)
    np.testing.assert_allclose(window.preprocess_volume(image[0], [1, 1, 1])["pixel_values"][0].numpy(),
                               (np.clip(image[0], 3, 7) - 3) / 4, rtol=1e-5, atol=1e-6)


def test_non_finite_voxels_are_filled_before_normalization_with_one_warning():
    image = np.random.default_rng(3).uniform(10, 20, (1, 6, 5, 4)).astype(np.float32)
    holes = image.copy()
    holes[0, 0, 0, :2], holes[0, 1, 1, 1], holes[0, 2, 2, 2] = np.nan, np.inf, -np.inf
    filled = holes.copy()
    filled[~np.isfinite(holes)] = image[np.isfinite(holes)].min()
    proc = _volume_processor(channel_normalization=[{"scheme": "zscore", "nonzero": False}])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = proc.preprocess_volume(holes, [1, 1, 1])["pixel_values"]
    assert [str(w.message)[:14] for w in record if "non-finite" in str(w.message)] == ["4 non-finite p"]
    torch.testing.assert_close(out, proc.preprocess_volume(filled, [1, 1, 1])["pixel_values"], rtol=0, atol=0)


# -- crop and its inverse --------------------------------------------------------------------------------------
def test_crop_to_nonzero_bbox_and_the_inverse_placement():
    image = np.zeros((2, 9, 8, 7), dtype=np.float32)
    image[0, 2:5, 1:4, 3:6] = 5
    image[1, 4, 6, 5] = 1  # another channel widens the box
    label = np.zeros((9, 8, 7), dtype=np.int64)
    label[3, 2, 4], label[4, 6, 5] = 2, 1
    proc = _volume_processor(crop_to_nonzero=True, channel_normalization=[{"scheme": "zscore", "nonzero": True}] * 2)
    out = proc.preprocess_volume(image, [0.7, 0.7, 2.0], label=label)
    geometry = out["geometry"]
    assert geometry["crop_bbox"] == [[2, 5], [1, 7], [3, 6]]
    assert geometry["original_shape"] == [9, 8, 7] and geometry["cropped_shape"] == [3, 6, 3]
    assert geometry["resampled_shape"] == [3, 6, 3] and geometry["target_spacing"] == [0.7, 0.7, 2.0]
    assert json.loads(json.dumps(geometry)) == geometry  # plain JSON
    assert out["pixel_values"].shape == (2, 3, 6, 3) and out["labels"].dtype == torch.int64
    torch.testing.assert_close(out["labels"], torch.from_numpy(label[2:5, 1:7, 3:6]))
    back = proc.postprocess_volume(_one_hot(out["labels"], 3), geometry)
    assert back.dtype == torch.int64
    np.testing.assert_array_equal(back.numpy(), label)
    probabilities = proc.postprocess_volume(_one_hot(out["labels"], 3), geometry, return_probabilities=True)
    assert probabilities.shape == (3, 9, 8, 7)
    assert (probabilities[:, 0, 0, 0] == torch.tensor([1.0, 0, 0])).all()  # outside the crop: background
    torch.testing.assert_close(probabilities.sum(0), torch.ones(9, 8, 7))


def test_an_all_zero_volume_is_not_cropped():
    out = _volume_processor(crop_to_nonzero=True).preprocess_volume(np.zeros((4, 3, 2)), [1, 1, 1])
    assert out["geometry"]["crop_bbox"] == [[0, 4], [0, 3], [0, 2]] and torch.isfinite(out["pixel_values"]).all()


# -- resampling ------------------------------------------------------------------------------------------------
def test_resampled_shapes_for_anisotropic_spacing():
    cases = [  # shape, spacing, target, expected: round(shape * spacing / target), at least 1
        ((20, 20, 6), (0.8, 0.8, 3.0), (1.0, 1.0, 1.5), [16, 16, 12]),
        ((10, 7, 3), (1.0, 2.0, 5.0), (None, 1.0, 2.5), [10, 14, 6]),
        ((5, 4, 1), (1.0, 1.0, 1.0), (3.0, 1.0, 9.0), [2, 4, 1]),
    ]
    for shape, spacing, target, expected in cases:
        image = np.random.default_rng(4).uniform(1, 2, shape)
        out = _volume_processor(target_spacing=target).preprocess_volume(image, spacing, label=np.zeros(shape))
        assert out["geometry"]["resampled_shape"] == expected, (shape, spacing, target)
        assert out["pixel_values"].shape == (1, *expected) and out["labels"].shape == tuple(expected)
        assert out["geometry"]["target_spacing"] == [s if t is None else t for s, t in zip(spacing, target)]


def test_labels_take_the_class_of_the_nearest_voxel_centre():
    label = np.random.default_rng(10).integers(0, 4, (7, 5, 4))
    proc = _volume_processor(target_spacing=[0.7, 1.6, 1.0])
    out = proc.preprocess_volume(np.ones((7, 5, 4)), [1, 1, 1], label=label)
    shape = out["geometry"]["resampled_shape"]
    assert shape == [10, 3, 4]
    # the old voxel holding each new voxel's centre, (i + 0.5) * old / new - 0.5 in old voxel units
    nearest = [np.floor((np.arange(new) + 0.5) * old / new).astype(int) for new, old in zip(shape, label.shape)]
    np.testing.assert_array_equal(out["labels"].numpy(), label[np.ix_(*nearest)])


def test_linear_resampling_matches_scipy_zoom_on_the_voxel_grid():
    from scipy import ndimage

    image = np.random.default_rng(5).normal(size=(5, 7, 6)).astype(np.float32)
    proc = _volume_processor(target_spacing=[0.5, 1.4, 0.7], channel_normalization=[dict(CT, clip=[-9, 9], mean=0,
                                                                                           std=1)])
    out = proc.preprocess_volume(image, [1, 1, 1])
    shape = out["geometry"]["resampled_shape"]
    assert shape == [10, 5, 9]
    reference = ndimage.zoom(image, np.divide(shape, image.shape), order=1, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(out["pixel_values"][0].numpy(), reference, atol=1e-5)


def test_a_linear_ramp_stays_linear():
    ramp = np.broadcast_to(np.arange(8.0)[:, None, None], (8, 4, 3))  # 1 per voxel along axis 0
    proc = _volume_processor(target_spacing=[0.5, 1, 1], normalization="none")
    out = proc.preprocess_volume(ramp, [1, 1, 1])["pixel_values"][0, :, 0, 0].numpy()
    centers = (np.arange(16) + 0.5) / 2 - 0.5  # the new voxel centres in old voxel units
    np.testing.assert_allclose(out[1:-1], centers[1:-1], atol=1e-6)  # the edges clamp (mode "nearest")
    assert out[0] == 0 and out[-1] == 7


def test_cubic_resampling_is_scipy_order_3_per_channel():
    from scipy import ndimage

    image = np.random.default_rng(6).normal(size=(2, 6, 5, 4)).astype(np.float32)
    proc = _volume_processor(target_spacing=[0.75, 1.25, 0.5], image_interpolation="cubic", normalization="none")
    out = proc.preprocess_volume(image, [1, 1, 1])["pixel_values"].numpy()
    assert out.shape == (2, 8, 4, 8)
    for c in range(2):
        reference = ndimage.zoom(image[c], np.divide((8, 4, 8), (6, 5, 4)), order=3, mode="nearest", grid_mode=True)
        np.testing.assert_allclose(out[c], reference, atol=1e-5)


# -- round trips -----------------------------------------------------------------------------------------------
def test_round_trip_is_exact_when_the_target_spacing_is_the_spacing():
    label = _blob((12, 10, 8), radius=3.5)
    image = np.where(label > 0, 10.0 + label, 0.0)
    proc = _volume_processor(target_spacing=[0.9, 0.9, 2.5], crop_to_nonzero=True)
    out = proc.preprocess_volume(image, [0.9, 0.9, 2.5], label=label)
    assert out["geometry"]["cropped_shape"] == out["geometry"]["resampled_shape"] != [12, 10, 8]
    np.testing.assert_array_equal(proc.postprocess_volume(_one_hot(out["labels"], 3), out["geometry"]).numpy(), label)


@pytest.mark.parametrize("factor, min_dice", [(1 / 1.5, 0.99), (1.5, 0.9)])
def test_round_trip_of_a_smooth_blob_resampled_1_5x(factor, min_dice):
    """Upsampled 1.5x the blob comes back almost exactly; downsampled 1.5x (nearest, a coarser grid) it loses a
    boundary layer."""
    label = _blob(radius=9.0)
    proc = _volume_processor(target_spacing=[factor] * 3)
    out = proc.preprocess_volume(label.astype(np.float32), [1, 1, 1], label=label)
    assert out["geometry"]["resampled_shape"] == [round(24 / factor)] * 3
    back = proc.postprocess_volume(_one_hot(out["labels"], 3), out["geometry"]).numpy()
    assert back.shape == label.shape
    assert min(_dice(back, label, 1), _dice(back, label, 2)) > min_dice


def test_postprocess_of_logits_and_of_a_binary_model():
    proc = _volume_processor(target_spacing=[2, 2, 2])
    label = _blob((8, 8, 8), radius=3.0)
    out = proc.preprocess_volume(label.astype(np.float32), [1, 1, 1], label=label)
    logits = 10 * _one_hot(out["labels"], 3)  # logits: argmax as the one-hot, probabilities after a softmax
    mask = proc.postprocess_volume(logits, out["geometry"])
    np.testing.assert_array_equal(mask.numpy(), proc.postprocess_volume(logits / 10, out["geometry"]).numpy())
    probabilities = proc.postprocess_volume(logits[None], out["geometry"], return_probabilities=True)
    torch.testing.assert_close(probabilities.sum(0), torch.ones(8, 8, 8))
    assert (probabilities.argmax(0) == mask).all()
    binary = (out["labels"] > 0).float()[None] * 2 - 1  # logits +-1: foreground where > 0
    as_logits = proc.postprocess_volume(binary, out["geometry"], score_type="logits")
    as_auto = proc.postprocess_volume(binary, out["geometry"])  # negative values: logits
    np.testing.assert_array_equal(as_logits.numpy(), as_auto.numpy())
    np.testing.assert_array_equal(as_logits.numpy(), (mask > 0).long().numpy())
    probability = proc.postprocess_volume((binary + 1) / 2, out["geometry"], return_probabilities=True)
    assert probability.shape == (1, 8, 8, 8) and 0 <= probability.min() and probability.max() <= 1
    with pytest.raises(ValueError, match=r"scores must be \(K, 4, 4, 4\)"):
        proc.postprocess_volume(torch.zeros(3, 8, 8, 8), out["geometry"])
    with pytest.raises(ValueError, match="missing key"):
        proc.postprocess_volume(logits, {"original_shape": [8, 8, 8]})


# -- 2D plans on volumes ---------------------------------------------------------------------------------------
def test_2d_plan_resamples_in_plane_only_and_gives_slices_along_slice_axis():
    rng = np.random.default_rng(7)
    image = rng.uniform(-200, 300, (1, 6, 5, 4)).astype(np.float32)
    label = rng.integers(0, 3, (6, 5, 4))
    proc = UNetImageProcessor(spatial_dims=2, slice_axis=1, target_spacing=[0.5, None, 0.4], channel_normalization=[CT],
                              patch_size=[12, 8], mirror_axes=[0, 1])
    out = proc.preprocess_volume(image, [1.0, 3.0, 0.8], label=label)
    assert out["geometry"]["resampled_shape"] == [12, 5, 8]  # slice axis 1 keeps its 5 slices
    normalized = (np.clip(image, -100, 200) - 40) / 80
    slices = proc.volume_to_slices(out["pixel_values"])
    assert slices.shape == (5, 1, 12, 8)
    for s in range(5):  # each slice is the in-plane (bilinear) resampling of the same slice: no mixing across slices
        expected = F.interpolate(torch.from_numpy(normalized[None, :, :, s]), size=(12, 8), mode="bilinear",
                                 align_corners=False)[0]
        torch.testing.assert_close(slices[s], expected, atol=1e-5, rtol=1e-5)
    assert proc.volume_to_slices(out["labels"]).shape == (5, 12, 8)
    torch.testing.assert_close(proc.slices_to_volume(slices), out["pixel_values"], rtol=0, atol=0)
    scores = proc.slices_to_volume(_one_hot(proc.volume_to_slices(out["labels"]), 3).permute(1, 0, 2, 3))
    assert scores.shape == (3, 12, 5, 8)
    back = proc.postprocess_volume(scores, out["geometry"])
    assert back.shape == (6, 5, 4)
    np.testing.assert_array_equal(back.numpy(), label)  # 2x upsampling in plane: nearest, then linear back
    image2d = proc(image[0, :, 2])["pixel_values"][0, 0]  # 2D images normalize with the plan's scheme too
    torch.testing.assert_close(image2d, torch.from_numpy(normalized[0, :, 2]))


# -- 3D post_process_semantic_segmentation ---------------------------------------------------------------------
def test_post_process_semantic_segmentation_of_3d_logits():
    proc = _volume_processor()
    logits = torch.randn(2, 3, 4, 5, 3, generator=torch.Generator().manual_seed(0))
    maps = proc.post_process_semantic_segmentation(logits, target_sizes=[(8, 10, 6), (4, 5, 3)])
    expected = F.interpolate(logits[:1], size=(8, 10, 6), mode="trilinear", align_corners=False)[0].argmax(0)
    assert maps[0].shape == (8, 10, 6) and torch.equal(maps[0], expected)
    assert torch.equal(maps[1], logits[1].argmax(0))
    binary = proc.post_process_semantic_segmentation(logits[:, :1])
    assert torch.equal(binary[0], (logits[0, 0] > 0).long())
    with pytest.raises(ValueError, match="must have 3 entries"):
        proc.post_process_semantic_segmentation(logits, target_sizes=[(8, 8), (8, 8)])


# -- saving, errors --------------------------------------------------------------------------------------------
def test_every_volume_field_is_saved_and_reloaded(tmp_path):
    plan = {"configuration": "3d_fullres", "spatial_dims": 3, "target_spacing": [1.0, 1.0, 2.0], "batch_size": 2}
    fields = dict(spatial_dims=3, target_spacing=[1.0, None, 2.0], channel_normalization=[CT],
                  crop_to_nonzero=True, patch_size=[16, 16, 8], image_interpolation="cubic", mirror_axes=[0, 2],
                  plan=plan, num_channels=1)
    proc = UNetImageProcessor(**fields)
    hfseg.create_model("unet", base_channels=4, depth=2, num_channels=1).save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    for name, value in fields.items():
        assert saved[name] == value, name
    for loaded in (UNetImageProcessor.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is UNetImageProcessor
        for name, value in fields.items():
            assert getattr(loaded, name) == value, name
    image = np.random.default_rng(8).uniform(0, 99, (1, 6, 5, 4))
    torch.testing.assert_close(loaded.preprocess_volume(image, [1, 1, 1])["pixel_values"],
                               proc.preprocess_volume(image, [1, 1, 1])["pixel_values"], rtol=0, atol=0)
    default = UNetImageProcessor()
    assert (default.spatial_dims, default.target_spacing, default.slice_axis, default.channel_normalization,
            default.crop_to_nonzero, default.image_interpolation) == (2, None, None, None, False, "linear")


@pytest.mark.parametrize("kwargs, message", [
    ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
    ({"spatial_dims": 3, "target_spacing": [1, 1]}, "target_spacing must be 3 values"),
    ({"spatial_dims": 3, "target_spacing": [1, 0, 1]}, "positive mm values or None"),
    ({"spatial_dims": 3, "slice_axis": 2}, "slice_axis is for 2D plans"),
    ({"slice_axis": 3}, "slice_axis must be the array axis 0, 1 or 2"),
    ({"slice_axis": 2, "target_spacing": [1, 1, 1]}, r"target_spacing\[2\] must be None"),
    ({"target_spacing": [1, 1, None]}, "needs slice_axis"),
    ({"channel_normalization": {"scheme": "ct"}}, "one dict per channel"),
    ({"channel_normalization": [{"scheme": "minmax"}]}, r"channel_normalization\[0\]: unknown scheme"),
    ({"channel_normalization": [{"scheme": "ct", "clip": [5, 1], "mean": 0, "std": 1}]}, "needs clip"),
    ({"channel_normalization": [dict(CT, std=-1)]}, "std >= 0"),
    ({"channel_normalization": [{"scheme": "zscore", "nonzero": "yes"}]}, "'nonzero' must be true or false"),
    ({"channel_normalization": [{"scheme": "zscore", "non_zero": True}]}, "unknown key"),
    ({"channel_normalization": [CT], "num_channels": 2}, "has 1 entries but num_channels is 2"),
    ({"spatial_dims": 3, "patch_size": [16, 16]}, "patch_size must have 3 entries"),
    ({"patch_size": [16, 0]}, "patch_size must hold ints >= 1"),
    ({"image_interpolation": "nearest"}, "allowed values: linear, cubic"),
    ({"spatial_dims": 3, "mirror_axes": [0, 3]}, "mirror_axes must hold ints >= 0 below 3"),
    ({"mirror_axes": [1, 1]}, "must not repeat"),
    ({"plan": [1]}, "plan must be a dict"),
    ({"plan": {"x": object()}}, "JSON-able"),
    ({"spatial_dims": 3, "do_resize": True, "size": {"height": 8, "width": 8}}, "do_resize is for 2D images"),
    ({"crop_to_nonzero": "no"}, "crop_to_nonzero must be true or false"),
])
def test_bad_volume_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetImageProcessor(**kwargs)


def test_bad_volume_inputs_are_clear_errors():
    proc = _volume_processor(num_channels=2, channel_normalization=[CT, CT])
    with pytest.raises(ValueError, match=r"has 1 channel\(s\) but 2 are expected"):
        proc.preprocess_volume(np.zeros((1, 4, 4, 4)), [1, 1, 1])
    with pytest.raises(ValueError, match="must be \\(C, X, Y, Z\\)"):
        proc.preprocess_volume(np.zeros((4, 4)), [1, 1, 1])
    with pytest.raises(ValueError, match="spacing must be 3 positive values"):
        proc.preprocess_volume(np.zeros((2, 4, 4, 4)), [1, 1])
    with pytest.raises(ValueError, match="label has shape"):
        proc.preprocess_volume(np.zeros((2, 4, 4, 4)), [1, 1, 1], label=np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="integer class indices"):
        proc.preprocess_volume(np.zeros((2, 4, 4, 4)), [1, 1, 1], label=np.full((4, 4, 4), 0.5))
    with pytest.raises(ValueError, match="but channel_normalization has 1 entries"):
        _volume_processor(channel_normalization=[CT]).preprocess_volume(np.zeros((2, 4, 4, 4)), [1, 1, 1])
    with pytest.raises(ValueError, match="call preprocess_volume"):
        proc(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="needs a volume processor"):
        UNetImageProcessor().preprocess_volume(np.zeros((4, 4, 4)), [1, 1, 1])
    with pytest.raises(ValueError, match="no slice_axis"):
        proc.volume_to_slices(torch.zeros(2, 4, 4, 4))


def test_volumes_of_any_dtype_and_byte_order_give_the_same_result():
    values = np.random.default_rng(9).integers(0, 3000, (7, 6, 5))
    proc = _volume_processor(target_spacing=[2, 2, 2])
    expected = proc.preprocess_volume(values.astype(np.float32), [1, 1, 1])["pixel_values"]
    for volume in (values.astype(">i2"), values.astype(np.uint16)[::-1][::-1], torch.from_numpy(values)[None]):
        torch.testing.assert_close(proc.preprocess_volume(volume, [1, 1, 1])["pixel_values"], expected,
                                   rtol=0, atol=0)
