"""Heatmaps: colormap colours at known values, resizing, blending over the image."""

import matplotlib
import numpy as np
import pytest
import torch

from hfseg.viz import heatmap_colors, overlay_heatmap, resize_map

GREY = 100


def grey_image(height=16, width=40):
    return np.full((height, width), GREY, dtype=np.uint8)


def blended(color, alpha):
    return np.round((1 - alpha) * GREY + alpha * np.asarray(color, dtype=np.float64)).astype(np.uint8).tolist()


def test_heatmap_colors_at_known_values():
    out = heatmap_colors(np.array([[0.0, 1.0, 2.0, np.nan]]))
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    # jet runs from dark blue (0, 0, 0.5) to dark red (0.5, 0, 0); out-of-range values clip, NaN is 0.
    assert out[0].tolist() == [[0, 0, 128], [128, 0, 0], [128, 0, 0], [0, 0, 128]]
    assert heatmap_colors(np.array([[0.0, 1.0]]), "gray")[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_resize_map():
    assert resize_map(np.ones((4, 10)), (16, 40)).shape == (16, 40)
    np.testing.assert_allclose(resize_map(torch.ones(4, 10, dtype=torch.bfloat16), (8, 20)), 1.0)
    same = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(resize_map(same, (3, 5)), same)  # the right size: untouched
    with pytest.raises(ValueError, match="\\(h, w\\)"):
        resize_map(np.ones((2, 4, 10)), (4, 10))


def test_overlay_heatmap_blends_the_colormap():
    cam = np.zeros((16, 40), dtype=np.float32)
    cam[4, 7] = 1.0
    cam[10, 20] = 0.25
    out = overlay_heatmap(grey_image(), cam, alpha=0.5)
    assert out.shape == (16, 40, 3) and out.dtype == np.uint8
    assert out[4, 7].tolist() == [114, 50, 50]  # 0.5 * 100 + 0.5 * (128, 0, 0)
    assert out[0, 0].tolist() == [50, 50, 114]  # 0.5 * 100 + 0.5 * (0, 0, 128)
    jet = matplotlib.colormaps["jet"]
    assert out[10, 20].tolist() == blended(np.round(np.asarray(jet(0.25)[:3]) * 255), 0.5)
    # A map at another size is resized (bilinearly) to the image.
    small = overlay_heatmap(grey_image(), torch.ones(4, 10), alpha=0.5)
    assert small.shape == (16, 40, 3) and small[8, 20].tolist() == [114, 50, 50]
    with pytest.raises(ValueError, match="\\(h, w\\)"):
        overlay_heatmap(grey_image(), np.ones((2, 4, 10)))
