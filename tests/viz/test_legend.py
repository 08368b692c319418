"""Legend strips: their size, the swatch's exact pixels, wrapping, and a picture above its legend."""

import numpy as np

from hfseg.viz import PALETTE, legend_strip, with_legend


def has_color(array, color):
    return bool((array.reshape(-1, 3) == np.asarray(color, dtype=np.uint8)).all(1).any())


def test_one_row_strip_dims_and_swatch():
    strip = legend_strip([((1, 2, 3), "a")], 200)
    assert strip.shape == (24, 200, 3) and strip.dtype == np.uint8  # 4 px padding, one 16 px row, 4 px padding
    # The 10 px swatch: 4 px from the left, centred in the row (rows 4 + 3 .. 4 + 3 + 9).
    assert (strip[7:17, 4:14] == (1, 2, 3)).all()
    assert (strip[6, 4:14] == 255).all() and (strip[17, 4:14] == 255).all() and (strip[7:17, 3] == 255).all()
    assert (strip[:4] == 255).all() and (strip[-4:] == 255).all()


def test_legend_wraps_to_the_width():
    entries = [(tuple(int(v) for v in PALETTE[i]), f"a long class name {i}") for i in range(1, 8)]
    strip = legend_strip(entries, 300)
    assert strip.shape[1] == 300 and (strip.shape[0] - 24) % 16 == 0 and strip.shape[0] > 40  # several 16 px rows
    assert all(has_color(strip, color) for color, _ in entries)
    wide = legend_strip([((1, 2, 3), "x" * 60)], 20)
    assert wide.shape[0] == 24 and wide.shape[1] > 20  # widened for an entry longer than the image


def test_with_legend_keeps_the_image_and_pads_it():
    image = np.full((5, 30, 3), 100, dtype=np.uint8)
    out = with_legend(image, [((9, 9, 9), "a rather long name")])
    assert out.shape[0] == 5 + 24 and out.shape[1] > 30
    np.testing.assert_array_equal(out[:5, :30], image)
    assert (out[:5, 30:] == 255).all()  # white padding on the right
    assert with_legend(image, []) is image
