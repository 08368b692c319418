"""GradCAM and relatives on 3-D U-Nets: numbers against a hand computation, where the map concentrates, the methods
that run on volumes, and the refusals."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_grad_cam as grad_cam
import torch
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from scipy import ndimage
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg.explain import CAM_METHODS, compute_cam, default_target_layers, explain, volume_methods
from hfseg.explain.cam import default_segmentation_target, first_component, gradcam_plusplus_weights, xgradcam_weights


def tiny_unet3d(**overrides):
    torch.manual_seed(0)
    kwargs = {**dict(spatial_dims=3, hidden_sizes=[4, 8, 16], num_channels=1, num_labels=3), **overrides}
    return hfseg.create_model("attention-unet", **kwargs).eval()


@pytest.fixture(scope="module")
def unet3d():
    return tiny_unet3d()


def normalized(cam):
    """pytorch-grad-cam's min-max scaling."""
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


def hand_gradcam3d(model, x, layer, score_fn):
    """GradCAM by hand: hooks on `layer`, weights = mean of the gradients over X, Y, Z, relu(sum w * A), min-max
    normalised, upsampled linearly with voxel centres aligned (scipy's zoom, order 1, grid_mode) to the input,
    normalised again."""
    store = {}

    def hook(module, args, output):
        tensor = output[0] if isinstance(output, tuple) else output
        tensor.retain_grad()
        store["a"] = tensor

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(pixel_values=x).logits
        model.zero_grad()
        score_fn(logits).backward()
    finally:
        handle.remove()
    activation, grad = store["a"], store["a"].grad
    weights = grad.mean(dim=(2, 3, 4), keepdim=True)
    cam = normalized(torch.relu((weights * activation).sum(1))[0].detach().numpy())
    factors = [n / m for n, m in zip(x.shape[2:], cam.shape)]
    return normalized(ndimage.zoom(cam, factors, order=1, grid_mode=True, mode="nearest"))


def test_volume_gradcam_matches_hand_computation(unet3d):
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        pred = unet3d(pixel_values=x).logits.argmax(1)[0]
    target = default_segmentation_target(pred, 3)
    region = (pred == target).float()
    assert 0 < region.sum() < region.numel()

    def score(logits):
        return (logits[0, target] * region).sum()

    cam = compute_cam(unet3d, x[0])  # (C, X, Y, Z); default target, region and layer (the last decoder block)
    assert cam.shape == (16, 16, 16) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0.99
    np.testing.assert_allclose(cam, hand_gradcam3d(unet3d, x, unet3d.unet.decoder.blocks[-1], score), atol=1e-5)
    np.testing.assert_allclose(compute_cam(unet3d, x), cam, atol=1e-6)  # (1, C, X, Y, Z) too
    # A coarse layer (1/4 of the input): its 4x4x4 map is upsampled linearly, voxel centres aligned.
    coarse = compute_cam(unet3d, x, target=target, mask=region.numpy(), target_layers="unet.decoder.blocks.0")
    assert coarse.shape == (16, 16, 16)
    np.testing.assert_allclose(coarse, hand_gradcam3d(unet3d, x, unet3d.unet.decoder.blocks[0], score), atol=1e-5)


