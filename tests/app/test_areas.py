"""Class areas against hand counts."""

import numpy as np
import pytest

from hfseg.app.areas import UNKNOWN, class_areas

MASK = np.array([[0, 1, 1],
                 [2, 1, 0]])
NAMES = {0: "background", 1: "liver", 2: "spleen", 3: "kidney"}


def test_pixels_share_and_mm2():
    rows = class_areas(MASK, NAMES, spacing=(0.5, 2.0))  # one pixel is 1 mm²... times 0.5 x 2.0 = 1.0
    assert rows == [["background", 2, 33.3, 2.0], ["liver", 3, 50.0, 3.0], ["spleen", 1, 16.7, 1.0],
                    ["kidney", 0, 0.0, 0.0]]
    rows = class_areas(MASK, NAMES, spacing=(0.7, 0.3))
    assert [r[3] for r in rows] == pytest.approx([2 * 0.21, 3 * 0.21, 0.21, 0.0])


def test_unknown_spacing_and_unnamed_values():
    rows = class_areas(np.array([[0, 5]]), {0: "background"}, spacing=None)
    assert rows == [["background", 1, 50.0, UNKNOWN], ["class 5", 1, 50.0, UNKNOWN]]
