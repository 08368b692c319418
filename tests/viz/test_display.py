"""Display scaling: percentile windows on known values, every image kind as (H, W, 3) uint8, grey views."""

import numpy as np
import pytest
import torch
from PIL import Image

from hfseg.viz import grey, scale_to_uint8, to_display


def test_scale_to_uint8_maps_known_values():
    values = np.arange(101, dtype=np.float64)  # the p-th percentile is p
    out = scale_to_uint8(values, (10, 90))
    # Clipped to [10, 90], then (v - 10) / 80 * 255, rounded.
    assert out[[0, 10, 30, 50, 90, 100]].tolist() == [0, 0, 64, 128, 255, 255]
    assert scale_to_uint8(np.array([2.0, 4.0, 6.0]), (0, 100)).tolist() == [0, 128, 255]  # min-max
    # Coinciding percentiles fall back to min-max; a constant array is black.
    spiky = np.zeros(100)
    spiky[-1] = 10.0
    assert scale_to_uint8(spiky, (1, 99)).tolist()[-2:] == [0, 255]
    assert scale_to_uint8(np.full((2, 2), 3.0)).tolist() == [[0, 0], [0, 0]]


def test_scale_to_uint8_ignores_nans():
    values = np.array([[0.0, np.nan], [50.0, 100.0]])
    out = scale_to_uint8(values, (0, 100))
    assert out.dtype == np.uint8 and out[1, 1] == 255 and out[0, 0] == 0


def test_uint8_grey_and_rgb_are_kept():
    grey_values = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = to_display(Image.fromarray(grey_values))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey_values)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_display(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(to_display(rgb), rgb)
    palette = Image.fromarray(grey_values).convert("P")
    assert to_display(palette).shape == (3, 4, 3)


def test_16_bit_and_float_images_use_percentile_scaling():
    values = np.linspace(0, 1000, 101 * 2).reshape(2, 101)
    low, high = np.percentile(values, (1, 99))
    expected = np.round((np.clip(values, low, high) - low) / (high - low) * 255).astype(np.uint8)
    sixteen = Image.fromarray(values.astype(np.uint16))
    assert sixteen.mode.startswith("I")
    assert np.abs(to_display(sixteen)[..., 0].astype(int) - expected.astype(int)).max() <= 1  # uint16 rounding
    out = to_display(values.astype(np.float32))
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    # A constant image is black, not a division by zero.
    assert to_display(np.full((4, 4), 7.5)).max() == 0


def test_multichannel_shows_the_first_or_chosen_channel():
    stack = np.stack([np.full((4, 5), v, dtype=np.float32) + np.arange(5) for v in (0, 10, 20, 30)], -1)
    np.testing.assert_array_equal(to_display(stack), to_display(stack[..., 0]))
    np.testing.assert_array_equal(to_display(stack, channel=2), to_display(stack[..., 2]))
    # (C, H, W) tensors and arrays are read channels first.
    np.testing.assert_array_equal(to_display(torch.from_numpy(np.moveaxis(stack, -1, 0))), to_display(stack[..., 0]))
    np.testing.assert_array_equal(to_display(np.moveaxis(stack, -1, 0), channel=1), to_display(stack[..., 1]))
    with pytest.raises(ValueError, match="channel 4"):
        to_display(stack, channel=4)


def test_half_precision_tensors_are_shown():
    image = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.bfloat16)
    assert to_display(image)[..., 0].tolist() == [[0, 255], [255, 255]]


def test_bool_and_errors():
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True
    out = to_display(mask)
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(TypeError, match="PIL image"):
        to_display([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="Cannot display"):
        to_display(np.zeros((2, 8, 8, 8)))


def test_grey_scales_and_reduces_channels():
    assert grey(np.array([[0.0, 2.0]])).tolist() == [[0, 255]]
    rgb = np.stack([np.array([[0, 30]]), np.array([[0, 60]]), np.array([[0, 90]])], axis=-1)
    assert grey(rgb).tolist() == [[0, 255]]  # the mean of the channels, min-max scaled
    four = np.zeros((1, 2, 4))
    four[0, 1, 0] = 5.0
    four[0, 0, 1] = 9.0  # only channel 0 is shown
    assert grey(four).tolist() == [[0, 255]]
    assert grey(four, channel=1).tolist() == [[255, 0]]
    assert grey(np.array([[10, 20, 30]], dtype=np.uint8)).tolist() == [[0, 128, 255]]  # uint8 is rescaled too
    assert grey(np.full((2, 3), 4.0)).shape == (2, 3)
