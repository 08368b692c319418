"""Every U-Net preset: shapes, losses, gradients, odd sizes, channels, attention maps, save/load, Auto classes."""

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation

import hfseg
from hfseg.models.unet.blocks_unet import (
    AttentionGate,
    GatedChannelTransformation,
    InvertedBottleneck,
    StyleRecalibration,
)
from hfseg.models.unet.modeling_unet import UNetModel

from ...conftest import TINY_PRESET_OVERRIDES

PRESETS = list(hfseg.UNET_PRESETS)


def tiny(preset, **kwargs):
    return hfseg.create_model(preset, **{**TINY_PRESET_OVERRIDES[preset], **kwargs})


def test_every_preset_has_a_tiny_override():
    assert set(PRESETS) == set(TINY_PRESET_OVERRIDES)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("loss", ["ce", "dice", "dice_ce", "focal"])
def test_forward_backward_odd_size(preset, loss):
    model = tiny(preset, num_labels=3, num_channels=3, loss=loss)
    x = torch.randn(2, 3, 97, 130)
    labels = torch.randint(0, 3, (2, 97, 130))
    labels[:, :4] = 255
    out = model(pixel_values=x, labels=labels)
    assert out.logits.shape == (2, 3, 97, 130)
    assert torch.isfinite(out.logits).all()
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 4])
def test_channels_and_binary(preset, channels):
    model = tiny(preset, num_labels=1, num_channels=channels, loss="dice_ce")
    x = torch.randn(2, channels, 40, 33)
    out = model(pixel_values=x, labels=torch.randint(0, 2, (2, 40, 33)))
    assert out.logits.shape == (2, 1, 40, 33)
    assert out.loss.item() > 0
    out.loss.backward()


@pytest.mark.parametrize("preset", PRESETS)
def test_save_load_identical_logits_through_auto_class(preset, tmp_path):
    model = tiny(preset, num_labels=2, num_channels=1).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is hfseg.UNetForSemanticSegmentation
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.config) == strip(model.config)
    x = torch.randn(1, 1, 45, 52)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


def test_auto_config_and_auto_model(tmp_path):
    model = tiny("attention-unet", num_labels=2)
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, hfseg.UNetConfig) and config.model_type == "hfseg_unet"
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, UNetModel)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(base(x).last_hidden_state, model.eval().unet(x).last_hidden_state)
    assert AutoModel.from_config(config).__class__ is UNetModel


@pytest.mark.parametrize("preset", ["attention-unet", "improved-attention-unet"])
def test_attention_maps(preset):
    model = tiny(preset, num_labels=2, num_channels=1)
    out = model(torch.randn(2, 1, 97, 130), output_attentions=True)
    # Decoder order: deepest gated skip first, each at its skip's resolution ceil(H / stride).
    shapes = [tuple(a.shape) for a in out.attentions]
    assert shapes == [(2, 1, 25, 33), (2, 1, 49, 65), (2, 1, 97, 130)]
    assert all(0 <= a.min() and a.max() <= 1 for a in out.attentions)
    assert tiny(preset.replace("attention-", ""), num_labels=2, num_channels=1)(
        torch.randn(1, 1, 16, 16), output_attentions=True
    ).attentions == ()


def test_hidden_states_and_tuple_output():
    model = tiny("unet", num_labels=2)
    out = model(torch.randn(1, 3, 30, 30), output_hidden_states=True)
    assert [h.shape[1] for h in out.hidden_states] == [4, 8, 16, 32]
    as_tuple = model(torch.randn(1, 3, 32, 32), labels=torch.zeros(1, 32, 32, dtype=torch.long), return_dict=False)
    assert as_tuple[0].ndim == 0 and as_tuple[1].shape == (1, 2, 32, 32)


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_classic_unet_matches_ronneberger_parameter_count():
    """Ronneberger et al. 2015: 64..1024 channels, 3x3 double convs with bias, 2x2 up-convs, 1x1 head."""
    model = hfseg.create_model("unet", num_labels=2, num_channels=1)
    w = [64, 128, 256, 512, 1024]
    conv = lambda cin, cout, k=3: k * k * cin * cout + cout  # noqa: E731
    expected = conv(1, 64) + conv(64, 64)
    expected += sum(conv(w[i - 1], w[i]) + conv(w[i], w[i]) for i in range(1, 5))
    expected += sum(conv(w[i + 1], w[i], 2) + conv(2 * w[i], w[i]) + conv(w[i], w[i]) for i in range(4))
    expected += conv(64, 2, 1)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert _count(model, nn.BatchNorm2d) == 0 and _count(model, nn.MaxPool2d) == 4


