"""Model loading for the demo: the allowlist, the bundled model, cache, channels, classes, and clear errors."""

import json
import os

import pytest
import torch

import hfseg
from hfseg.app.models import (
    ANY_MODEL_ENV,
    BUNDLED_LABEL,
    CLASSIFIERS_ENV,
    MODEL_ENV,
    MODELS_ENV,
    REMOTE_CODE_ENV,
    LoadedModel,
    ModelError,
    ModelPolicy,
    default_model,
    get_model,
    id2label_of,
    input_channels,
)

from .conftest import ID2LABEL, SPACE_MODEL

ENV = (MODEL_ENV, MODELS_ENV, CLASSIFIERS_ENV, ANY_MODEL_ENV, REMOTE_CODE_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- which models ------------------------------------------------------------------------------------------------
def test_default_is_the_bundled_model(clean_env):
    policy = ModelPolicy.from_environment(bundled=SPACE_MODEL)
    assert policy.models == (str(SPACE_MODEL),) and policy.default == str(SPACE_MODEL) == default_model(SPACE_MODEL)
    assert policy.classifiers == () and not policy.allow_any and not policy.trust_remote_code
    assert policy.choices(policy.models) == [(BUNDLED_LABEL, str(SPACE_MODEL))]
    assert ModelPolicy.from_environment().models == () and default_model() is None


def test_operator_settings(clean_env):
    clean_env.setenv(MODEL_ENV, " runs/x/best ")
    assert ModelPolicy.from_environment(bundled="model").models == ("runs/x/best", "model")
    clean_env.setenv(MODELS_ENV, "a/b, runs/x/best ,c/d,")
    clean_env.setenv(CLASSIFIERS_ENV, "e/f")
    clean_env.setenv(ANY_MODEL_ENV, "1")
    clean_env.setenv(REMOTE_CODE_ENV, "True")
    policy = ModelPolicy.from_environment(bundled="model")
    assert policy.models == ("runs/x/best", "a/b", "c/d") and policy.default == "runs/x/best"
    assert policy.classifiers == ("e/f",) and policy.allow_any and policy.trust_remote_code
    for off in ("", "0", "no", "false"):
        clean_env.setenv(ANY_MODEL_ENV, off)
        clean_env.setenv(REMOTE_CODE_ENV, off)
        policy = ModelPolicy.from_environment()
        assert not policy.allow_any and not policy.trust_remote_code


def test_names_off_the_list_are_refused_before_loading(gated_model, tmp_path, monkeypatch):
    from hfseg.app import models

    policy = ModelPolicy(models=(gated_model,), classifiers=("e/f",))
    policy.check(gated_model)
    policy.check(gated_model + os.sep)  # the same folder
    policy.check("e/f")
    monkeypatch.setattr(models, "_load", lambda *args: pytest.fail("a refused model was loaded"))
    for name in ("someone/model", str(tmp_path), "../../etc"):
        with pytest.raises(ModelError, match=r"is not one of this demo's models: choose one of .*HFSEG_MODELS"):
            get_model(name, policy)
    with pytest.raises(ModelError, match="offers no models"):
        get_model("someone/model", ModelPolicy(models=()))
    ModelPolicy(models=(), allow_any=True).check("someone/model")


def test_remote_code_is_not_run_unless_the_operator_allows_it(shipped_code_checkpoint):
    """A folder whose config maps to code shipped with it: refused with a message, and the code never runs."""
    folder, marker = shipped_code_checkpoint
    for policy in (None, ModelPolicy(models=(str(folder),))):
        with pytest.raises(ModelError, match=f"trust_remote_code.*{REMOTE_CODE_ENV}=1"):
            get_model(str(folder), policy)
    assert not marker.exists()


def test_the_bundled_model_loads_without_remote_code():
    config = json.loads((SPACE_MODEL / "config.json").read_text())
    assert config["auto_map"]  # it ships its code (for trust_remote_code users without hfseg)...
    loaded = get_model(str(SPACE_MODEL), ModelPolicy.from_environment(bundled=SPACE_MODEL))
    assert type(loaded.model).__module__.startswith("hfseg.")  # ...but the app uses hfseg's own classes
    assert loaded.num_channels == 1 and not loaded.classifier
    assert loaded.id2label == {0: "background", 1: "csf_other_brain", 2: "grey_matter", 3: "white_matter"}


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
    with pytest.raises(ModelError, match="Cannot load model 'hfseg/no-such-model'"):  # offline in tests
        get_model("hfseg/no-such-model")


def test_failed_hub_id_is_not_retried_at_once(monkeypatch):
    from hfseg.app import models

    calls = []

    def unreachable(name, trust_remote_code):
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


def test_remote_code_runs_for_listed_models_only(shipped_code_checkpoint, monkeypatch):
    """With remote code allowed and any model allowed, a typed folder's code still never runs; a listed one's does."""
    from hfseg.app import models

    folder, marker = shipped_code_checkpoint
    monkeypatch.setattr(models, "_hub_failures", {})
    typed = ModelPolicy(models=("a/b",), allow_any=True, trust_remote_code=True)
    assert typed.trusts("a/b") and not typed.trusts(str(folder))
    with pytest.raises(ModelError, match=f"trust_remote_code.*models they list and trust, with {REMOTE_CODE_ENV}=1"):
        get_model(str(folder), typed)
    assert not marker.exists()
    listed = ModelPolicy(models=(str(folder) + os.sep,), trust_remote_code=True)
    assert listed.trusts(str(folder)) and not ModelPolicy(models=(str(folder),)).trusts(str(folder))
    with pytest.raises(ModelError, match="Cannot load model"):  # its code ran; the model class it names does not exist
        get_model(str(folder), listed)
    assert marker.exists()
