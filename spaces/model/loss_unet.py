"""Segmentation losses of the hfseg U-Net family: cross-entropy, soft Dice, Dice+CE and focal.

Conventions, for every loss:
- `logits` are (B, K, H, W); `labels` are (B, H, W) class indices (or (B, 1, H, W)). `K == 1` is a binary model:
  the logit is the foreground's, labels are 0/1, and the losses use the sigmoid.
- Pixels equal to `ignore_index` contribute nothing (not to CE, focal, nor to either side of the Dice ratio).
- Soft Dice is computed per class over the whole batch (nnU-Net's "batch Dice"):
  `dice_c = (2 * sum(p_c * t_c) + s) / (sum(p_c) + sum(t_c) + s)` with `s = dice_smooth` (1e-5). So a class absent
  from both prediction and target scores 1 (no loss), and a class absent from the target but predicted scores about
  0 (its false positives are penalised). The loss is `1 - ` the (class-weighted) mean over classes; class 0 is left
  out of the mean unless `include_background` (multi-class only).
- `class_weights` weight CE (PyTorch's weighted mean), focal (per-pixel weight of the true class) and the Dice mean;
  for a binary model its single entry is the positive-class weight.

Self-contained (torch only) so that it is copied next to a checkpoint saved for `trust_remote_code` loading.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def check_labels(labels: torch.Tensor, logits: torch.Tensor, num_labels: int, ignore_index: int) -> torch.Tensor:
    """Return labels as a (B, H, W) long tensor, or raise a `ValueError` saying what is wrong with them."""
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 3:
        raise ValueError(f"labels must have shape (B, H, W), got {tuple(labels.shape)}.")
    if labels.shape[0] != logits.shape[0] or labels.shape[-2:] != logits.shape[-2:]:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}: the mask must have "
            "the image's batch size and height x width (resize masks with nearest-neighbour interpolation)."
        )
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must hold integer class indices, got non-integer values.")
    labels = labels.long()
    valid = labels != ignore_index
    upper = max(num_labels, 2)
    bad = valid & ((labels < 0) | (labels >= upper))
    if bad.any():
        values = sorted(set(labels[bad].unique().tolist()))[:10]
        raise ValueError(
            f"labels hold values {values} outside the {upper} classes [0, {upper - 1}] "
            f"(ignore_index is {ignore_index})."
        )
    return labels


def soft_dice_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    smooth: float = 1e-5,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """`1 -` weighted mean soft Dice of (B, K, H, W) probabilities against a one-hot target, over valid pixels."""
    mask = valid.unsqueeze(1).to(probs.dtype)
    probs = probs * mask
    target = target.to(probs.dtype) * mask
    dims = (0, 2, 3)
    intersection = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    dice = (2 * intersection + smooth) / (total + smooth)
    if weights is None:
        return 1 - dice.mean()
    return 1 - (dice * weights).sum() / weights.sum()


def _multiclass_loss(logits, labels, valid, loss, weights, smooth, include_background, gamma, ignore_index):
    num_labels = logits.shape[1]
    terms = []
    if loss in ("ce", "dice_ce"):
        terms.append(F.cross_entropy(logits, labels, weight=weights, ignore_index=ignore_index))
    if loss in ("dice", "dice_ce"):
        probs = logits.float().softmax(dim=1)
        onehot = F.one_hot(labels.masked_fill(~valid, 0), num_labels).permute(0, 3, 1, 2)
        first = 0 if include_background or num_labels == 1 else 1
        w = weights[first:] if weights is not None else None
        terms.append(soft_dice_loss(probs[:, first:], onehot[:, first:], valid, smooth, w))
    if loss == "focal":
        logp = F.log_softmax(logits.float(), dim=1)
        safe = labels.masked_fill(~valid, 0)
        logpt = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        focal = -((1 - logpt.exp()) ** gamma) * logpt
        if weights is not None:
            focal = focal * weights[safe]
        terms.append(focal[valid].sum() / valid.sum())
    return sum(terms)


def _binary_loss(logits, labels, valid, loss, weights, smooth, gamma):
    logit = logits[:, 0].float()
    target = labels.masked_fill(~valid, 0).to(logit.dtype)
    count = valid.sum()
    pos_weight = weights[0] if weights is not None else None
    terms = []
    if loss in ("ce", "dice_ce"):
        bce = F.binary_cross_entropy_with_logits(logit, target, pos_weight=pos_weight, reduction="none")
        terms.append(bce[valid].sum() / count)
    if loss in ("dice", "dice_ce"):
        probs = torch.sigmoid(logit).unsqueeze(1)
        terms.append(soft_dice_loss(probs, target.unsqueeze(1), valid, smooth))
    if loss == "focal":
        logp = F.logsigmoid(logit)
        lognp = F.logsigmoid(-logit)
        logpt = torch.where(target > 0.5, logp, lognp)
        focal = -((1 - logpt.exp()) ** gamma) * logpt
        if pos_weight is not None:
            focal = torch.where(target > 0.5, focal * pos_weight, focal)
        terms.append(focal[valid].sum() / count)
    return sum(terms)


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss: str = "ce",
    ignore_index: int = 255,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    dice_smooth: float = 1e-5,
    include_background: bool = False,
    focal_gamma: float = 2.0,
) -> torch.Tensor:
    """Loss of (B, K, H, W) logits against (B, H, W) labels; see the module docstring for the conventions."""
    if loss not in ("ce", "dice", "dice_ce", "focal"):
        raise ValueError(f"Unknown loss {loss!r}; allowed values: 'ce', 'dice', 'dice_ce', 'focal'.")
    num_labels = logits.shape[1]
    labels = check_labels(labels, logits, num_labels, ignore_index)
    valid = labels != ignore_index
    if not valid.any():
        return logits.sum() * 0.0  # every pixel ignored: zero loss that still backpropagates
    weights = None
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
        if weights.numel() != num_labels:
            raise ValueError(f"class_weights has {weights.numel()} entries but the logits have {num_labels} classes.")
    if num_labels == 1:
        return _binary_loss(logits, labels, valid, loss, weights, dice_smooth, focal_gamma)
    return _multiclass_loss(logits, labels, valid, loss, weights, dice_smooth, include_background, focal_gamma,
                            ignore_index)
