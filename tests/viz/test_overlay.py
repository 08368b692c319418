"""Overlays: blending by hand, class colours and legend, TP/FP/FN colours at hand-made pixels."""

import numpy as np
import pytest
import torch

from hfseg.viz import ERROR_COLORS, PALETTE, blend, error_masks, label_array, overlay_errors, overlay_mask

GREY = 100


def grey_image(height=16, width=40):
    return np.full((height, width), GREY, dtype=np.uint8)


def blended(color, alpha):
    return np.round((1 - alpha) * GREY + alpha * np.asarray(color, dtype=np.float64)).astype(np.uint8).tolist()


def has_color(array, color):
    return bool((array.reshape(-1, 3) == np.asarray(color, dtype=np.uint8)).all(1).any())


def test_blend_by_hand():
    base = np.full((2, 2, 3), GREY, dtype=np.uint8)
    where = np.array([[True, False], [False, False]])
    out = blend(base, (0, 200, 0), where, alpha=0.25)
    assert out[0, 0].tolist() == [75, 125, 75]  # 0.75 * 100 + 0.25 * (0, 200, 0)
    assert out[0, 1].tolist() == out[1, 1].tolist() == [GREY] * 3
    assert blend(base, (255, 255, 255), alpha=1.0).min() == 255  # everywhere, pure colour
    colors = np.zeros((2, 2, 3), dtype=np.uint8)
    colors[1, 1] = (200, 0, 100)
    assert blend(base, colors, alpha=0.5)[1, 1].tolist() == [150, 50, 100]


def test_label_array_accepts_tensors_and_checks_the_size():
    np.testing.assert_array_equal(label_array(torch.ones(1, 2, 3, dtype=torch.uint8), "mask", (2, 3)), np.ones((2, 3)))
    assert label_array(np.zeros((2, 3), np.uint8), "mask", (2, 3)).dtype == np.int64
    with pytest.raises(ValueError, match="mask has shape \\(2, 3\\) but the image is \\(3, 3\\)"):
        label_array(np.zeros((2, 3)), "mask", (3, 3))


def test_overlay_mask_colours_and_legend():
    mask = np.zeros((16, 40), dtype=np.int64)
    mask[2:6, 3:9] = 1
    mask[8:12, 10:20] = 2
    mask[0, 0] = 255  # not a class: left as it is
    names = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter"}
    out = overlay_mask(grey_image(), mask, names, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape[0] > 16 and out.shape[1] >= 40 and out.shape[2] == 3
    image = out[:16, :40]
    assert image[3, 4].tolist() == blended(PALETTE[1], 0.5)
    assert image[9, 15].tolist() == blended(PALETTE[2], 0.5)
    assert image[14, 30].tolist() == [GREY] * 3  # background
    assert image[0, 0].tolist() == [GREY] * 3  # 255
    strip = out[16:]
    for c in (1, 2, 3):  # every class has its swatch, also one absent from this mask
        assert has_color(strip, PALETTE[c]), c
    bare = overlay_mask(grey_image(), mask, names, alpha=0.5, legend=False)
    assert bare.shape == (16, 40, 3)
    np.testing.assert_array_equal(bare, image)
    every = overlay_mask(grey_image(), mask, names, alpha=1.0, legend=False, background=None)
    assert every[14, 30].tolist() == PALETTE[0].tolist()  # the background class coloured too


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
    out = overlay_errors(grey_image(), pred, truth, alpha=0.5)
    image = out[:16, :40]
    # 0.5 * 100 + 0.5 * colour, halves rounded to even.
    assert image[0, 0].tolist() == [50, 150, 50] == blended(ERROR_COLORS["TP"], 0.5)
    assert image[0, 1].tolist() == [178, 70, 70] == blended(ERROR_COLORS["FP"], 0.5)
    assert image[0, 2].tolist() == [70, 110, 178] == blended(ERROR_COLORS["FN"], 0.5)
    assert image[0, 3].tolist() == [178, 160, 50] == blended(ERROR_COLORS["wrong class"], 0.5)
    for x in (4, 5, 6):
        assert image[0, x].tolist() == [GREY] * 3, x
    assert out.shape[0] > 16
    for color in ERROR_COLORS.values():
        assert has_color(out[16:], color)
    # Scoring one class: the other foreground class counts as background, and the legend has no "wrong class".
    one = overlay_errors(grey_image(), pred, truth, classes=[2], alpha=0.6)
    assert not has_color(one[16:], ERROR_COLORS["wrong class"])
    one = one[:16, :40]
    assert one[0, 0].tolist() == [GREY] * 3  # class 1 TP: not scored
    assert one[0, 1].tolist() == blended(ERROR_COLORS["FP"], 0.6)
    assert one[0, 2].tolist() == blended(ERROR_COLORS["FN"], 0.6)
    assert one[0, 3].tolist() == blended(ERROR_COLORS["FP"], 0.6)  # truth 1 is not class 2
    # Without an ignore index, 255 is a (foreground) class like any other.
    no_ignore = overlay_errors(grey_image(), pred, truth, ignore_index=None, alpha=0.6, legend=False)
    assert no_ignore.shape == (16, 40, 3)
    assert no_ignore[0, 5].tolist() == blended(ERROR_COLORS["wrong class"], 0.6)
    assert no_ignore[0, 6].tolist() == blended(ERROR_COLORS["FN"], 0.6)
    # alpha 1: the pure colours.
    pure = overlay_errors(grey_image(), pred, truth, alpha=1.0, legend=False)
    assert tuple(pure[0, 0]) == ERROR_COLORS["TP"] and tuple(pure[0, 2]) == ERROR_COLORS["FN"]


def test_error_masks_are_a_partition_of_the_scored_pixels():
    rng = np.random.default_rng(0)
    pred, truth = rng.integers(0, 3, (20, 20)), rng.integers(0, 3, (20, 20))
    truth[:2] = 255
    masks = error_masks(pred, truth)
    total = sum(m.astype(int) for m in masks.values())
    scored = ((pred != 0) | (truth != 0)) & (truth != 255)
    np.testing.assert_array_equal(total, scored.astype(int))
    np.testing.assert_array_equal(masks["TP"], (pred == truth) & (pred != 0) & (truth != 255))
    assert not error_masks(pred, truth, classes=[1])["wrong class"].any()
    with pytest.raises(ValueError, match="same shape"):
        error_masks(pred, truth[:5])
