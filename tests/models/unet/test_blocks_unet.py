"""The U-Net building blocks against their published formulas, computed by hand."""

import pytest
import torch
from torch import nn

from hfseg.models.unet.blocks_unet import (
    AttentionGate,
    GatedChannelTransformation,
    InvertedBottleneck,
    StyleRecalibration,
    UNetConv,
    make_channel_attention,
    make_norm,
)
from hfseg.models.unet.configuration_unet import UNetConfig


def test_gct_matches_the_paper_formula():
    gct = GatedChannelTransformation(3)
    with torch.no_grad():
        gct.alpha.copy_(torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1))
        gct.gamma.copy_(torch.tensor([0.3, -0.7, 1.1]).view(1, 3, 1, 1))
        gct.beta.copy_(torch.tensor([0.1, 0.0, -0.2]).view(1, 3, 1, 1))
    x = torch.randn(2, 3, 5, 4)
    out = gct(x)
    for b in range(2):
        s = [gct.alpha[0, c, 0, 0] * x[b, c].pow(2).sum().add(gct.eps).sqrt() for c in range(3)]
        l2 = torch.stack(s).pow(2).sum().sqrt()
        for c in range(3):
            n = gct.gamma[0, c, 0, 0] * (3**0.5) * s[c] / l2
            gate = 1 + torch.tanh(n + gct.beta[0, c, 0, 0])
            torch.testing.assert_close(out[b, c], x[b, c] * gate, rtol=1e-4, atol=1e-5)


def test_gct_starts_as_identity():
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(GatedChannelTransformation(6)(x), x)


def test_srm_matches_style_pooling_and_integration():
    srm = StyleRecalibration(2).eval()
    with torch.no_grad():
        srm.cfc.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.25]]))
        srm.bn.running_mean.copy_(torch.tensor([0.1, -0.2]))
        srm.bn.running_var.copy_(torch.tensor([1.5, 0.5]))
        srm.bn.weight.copy_(torch.tensor([0.9, 1.2]))
        srm.bn.bias.copy_(torch.tensor([0.05, -0.1]))
    x = torch.randn(3, 2, 6, 5)
    out = srm(x)
    for b in range(3):
        for c in range(2):
            values = x[b, c].flatten()
            mean, std = values.mean(), (values.var(unbiased=True) + srm.eps).sqrt()
            z = srm.cfc[c, 0] * mean + srm.cfc[c, 1] * std
            z_hat = (z - srm.bn.running_mean[c]) / (srm.bn.running_var[c] + srm.bn.eps).sqrt()
            gate = torch.sigmoid(z_hat * srm.bn.weight[c] + srm.bn.bias[c])
            torch.testing.assert_close(out[b, c], x[b, c] * gate, rtol=1e-4, atol=1e-5)


def test_attention_gate_is_additive_attention():
    gate = AttentionGate(gate_channels=4, skip_channels=3, inter_channels=2, norm="none")
    g, x = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5)
    out, alpha = gate(g, x)
    wg, wx, psi = gate.gate_proj[0], gate.skip_proj[0], gate.psi[0]
    inner = torch.relu(nn.functional.conv2d(g, wg.weight, wg.bias) + nn.functional.conv2d(x, wx.weight, wx.bias))
    expected_alpha = torch.sigmoid(nn.functional.conv2d(inner, psi.weight, psi.bias))
    torch.testing.assert_close(alpha, expected_alpha)
    torch.testing.assert_close(out, x * expected_alpha)
    assert alpha.shape == (2, 1, 5, 5) and 0 <= alpha.min() and alpha.max() <= 1


def test_separable_conv_is_depthwise_then_pointwise():
    conv = UNetConv(8, 16, 7, "separable", "batchnorm", "relu")
    depthwise, pointwise = conv[0], conv[1]
    assert depthwise.groups == 8 and depthwise.kernel_size == (7, 7)
    assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 16
    assert isinstance(conv[2], nn.BatchNorm2d)
    standard = UNetConv(8, 16, 7, "standard", "batchnorm", "relu")
    assert sum(p.numel() for p in conv.parameters()) < sum(p.numel() for p in standard.parameters()) / 5


def test_inverted_bottleneck_expands_and_keeps_the_residual():
    config = UNetConfig(norm="batchnorm", bottleneck="inverted", kernel_size=7, bottleneck_expansion=4)
    block = InvertedBottleneck(8, 16, config).eval()
    assert block.expand[0].out_channels == 64 and block.depthwise[0].groups == 64
    with torch.no_grad():
        block.project_out[0].weight.zero_()
        block.project_out[1].bias.zero_()
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(block(x), block.project_in(x))


def test_factories():
    assert isinstance(make_norm("none", 4), nn.Identity)
    assert isinstance(make_norm("groupnorm", 12), nn.GroupNorm)
    assert isinstance(make_channel_attention("srm", 4), StyleRecalibration)
    assert isinstance(make_channel_attention("none", 4), nn.Identity)


@pytest.mark.parametrize("norm", ["none", "batchnorm", "instancenorm", "groupnorm"])
def test_conv_has_bias_only_without_norm(norm):
    conv = UNetConv(3, 8, 3, "standard", norm, "relu")
    assert (conv[0].bias is not None) == (norm == "none")
