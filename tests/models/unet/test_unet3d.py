"""The U-Net family on volumes (`spatial_dims=3`): every conv preset, per-stage strides and kernels, odd sizes, deep
supervision and its loss, N-d Dice, batch-norm folding, save/load, remote code."""

import copy
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSemanticSegmentation

import hfseg
from hfseg.models.unet.blocks_unet import AttentionGate, UNetConv, UNetStage, fold_batch_norm
from hfseg.models.unet.loss_unet import (
    check_labels,
    deep_supervision_loss,
    deep_supervision_weights,
    segmentation_loss,
    soft_dice_loss,
)
from hfseg.models.unet.modeling_unet import UNetModel, UNetSemanticSegmenterOutput

CONV_PRESETS = [name for name, kwargs in hfseg.UNET_PRESETS.items() if kwargs.get("encoder", "conv") == "conv"]
TINY = {"hidden_sizes": [4, 8, 16], "num_channels": 1, "num_labels": 3}
ANISOTROPIC = {"strides": [1, (1, 2, 2), 2], "kernel_sizes": [(1, 3, 3), 3, 3]}


def tiny3d(preset="unet", **kwargs):
    return hfseg.create_model(preset, spatial_dims=3, **{**TINY, **kwargs})


def randomize_running_stats(model):
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.5)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_()


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("preset", CONV_PRESETS)
def test_every_conv_preset_trains_in_3d(preset):
    model = tiny3d(preset, loss="dice_ce", **({"convs_per_stage": [2, 2, 3]} if preset == "vgg16-unet" else {}))
    assert _count(model, nn.Conv2d) == _count(model, nn.BatchNorm2d) == 0
    assert _count(model, nn.Conv3d) > 0 and _count(model, nn.MaxPool3d) == 2
    x, labels = torch.randn(2, 1, 16, 16, 16), torch.randint(0, 3, (2, 16, 16, 16))
    labels[:, :2] = 255
    out = model(pixel_values=x, labels=labels, output_attentions=True)
    assert out.logits.shape == (2, 3, 16, 16, 16) and torch.isfinite(out.logits).all()
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    gates = _count(model, AttentionGate)
    assert len(out.attentions) == gates and gates == (2 if "attention" in preset else 0)


def test_3d_layers_are_what_the_switches_say():
    improved = tiny3d("improved-attention-unet", hidden_sizes=[4, 8])
    depthwise = [m for m in improved.modules() if isinstance(m, nn.Conv3d) and m.groups > 1]
    assert depthwise and all(m.kernel_size == (7, 7, 7) and m.padding == (3, 3, 3) for m in depthwise)
    assert _count(improved, nn.BatchNorm3d) > 0 and _count(improved, nn.Upsample) == 1
    assert next(m for m in improved.modules() if isinstance(m, nn.Upsample)).mode == "trilinear"
    assert _count(tiny3d("unet", norm="instancenorm"), nn.InstanceNorm3d) > 0
    gct = tiny3d("gct-unet").unet.encoder.stages[0].channel_attention
    assert gct.alpha.shape == (1, 4, 1, 1, 1)
    srm = tiny3d("srm-unet").unet.encoder.stages[0].channel_attention
    assert isinstance(srm.bn, nn.BatchNorm3d)
    assert isinstance(tiny3d(dropout=0.1).dropout, nn.Dropout3d)
    assert isinstance(tiny3d().unet.decoder.blocks[0].up, nn.ConvTranspose3d)


def test_channel_attention_reduces_over_all_spatial_axes():
    gct = tiny3d("gct-unet").unet.encoder.stages[0].channel_attention
    with torch.no_grad():
        gct.gamma.normal_()
        gct.beta.normal_()
    x = torch.randn(2, 4, 3, 4, 5)
    embedding = x.pow(2).sum(dim=(2, 3, 4)).add(gct.eps).sqrt()[..., None, None, None] * gct.alpha
    norm = gct.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + gct.eps).sqrt()
    with torch.no_grad():
        torch.testing.assert_close(gct(x), x * (1 + torch.tanh(embedding * norm + gct.beta)))