def test_variant_switches_build_what_they_say():
    assert _count(tiny("unet-bn", num_labels=2), nn.BatchNorm2d) > 0
    vgg = hfseg.create_model("vgg16-unet", num_labels=2)
    assert [len(s.convs) if i == 0 else len(s[1].convs) for i, s in enumerate(vgg.unet.encoder.stages)] == [2, 2, 3, 3, 3]
    assert vgg.config.hidden_sizes == [64, 128, 256, 512, 512]
    att = tiny("attention-unet", num_labels=2)
    assert _count(att, AttentionGate) == 3
    improved = tiny("improved-unet", num_labels=2)
    assert _count(improved, InvertedBottleneck) == 1 and _count(improved, AttentionGate) == 0
    depthwise = [m for m in improved.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.kernel_size == (7, 7) for m in depthwise)
    for block in improved.unet.decoder.blocks:  # additive skips: the stage input has the block's own width
        assert block.stage.convs[0][0].in_channels == block.stage.convs[-1][-3].out_channels
    assert _count(tiny("improved-attention-unet", num_labels=2), AttentionGate) == 3
    assert _count(tiny("gct-unet", num_labels=2), GatedChannelTransformation) == 4 + 3
    assert _count(tiny("srm-unet", num_labels=2), StyleRecalibration) == 4 + 3


@pytest.mark.parametrize(
    ("encoder", "extra"),
    [("resnet18", {}), ("efficientnet_b0", {}), ("convnext_atto", {}), ("vgg16", {"encoder_out_indices": [0, 1, 2, 3, 4]})],
)
def test_timm_encoders(encoder, extra):
    model = hfseg.create_model("timm-unet", encoder=encoder, num_labels=2, num_channels=4, **extra)
    out = model(torch.randn(1, 4, 70, 45), labels=torch.randint(0, 2, (1, 70, 45)))
    assert out.logits.shape == (1, 2, 70, 45)
    out.loss.backward()


def test_vgg16_unet_on_timm_vgg16():
    model = hfseg.create_model("vgg16-unet", encoder="vgg16", encoder_out_indices=[0, 1, 2, 3, 4], num_labels=2)
    assert model.unet.encoder.channels == [64, 128, 256, 512, 512]
    assert model(torch.randn(1, 3, 48, 40)).logits.shape == (1, 2, 48, 40)


def test_clear_errors():
    with pytest.raises(ValueError, match="Unknown model 'unet-xl'.*attention-unet"):
        hfseg.create_model("unet-xl")
    with pytest.raises(ValueError, match="Unknown attention 'cbam'.*'none', 'gate'"):
        hfseg.create_model("unet", attention="cbam")
    with pytest.raises(ValueError, match="Unknown channel_attention 'se'.*'gct', 'srm'"):
        hfseg.create_model("unet", channel_attention="se")
    with pytest.raises(ValueError, match="Unknown encoder 'resnet19'.*'conv'.*resnet18"):
        hfseg.create_model("timm-unet", encoder="resnet19")
    model = tiny("unet", num_labels=2, num_channels=1)
    with pytest.raises(ValueError, match="has 3 channels but the model expects 1"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="must be \\(B, C, H, W\\)"):
        model(torch.randn(1, 16, 16))
    with pytest.raises(ValueError, match="do not match logits"):
        model(torch.randn(1, 1, 16, 16), labels=torch.zeros(1, 8, 8, dtype=torch.long))


def test_learns_a_simple_mask():
    """A few Adam steps on a fixed image drive the loss down: the gradients are the right ones."""
    model = tiny("attention-unet", num_labels=2, num_channels=1, loss="dice_ce")
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 1.0
    labels = (x[:, 0] > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        loss = model(x, labels=labels).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("preset", PRESETS)
def test_full_size_presets_run(preset):
    """The real widths (64 base channels, or 16 for the improved U-Nets) run on a small 1-channel image."""
    model = hfseg.create_model(preset, num_labels=4, num_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 72, 60)).logits.shape == (1, 4, 72, 60)
