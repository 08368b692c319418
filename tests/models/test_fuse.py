"""Batch-norm folding for inference: same outputs, no batch norms left, the original untouched."""

import pytest
import torch
from torch import nn

import hfseg
from hfseg.inference import load_model, predict_logits
from hfseg.models.fuse import fuse_conv_bn, fused_conv


def batch_norms(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def with_random_stats(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_()
    return model.eval()


def test_fused_conv_is_conv_then_norm():
    conv, norm = nn.Conv2d(3, 4, 3, bias=True), with_random_stats(nn.BatchNorm2d(4))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fused_conv(conv, norm)(x), norm(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("preset", "kwargs"), [("attention-unet", {"base_channels": 4, "depth": 2}),
                                                ("timm-unet", {"encoder": "resnet18"})])
def test_fuse_model_keeps_outputs(preset, kwargs):
    model = with_random_stats(hfseg.create_model(preset, num_labels=3, num_channels=1, **kwargs))
    x = torch.randn(2, 1, 64, 64)
    fused = fuse_conv_bn(model, example=x)
    assert batch_norms(fused) == 0 and batch_norms(model) > 0
    with torch.no_grad():
        ref = model(pixel_values=x).logits
        # float rounding grows with depth: compare against the logits' scale
        torch.testing.assert_close(fused(pixel_values=x).logits, ref, rtol=0, atol=1e-5 * ref.abs().max().item())


class Misnamed(nn.Module):
    """`conv1` and `bn1` are siblings, but the norm does not follow the convolution."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, pixel_values):
        return self.conv1(self.bn1(pixel_values))


def test_a_wrong_guess_is_dropped_when_checked():
    model = with_random_stats(Misnamed())
    x = torch.randn(2, 3, 4, 4)
    fused = fuse_conv_bn(model, example=x)
    assert batch_norms(fused) == 1
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


def test_load_model_fuse(tmp_path):
    model = with_random_stats(hfseg.create_model("attention-unet", num_labels=3, num_channels=1, base_channels=4,
                                                 depth=2))
    model.save_pretrained(tmp_path)
    hfseg.UNetImageProcessor(normalization="zscore", num_channels=1).save_pretrained(tmp_path)
    plain, processor = load_model(tmp_path, device="cpu")
    fused, _ = load_model(tmp_path, device="cpu", fuse=True)
    assert batch_norms(fused) == 0 and batch_norms(plain) > 0
    image = torch.rand(40, 40).mul(255).to(torch.uint8).numpy()
    torch.testing.assert_close(predict_logits(fused, processor, image), predict_logits(plain, processor, image),
                               rtol=1e-4, atol=1e-4)
