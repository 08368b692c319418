"""UNetConfig: defaults, derived widths, validation with the allowed values, unknown fields (strict construction,
lenient loading), serialisation."""

import inspect
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from transformers import AutoConfig, AutoModelForSemanticSegmentation, PretrainedConfig

from hfseg import UNetConfig, UNetForSemanticSegmentation
from hfseg.models.presets import UNET_PRESETS, unet_preset
from hfseg.models.unet.configuration_unet import LEGACY_CONFIG_KEYS, config_keywords


def test_defaults_are_the_classic_unet():
    config = UNetConfig()
    assert config.hidden_sizes == [64, 128, 256, 512, 1024] and config.depth == 4
    assert config.norm == "none" and config.attention == "none" and config.skip == "concat"
    assert config.convs_per_stage == [2] * 5 and config.kernel_size == 3
    assert config.model_type == "hfseg_unet" and config.semantic_loss_ignore_index == 255


def test_base_channels_and_depth_derive_hidden_sizes():
    assert UNetConfig(base_channels=16, depth=3).hidden_sizes == [16, 32, 64, 128]


@pytest.mark.parametrize(
    ("field", "value"),
    [("norm", "layernorm"), ("attention", "scse"), ("channel_attention", "cbam"), ("skip", "mul"),
     ("loss", "lovasz"), ("conv_type", "deformable"), ("upsample", "pixelshuffle"), ("activation", "tanh"),
     ("bottleneck", "aspp")],
)
def test_unknown_values_list_the_allowed_ones(field, value):
    with pytest.raises(ValueError, match=f"Unknown {field} '{value}'; allowed values: "):
        UNetConfig(**{field: value})


def test_other_validation():
    with pytest.raises(ValueError, match="one entry per stage"):
        UNetConfig(hidden_sizes=[8, 16, 32], convs_per_stage=[2, 2])
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        UNetConfig(kernel_size=4)
    with pytest.raises(ValueError, match="class_weights has 2 entries but the model has 3 labels"):
        UNetConfig(num_labels=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="hidden_sizes needs at least 2"):
        UNetConfig(hidden_sizes=[8])


def test_dict_round_trip():
    config = UNetConfig(num_labels=4, attention="gate", class_weights=[1, 2, 3, 4], hidden_sizes=[8, 16, 32])
    again = UNetConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()


def test_presets_are_only_config_kwargs():
    for name in UNET_PRESETS:
        UNetConfig(**unet_preset(name))  # every preset is a valid config
    preset = unet_preset("attention-unet")
    preset["attention"] = "none"
    assert UNET_PRESETS["attention-unet"]["attention"] == "gate"  # callers get a copy
    with pytest.raises(ValueError, match="Unknown U-Net preset 'unet3d'; allowed values: unet, unet-bn"):
        unet_preset("unet3d")


def test_an_unknown_field_is_an_error_with_close_matches():
    with pytest.raises(ValueError, match="Unknown UNetConfig field 'base_chanels'; did you mean 'base_channels'"):
        UNetConfig(base_chanels=16)
    with pytest.raises(ValueError, match="Unknown UNetConfig field 'num_label'; did you mean 'num_labels'"):
        UNetConfig(num_label=3)
    # A field the U-Net does not have fails when the config is built, not at the first forward.
    with pytest.raises(ValueError, match=r"Unknown UNetConfig field 'temporal_window'\. UNetConfig fields: activation"):
        UNetConfig(temporal_window=3)


GENERIC = [
    {"num_labels": 3}, {"id2label": {0: "a", 1: "b"}, "label2id": {"a": 0, "b": 1}}, {"output_hidden_states": True},
    {"return_dict": False}, {"dtype": "float16"}, {"torch_dtype": "float16"}, {"problem_type": "regression"},
    {"architectures": ["UNetForSemanticSegmentation"]}, {"auto_map": {"AutoConfig": "configuration_unet.UNetConfig"}},
    {"transformers_version": "5.4.0"}, {"name_or_path": "org/liver-unet"}, {"output_attentions": False},
    {"attn_implementation": "eager"}, {"chunk_size_feed_forward": 0}, {"is_encoder_decoder": False},
]


@pytest.mark.parametrize("kwargs", GENERIC, ids=lambda kwargs: "+".join(kwargs))
def test_generic_pretrained_config_keywords_still_work(kwargs):
    config = UNetConfig(**kwargs)
    for key, value in kwargs.items():
        stored = {"torch_dtype": "dtype", "attn_implementation": "_attn_implementation"}.get(key, key)
        assert getattr(config, stored) == (torch.float16 if stored == "dtype" else value)