class OctantFeatures(nn.Module):
    """Two channels relu(x): channel 0 kept in the first octant (every axis below size / 2), channel 1 elsewhere."""

    def __init__(self, size: int) -> None:
        super().__init__()
        octant = torch.zeros(size, size, size)
        octant[: size // 2, : size // 2, : size // 2] = 1
        self.register_buffer("octant", octant)

    def forward(self, x):
        return torch.cat([torch.relu(x) * self.octant, torch.relu(x) * (1 - self.octant)], 1)


class OctantModel(nn.Module):
    """A 3-D model whose class-1 logit reads feature channel 0 (the first octant of the input only) and whose
    class-0 logit reads channel 1 (the rest)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(spatial_dims=3, num_labels=2)
        self.features = OctantFeatures(size)
        self.dummy = nn.Parameter(torch.zeros(()))  # pytorch-grad-cam reads the device from a parameter

    def forward(self, pixel_values):
        a = self.features(pixel_values)
        octant = self.features.octant
        logits = torch.stack([a[:, 1] * (1 - octant), a[:, 0] * octant + self.dummy], 1)
        return SemanticSegmenterOutput(logits=logits)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam"])
def test_volume_cam_concentrates_on_the_octant_the_class_reads(method):
    model = OctantModel(16)
    x = torch.rand(1, 16, 16, 16) + 0.1  # positive: class 1 is predicted in the octant, class 0 elsewhere
    octant = model.features.octant.numpy().astype(bool)
    everywhere = np.ones((16, 16, 16), dtype=bool)
    cam1 = compute_cam(model, x, method=method, target_layers="features")  # default: class 1 over its prediction
    assert cam1.shape == (16, 16, 16)
    assert cam1[octant].sum() > 0 and cam1[~octant].max() == 0
    # Even summed over the whole volume, class 1 depends on the octant only; class 0 on the rest only.
    np.testing.assert_allclose(compute_cam(model, x, target=1, mask=everywhere, method=method,
                                           target_layers="features"), cam1, atol=1e-6)
    cam0 = compute_cam(model, x, target=0, mask=everywhere, method=method, target_layers="features")
    assert cam0[~octant].sum() > 0 and cam0[octant].max() == 0
    if method == "gradcam":  # weight 1/8 on relu(x) in the octant: the map is x there, over its maximum
        inside = x[0].numpy()[octant]
        np.testing.assert_allclose(cam1[octant], inside / inside.max(), atol=1e-5)


def test_every_method_runs_on_a_volume(unet3d):
    assert volume_methods() == list(CAM_METHODS)
    x = torch.randn(1, 1, 8, 8, 8)
    for method in CAM_METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class predicted nowhere
            cam = compute_cam(unet3d, x, target=1, method=method)
            # A random network's map for one class may be zero everywhere; a working method is positive for some.
            peak = cam.max() or compute_cam(unet3d, x, target=2, method=method).max()
        assert cam.shape == (8, 8, 8) and cam.dtype == np.float32, method
        assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1, method
        assert peak > 0, method


def test_nd_weights_equal_the_library_weights_on_flattened_maps():
    # GradCAM++ and XGradCAM weights depend on spatial sums only, so a (B, C, X, Y, Z) volume flattened to the
    # (B, C, X, Y * Z) image gets the same weights from pytorch-grad-cam's 2-D code (which every version has).
    rng = np.random.default_rng(0)
    activations = np.abs(rng.normal(size=(2, 3, 4, 5, 6))).astype(np.float32)
    grads = rng.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    flat_a, flat_g = activations.reshape(2, 3, 4, 30), grads.reshape(2, 3, 4, 30)
    library_pp = grad_cam.GradCAMPlusPlus.get_cam_weights(None, None, None, None, flat_a, flat_g)
    library_x = grad_cam.XGradCAM.get_cam_weights(None, None, None, None, flat_a, flat_g)
    np.testing.assert_allclose(gradcam_plusplus_weights(activations, grads), library_pp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(xgradcam_weights(activations, grads), library_x, rtol=1e-5, atol=1e-7)
    # The first principal component of volume activations, as the library's (full-SVD) projection.
    np.testing.assert_allclose(first_component(activations), get_2d_projection(activations), atol=1e-5)


def test_anisotropic_strides_pad_each_axis_as_the_model_does():
    model = tiny_unet3d(strides=[[1, 1, 1], [2, 2, 1], [2, 2, 2]])  # stride (4, 4, 2) per axis
    assert model.unet.stride_per_axis == (4, 4, 2)
    x = torch.randn(1, 1, 14, 16, 13)  # padded to (16, 16, 14) inside the model
    region = np.zeros((14, 16, 13), dtype=bool)
    region[2:10, 3:12, 4:11] = True
    cam = compute_cam(model, x, target=1, mask=region)
    # By hand on the input padded as the model pads it (an lcm stride of 4 everywhere would pad z to 16).
    padded_region = torch.from_numpy(np.pad(region, ((0, 2), (0, 0), (0, 1)))).float()
    expected = hand_gradcam3d(model, torch.nn.functional.pad(x, (0, 1, 0, 0, 0, 2)), model.unet.decoder.blocks[-1],
                              lambda logits: (logits[0, 1] * padded_region).sum())
    assert cam.shape == (14, 16, 13)
    np.testing.assert_allclose(cam, normalized(expected[:14, :16, :13]), atol=1e-5)


def test_refusals(unet3d, monkeypatch):
    x = torch.randn(1, 1, 8, 8, 8)
    # A method that is not marked for volumes (pytorch-grad-cam's ScoreCAM upsamples with a 2-D layer).
    monkeypatch.setitem(CAM_METHODS, "scorecam", grad_cam.ScoreCAM)
    with pytest.raises(ValueError, match="'scorecam' works on 2D images only") as error:
        compute_cam(unet3d, x, method="scorecam")
    assert all(name in str(error.value) for name in volume_methods()) and "scorecam" not in volume_methods()
    with pytest.raises(ValueError, match="one volume, \\(1, C, X, Y, Z\\) or \\(C, X, Y, Z\\)"):
        compute_cam(unet3d, torch.randn(8, 8, 8))
    with pytest.raises(ValueError, match="one volume"):
        compute_cam(unet3d, torch.randn(2, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="\\(X, Y, Z\\) region"):
        compute_cam(unet3d, x, target=1, mask=np.ones((8, 8)))
    unet2d = hfseg.create_model("attention-unet", num_labels=3, num_channels=1, hidden_sizes=[4, 8, 16]).eval()
    with pytest.raises(ValueError, match="needs a 3-D model"):
        compute_cam(unet2d, x)
    with pytest.raises(ValueError, match="compute_cam"):
        explain(unet3d, np.zeros((8, 8, 8), dtype=np.float32))


def test_default_layer_of_a_plain_3d_model_is_its_last_feature_conv():
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 1))
    model.config = SimpleNamespace(spatial_dims=3, num_labels=2)
    assert default_target_layers(model) == ["0"]
