"""Attention-gate maps: the model's own `attentions`, upsampled and aligned; none for ungated models."""

import numpy as np
import torch
import torch.nn.functional as F

import hfseg
from hfseg.explain import attention_maps
from hfseg.explain.attention import has_attention_gates
from tests.models.test_zoo import TINY_FAMILIES


def gated_unet():
    torch.manual_seed(0)
    return hfseg.create_model("attention-unet", num_labels=3, num_channels=1, base_channels=4, depth=3).eval()


def test_maps_equal_the_models_attentions_upsampled():
    model = gated_unet()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        own = model(pixel_values=x, output_attentions=True).attentions
    maps = attention_maps(model, x)
    assert len(maps) == len(own) >= 2
    for alpha, got in zip(own, maps, strict=True):
        expected = F.interpolate(alpha, size=(32, 32), mode="bilinear", align_corners=False)[0, 0].numpy()
        assert got.shape == (32, 32) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert 0 <= got.min() and got.max() <= 1
    # Coarse to fine: the gates' own resolutions grow.
    assert [a.shape[-1] for a in own] == sorted(a.shape[-1] for a in own)
    assert own[0].shape[-1] < own[-1].shape[-1]
    # A (C, h, w) input works the same; the model's mode is kept.
    model.train()
    np.testing.assert_allclose(attention_maps(model, x[0])[0], maps[0], atol=1e-6)
    assert model.training


def test_maps_of_a_size_the_model_pads_stay_aligned():
    model = gated_unet()
    x = torch.randn(1, 1, 30, 27)  # padded to 32x32 inside the model
    maps = attention_maps(model, x)
    with torch.no_grad():
        own = model(pixel_values=F.pad(x, (0, 5, 0, 2)), output_attentions=True).attentions
    for alpha, got in zip(own, maps, strict=True):
        expected = F.interpolate(alpha, size=(32, 32), mode="bilinear", align_corners=False)[0, 0, :30, :27]
        assert got.shape == (30, 27)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


def test_ungated_models_give_no_maps():
    x = torch.randn(1, 1, 32, 32)
    unet = hfseg.create_model("unet", num_labels=3, num_channels=1, base_channels=4, depth=3)
    segformer = hfseg.create_model("segformer-b0", num_labels=3, num_channels=1, **TINY_FAMILIES["segformer-b0"])
    for model in (unet, segformer):
        assert not has_attention_gates(model)
        assert attention_maps(model, x) == []
    assert has_attention_gates(gated_unet())
