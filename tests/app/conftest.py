"""Tiny saved models for the demo's tests (no runs/, no network), and the Space's bundled model and example files."""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

import hfseg
from hfseg.models.unet.image_processing_unet import UNetImageProcessor

SPACES = Path(__file__).resolve().parents[2] / "spaces"
EXAMPLES = SPACES / "examples"
SPACE_MODEL = SPACES / "model"  # the Space's bundled model
ID2LABEL = {0: "background", 1: "tissue", 2: "lesion"}


def save_segmenter(folder: Path, preset: str = "attention-unet", num_channels: int = 1,
                   id2label: dict[int, str] | None = None, modality: str | None = None) -> str:
    """A tiny untrained U-Net saved with a z-score processor that resizes to 64 x 64 and records the training
    data's `modality` (None: unknown). Its background bias is lowered so that it predicts foreground classes (the
    overlay then has colours)."""
    torch.manual_seed(0)
    model = hfseg.create_model(preset, id2label=id2label or ID2LABEL, num_channels=num_channels, base_channels=4,
                               depth=3)
    with torch.no_grad():
        if model.config.num_labels > 1:
            model.head.bias[0] = -10.0
    model.save_pretrained(folder)
    processor = UNetImageProcessor(normalization="zscore", num_channels=num_channels, do_resize=True,
                                   size={"height": 64, "width": 64})
    processor.modality = modality
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def gated_model(tmp_path_factory) -> str:
    """Attention U-Net (gates), one channel, classes background / tissue / lesion."""
    return save_segmenter(tmp_path_factory.mktemp("gated"))


@pytest.fixture(scope="session")
def plain_model(tmp_path_factory) -> str:
    """U-Net without attention gates, one channel."""
    return save_segmenter(tmp_path_factory.mktemp("plain"), preset="unet")


@pytest.fixture(scope="session")
def mr_model(tmp_path_factory) -> str:
    """The plain U-Net, its processor recording that it was trained on MR images (`modality="MR"`)."""
    return save_segmenter(tmp_path_factory.mktemp("mr"), preset="unet", modality="MR")


@pytest.fixture(scope="session")
def rgb_model(tmp_path_factory) -> str:
    """U-Net taking three channels."""
    return save_segmenter(tmp_path_factory.mktemp("rgb"), preset="unet", num_channels=3)


@pytest.fixture(scope="session")
def classifier_model(tmp_path_factory) -> str:
    """A timm ResNet-18 image classifier on one channel, three classes."""
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    config = TimmWrapperConfig(architecture="resnet18", num_labels=3, model_args={"in_chans": 1},
                               id2label={0: "glioma", 1: "meningioma", 2: "no_tumor"})
    folder = tmp_path_factory.mktemp("classifier")
    TimmWrapperForImageClassification(config).save_pretrained(folder)
    UNetImageProcessor(normalization="zscore", num_channels=1, do_resize=True,
                       size={"height": 64, "width": 64}).save_pretrained(folder)
    return str(folder)
