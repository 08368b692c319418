"""UNetConfig: defaults, derived widths, validation with the allowed values, serialisation."""

import pytest

from hfseg import UNetConfig
from hfseg.models.presets import UNET_PRESETS, unet_preset


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
