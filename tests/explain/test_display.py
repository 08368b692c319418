"""`to_display`: every image kind the loaders give, as (H, W, 3) uint8."""

import numpy as np
import pytest
import torch
from PIL import Image

from hfseg.explain import to_display
from hfseg.explain.display import scale_to_uint8


def test_uint8_grey_and_rgb_are_kept():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = to_display(Image.fromarray(grey))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_display(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(to_display(rgb), rgb)
    palette = Image.fromarray(grey).convert("P")
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


def test_bool_and_errors():
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True
    out = to_display(mask)
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(TypeError, match="PIL image"):
        to_display([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="Cannot display"):
        to_display(np.zeros((2, 8, 8, 8)))


def test_scale_to_uint8_ignores_nans():
    values = np.array([[0.0, np.nan], [50.0, 100.0]])
    out = scale_to_uint8(values, (0, 100))
    assert out.dtype == np.uint8 and out[1, 1] == 255 and out[0, 0] == 0
