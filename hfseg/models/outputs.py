"""From model outputs to label maps: resize logits to the label size, and pick classes (argmax or sigmoid)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logits_at(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Logits resized (bilinearly, trilinearly for (B, K, X, Y, Z) volumes) to the label size; models like Segformer
    predict at 1/4 resolution."""
    if tuple(logits.shape[2:]) == tuple(size):
        return logits
    mode = "trilinear" if logits.dim() == 5 else "bilinear"
    return F.interpolate(logits, size=tuple(size), mode=mode, align_corners=False)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class indices from (B, K, H, W) or (B, K, X, Y, Z) logits: argmax, or sigmoid > 0.5 for a binary
    (one-channel) model."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
