"""3D/2D patch augmentation: config validation, alignment of image and label, each op against its definition
(scipy's affine_transform for rotation and scaling), integer labels, determinism without global RNG."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from hfseg.data.augment3d import VolumeAugmentConfig, build_volume_augmentation, crop_padded

NONE = VolumeAugmentConfig.none().to_dict()


def _only(**options) -> VolumeAugmentConfig:
    return VolumeAugmentConfig.from_dict({**NONE, **options})


def _smooth(shape, seed=0, channels=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 2) for _ in range(channels)]).astype(np.float32)


def _blob(shape) -> tuple[np.ndarray, np.ndarray]:
    """An off-centre ellipsoid-ish bump and its label (image > 0.5), so misalignment shows as a Dice drop."""
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    centre = [0.45 * s for s in shape]
    radius = [0.22 * s for s in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius))
    image = np.exp(-r2 * math.log(2))[None].astype(np.float32)  # 0.5 on the r2 = 1 surface
    return image, (image[0] > 0.5).astype(np.uint8)


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask).double().mean(0)


def _run(config, image, label, patch, start, seed=0, mirror_axes=()):
    augment = build_volume_augmentation(config, patch, mirror_axes)
    augment.set_random_state(seed=seed)
    return augment({"image": image, "label": label, "patch_start": start}), augment


def test_config_defaults_are_nnunet_and_validation_names_the_valid_options():
    config = VolumeAugmentConfig()
    assert (config.rotation_p, config.scale_p, config.scale_range, config.elastic_p) == (0.2, 0.2, (0.7, 1.4), 0.0)
    assert (config.noise_p, config.noise_variance, config.blur_p, config.blur_sigma) == (0.1, 0.1, 0.2, (0.5, 1.0))
    assert (config.brightness_p, config.contrast_p, config.lowres_p, config.lowres_zoom) == (0.15, 0.15, 0.25,
                                                                                             (0.5, 1.0))
    assert (config.gamma_p, config.gamma_inverted_p, config.gamma_range, config.mirror_p) == (0.3, 0.1, (0.7, 1.5),
                                                                                              0.5)
    assert VolumeAugmentConfig.from_dict(config.to_dict()) == config == VolumeAugmentConfig.from_dict(None)
    assert VolumeAugmentConfig.from_dict({"scale_range": [0.8, 1.2]}).scale_range == (0.8, 1.2)
    with pytest.raises(ValueError, match=r"Unknown volume augmentation option\(s\) 'rotate'.*valid: rotation_p"):
        VolumeAugmentConfig.from_dict({"rotate": 0.2})
    for bad in ({"noise_p": 1.5}, {"gamma_range": (1.5, 0.7)}, {"scale_range": (0.0, 1.0)},
                {"lowres_zoom": (0.5, 2.0)}, {"rotation_degrees": -5}, {"blur_sigma": 1.0}):
        with pytest.raises(ValueError):
            VolumeAugmentConfig.from_dict(bad)
    with pytest.raises(ValueError, match="mapping"):
        VolumeAugmentConfig.from_dict([("noise_p", 0.1)])
    with pytest.raises(ValueError, match="one per rotation axis"):
        build_volume_augmentation(VolumeAugmentConfig(rotation_degrees=(30.0, 30.0)), (8, 8, 8))
    with pytest.raises(ValueError, match="mirror_axes"):
        build_volume_augmentation(VolumeAugmentConfig(), (8, 8), mirror_axes=(2,))


def test_none_is_an_exact_crop_with_zero_padding():
    image, label = _smooth((10, 9, 8)), np.random.default_rng(1).integers(0, 3, (10, 9, 8)).astype(np.uint8)
    out, _ = _run(VolumeAugmentConfig.none(), image, label, (6, 6, 6), (-2, 5, 1), mirror_axes=(0, 1, 2))
    assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.int64
    assert out["image"].shape == (1, 6, 6, 6) and out["label"].shape == (6, 6, 6)
    np.testing.assert_array_equal(out["image"][:, 2:, :4].numpy(), image[:, :4, 5:9, 1:7])
    assert out["image"][:, :2].abs().sum() == 0 and out["image"][:, :, 4:].abs().sum() == 0
    np.testing.assert_array_equal(out["label"][2:, :4].numpy(), label[:4, 5:9, 1:7])
    assert out["label"][:2].sum() == 0 and out["label"][:, 4:].sum() == 0
    np.testing.assert_array_equal(crop_padded(label, (20, 0, 0), (2, 2, 2)), np.zeros((2, 2, 2)))


@pytest.mark.parametrize("dims", [3, 2])
def test_rotation_and_scaling_match_scipy_about_the_patch_centre(dims):
    image = _smooth((30, 34, 28))
    image = image if dims == 3 else image[..., 7]
    patch, start = ((12, 10, 14), (6, 9, 4)) if dims == 3 else ((12, 10), (6, 9))
    for seed in range(2):
        out, augment = _run(_only(rotation_p=1.0, scale_p=1.0), image, np.zeros(image.shape[1:], np.uint8), patch,
                            start, seed=seed)
        matrix = augment.spatial.matrix[:-1, :-1]
        assert not np.allclose(matrix, np.eye(dims))
        centre_out = (np.array(patch) - 1) / 2
        centre_in = np.array(start) + centre_out
        reference = ndimage.affine_transform(image[0], matrix, offset=centre_in - matrix @ centre_out,
                                             output_shape=patch, order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(out["image"][0].numpy(), reference, atol=1e-5)


def test_drawn_rotation_and_scale_stay_in_their_ranges():
    _, augment = _run(_only(rotation_p=1.0, scale_p=1.0), *_blob((12, 12)), (8, 8), (2, 2), seed=3)
    matrix = augment.spatial.matrix[:2, :2]
    scale = math.sqrt(abs(np.linalg.det(matrix)))
    assert 0.7 <= scale <= 1.4
    np.testing.assert_allclose(matrix @ matrix.T, scale ** 2 * np.eye(2), atol=1e-9)  # isotropic: rotation x scale


@pytest.mark.parametrize("dims", [3, 2])
@pytest.mark.parametrize("options", [dict(rotation_p=1.0, scale_p=1.0), dict(elastic_p=1.0),
                                     dict(rotation_p=1.0, scale_p=1.0, elastic_p=1.0, mirror_p=1.0)],
                         ids=["affine", "elastic", "all-spatial"])
def test_spatial_transforms_keep_image_and_label_aligned(dims, options):
    shape = (24, 24, 24) if dims == 3 else (40, 40)
    patch = (16, 16, 16) if dims == 3 else (28, 28)
    image, label = _blob(shape)
    if "elastic_p" in options:  # a visible but bounded deformation at this size
        options = {**options, "elastic_sigma": (3.0, 4.0), "elastic_magnitude": (30.0, 60.0),
                   "elastic_spacing_2d": 8.0, "elastic_magnitude_2d": (1.0, 2.0)}
    start = tuple((s - p) // 2 for s, p in zip(shape, patch))
    plain, _ = _run(VolumeAugmentConfig.none(), image, label, patch, start)
    changed = 0
    for seed in range(2):
        out, _ = _run(_only(**options), image, label, patch, start, seed=seed, mirror_axes=tuple(range(dims)))
        assert out["label"].sum() > 20
        # Nearest vs thresholded bilinear differ on the surface only; a one-voxel shift moves the centroid by 1.
        assert _dice(out["label"].bool(), out["image"][0] > 0.5) > 0.85
        assert (_centroid(out["label"].bool()) - _centroid(out["image"][0] > 0.5)).norm() < 0.5
        changed += not torch.equal(out["label"], plain["label"])
    assert changed, "the spatial transform never changed the patch"


@pytest.mark.parametrize("dims", [3, 2])
def test_labels_stay_in_the_original_class_set(dims):
    rng = np.random.default_rng(0)
    shape = (20, 20, 20) if dims == 3 else (32, 32)
    label = ndimage.zoom(rng.choice(np.array([0, 2, 5], np.uint8), size=(5,) * dims), 4, order=0)
    image = _smooth(shape, channels=2)
    config = VolumeAugmentConfig(rotation_p=1.0, scale_p=1.0, elastic_p=1.0, elastic_sigma=(3.0, 4.0),
                                 elastic_magnitude=(20.0, 40.0), elastic_spacing_2d=8.0)
    for seed in range(2):
        out, _ = _run(config, image, label, (12,) * dims, (4,) * dims, seed=seed, mirror_axes=(0,))
        assert out["label"].dtype == torch.int64 and out["image"].shape == (2,) + (12,) * dims
        assert set(out["label"].unique().tolist()) <= {0, 2, 5}


def test_flip_mirrors_image_and_label_together():
    image, label = _smooth((8, 9, 10)), np.random.default_rng(0).integers(0, 4, (8, 9, 10)).astype(np.uint8)
    out, _ = _run(_only(mirror_p=1.0), image, label, (8, 9, 10), (0, 0, 0), mirror_axes=(1, 2))
    np.testing.assert_array_equal(out["image"].numpy(), image[:, :, ::-1, ::-1])
    np.testing.assert_array_equal(out["label"].numpy(), label[:, ::-1, ::-1])


def test_intensity_ops_follow_their_definitions_and_leave_the_label():
    image = _smooth((20, 20, 20), channels=2)
    image[1] = image[1] * 3 + 5
    label = (image[0] > 0).astype(np.uint8)
    inner = (slice(4, 16),) * 3
    x = torch.from_numpy(image[(slice(None),) + inner])

    def run(**options):
        out, _ = _run(_only(**options), image, label, (12, 12, 12), (4, 4, 4), seed=1)
        assert torch.equal(out["label"], torch.from_numpy(label[inner]).long())
        assert not torch.allclose(out["image"], x)
        return out["image"].double()

    ratio = run(brightness_p=1.0) / x.double()  # one factor per channel in [0.75, 1.25]
    for channel in ratio:
        assert 0.75 <= channel.mean() <= 1.25 and torch.allclose(channel, channel.mean(), atol=1e-5)
    y = run(contrast_p=1.0)  # about the channel mean, clipped to the channel's range
    for c in range(2):
        assert y[c].min() >= x[c].min() - 1e-5 and y[c].max() <= x[c].max() + 1e-5
        inside = (y[c] > x[c].min() + 1e-4) & (y[c] < x[c].max() - 1e-4)
        slope = (y[c][inside] - y[c][inside].mean()) / (x[c].double()[inside] - x[c].double()[inside].mean())
        assert 0.7 < float(torch.median(slope)) < 1.3
    for options in (dict(gamma_p=1.0), dict(gamma_inverted_p=1.0)):  # gamma keeps the mean and std
        y = run(**options)
        assert torch.allclose(y.mean(), x.double().mean(), atol=1e-4)
        assert torch.allclose(y.std(), x.double().std(), rtol=1e-3)
    noise = run(noise_p=1.0) - x.double()
    assert 0 < noise.std() <= math.sqrt(0.1) * 1.1 and abs(noise.mean()) < 0.05
    smooth = run(blur_p=1.0)  # a blur lowers the high-frequency energy
    assert (smooth.diff(dim=1) ** 2).mean() < (x.double().diff(dim=1) ** 2).mean()
    flat, _ = _run(_only(blur_p=1.0), np.full((1, 16, 16, 16), 5.0, np.float32), np.zeros((16, 16, 16), np.uint8),
                   (8, 8, 8), (4, 4, 4))  # the patch's faces see real context, not zero padding
    np.testing.assert_allclose(flat["image"].numpy(), 5.0, atol=1e-3)  # (zero padding: ~3 on the faces)
    low = run(lowres_p=1.0, lowres_zoom=(0.5, 0.5))
    assert low.shape == x.shape and torch.allclose(low.mean(), x.double().mean(), atol=0.5)


def test_the_same_seed_gives_the_same_patch_whatever_the_global_rngs():
    image, label = _blob((20, 20, 20))
    results = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)
        torch.manual_seed(global_seed)
        out, _ = _run(VolumeAugmentConfig(rotation_p=0.5, scale_p=0.5, noise_p=0.5), image, label, (12, 12, 12),
                      (3, 3, 3), seed=42, mirror_axes=(0, 1, 2))
        results.append(out)
    assert torch.equal(results[0]["image"], results[1]["image"])
    assert torch.equal(results[0]["label"], results[1]["label"])
    other, _ = _run(VolumeAugmentConfig(rotation_p=0.5, scale_p=0.5, noise_p=0.5), image, label, (12, 12, 12),
                    (3, 3, 3), seed=43, mirror_axes=(0, 1, 2))
    assert not torch.equal(other["image"], results[0]["image"])
