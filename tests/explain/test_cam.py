"""GradCAM and relatives: numbers against a hand computation, region semantics, every family and method."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM as LibraryEigenCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg.explain import CAM_METHODS, compute_cam
from hfseg.explain.cam import LogitsModel, default_segmentation_target, first_component
from hfseg.models.classifiers import create_classifier
from tests.conftest import TINY_PRESET_OVERRIDES
from tests.models.test_zoo import TINY_FAMILIES


def tiny_unet(**overrides):
    torch.manual_seed(0)
    kwargs = {**dict(num_labels=3, num_channels=1, base_channels=4, depth=3), **overrides}
    return hfseg.create_model("attention-unet", **kwargs).eval()


def timm_classifier(architecture, **model_args):
    torch.manual_seed(0)
    config = TimmWrapperConfig(architecture=architecture, num_labels=3, model_args={"in_chans": 1, **model_args})
    return TimmWrapperForImageClassification(config).eval()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def resnet():
    return timm_classifier("resnet18")


def normalized(cam):
    """pytorch-grad-cam's `scale_cam_image` without resizing."""
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


def hand_gradcam(model, x, layer, score_fn):
    """GradCAM by hand: hooks on `layer`, weights = spatial mean of the gradients, relu(sum w * A), min-max
    normalised, upsampled bilinearly to the input, normalised again."""
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
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(1))[0].detach().numpy()
    cam = normalized(cam)
    up = F.interpolate(torch.from_numpy(cam)[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    return normalized(up[0, 0].numpy())


def test_gradcam_matches_hand_computation_unet(unet):
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        pred = unet(pixel_values=x).logits.argmax(1)[0]
    target = default_segmentation_target(pred, 3)
    region = (pred == target).float()
    assert 0 < region.sum() < region.numel()
    cam = compute_cam(unet, x)  # default target and region: the largest predicted foreground class
    expected = hand_gradcam(unet, x, unet.unet.decoder.blocks[-1], lambda logits: (logits[0, target] * region).sum())
    assert cam.shape == (32, 32) and cam.dtype == np.float32
    np.testing.assert_allclose(cam, expected, atol=1e-5)
    # A class's default region is its predicted mask.
    other = [c for c in range(3) if c != target and (pred == c).any()][0]
    np.testing.assert_allclose(compute_cam(unet, x, target=other),
                               compute_cam(unet, x, target=other, mask=(pred == other).numpy()), atol=1e-6)


def test_gradcam_matches_hand_computation_classifier(resnet):
    x = torch.randn(1, 1, 96, 96)  # a 3x3 map in layer4
    with torch.no_grad():
        predicted = int(resnet(pixel_values=x).logits.argmax())
    for target in (None, (predicted + 1) % 3):
        cls = predicted if target is None else target
        expected = hand_gradcam(resnet, x, resnet.timm_model.layer4[-1], lambda logits, cls=cls: logits[0, cls])
        np.testing.assert_allclose(compute_cam(resnet, x, target=target), expected, atol=1e-4)


class HalfFeatures(nn.Module):
    """Two channels relu(x): channel 0 kept on the left half of the image only, channel 1 on the right half."""

    def __init__(self, size: int) -> None:
        super().__init__()
        left = torch.zeros(size, size)
        left[:, : size // 2] = 1
        self.register_buffer("left", left)

    def forward(self, x):
        return torch.cat([torch.relu(x) * self.left, torch.relu(x) * (1 - self.left)], 1)


class HalfModel(nn.Module):
    """Class 1's logit reads feature channel 0 on the left half and channel 1 on the right half, so its logits on
    one half depend on that half of the image only; class 0's logit is 0."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.features = HalfFeatures(size)
        self.dummy = nn.Parameter(torch.zeros(()))  # pytorch-grad-cam reads the device from a parameter

    def forward(self, pixel_values):
        a = self.features(pixel_values)
        class1 = a[:, 0] * self.features.left + a[:, 1] * (1 - self.features.left) + self.dummy
        return SemanticSegmenterOutput(logits=torch.stack([torch.zeros_like(class1), class1], 1))


def test_region_semantics_cam_mass_in_the_region_half():
    model = HalfModel(16)
    x = torch.rand(1, 1, 16, 16) + 0.1
    left = np.zeros((16, 16), dtype=bool)
    left[:, :8] = True
    cam_left = compute_cam(model, x, target=1, mask=left, target_layers=["features"])
    cam_right = compute_cam(model, x, target=1, mask=~left, target_layers=["features"])
    assert cam_left[:, :8].sum() > 0 and cam_left[:, 8:].max() == 0
    assert cam_right[:, 8:].sum() > 0 and cam_right[:, :8].max() == 0
    # Inside its half the map is the image (weight 1/2 times relu(x)) over its maximum (the minimum is 0, right).
    half = x[0, 0, :, :8].numpy()
    np.testing.assert_allclose(cam_left[:, :8], half / half.max(), atol=1e-5)
    # A mask given as a tensor at another size is resized (nearest) to the input.
    np.testing.assert_allclose(compute_cam(model, x, target=1, mask=torch.from_numpy(left[::2, ::2].copy()),
                                           target_layers=["features"]), cam_left, atol=1e-6)


def test_cam_of_an_unpadded_size_stays_aligned(unet):
    # 30x30 is padded to 32x32 inside the U-Net; the CAM equals the CAM of the explicitly padded input, cropped.
    x = torch.randn(1, 1, 30, 30)
    region = np.zeros((30, 30), dtype=bool)
    region[5:20, 3:25] = True
    cam = compute_cam(unet, x, target=1, mask=region)
    padded = compute_cam(unet, F.pad(x, (0, 2, 0, 2)), target=1, mask=np.pad(region, ((0, 2), (0, 2))))
    assert cam.shape == (30, 30)
    np.testing.assert_allclose(cam, normalized(padded[:30, :30]), atol=1e-5)


def test_binary_model_classes_are_minus_and_plus_logit():
    model = tiny_unet(num_labels=1)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        logit = model(pixel_values=x).logits[0, 0]
    wrapped = LogitsModel(model)(x)
    torch.testing.assert_close(wrapped[0], torch.stack([-logit, logit]))
    region = np.zeros((32, 32), dtype=bool)
    region[4:20, 6:28] = True
    expected = hand_gradcam(model, x, model.unet.decoder.blocks[-1],
                            lambda logits: (logits[0, 0] * torch.from_numpy(region)).sum())
    np.testing.assert_allclose(compute_cam(model, x, target=1, mask=region), expected, atol=1e-5)
    with pytest.raises(ValueError, match="not a class"):
        compute_cam(model, x, target=2)


def test_first_component_equals_library_projection_with_thin_svd(monkeypatch):
    activations = np.random.default_rng(0).normal(size=(2, 6, 12, 10)).astype(np.float32)
    ours = first_component(activations)
    assert ours.shape == (2, 12, 10) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, get_2d_projection(activations), atol=1e-5)
    calls = []
    svd = np.linalg.svd

    def spy(a, *args, **kwargs):
        calls.append((a.shape, kwargs.get("full_matrices", True)))
        return svd(a, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "svd", spy)
    first_component(activations)
    assert calls == [((120, 6), False)] * 2


def test_eigencam_equals_library_eigencam(unet):
    x = torch.randn(1, 1, 16, 16)
    ours = compute_cam(unet, x, method="eigencam")
    layer = unet.unet.decoder.blocks[-1].stage  # same activation as the block's first output
    library = LibraryEigenCAM(LogitsModel(unet), [layer])
    try:
        expected = library(input_tensor=x, targets=[SemanticSegmentationTarget(1, np.ones((16, 16), np.float32))])[0]
    finally:
        library.activations_and_grads.release()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_bad_arguments(unet, resnet):
    x = torch.randn(1, 1, 32, 32)
    with pytest.raises(ValueError, match="gradcam\\+\\+"):
        compute_cam(unet, x, method="nope")
    with pytest.raises(ValueError, match="one image"):
        compute_cam(unet, torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="classifier"):
        compute_cam(resnet, torch.randn(1, 1, 64, 64), mask=np.ones((64, 64)))
    with pytest.raises(ValueError, match="\\(h, w\\)"):
        compute_cam(unet, x, target=1, mask=np.ones((2, 3, 32, 32)))
    half = HalfModel(16)
    with pytest.warns(UserWarning, match="predicted nowhere"):  # class 1 wins everywhere on a positive image
        cam = compute_cam(half, torch.rand(1, 1, 16, 16) + 0.1, target=0, target_layers=["features"])
    assert cam.shape == (16, 16)


def test_parameters_and_mode_are_restored(unet):
    unet.train()
    unet.head.weight.requires_grad_(True)
    try:
        compute_cam(unet, torch.randn(1, 1, 32, 32))
        assert unet.training
        assert all(p.requires_grad for p in unet.parameters())
        assert all(p.grad is None for p in unet.parameters())
        assert not unet._forward_hooks and not unet.unet.decoder.blocks[-1]._forward_hooks
    finally:
        unet.eval()


def _family_models():
    models = {f: (lambda f=f: hfseg.create_model(f, num_labels=3, num_channels=1, **TINY_FAMILIES[f]))
              for f in TINY_FAMILIES}
    models.update({p: (lambda p=p: hfseg.create_model(p, num_labels=3, num_channels=1, **TINY_PRESET_OVERRIDES[p]))
                   for p in TINY_PRESET_OVERRIDES})
    models.update({
        "resnet18": lambda: timm_classifier("resnet18"),
        "vgg16_bn": lambda: timm_classifier("vgg16_bn", mlp_ratio=1 / 64),
        "vit": lambda: timm_classifier("vit_tiny_patch16_224", img_size=64),
        "small-cnn": lambda: create_classifier("small-cnn", num_labels=3, num_channels=1, hidden_sizes=[4, 8, 8]),
    })
    return models


FAMILY_MODELS = _family_models()
# Every method on the transformers families, one U-Net and the classifiers; GradCAM on the other U-Net presets.
ALL_METHODS = [*TINY_FAMILIES, "attention-unet", "resnet18", "vit", "small-cnn"]


@pytest.mark.parametrize("name", list(FAMILY_MODELS))
def test_every_family_and_method_gives_a_finite_map(name):
    torch.manual_seed(0)
    model = FAMILY_MODELS[name]().eval()
    size = 32 if name in TINY_PRESET_OVERRIDES and name != "timm-unet" else 64
    x = torch.randn(1, 1, size, size)
    methods = list(CAM_METHODS) if name in ALL_METHODS else ["gradcam"]
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class predicted nowhere
            cam = compute_cam(model, x, target=1, method=method)
        assert cam.shape == (size, size) and cam.dtype == np.float32, (name, method)
        assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1, (name, method)
        if cam.max() == 0:
            # The ReLU of a random network's map for one class may be zero everywhere (it depends on the weights
            # the installed torch draws); a working method gives a positive map for some class.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peaks = [compute_cam(model, x, target=t, method=method).max() for t in (0, 2)]
            assert max(peaks) > 0, (name, method)
