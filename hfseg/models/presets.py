"""Named U-Net presets: each is only a set of `UNetConfig` keyword arguments.

Every preset on the built-in conv encoder (all but `timm-unet`) also builds a volume model: add `spatial_dims=3`,
and a plan's `strides` / `kernel_sizes` (nnU-Net's pooling and kernel sizes) and `deep_supervision=True` as needed.
"""

from __future__ import annotations

from typing import Any

UNET_PRESETS: dict[str, dict[str, Any]] = {
    # Ronneberger et al. 2015: double 3x3 convs, no normalization, 64 base channels, 4 downsamplings.
    "unet": dict(base_channels=64, depth=4),
    # The same with batch norm between each conv and its ReLU (the liver study's U-Net-BN).
    "unet-bn": dict(base_channels=64, depth=4, norm="batchnorm"),
    # VGG16-shaped encoder (conv stacks 64-128-256-512-512, as in the liver study), bilinear upsampling.
    # With `encoder="vgg16", encoder_out_indices=[0, 1, 2, 3, 4]` the encoder is timm's VGG16 (pretrained weights).
    "vgg16-unet": dict(hidden_sizes=[64, 128, 256, 512, 512], convs_per_stage=[2, 2, 3, 3, 3], upsample="bilinear"),
    # Oktay et al. 2018: additive attention gates on every skip, batch norm.
    "attention-unet": dict(base_channels=64, depth=4, norm="batchnorm", attention="gate"),
    # The BraTS study's improved U-Net: separable 7x7 convs, batch norm, inverted bottleneck, additive skips.
    "improved-unet": dict(
        base_channels=16, depth=4, conv_type="separable", kernel_size=7, norm="batchnorm", bottleneck="inverted",
        skip="add", upsample="bilinear",
    ),
    "improved-attention-unet": dict(
        base_channels=16, depth=4, conv_type="separable", kernel_size=7, norm="batchnorm", bottleneck="inverted",
        skip="add", upsample="bilinear", attention="gate",
    ),
    # The cancer study's channel attention: GCT (Gated Channel Transformation) and SRM (Style-based Recalibration).
    "gct-unet": dict(base_channels=64, depth=4, norm="batchnorm", channel_attention="gct"),
    "srm-unet": dict(base_channels=64, depth=4, norm="batchnorm", channel_attention="srm"),
    # Transfer-learning U-Net: a U-Net decoder on a timm encoder (any timm name via `encoder=`), shaped and
    # initialised as segmentation_models_pytorch's Unet: nearest upsampling, a 3x3 head, fan-in init.
    "timm-unet": dict(encoder="resnet34", norm="batchnorm", upsample="nearest", head_kernel_size=3,
                      weight_init="fan_in"),
}


def unet_preset(name: str) -> dict[str, Any]:
    """A copy of the preset's config kwargs, or a `ValueError` listing the presets."""
    if name not in UNET_PRESETS:
        raise ValueError(f"Unknown U-Net preset {name!r}; allowed values: {', '.join(UNET_PRESETS)}.")
    return dict(UNET_PRESETS[name])
