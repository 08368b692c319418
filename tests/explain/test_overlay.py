"""Overlays: class colours and legend, TP/FP/FN colours at hand-made pixels, heatmaps."""

import matplotlib
import numpy as np
import pytest
import torch

from hfseg.explain import overlay_errors, overlay_heatmap, overlay_mask
from hfseg.explain.overlay import ERROR_COLORS, error_masks, legend_strip
from hfseg.viz import PALETTE

GREY = 100


def grey_image(height=16, width=40):
    return np.full((height, width), GREY, dtype=np.uint8)


def blend(color, alpha):
    return np.round((1 - alpha) * GREY + alpha * np.asarray(color, dtype=np.float64)).astype(np.uint8).tolist()


def has_color(array, color):
    return bool((array.reshape(-1, 3) == np.asarray(color, dtype=np.uint8)).all(1).any())


def test_overlay_mask_colours_and_legend():
    mask = np.zeros((16, 40), dtype=np.int64)
    mask[2:6, 3:9] = 1
    mask[8:12, 10:20] = 2
    mask[0, 0] = 255  # not a class: left as it is
    names = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter"}
    out = overlay_mask(grey_image(), mask, names, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape[0] > 16 and out.shape[1] >= 40 and out.shape[2] == 3
    image = out[:16, :40]
    assert image[3, 4].tolist() == blend(PALETTE[1], 0.5)
    assert image[9, 15].tolist() == blend(PALETTE[2], 0.5)
    assert image[14, 30].tolist() == [GREY] * 3  # background
    assert image[0, 0].tolist() == [GREY] * 3  # 255
    strip = out[16:]
    for c in (1, 2, 3):  # every class has its swatch, also one absent from this mask
        assert has_color(strip, PALETTE[c]), c
    bare = overlay_mask(grey_image(), mask, names, alpha=0.5, legend=False)
    assert bare.shape == (16, 40, 3)
    np.testing.assert_array_equal(bare, image)


def test_overlay_mask_without_names_and_on_rgb():
    mask = np.zeros((16, 40), dtype=np.int64)
    mask[:, 20:] = 12  # colours cycle through the palette
    rgb = np.zeros((16, 40, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    out = overlay_mask(rgb, torch.from_numpy(mask)[None], alpha=1.0)
    assert out[5, 30].tolist() == PALETTE[12 % len(PALETTE)].tolist()
    assert out[5, 5].tolist() == [0, 200, 0]
    assert has_color(out[16:], PALETTE[12 % len(PALETTE)])
    with pytest.raises(ValueError, match="at the image's size"):
        overlay_mask(rgb, mask[:8])


def test_error_colours_at_hand_made_pixels():
    truth = np.zeros((16, 40), dtype=np.int64)
    pred = np.zeros((16, 40), dtype=np.int64)
    truth[0, 0], pred[0, 0] = 1, 1  # TP
    truth[0, 1], pred[0, 1] = 0, 2  # FP
    truth[0, 2], pred[0, 2] = 2, 0  # FN
    truth[0, 3], pred[0, 3] = 1, 2  # wrong foreground class
    truth[0, 4], pred[0, 4] = 0, 0  # TN
    truth[0, 5], pred[0, 5] = 255, 1  # ignored
    truth[0, 6], pred[0, 6] = 255, 0  # ignored
    out = overlay_errors(grey_image(), pred, truth, alpha=0.6)
    image = out[:16, :40]
    assert image[0, 0].tolist() == blend(ERROR_COLORS["TP"], 0.6)
    assert image[0, 1].tolist() == blend(ERROR_COLORS["FP"], 0.6)
    assert image[0, 2].tolist() == blend(ERROR_COLORS["FN"], 0.6)
    assert image[0, 3].tolist() == blend(ERROR_COLORS["wrong class"], 0.6)
    for x in (4, 5, 6):
        assert image[0, x].tolist() == [GREY] * 3, x
    for color in ERROR_COLORS.values():
        assert has_color(out[16:], color)
    # Scoring one class: the other foreground class counts as background.
    one = overlay_errors(grey_image(), pred, truth, classes=[2], alpha=0.6, legend=False)
    assert one.shape == (16, 40, 3)
    assert one[0, 0].tolist() == [GREY] * 3  # class 1 TP: not scored
    assert one[0, 1].tolist() == blend(ERROR_COLORS["FP"], 0.6)
    assert one[0, 2].tolist() == blend(ERROR_COLORS["FN"], 0.6)
    assert one[0, 3].tolist() == blend(ERROR_COLORS["FP"], 0.6)  # truth 1 is not class 2
    # Without an ignore index, 255 is a (foreground) class like any other.
    no_ignore = overlay_errors(grey_image(), pred, truth, ignore_index=None, alpha=0.6, legend=False)
    assert no_ignore[0, 5].tolist() == blend(ERROR_COLORS["wrong class"], 0.6)
    assert no_ignore[0, 6].tolist() == blend(ERROR_COLORS["FN"], 0.6)


def test_error_masks_are_a_partition_of_the_scored_pixels():
    rng = np.random.default_rng(0)
    pred, truth = rng.integers(0, 3, (20, 20)), rng.integers(0, 3, (20, 20))
    truth[:2] = 255
    masks = error_masks(pred, truth)
    total = sum(m.astype(int) for m in masks.values())
    scored = ((pred != 0) | (truth != 0)) & (truth != 255)
    np.testing.assert_array_equal(total, scored.astype(int))
    np.testing.assert_array_equal(masks["TP"], (pred == truth) & (pred != 0) & (truth != 255))


def test_overlay_heatmap_blends_the_colormap():
    cam = np.zeros((16, 40), dtype=np.float32)
    cam[4, 7] = 1.0
    cam[10, 20] = 0.25
    out = overlay_heatmap(grey_image(), cam, alpha=0.5)
    assert out.shape == (16, 40, 3) and out.dtype == np.uint8
    jet = matplotlib.colormaps["jet"]
    for (y, x) in [(4, 7), (10, 20), (0, 0)]:
        color = np.round(np.asarray(jet(float(cam[y, x]))[:3]) * 255)
        assert out[y, x].tolist() == blend(color, 0.5)
    # A map at another size is resized (bilinearly) to the image.
    small = overlay_heatmap(grey_image(), np.ones((4, 10)), alpha=0.5)
    assert small.shape == (16, 40, 3) and small[8, 20].tolist() == blend(np.round(np.asarray(jet(1.0)[:3]) * 255), 0.5)
    with pytest.raises(ValueError, match="\\(h, w\\)"):
        overlay_heatmap(grey_image(), np.ones((2, 4, 10)))


def test_legend_wraps_to_the_width():
    entries = [(tuple(int(v) for v in PALETTE[i]), f"a long class name {i}") for i in range(1, 8)]
    strip = legend_strip(entries, 300)
    assert strip.shape[1] == 300 and strip.shape[0] > 40  # several rows
    assert all(has_color(strip, color) for color, _ in entries)
    wide = legend_strip([((1, 2, 3), "x" * 60)], 20)
    assert wide.shape[1] > 20  # widened for an entry longer than the image
