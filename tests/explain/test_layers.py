"""Target layers: automatic choice per family, lookup by name, token folding and the tap on tuple outputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

import hfseg
from hfseg.explain import compute_cam, default_target_layers, fold_tokens, resolve_target_layers
from hfseg.explain.layers import LayerTap, num_prefix_tokens, tap_layers, token_grid
from hfseg.models.classifiers import create_classifier
from tests.models.test_zoo import TINY_FAMILIES


def family(name):
    torch.manual_seed(0)
    return hfseg.create_model(name, num_labels=3, num_channels=1, **TINY_FAMILIES[name]).eval()


def module_list(model, prefix, length):
    """Name of the first `nn.ModuleList` of `length` under `prefix` (transformers renames its internals between
    releases: Segformer's stages are `segformer.stages` from 5.9, `segformer.encoder.block` before)."""
    return next(name for name, module in model.named_modules()
                if name.startswith(prefix) and isinstance(module, nn.ModuleList) and len(module) == length)


def nth_module(model, class_name, index):
    """Name of the `index`-th module of class `class_name` (e.g. the third `BeitLayer`), whatever its path."""
    return [name for name, module in model.named_modules() if type(module).__name__ == class_name][index]


def timm_classifier(architecture, **model_args):
    torch.manual_seed(0)
    config = TimmWrapperConfig(architecture=architecture, num_labels=3, model_args={"in_chans": 1, **model_args})
    return TimmWrapperForImageClassification(config).eval()


@pytest.mark.parametrize("name, expected", [
    ("segformer-b0", "decode_head.linear_fuse"),
    ("upernet-convnext-tiny", "decode_head.fpn_bottleneck"),
    ("upernet-swin-tiny", "decode_head.fpn_bottleneck"),
    ("beit-base", "decode_head.fpn_bottleneck"),
    ("dpt-large", "neck.fusion_stage.layers.3"),
])
def test_default_layers_of_the_transformers_families(name, expected):
    assert default_target_layers(family(name)) == [expected]


def test_default_layer_of_a_unet_is_the_finest_decoder_block():
    for preset, kwargs in [("attention-unet", dict(base_channels=4, depth=3)), ("timm-unet", dict(encoder="resnet18"))]:
        model = hfseg.create_model(preset, num_labels=3, num_channels=1, **kwargs)
        blocks = model.unet.decoder.blocks
        assert default_target_layers(model) == [f"unet.decoder.blocks.{len(blocks) - 1}"]
        assert blocks[-1].stage is not None and model.head.in_channels == model.unet.decoder.out_channels


def test_default_layers_of_the_classifiers():
    assert default_target_layers(timm_classifier("resnet18")) == ["timm_model.layer4.1"]
    vit = timm_classifier("vit_tiny_patch16_224", img_size=64, depth=2)
    assert default_target_layers(vit) == ["timm_model.blocks.1.norm1"]
    vgg = timm_classifier("vgg16_bn", mlp_ratio=1 / 64)
    (name,) = default_target_layers(vgg)
    features = list(vgg.timm_model.features)
    index = int(name.rsplit(".", 1)[1])
    # The ReLU of the last conv block (conv, BN, ReLU), right before the final max-pool.
    assert name.startswith("timm_model.features.") and isinstance(features[index], nn.ReLU)
    assert isinstance(features[index - 2], nn.Conv2d) and isinstance(features[index - 1], nn.BatchNorm2d)
    assert [type(m) for m in features[index + 1:]] == [nn.MaxPool2d]
    assert not any(isinstance(m, nn.Conv2d) for m in features[index:])
    cnn = create_classifier("small-cnn", num_labels=3, num_channels=1, hidden_sizes=[4, 8])
    convs = [n for n, m in cnn.named_modules() if isinstance(m, nn.Conv2d)]
    assert default_target_layers(cnn) == [convs[-1]]


def test_default_layer_of_any_other_model_is_the_last_feature_conv():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 1))
    assert default_target_layers(model) == ["4"]  # no config: the last conv
    model.config = type("Config", (), {"num_labels": 2})()
    assert default_target_layers(model) == ["2"]  # the classifier conv (2 = num_labels outputs) is skipped
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        default_target_layers(nn.Sequential(nn.Linear(2, 2)))


def test_resolve_by_name_module_and_errors():
    model = family("segformer-b0")
    fuse = model.decode_head.linear_fuse
    stages = module_list(model, "segformer.", 4)  # one entry per stage
    assert resolve_target_layers(model) == [("decode_head.linear_fuse", fuse)]
    assert resolve_target_layers(model, "decode_head.linear_fuse") == [("decode_head.linear_fuse", fuse)]
    assert resolve_target_layers(model, [fuse, f"{stages}.1"]) == [
        ("decode_head.linear_fuse", fuse), (f"{stages}.1", model.get_submodule(stages)[1])]
    with pytest.raises(ValueError) as error:
        resolve_target_layers(model, ["decode_head.linear_fusee"])
    message = str(error.value)
    # The modules under the deepest existing prefix, a close match and the default.
    assert "decode_head.linear_fuse" in message and "decode_head.classifier" in message
    assert "Close matches" in message and "'decode_head'" in message
    with pytest.raises(ValueError, match=f"{stages}.0, {stages}.1"):
        resolve_target_layers(model, f"{stages}.9")
    with pytest.raises(ValueError, match="not a module of"):
        resolve_target_layers(model, [nn.Conv2d(1, 1, 1)])
    with pytest.raises(ValueError, match="empty"):
        resolve_target_layers(model, [])
    with pytest.raises(ValueError, match="segformer, decode_head"):  # unknown top-level name: the top-level modules
        compute_cam(model, torch.randn(1, 1, 64, 64), target_layers=["encoder"])


