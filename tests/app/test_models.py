"""Model loading for the demo: default, cache, channels, classes, and clear errors."""

import pytest
import torch

import hfseg
from hfseg.app.models import (
    DEFAULT_HUB_MODEL,
    MODEL_ENV,
    LoadedModel,
    ModelError,
    default_model,
    get_model,
    id2label_of,
    input_channels,
)

from .conftest import ID2LABEL


def test_default_model_from_environment(monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert default_model() == DEFAULT_HUB_MODEL
    monkeypatch.setenv(MODEL_ENV, " runs/x/best ")
    assert default_model() == "runs/x/best"


def test_get_model_loads_once_with_its_classes(gated_model, classifier_model):
    loaded = get_model(gated_model)
    assert get_model(f" {gated_model} ") is loaded
    assert loaded.num_channels == 1 and loaded.id2label == ID2LABEL and not loaded.classifier
    assert next(loaded.model.parameters()).device.type == "cpu" and not loaded.model.training
    classifier = get_model(classifier_model)
    assert classifier.classifier and classifier.num_channels == 1


def test_input_channels_fallbacks():
    timm_like = torch.nn.Sequential(torch.nn.Conv2d(5, 2, 3))
    assert input_channels(timm_like) == 5
    assert input_channels(torch.nn.Identity()) == 3
    unet = hfseg.create_model("unet", num_labels=2, num_channels=4, base_channels=4, depth=3)
    assert input_channels(unet) == 4
    assert id2label_of(unet) == {0: "LABEL_0", 1: "LABEL_1"}


def test_binary_model_mask_labels():
    model = hfseg.create_model("unet", id2label={0: "tumour"}, num_channels=1, base_channels=4, depth=3)
    loaded = LoadedModel("x", model, None, 1, id2label_of(model), classifier=False)
    assert loaded.mask_labels == {0: "background", 1: "tumour"}


def test_load_errors_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="No model given"):
        get_model("  ")
    with pytest.raises(ModelError, match="not found"):
        get_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="Cannot load model"):
        get_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="push_to_hub"):  # offline in tests: the Hub default cannot load
        get_model(DEFAULT_HUB_MODEL)


def test_failed_hub_id_is_not_retried_at_once(monkeypatch):
    from hfseg.app import models

    calls = []

    def unreachable(name):
        calls.append(name)
        raise OSError("We couldn't connect to 'https://huggingface.co'.")

    monkeypatch.setattr(models, "_load", unreachable)
    monkeypatch.setattr(models, "_hub_failures", {})
    for _ in range(3):
        with pytest.raises(ModelError, match=r"'someone/model': We couldn't connect to 'https://huggingface\.co'\.$"):
            get_model("someone/model")
    assert calls == ["someone/model"]
    monkeypatch.setattr(models, "HUB_RETRY_AFTER_S", 0.0)
    with pytest.raises(ModelError):
        get_model("someone/model")
    assert len(calls) == 2