@pytest.mark.parametrize("strides", [None, ANISOTROPIC])
def test_odd_sizes_pad_each_axis_and_crop_back(strides):
    model = tiny3d("attention-unet", **(strides or {})).eval()
    randomize_running_stats(model)
    expected_stride = (2, 4, 4) if strides else (4, 4, 4)
    assert model.unet.stride_per_axis == expected_stride and model.unet.stride == 4
    x = torch.randn(1, 1, 23, 37, 29)
    with torch.no_grad():
        out = model(x, output_attentions=True)
        assert out.logits.shape == (1, 3, 23, 37, 29)
        # The model pads each axis at its end to a multiple of its own stride, and crops back.
        padded = [math.ceil(n / s) * s for n, s in zip((23, 37, 29), expected_stride)]
        big = F.pad(x, (0, padded[2] - 29, 0, padded[1] - 37, 0, padded[0] - 23))
        ref = model(big, output_attentions=True)
    torch.testing.assert_close(out.logits, ref.logits[..., :23, :37, :29], rtol=1e-5, atol=1e-5)
    # The gate maps sit at their skips' resolution: ceil(size / stride of the level) per axis.
    first_level = (23, 19, 15) if strides else (12, 19, 15)
    assert [tuple(a.shape[2:]) for a in out.attentions] == [first_level, (23, 37, 29)]
    for a, b in zip(out.attentions, ref.attentions):
        torch.testing.assert_close(a, b[(..., *(slice(0, n) for n in a.shape[2:]))], rtol=1e-5, atol=1e-5)


def test_anisotropic_strides_and_kernels_build_the_planned_layers():
    model = tiny3d("unet", **ANISOTROPIC)
    pools = [stage[0] for stage in model.unet.encoder.stages[1:]]
    assert [p.kernel_size for p in pools] == [(1, 2, 2), 2] and [p.stride for p in pools] == [(1, 2, 2), 2]
    stem = model.unet.encoder.stages[0].convs[0][0]
    assert stem.kernel_size == (1, 3, 3) and stem.padding == (0, 1, 1)
    ups = [block.up for block in model.unet.decoder.blocks]  # deepest first: strides[2], then strides[1]
    assert [u.kernel_size for u in ups] == [(2, 2, 2), (1, 2, 2)] and [u.stride for u in ups] == [(2, 2, 2), (1, 2, 2)]
    last = model.unet.decoder.blocks[-1].stage.convs[0][0]  # the full-resolution block uses stage 0's kernel
    assert last.kernel_size == (1, 3, 3)
    bilinear = tiny3d("unet", upsample="bilinear", **ANISOTROPIC).unet.decoder.blocks[-1].up[0]
    assert bilinear.scale_factor == (1.0, 2.0, 2.0) and bilinear.mode == "trilinear"
    logits = tiny3d("unet", upsample="bilinear", **ANISOTROPIC)(torch.randn(1, 1, 5, 9, 7)).logits
    assert logits.shape == (1, 3, 5, 9, 7)


def test_strides_and_kernel_sizes_in_2d():
    model = hfseg.create_model("unet", hidden_sizes=[4, 8, 16], num_labels=2, strides=[1, (2, 1), 2],
                               kernel_sizes=[(3, 1), 3, 5])
    assert model.unet.stride_per_axis == (4, 2) and model.unet.stride == 4
    assert model(torch.randn(1, 3, 13, 11)).logits.shape == (1, 2, 13, 11)
    default = hfseg.create_model("unet", hidden_sizes=[4, 8, 16], num_labels=2)
    assert default.config.strides is None and default.unet.stride_per_axis == (4, 4) and default.unet.stride == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 1}, "spatial_dims must be 2 \\(images\\) or 3 \\(volumes\\), got 1"),
        ({"strides": [1, 2]}, "strides needs one entry per stage: 3 \\(len\\(hidden_sizes\\)\\), got 2"),
        ({"strides": [2, 2, 2]}, "strides\\[0\\] must be all 1"),
        ({"strides": [1, (2, 2), 2]}, "strides\\[1\\] must be an int or 3 ints"),
        ({"strides": [1, 0, 2]}, "strides\\[1\\] must be positive"),
        ({"strides": 2}, "strides must be a list with one entry per stage"),
        ({"kernel_sizes": [3, 3]}, "kernel_sizes needs one entry per stage: 3"),
        ({"kernel_sizes": [3, (3, 4, 3), 3]}, "kernel_sizes\\[1\\] must be odd on every axis"),
        ({"kernel_sizes": [3, 3, "3"]}, "kernel_sizes\\[2\\] must be an int or 3 ints"),
    ],
)
def test_strides_and_kernel_sizes_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hfseg.UNetConfig(**{"spatial_dims": 3, "hidden_sizes": [4, 8, 16], **kwargs})


