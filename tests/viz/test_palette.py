"""The class palette: colours by index, cycling past its length."""

import numpy as np

from hfseg.viz import PALETTE, class_color, colorize


def test_colorize_and_class_color_cycle():
    label = np.array([[0, 1], [2, len(PALETTE) + 1]])
    out = colorize(label)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 0]  # background black
    assert out[0, 1].tolist() == PALETTE[1].tolist() == out[1, 1].tolist()
    assert class_color(2) == tuple(int(v) for v in PALETTE[2])
    assert class_color(len(PALETTE) + 2) == class_color(2)
    assert all(isinstance(v, int) for v in class_color(3))