def test_the_generic_keywords_come_from_the_installed_transformers():
    generic = config_keywords()
    assert set(PretrainedConfig().to_dict()) <= generic
    assert set(inspect.signature(PretrainedConfig.__init__).parameters) - {"self", "kwargs"} <= generic
    assert {"num_labels", "name_or_path", "torch_dtype"} <= generic  # settable properties
    assert set(LEGACY_CONFIG_KEYS) <= generic
    config = UNetConfig(num_labels=2, attention="gate", hidden_sizes=[8, 16, 32])
    assert UNetConfig(**config.to_dict()).to_dict() == config.to_dict()  # everything to_dict writes is accepted


def _saved(tmp_path, **extra):
    """A tiny U-Net config saved by save_pretrained, with `extra` keys written into its config.json."""
    UNetConfig(num_labels=4, attention="gate", hidden_sizes=[8, 16, 32]).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **extra}))
    return path


def test_a_saved_config_with_an_unknown_key_loads_with_a_warning(tmp_path):
    # `use_return_dict` is a read-only property that no transformers writes: transformers' own loader rejects it.
    path = _saved(tmp_path, temporal_window=3, use_return_dict=True)
    for load in (UNetConfig.from_pretrained, AutoConfig.from_pretrained,
                 lambda folder: UNetConfig.from_json_file(folder / "config.json"),
                 lambda folder: UNetConfig.from_dict(json.loads(path.read_text()))):
        with pytest.warns(UserWarning, match="Ignoring 'temporal_window', 'use_return_dict' in the saved UNetConfig"):
            config = load(tmp_path)
        assert type(config) is UNetConfig and config.attention == "gate" and config.num_labels == 4
        assert not hasattr(config, "temporal_window")


def test_keys_of_older_transformers_load_silently(tmp_path):
    _saved(tmp_path, torch_dtype="float32", _commit_hash="0" * 40, _attn_implementation_autoset=True,
           transformers_version="5.4.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = UNetConfig.from_pretrained(tmp_path)
    assert not [w for w in caught if "Ignoring" in str(w.message)]
    assert config.dtype == torch.float32 and config.hidden_sizes == [8, 16, 32]


def test_overrides_on_loading_still_work(tmp_path):
    _saved(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path, num_labels=5, dropout=0.25, output_hidden_states=True)
    assert config.num_labels == 5 and config.dropout == 0.25 and config.output_hidden_states


def test_save_and_load_round_trip_is_unchanged(tmp_path):
    config = UNetConfig(num_labels=3, norm="batchnorm", channel_attention="srm", class_weights=[1, 2, 3], depth=2)
    config.save_pretrained(tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing hfseg itself wrote is ignored
        again = UNetConfig.from_pretrained(tmp_path / "a")
    assert again.to_dict() == config.to_dict()
    again.save_pretrained(tmp_path / "b")
    assert (tmp_path / "b" / "config.json").read_text() == (tmp_path / "a" / "config.json").read_text()


def test_a_model_checkpoint_with_an_unknown_key_loads(tmp_path):
    model = UNetForSemanticSegmentation(UNetConfig(num_labels=2, base_channels=4, depth=2)).eval()
    model.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "temporal_window": 2}))
    with pytest.warns(UserWarning, match="Ignoring 'temporal_window'"):
        loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


REMOTE_LOADER = textwrap.dedent(
    """
    import sys, warnings
    sys.modules["hfseg"] = None  # the config class must come from the checkpoint folder
    from transformers import AutoConfig
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True, num_labels=5)
    assert type(config).__module__.startswith("transformers_modules"), type(config).__module__
    assert config.num_labels == 5 and config.attention == "gate", config
    assert any("Ignoring 'temporal_window'" in str(w.message) for w in caught), [str(w.message) for w in caught]
    try:
        type(config)(base_chanels=4)
    except ValueError as err:
        print(err)
    """
)


def test_remote_code_config_is_lenient_on_loading_and_strict_on_construction(tmp_path):
    _saved(tmp_path, temporal_window=3)
    assert (tmp_path / "configuration_unet.py").exists()
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", REMOTE_LOADER, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Unknown UNetConfig field 'base_chanels'; did you mean 'base_channels'" in result.stdout
