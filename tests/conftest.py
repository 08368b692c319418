"""Shared fixtures: tiny U-Net configs and batches. Tests never reach the network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

import hfseg

# Small widths for every preset: the architecture switches stay, the cost goes.
TINY = {"base_channels": 4, "depth": 3}
TINY_PRESET_OVERRIDES = {
    "unet": TINY,
    "unet-bn": TINY,
    "vgg16-unet": {"hidden_sizes": [4, 8, 8, 16, 16]},
    "attention-unet": TINY,
    "improved-unet": TINY,
    "improved-attention-unet": TINY,
    "gct-unet": TINY,
    "srm-unet": TINY,
    "timm-unet": {"encoder": "resnet18"},
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    return hfseg.UNetConfig(num_channels=1, num_labels=3, norm="batchnorm", attention="gate", **TINY)


@pytest.fixture
def tiny_batch():
    pixel_values = torch.randn(2, 1, 32, 32)
    labels = torch.randint(0, 3, (2, 32, 32))
    return pixel_values, labels
