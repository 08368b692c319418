"""The peer libraries' networks behind hfseg's model interface, for the benchmarks only.

`build_peer("monai-attention-unet", num_channels=1, num_labels=4)` gives a `PeerSegmenter`: it takes
`pixel_values=` and returns a `SemanticSegmenterOutput` with `.logits`, and saves with `save_pretrained(folder)`
(`huggingface_hub.PyTorchModelHubMixin`), so `hfseg.training.Trainer(cfg, model=...)` trains it by the recipe.

Peers, built as their libraries ship them (random initialization):
- `monai-unet`: MONAI `UNet`, channels 16-32-64-128-256, strides 2, 2 residual units (instance norm, PReLU).
- `monai-attention-unet`: MONAI `AttentionUnet`, the same channels and strides (batch norm, ReLU).
- `smp-unet-resnet18`: segmentation_models_pytorch `Unet("resnet18")`, no pretrained weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

MONAI_CHANNELS = (16, 32, 64, 128, 256)
MONAI_STRIDES = (2, 2, 2, 2)
INSTALL_HINT = 'pip install -e ".[bench]" (or: pip install monai segmentation-models-pytorch)'


def _monai_unet(num_channels: int, num_labels: int, spatial_dims: int = 2) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=spatial_dims, in_channels=num_channels, out_channels=num_labels, channels=MONAI_CHANNELS,
                strides=MONAI_STRIDES, num_res_units=2)


def _monai_attention_unet(num_channels: int, num_labels: int, spatial_dims: int = 2) -> nn.Module:
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(spatial_dims=spatial_dims, in_channels=num_channels, out_channels=num_labels, channels=MONAI_CHANNELS,
                         strides=MONAI_STRIDES)


def _smp_unet_resnet18(num_channels: int, num_labels: int, spatial_dims: int = 2) -> nn.Module:
    import segmentation_models_pytorch as smp

    if spatial_dims != 2:
        raise ValueError("segmentation_models_pytorch's Unet is 2D only.")

    return smp.Unet("resnet18", encoder_weights=None, in_channels=num_channels, classes=num_labels)


PEERS: dict[str, tuple[str, Callable[[int, int], nn.Module]]] = {
    "monai-unet": ("monai", _monai_unet),
    "monai-attention-unet": ("monai", _monai_attention_unet),
    "smp-unet-resnet18": ("segmentation_models_pytorch", _smp_unet_resnet18),
}


def peer_available(name: str) -> bool:
    """Whether the library behind the peer `name` can be imported."""
    import importlib.util

    return importlib.util.find_spec(PEERS[name][0]) is not None


class PeerSegmenter(nn.Module, PyTorchModelHubMixin):
    """A peer network with hfseg's interface: `forward(pixel_values)` -> `SemanticSegmenterOutput(logits=...)`.

    Args:
        name (`str`): a key of `PEERS`.
        num_channels (`int`): input channels.
        num_labels (`int`): output classes (logits per pixel).
        spatial_dims (`int`): 2 (images) or 3 (volumes; the MONAI peers).
    """

    def __init__(self, name: str, num_channels: int = 1, num_labels: int = 4, spatial_dims: int = 2) -> None:
        super().__init__()
        if name not in PEERS:
            raise ValueError(f"Unknown peer {name!r}; available: {', '.join(PEERS)}.")
        library, build = PEERS[name]
        try:
            self.net = build(num_channels, num_labels, spatial_dims)
        except ImportError as err:
            raise ImportError(f"The peer {name!r} needs {library}: {INSTALL_HINT}") from err
        self.name = name
        self.num_labels = num_labels

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                **kwargs) -> SemanticSegmenterOutput:
        """Logits (B, num_labels, *spatial); `labels` and other keyword arguments (`output_attentions`) are ignored:
        the recipe computes its own loss."""
        return SemanticSegmenterOutput(logits=self.net(pixel_values))


def build_peer(name: str, num_channels: int = 1, num_labels: int = 4, spatial_dims: int = 2) -> PeerSegmenter:
    """The peer `name` (see the module docstring) wrapped as a `PeerSegmenter`."""
    return PeerSegmenter(name, num_channels=num_channels, num_labels=num_labels, spatial_dims=spatial_dims)
