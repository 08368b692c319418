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


@pytest.fixture
def shipped_code_checkpoint(tmp_path):
    """A folder whose config maps to code shipped with it (a class neither transformers nor hfseg has), and the file
    that code creates when it runs: `(folder, marker)`."""
    import json

    folder, marker = tmp_path / "custom", tmp_path / "ran"
    folder.mkdir()
    (folder / "configuration_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                                     "from transformers import PretrainedConfig\n"
                                                     "class CustomConfig(PretrainedConfig):\n"
                                                     "    model_type = 'hfseg_test_custom'\n")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "hfseg_test_custom", "architectures": ["CustomForSemanticSegmentation"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}))
    return folder, marker