def test_timm_encoders_are_2d_only():
    with pytest.raises(ValueError, match="timm encoders are 2-D.*encoder='conv'"):
        hfseg.create_model("timm-unet", encoder="resnet18", spatial_dims=3, num_labels=2)
    with pytest.raises(ValueError, match="strides and kernel_sizes describe the built-in conv encoder"):
        hfseg.UNetConfig(encoder="resnet18", hidden_sizes=[4, 8], strides=[1, 2])


def test_pixel_values_must_have_the_models_dims():
    with pytest.raises(ValueError, match="must be \\(B, C, X, Y, Z\\) for this 3-D model.*needs a 2-D model"):
        tiny3d()(torch.randn(1, 1, 16, 16))
    model = hfseg.create_model("unet", hidden_sizes=[4, 8], num_labels=2, num_channels=1)
    with pytest.raises(ValueError, match="must be \\(B, C, H, W\\) for this 2-D model.*needs a 3-D model"):
        model(torch.randn(1, 1, 8, 8, 8))


def test_hidden_states_and_recompute_in_3d(monkeypatch):
    model = tiny3d("attention-unet").train()
    plain = copy.deepcopy(model)
    x, y = torch.randn(2, 1, 16, 16, 16), torch.randint(0, 3, (2, 16, 16, 16))
    assert model.unet.encoder.stages[0].recomputes()  # BatchNorm3d is recomputable
    out = model(x, labels=y, output_hidden_states=True)
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 4, 16, 16, 16), (2, 8, 8, 8, 8), (2, 16, 4, 4, 4)]
    out.loss.backward()
    monkeypatch.setattr(UNetStage, "recompute", False)
    ref = plain(x, labels=y)
    ref.loss.backward()
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):  # running stats counted once
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_eval_batch_norm_folding_equals_the_unfolded_forward(monkeypatch):
    conv, norm = nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(3).eval()
    randomize_running_stats(norm)
    x = torch.randn(2, 2, 4, 5, 6)
    weight, bias = fold_batch_norm(conv, norm)
    with torch.no_grad():
        torch.testing.assert_close(F.conv3d(x, weight, bias, padding=(0, 1, 1)), norm(conv(x)), rtol=1e-5, atol=1e-5)
    model = tiny3d("attention-unet", **ANISOTROPIC).eval()
    randomize_running_stats(model)
    x = torch.randn(2, 1, 12, 20, 16)
    with torch.no_grad():
        folded = model(x, output_attentions=True)
        monkeypatch.setattr(UNetConv, "fold_in_eval", False)
        monkeypatch.setattr(AttentionGate, "fold_in_eval", False)
        plain = model(x, output_attentions=True)
    torch.testing.assert_close(folded.logits, plain.logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(folded.attentions, plain.attentions):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_channels_last_3d_changes_layout_not_values(monkeypatch):
    model = tiny3d("attention-unet").eval()
    randomize_running_stats(model)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.inference_mode():
        monkeypatch.setattr(UNetModel, "channels_last_3d_on_cpu", True)
        cl = model(x).logits
        monkeypatch.setattr(UNetModel, "channels_last_3d_on_cpu", False)
        ref = model(x).logits
    assert cl.is_contiguous() and ref.is_contiguous()
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


# -- deep supervision -----------------------------------------------------------------------------------------------
def test_deep_supervision_weights_by_hand():
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == [1.0, 0.0]
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert deep_supervision_weights(4) == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0.0])
    with pytest.raises(ValueError, match="at least one output"):
        deep_supervision_weights(0)


