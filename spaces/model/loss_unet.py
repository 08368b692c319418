"""Segmentation losses of the hfseg U-Net family: cross-entropy, soft Dice, Dice+CE and focal.

Conventions, for every loss:
- `logits` are (B, K, H, W), or (B, K, X, Y, Z) for volumes; `labels` are (B, H, W) (or (B, X, Y, Z)) class
  indices, or the same with a channel axis of 1 after the batch axis. `K == 1` is a binary model: the logit is the
  foreground's, labels are 0/1, and the losses use the sigmoid.
- Pixels equal to `ignore_index` contribute nothing (not to CE, focal, nor to either side of the Dice ratio).
- Soft Dice is computed per class over the whole batch and all spatial axes (nnU-Net's "batch Dice"):
  `dice_c = (2 * sum(p_c * t_c) + s) / (sum(p_c) + sum(t_c) + s)` with `s = dice_smooth` (1e-5). So a class absent
  from both prediction and target scores 1 (no loss), and a class absent from the target but predicted scores about
  0 (its false positives are penalised). The loss is `1 - ` the (class-weighted) mean over classes; class 0 is left
  out of the mean unless `include_background` (multi-class only).
- `class_weights` weight CE (PyTorch's weighted mean), focal (per-pixel weight of the true class) and the Dice mean;
  for a binary model its single entry is the positive-class weight.
- Deep supervision (nnU-Net): `deep_supervision_loss` adds the losses of lower-resolution outputs against labels
  downsampled by nearest neighbour, weighted by `deep_supervision_weights`.

Self-contained (torch only) so that it is copied next to a checkpoint saved for `trust_remote_code` loading.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F


def check_labels(labels: torch.Tensor, logits: torch.Tensor, num_labels: int, ignore_index: int) -> torch.Tensor:
    """Return labels as a (B, *spatial) long tensor matching (B, K, *spatial) logits, or raise a `ValueError`
    saying what is wrong with them."""
    if labels.dim() == logits.dim() and labels.shape[1] == 1:
        labels = labels[:, 0]
    expected = "(B, H, W)" if logits.dim() == 4 else "(B, X, Y, Z)" if logits.dim() == 5 else "(B, *spatial)"
    if labels.dim() != logits.dim() - 1:
        raise ValueError(
            f"labels must have shape {expected} for logits {tuple(logits.shape)}, got {tuple(labels.shape)}."
        )
    if labels.shape[0] != logits.shape[0] or labels.shape[1:] != logits.shape[2:]:
        size = "height x width" if logits.dim() == 4 else "spatial shape"
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}: the mask must have "
            f"the image's batch size and {size} (resize masks with nearest-neighbour interpolation)."
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
    """`1 -` weighted mean soft Dice of (B, K, *spatial) probabilities against a one-hot target, over valid pixels
    (`valid` is (B, *spatial)); each class's sums run over the batch and all spatial axes."""
    mask = valid.unsqueeze(1).to(probs.dtype)
    probs = probs * mask
    target = target.to(probs.dtype) * mask
    dims = (0, *range(2, probs.dim()))
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
        onehot = F.one_hot(labels.masked_fill(~valid, 0), num_labels).movedim(-1, 1)
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
    """Loss of (B, K, *spatial) logits against (B, *spatial) labels; see the module docstring for the conventions."""
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


def deep_supervision_weights(n: int) -> list[float]:
    """nnU-Net's weights of `n` outputs, highest resolution first: `1 / 2**i`, the lowest-resolution output's set to
    0, normalized to sum 1 (`n = 3`: 2/3, 1/3, 0). One output gets weight 1."""
    if n < 1:
        raise ValueError(f"deep_supervision_weights needs at least one output, got n={n}.")
    if n == 1:
        return [1.0]
    weights = [1 / 2**i for i in range(n - 1)] + [0.0]
    total = sum(weights)
    return [w / total for w in weights]


def downsample_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, *spatial) labels at spatial shape `size` by nearest neighbour (`nearest-exact`, as nnU-Net: for a factor
    of 2 the second voxel of each pair); ignored pixels stay ignored."""
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest-exact")
    return resized[:, 0].to(labels.dtype)


def deep_supervision_loss(
    logits: torch.Tensor,
    extra_logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    **segmentation_loss_kwargs: Any,
) -> torch.Tensor:
    """nnU-Net's deep supervision loss: `sum_i w_i * segmentation_loss(out_i, labels_i)` over the full-resolution
    `logits` and the lower-resolution `extra_logits` (highest resolution first), with `w = deep_supervision_weights`
    and `labels_i` the labels downsampled (`downsample_labels`) to `out_i`'s size. Outputs of weight 0 are skipped.
    `segmentation_loss_kwargs` go to every `segmentation_loss` call (`loss`, `ignore_index`, ...)."""
    ignore_index = segmentation_loss_kwargs.get("ignore_index", 255)
    labels = check_labels(labels, logits, logits.shape[1], ignore_index)
    outputs = [logits, *extra_logits]
    return sum(
        weight * segmentation_loss(out, downsample_labels(labels, out.shape[2:]), **segmentation_loss_kwargs)
        for weight, out in zip(deep_supervision_weights(len(outputs)), outputs) if weight
    )