def test_override_by_name_changes_the_layer():
    model = hfseg.create_model("attention-unet", num_labels=3, num_channels=1, base_channels=4, depth=3).eval()
    x, region = torch.randn(1, 1, 32, 32), np.zeros((32, 32), dtype=bool)
    region[8:24, 4:20] = True
    default = compute_cam(model, x, target=1, mask=region)
    assert np.array_equal(compute_cam(model, x, 1, region, target_layers=["unet.decoder.blocks.2"]), default)
    coarse = compute_cam(model, x, target=1, mask=region, target_layers="unet.decoder.blocks.0")
    assert coarse.shape == (32, 32) and not np.allclose(coarse, default)


def test_token_grid():
    assert token_grid(17, (64, 64)) == (1, 4, 4)  # class token + 4x4 patches
    assert token_grid(16, (64, 64)) == (0, 4, 4)
    assert token_grid(10, (48, 48)) == (1, 3, 3)  # not 2x5: the aspect ratio decides
    assert token_grid(33, (64, 128)) == (1, 4, 8)  # 3x11 is within the tolerance, but 4x8 is exact
    assert token_grid(20, (72, 72), num_prefix_tokens=0) == (0, 4, 5)  # no exact grid: the closest one
    assert token_grid(20, (64, 64), num_prefix_tokens=4) == (4, 4, 4)  # e.g. register tokens
    with pytest.raises(ValueError, match="Cannot fold"):
        token_grid(17, (64, 64), num_prefix_tokens=0)


def test_fold_tokens_values():
    tokens = torch.arange(2 * 9 * 3, dtype=torch.float32).reshape(2, 9, 3)  # 1 prefix token + 2x4 grid, 3 channels
    grid = fold_tokens(tokens, (32, 64), num_prefix_tokens=1)
    assert grid.shape == (2, 3, 2, 4)
    for b, c, i, j in [(0, 0, 0, 0), (1, 2, 1, 3), (0, 1, 1, 0)]:
        assert grid[b, c, i, j] == tokens[b, 1 + i * 4 + j, c]
    maps = torch.randn(1, 3, 4, 4)
    assert fold_tokens(maps, (64, 64)) is maps


def test_num_prefix_tokens_per_family():
    assert num_prefix_tokens(family("beit-base")) == 1
    assert num_prefix_tokens(family("dpt-large")) == 1
    assert num_prefix_tokens(family("upernet-swin-tiny")) == 0
    assert num_prefix_tokens(family("segformer-b0")) is None
    assert num_prefix_tokens(timm_classifier("vit_tiny_patch16_224", img_size=64, depth=1)) == 1


def test_layer_tap_reads_the_first_tensor_of_a_tuple_and_is_safe_from_inplace_ops():
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2 - 1, "extra"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            features, _ = self.pair(x)
            return self.act(features)

    net, x = Net(), torch.randn(1, 1, 4, 4)
    recorded = []
    with tap_layers([("pair", net.pair)]) as (tap,):
        assert isinstance(tap, LayerTap) and tap.name == "pair"
        tap.register_forward_hook(lambda module, args, output: recorded.append(output))
        out = net(x)
    torch.testing.assert_close(out, torch.relu(x * 2 - 1))
    torch.testing.assert_close(recorded[0], x * 2 - 1)  # still negative: the in-place ReLU ran on a copy
    assert not net.pair._forward_hooks
    net(x)
    assert len(recorded) == 1


def hand_token_gradcam(model, x, layer, target):
    """GradCAM on a ViT block's tokens by hand: class token dropped, 4x4 patch grid, upsampled."""
    store = {}

    def hook(module, args, output):
        output.retain_grad()
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        model(pixel_values=x).logits[0, target].backward()
    finally:
        handle.remove()
    fold = lambda t: t[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)  # noqa: E731
    activation, grad = fold(store["a"]), fold(store["a"].grad)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * activation).sum(1))[0].detach()
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    up = F.interpolate(cam[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0].numpy()
    return (up - up.min()) / (up.max() + 1e-7)


def test_token_shaped_layer_of_a_vit_matches_hand_computation():
    model = timm_classifier("vit_tiny_patch16_224", img_size=64, depth=2)
    x = torch.randn(1, 1, 64, 64)
    expected = hand_token_gradcam(model, x, model.timm_model.blocks[0], target=2)
    cam = compute_cam(model, x, target=2, target_layers=["timm_model.blocks.0"])
    np.testing.assert_allclose(cam, expected, atol=1e-4)


@pytest.mark.parametrize("name, block, index", [
    ("beit-base", "BeitLayer", 2),
    ("dpt-large", "DPTViTLayer", 1),
    ("upernet-swin-tiny", "SwinStage", 1),  # returns a tuple, tokens first
    ("segformer-b0", "SegformerLayer", 2),  # the first block of the second stage
])
def test_token_shaped_override_for_transformer_blocks(name, block, index):
    model = family(name)
    layer = nth_module(model, block, index)
    cam = compute_cam(model, torch.randn(1, 1, 64, 64), target=1, target_layers=[layer])
    assert cam.shape == (64, 64) and np.isfinite(cam).all()
    assert 0 <= cam.min() and cam.max() == pytest.approx(1, abs=1e-5)