def test_deep_supervision_outputs_in_training_only():
    model = tiny3d("attention-unet", hidden_sizes=[4, 8, 16, 32], deep_supervision=True).train()
    assert len(model.deep_supervision_heads) == 2
    out = model(torch.randn(2, 1, 23, 37, 29))
    assert isinstance(out, UNetSemanticSegmenterOutput)
    assert out.logits.shape == (2, 3, 23, 37, 29)
    assert [tuple(d.shape) for d in out.deep_supervision_logits] == [(2, 3, 12, 19, 15), (2, 3, 6, 10, 8)]
    calls = []
    for head in model.deep_supervision_heads:
        head.register_forward_hook(lambda module, args, output: calls.append(1))
    with torch.no_grad():
        evaluated = model.eval()(torch.randn(1, 1, 16, 16, 16))
    assert evaluated.deep_supervision_logits is None and calls == []
    assert evaluated.logits.shape == (1, 3, 16, 16, 16)
    plain = tiny3d("attention-unet", hidden_sizes=[4, 8, 16, 32]).train()
    assert plain.deep_supervision_heads is None
    assert plain(torch.randn(2, 1, 16, 16, 16)).deep_supervision_logits is None


def test_deep_supervision_with_anisotropic_strides():
    model = tiny3d("unet", deep_supervision=True, **ANISOTROPIC).train()
    out = model(torch.randn(2, 1, 5, 9, 7), labels=torch.randint(0, 3, (2, 5, 9, 7)))
    assert [tuple(d.shape[2:]) for d in out.deep_supervision_logits] == [(5, 5, 4)]
    assert torch.isfinite(out.loss)


def test_deep_supervision_loss_is_the_weighted_sum_by_hand():
    model = tiny3d("unet-bn", hidden_sizes=[4, 8, 16, 32, 64], deep_supervision=True, loss="dice_ce").train()
    x, y = torch.randn(2, 1, 16, 16, 16), torch.randint(0, 3, (2, 16, 16, 16))
    y[0, :3] = 255
    out = model(x, labels=y)
    full, half, quarter, eighth = out.logits, *out.deep_supervision_logits
    assert [d.shape[-1] for d in (half, quarter, eighth)] == [8, 4, 2]
    loss = lambda logits, labels: segmentation_loss(logits, labels, loss="dice_ce")  # noqa: E731
    # nnU-Net's nearest-exact downsampling takes voxel s*i + s//2 of each block of s.
    expected = (4 / 7 * loss(full, y) + 2 / 7 * loss(half, y[:, 1::2, 1::2, 1::2])
                + 1 / 7 * loss(quarter, y[:, 2::4, 2::4, 2::4]))
    torch.testing.assert_close(out.loss, expected)
    again = deep_supervision_loss(full, (half, quarter, eighth), y[:, None], loss="dice_ce")
    torch.testing.assert_close(again, expected)
    out.loss.backward()
    assert model.head.weight.grad.abs().sum() > 0 and model.deep_supervision_heads[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():  # eval mode: the plain loss of the full-resolution logits
        model.eval()
        evaluated = model(x, labels=y)
        torch.testing.assert_close(evaluated.loss, loss(evaluated.logits, y))


# -- N-d losses -----------------------------------------------------------------------------------------------------
def test_dice_over_batch_and_all_spatial_axes_by_hand():
    # One 1x2x1x2 volume, two classes: the foreground probabilities and target by hand.
    probs_fg = torch.tensor([0.8, 0.4, 0.1, 0.6]).reshape(1, 1, 2, 1, 2)
    target = torch.tensor([1, 1, 0, 0]).reshape(1, 1, 2, 1, 2)
    valid = torch.ones(1, 2, 1, 2, dtype=torch.bool)
    # dice = (2 * (0.8 + 0.4) + s) / ((0.8 + 0.4 + 0.1 + 0.6) + 2 + s)
    expected = 1 - (2 * 1.2 + 1e-5) / (1.9 + 2 + 1e-5)
    torch.testing.assert_close(soft_dice_loss(probs_fg, target, valid), torch.tensor(expected))
    valid[0, 1, 0, 1] = False  # an ignored voxel leaves both sides of the ratio
    expected = 1 - (2 * 1.2 + 1e-5) / (1.3 + 2 + 1e-5)
    torch.testing.assert_close(soft_dice_loss(probs_fg, target, valid), torch.tensor(expected))


def test_3d_dice_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    logits = torch.randn(2, 4, 5, 6, 7)
    labels = torch.randint(0, 4, (2, 5, 6, 7))
    ours = segmentation_loss(logits, labels, loss="dice")
    reference = monai_losses.DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True,
                                      smooth_nr=1e-5, smooth_dr=1e-5)(logits, labels[:, None])
    torch.testing.assert_close(ours, reference)
    ce = segmentation_loss(logits, labels, loss="ce")
    torch.testing.assert_close(ce, F.cross_entropy(logits, labels))


