"""Panels: the grid's geometry, titles, and the training prediction panel's tiles pixel by pixel."""

import numpy as np
import pytest
import torch
from PIL import Image

from hfseg.viz import PALETTE, grid, prediction_panel, with_title


def test_grid_geometry_and_errors():
    a, b = np.zeros((3, 4, 3), np.uint8), np.full((3, 2, 3), 7, np.uint8)
    out = grid([[a, b], [b, a]], pad=1)
    assert out.shape == (2 * 5, (4 + 2) + (2 + 2), 3)
    assert (out[1:4, 1:5] == 0).all() and (out[1:4, 7:9] == 7).all()
    assert (out[0] == 255).all() and (out[:, 0] == 255).all() and (out[4:6, 1:5] == 255).all()  # white gutters
    with pytest.raises(ValueError, match="one height"):
        grid([[a, np.zeros((2, 4, 3), np.uint8)]])
    with pytest.raises(ValueError, match="one width"):
        grid([[a], [b]])


def test_with_title():
    panel = Image.new("RGB", (30, 10), "black")
    assert with_title(panel, "") is panel
    titled = with_title(panel, "epoch 1")
    assert titled.size == (30, 24)
    assert (np.asarray(titled)[14:] == 0).all()


def test_prediction_panel_tiles():
    images = torch.zeros(2, 1, 8, 8)
    images[:, :, :, 4:] = 1.0  # left half black, right half white
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[0, 0, 0] = 2
    labels[1, 0, 0] = -100  # a negative ignore value shows as background
    preds = torch.ones(2, 8, 8, dtype=torch.long)
    panel = np.asarray(prediction_panel(images, labels, preds))
    assert panel.shape == (2 * 12, 3 * 12, 3)  # 8 px tiles framed by 2 white pixels
    assert panel[2, 2].tolist() == [0, 0, 0] and panel[2, 9].tolist() == [255, 255, 255]  # the image
    assert panel[2, 14].tolist() == PALETTE[2].tolist() and panel[3, 14].tolist() == PALETTE[0].tolist()  # truth
    assert panel[14, 14].tolist() == PALETTE[0].tolist()
    assert panel[2, 26].tolist() == PALETTE[1].tolist()  # prediction
    with_attention = np.asarray(prediction_panel(images, labels, preds, torch.ones(2, 4, 4), title="epoch 0"))
    assert with_attention.shape == (14 + 2 * 12, 4 * 12, 3)
    # The map (1 everywhere: jet's (128, 0, 0)) over the image, half and half.
    assert with_attention[14 + 2, 38].tolist() == [64, 0, 0] and with_attention[14 + 2, 45].tolist() == [192, 128, 128]


def test_prediction_panel_shows_rgb_and_the_first_of_other_channels():
    rgb = torch.zeros(1, 3, 4, 4, dtype=torch.float16)
    rgb[0, 0, 0, 0] = 1.0
    rgb[0, 1, 1, 1] = 0.5
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    panel = np.asarray(prediction_panel(rgb, label, label))
    assert panel[2, 2].tolist() == [255, 0, 0]
    stack = torch.zeros(1, 5, 4, 4)
    stack[0, 0, 0, 0], stack[0, 1] = 1.0, 1.0
    panel = np.asarray(prediction_panel(stack, label, label))
    assert panel[2, 2].tolist() == [255] * 3 and panel[2, 3].tolist() == [0] * 3
