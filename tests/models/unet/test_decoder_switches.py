"""The decoder switches `upsample="nearest"`, `head_kernel_size` and `weight_init`: validation, structure, init,
save/load, and checkpoints saved before them loading to the same logits."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import hfseg
from hfseg.models.presets import unet_preset
from hfseg.models.unet.modeling_unet import UNetForSemanticSegmentation

FIXTURES = Path(__file__).parent / "fixtures"
SPACE_MODEL = Path(__file__).resolve().parents[3] / "spaces" / "model"
NEW_FIELDS = {"head_kernel_size", "weight_init"}
TIMM = {"encoder": "test_resnet", "decoder_hidden_sizes": [16, 8, 8, 4, 4]}


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("upsample", "nearst", "'transpose', 'bilinear', 'nearest'"),
    ("weight_init", "xavier", "'fan_out', 'fan_in'"),
])
def test_unknown_choice_lists_allowed_values(field, value, allowed):
    with pytest.raises(ValueError, match=f"Unknown {field} '{value}'; allowed values: {allowed}"):
        hfseg.UNetConfig(**{field: value})


@pytest.mark.parametrize("value", [0, 2, -1, True, 1.0, "3"])
def test_head_kernel_size_must_be_a_positive_odd_int(value):
    with pytest.raises(ValueError, match="head_kernel_size must be a positive odd int"):
        hfseg.UNetConfig(head_kernel_size=value)


def test_defaults_are_the_old_behaviour():
    config = hfseg.UNetConfig()
    assert (config.upsample, config.head_kernel_size, config.weight_init) == ("transpose", 1, "fan_out")


@pytest.mark.parametrize("name", ["attention_unet_v0", "timm_unet_v0"])
def test_checkpoint_saved_before_the_switches_gives_the_same_logits(name):
    """Tiny checkpoints saved (with a few training steps) by the code before these fields existed."""
    folder = FIXTURES / name
    assert not NEW_FIELDS & set(json.loads((folder / "config.json").read_text()))
    model = UNetForSemanticSegmentation.from_pretrained(folder).eval()
    assert model.config.head_kernel_size == 1 and model.config.weight_init == "fan_out"
    reference = load_file(folder / "reference.safetensors")
    with torch.no_grad():
        logits = model(pixel_values=reference["pixel_values"]).logits
    assert torch.equal(logits, reference["logits"])


def test_space_checkpoint_gives_the_logits_of_the_code_before_the_switches():
    """spaces/model's weights through today's code, against logits computed by the code before the switches."""
    model = UNetForSemanticSegmentation.from_pretrained(SPACE_MODEL).eval()
    reference = load_file(FIXTURES / "space_model_reference.safetensors")
    with torch.no_grad():
        logits = model(pixel_values=reference["pixel_values"]).logits
    # Not bit-exact: oneDNN's reductions depend on the thread count; an architecture change moves logits by O(1).
    torch.testing.assert_close(logits, reference["logits"], rtol=1e-5, atol=1e-5)


def _has(model, kind):
    return any(isinstance(m, kind) for m in model.modules())


def test_nearest_upsampling_keeps_channels_and_has_no_transposed_conv():
    old = hfseg.create_model("timm-unet", num_labels=2, num_channels=1, upsample="transpose", **TIMM)
    new = hfseg.create_model("timm-unet", num_labels=2, num_channels=1, upsample="nearest", **TIMM)
    assert _has(old.unet.decoder, nn.ConvTranspose2d) and not _has(new.unet.decoder, nn.ConvTranspose2d)
    channels = new.unet.encoder.channels  # shallowest first
    for j, block in enumerate(new.unet.decoder.blocks):
        assert [type(m) for m in block.up] == [nn.Upsample] and block.up[0].mode == "nearest"
        in_ch = channels[-1] if j == 0 else TIMM["decoder_hidden_sizes"][j - 1]
        skip = channels[-2 - j] if j < len(channels) - 1 else 0
        assert block.stage.convs[0][0].in_channels == in_ch + skip
    x = torch.randn(2, 1, 45, 70)
    out = new(pixel_values=x, labels=torch.randint(0, 2, (2, 45, 70)))
    assert out.logits.shape == (2, 2, 45, 70)
    out.loss.backward()
    assert all(p.grad is not None for p in new.parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_nearest_upsampling_on_the_conv_encoder_with_gates_and_added_skips(spatial_dims):
    gated = hfseg.create_model("attention-unet", base_channels=4, depth=2, upsample="nearest", num_labels=3,
                               num_channels=1, spatial_dims=spatial_dims)
    block = gated.unet.decoder.blocks[0]  # 16 channels up, 8-channel skip
    assert block.gate.gate_proj[0].in_channels == 16 and block.stage.convs[0][0].in_channels == 16 + 8
    added = hfseg.create_model("improved-unet", base_channels=4, depth=2, upsample="nearest", num_labels=3,
                               num_channels=1, spatial_dims=spatial_dims)
    up = added.unet.decoder.blocks[0].up  # an added skip needs the block's width: nearest, then a 1x1 conv
    assert isinstance(up[0], nn.Upsample) and up[0].mode == "nearest" and up[1].out_channels == 8
    shape = (1, 1, 12, 10) if spatial_dims == 2 else (1, 1, 8, 12, 10)
    for model in (gated, added):
        assert model(pixel_values=torch.randn(shape)).logits.shape == (1, 3, *shape[2:])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_head_kernel_size(spatial_dims):
    model = hfseg.create_model("unet-bn", base_channels=4, depth=2, head_kernel_size=3, num_labels=3, num_channels=1,
                               spatial_dims=spatial_dims, deep_supervision=spatial_dims == 3)
    assert model.head.kernel_size == (3,) * spatial_dims and model.head.padding == (1,) * spatial_dims
    if spatial_dims == 3:
        assert all(h.kernel_size == (1, 1, 1) for h in model.deep_supervision_heads)
    shape = (1, 1, 9, 14) if spatial_dims == 2 else (1, 1, 8, 9, 6)
    assert model(pixel_values=torch.randn(shape)).logits.shape == (1, 3, *shape[2:])


def _zero_init_norms(model):
    """The last norm of each timm residual block (`bn3` of a bottleneck, else `bn2`)."""
    return [getattr(m, "bn3", None) or m.bn2 for m in model.unet.encoder.backbone.modules()
            if hasattr(m, "zero_init_last")]


def test_weight_init_fan_in():
    model = hfseg.create_model("timm-unet", num_labels=4, num_channels=1, weight_init="fan_in", head_kernel_size=3,
                               **TIMM)
    norms = _zero_init_norms(model)
    assert norms and all(torch.all(n.weight == 0) for n in norms)  # timm's zero init of each block's last norm
    conv = model.unet.decoder.blocks[0].stage.convs[0][0].weight
    bound = math.sqrt(2.0) * math.sqrt(3.0 / conv[0].numel())  # kaiming-uniform, fan-in: gain * sqrt(3 / fan_in)
    assert conv.abs().max() <= bound and conv.abs().max() > 0.9 * bound
    head = model.head.weight
    fan_in, fan_out = head.shape[1] * 9, head.shape[0] * 9
    bound = math.sqrt(6.0 / (fan_in + fan_out))  # xavier-uniform
    assert head.abs().max() <= bound and head.abs().max() > 0.8 * bound
    assert torch.all(model.head.bias == 0)


def test_weight_init_fan_out_is_the_old_init():
    model = hfseg.create_model("timm-unet", num_labels=4, num_channels=1, upsample="transpose", head_kernel_size=1,
                               weight_init="fan_out", **TIMM)
    assert all(torch.all(n.weight == 1) for n in _zero_init_norms(model))  # timm's zero init undone
    head = model.head.weight  # kaiming-normal, fan-out = num_labels: std sqrt(2 / 4)
    assert abs(head.std().item() - math.sqrt(2.0 / 4)) < 0.25


def test_loading_a_fan_in_model_keeps_its_weights(tmp_path):
    model = hfseg.create_model("timm-unet", num_labels=2, num_channels=1, weight_init="fan_in", **TIMM)
    with torch.no_grad():
        for norm in _zero_init_norms(model):
            norm.weight.fill_(0.5)
    model.save_pretrained(tmp_path)
    loaded = UNetForSemanticSegmentation.from_pretrained(tmp_path)
    assert all(torch.all(n.weight == 0.5) for n in _zero_init_norms(loaded))


@pytest.mark.parametrize("switches", [
    {"upsample": "nearest"},
    {"head_kernel_size": 3},
    {"upsample": "nearest", "head_kernel_size": 5, "weight_init": "fan_in", "attention": "gate"},
])
def test_save_load_round_trip(switches, tmp_path):
    model = hfseg.create_model("timm-unet", num_labels=3, num_channels=1, **{**TIMM, **switches}).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert all(saved[k] == v for k, v in switches.items())
    loaded = UNetForSemanticSegmentation.from_pretrained(tmp_path).eval()
    x = torch.randn(1, 1, 33, 40)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded(pixel_values=x).logits)


def test_timm_unet_preset_is_shaped_as_smp_unet():
    preset = unet_preset("timm-unet")
    assert (preset["upsample"], preset["head_kernel_size"], preset["weight_init"]) == ("nearest", 3, "fan_in")
    assert unet_preset("attention-unet").get("upsample", "transpose") == "transpose"