def test_check_labels_in_3d():
    logits = torch.zeros(2, 3, 1, 4, 5)
    labels = torch.randint(0, 3, (2, 1, 4, 5))
    assert check_labels(labels, logits, 3, 255).shape == (2, 1, 4, 5)  # X == 1 is an axis, not a channel
    assert check_labels(labels[:, None], logits, 3, 255).shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match="labels must have shape \\(B, X, Y, Z\\)"):
        check_labels(labels[0], logits, 3, 255)
    with pytest.raises(ValueError, match="do not match logits.*spatial shape"):
        check_labels(torch.zeros(2, 1, 4, 6, dtype=torch.long), logits, 3, 255)
    binary = segmentation_loss(torch.randn(2, 1, 3, 4, 5), torch.randint(0, 2, (2, 3, 4, 5)), loss="dice_ce")
    assert torch.isfinite(binary)


# -- saving and loading ---------------------------------------------------------------------------------------------
def test_save_load_round_trip_in_3d(tmp_path):
    model = tiny3d("improved-attention-unet", kernel_size=3, deep_supervision=True, **ANISOTROPIC).eval()
    randomize_running_stats(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert loaded.config.spatial_dims == 3 and loaded.config.deep_supervision
    assert loaded.config.strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    assert loaded.config.kernel_sizes == [[1, 3, 3], [3, 3, 3], [3, 3, 3]]
    x = torch.randn(1, 1, 9, 14, 11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


def test_create_model_adapts_the_input_channels_of_a_3d_checkpoint(tmp_path):
    tiny3d().save_pretrained(tmp_path)
    model = hfseg.create_model(str(tmp_path), num_channels=2)
    assert model.config.num_channels == 2
    assert model(torch.randn(1, 2, 8, 8, 8)).logits.shape == (1, 3, 8, 8, 8)


LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["hfseg"] = None  # any `import hfseg` now fails: the code must come from the checkpoint folder
    import torch
    from transformers import AutoModelForSemanticSegmentation
    folder = sys.argv[1]
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
    assert not type(model).__module__.startswith("hfseg"), type(model).__module__
    x = torch.load(folder + "/x.pt")
    with torch.no_grad():
        torch.save(model(x).logits, folder + "/out.pt")
    print(type(model).__module__, model.config.spatial_dims)
    """
)


def test_remote_code_loading_of_a_3d_model_without_hfseg(tmp_path):
    model = tiny3d("attention-unet", channel_attention="srm", deep_supervision=True, **ANISOTROPIC).eval()
    randomize_running_stats(model)
    type(model).register_for_auto_class("AutoModelForSemanticSegmentation")
    model.save_pretrained(tmp_path)
    assert {"configuration_unet.py", "modeling_unet.py", "blocks_unet.py", "loss_unet.py"} <= set(os.listdir(tmp_path))
    x = torch.randn(1, 1, 7, 13, 10)
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout and result.stdout.strip().endswith(" 3")
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(x).logits, rtol=0, atol=0)


def test_new_fields_default_to_the_2d_model(tmp_path):
    config = hfseg.UNetConfig()
    assert (config.spatial_dims, config.strides, config.kernel_sizes, config.deep_supervision) == (2, None, None, False)
    assert config.stage_strides == [(1, 1), (2, 2), (2, 2), (2, 2), (2, 2)]
    assert config.stage_kernel_sizes == [(3, 3)] * 5
    bundled = os.path.join(os.path.dirname(__file__), "..", "..", "..", "spaces", "model")
    if not os.path.isdir(bundled):
        pytest.skip("no bundled Space model in this checkout")
    model, info = AutoModelForSemanticSegmentation.from_pretrained(bundled, output_loading_info=True)
    assert model.config.spatial_dims == 2 and not model.config.deep_supervision  # saved before these fields
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


def test_logits_at_and_predict_on_volumes():
    from hfseg.models.outputs import logits_at, predict

    logits = torch.randn(1, 3, 4, 5, 6)
    assert logits_at(logits, (4, 5, 6)) is logits
    resized = logits_at(logits, (8, 10, 12))
    torch.testing.assert_close(resized, F.interpolate(logits, size=(8, 10, 12), mode="trilinear"))
    assert predict(resized).shape == (1, 8, 10, 12)
