"""Speed and memory paths of the U-Net blocks give the plain layer-by-layer results (blocks_unet docstring)."""

import copy

import pytest
import torch
from torch import nn

import hfseg
from hfseg.models.unet.blocks_unet import UNetConv, UNetStage, frozen_running_stats
from hfseg.models.unet.modeling_unet import UNetModel, channels_last


def tiny(**kwargs):
    return hfseg.create_model("attention-unet", num_labels=3, num_channels=1, base_channels=4, depth=3, **kwargs)


def randomize_running_stats(model):
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.5)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)


def train_step(model, x, y):
    out = model(pixel_values=x, labels=y, output_attentions=True)
    out.loss.backward()
    return out


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm", "instancenorm"])
def test_recompute_gives_the_same_training_step(norm, monkeypatch):
    model = tiny(norm=norm).train()
    plain = copy.deepcopy(model)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    out = train_step(model, x, y)
    monkeypatch.setattr(UNetStage, "recompute", False)
    ref = train_step(plain, x, y)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    for a, b in zip(out.attentions, ref.attentions):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):  # running stats counted once
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def saved_bytes(model, x):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(pixel_values=x).logits.sum()
    return sum(storages.values())


def test_recompute_keeps_less_for_backward(monkeypatch):
    model = tiny().train()
    x = torch.randn(2, 1, 64, 64)
    lean = saved_bytes(model, x)
    monkeypatch.setattr(UNetStage, "recompute", False)
    assert lean < 0.75 * saved_bytes(model, x)


def test_frozen_running_stats_restores_momentum_and_count():
    norm = nn.BatchNorm2d(3, momentum=None).train()
    mean, count = norm.running_mean.clone(), norm.num_batches_tracked.clone()
    with frozen_running_stats([norm]):
        norm(torch.randn(4, 3, 5, 5) + 3)
    assert norm.momentum is None and torch.equal(norm.num_batches_tracked, count)
    torch.testing.assert_close(norm.running_mean, mean, rtol=0, atol=0)


def test_eval_conv_folds_batch_norm_and_respects_hooks():
    conv = UNetConv(3, 5, 3, "standard", "batchnorm", "relu").eval()
    randomize_running_stats(conv)
    with torch.no_grad():
        conv[1].weight.uniform_(0.5, 2)
        conv[1].bias.normal_()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        expected = torch.relu(nn.functional.batch_norm(conv[0](x), conv[1].running_mean, conv[1].running_var,
                                                       conv[1].weight, conv[1].bias, eps=conv[1].eps))
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
        seen = []
        conv[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    assert seen == [(2, 5, 9, 9)]  # a hooked norm runs as a layer of its own


def test_inference_path_equals_the_autograd_path():
    model = tiny().eval()
    randomize_running_stats(model)
    x = torch.randn(2, 1, 40, 24)
    with torch.inference_mode():
        fast = model(pixel_values=x, output_attentions=True)
    with torch.enable_grad():
        ref = model(pixel_values=x, output_attentions=True)
    torch.testing.assert_close(fast.logits, ref.logits.detach(), rtol=1e-5, atol=1e-5)
    for a, b in zip(fast.attentions, ref.attentions):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)


def test_channels_last_on_cpu_changes_layout_not_values(monkeypatch):
    model = tiny().eval()
    randomize_running_stats(model)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = model(pixel_values=x).logits
        monkeypatch.setattr(UNetModel, "channels_last_on_cpu", False)
        ref = model(pixel_values=x).logits
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_helper(channels):
    x = torch.randn(2, channels, 5, 7)
    y = channels_last(x)
    assert torch.equal(x, y) and y.stride()[1] == 1
    assert nn.Conv2d(channels, 4, 3)(y).stride()[1] == 1  # oneDNN keeps channels-last
