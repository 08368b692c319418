"""Losses against hand-computed values and PyTorch's own implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from hfseg.models.unet.loss_unet import segmentation_loss, soft_dice_loss


def _logits_for(probs: torch.Tensor) -> torch.Tensor:
    return probs.log()


def test_ce_equals_torch_cross_entropy_with_weights_and_ignore():
    logits = torch.randn(2, 4, 6, 7)
    labels = torch.randint(0, 4, (2, 6, 7))
    labels[0, :2] = 255
    weights = [0.5, 1.0, 2.0, 3.0]
    ours = segmentation_loss(logits, labels, "ce", ignore_index=255, class_weights=weights)
    ref = F.cross_entropy(logits, labels, weight=torch.tensor(weights), ignore_index=255)
    torch.testing.assert_close(ours, ref)


def test_soft_dice_hand_computed_case():
    # One image, 2 pixels, 2 classes. Probabilities of class 1: 0.8 and 0.4; target class 1 at pixel 0 only.
    probs = torch.tensor([[[[0.2, 0.6]], [[0.8, 0.4]]]])  # (1, 2, 1, 2)
    labels = torch.tensor([[[1, 0]]])
    logits = _logits_for(probs)
    # Class 1 only (background excluded): dice = 2*0.8 / (0.8 + 0.4 + 1) = 1.6 / 2.2
    expected = 1 - 1.6 / 2.2
    got = segmentation_loss(logits, labels, "dice", dice_smooth=0.0)
    assert math.isclose(got.item(), expected, rel_tol=1e-5)
    # With background: class 0 dice = 2*0.6 / (0.8 + 1) = 1.2 / 1.8
    got_bg = segmentation_loss(logits, labels, "dice", dice_smooth=0.0, include_background=True)
    assert math.isclose(got_bg.item(), 1 - (1.6 / 2.2 + 1.2 / 1.8) / 2, rel_tol=1e-5)
    # Dice + CE is their sum.
    ce = F.cross_entropy(logits, labels)
    both = segmentation_loss(logits, labels, "dice_ce", dice_smooth=0.0)
    assert math.isclose(both.item(), ce.item() + expected, rel_tol=1e-5)


def test_dice_policy_for_absent_classes():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    perfect = torch.full((1, 3, 4, 4), -20.0)
    perfect[:, 0] = 20.0
    # Classes 1 and 2 absent from target and prediction: each scores 1, so the loss is 0.
    assert segmentation_loss(perfect, labels, "dice").item() < 1e-4
    # Class 2 predicted but absent from the target: it scores ~0, class 1 scores 1 -> loss ~0.5.
    wrong = perfect.clone()
    wrong[:, 2, 0, 0], wrong[:, 0, 0, 0] = 20.0, -20.0
    assert math.isclose(segmentation_loss(wrong, labels, "dice").item(), 0.5, abs_tol=1e-3)


def test_ignored_pixels_do_not_matter():
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :3] = 255
    other = logits.clone()
    other[:, :, :3] = torch.randn(2, 3, 3, 8) * 10
    for loss in ("ce", "dice", "dice_ce", "focal"):
        a = segmentation_loss(logits, labels, loss)
        b = segmentation_loss(other, labels, loss)
        torch.testing.assert_close(a, b, msg=loss)


def test_focal_with_gamma_zero_is_cross_entropy_and_downweights_easy_pixels():
    logits = torch.randn(2, 3, 5, 5)
    labels = torch.randint(0, 3, (2, 5, 5))
    torch.testing.assert_close(
        segmentation_loss(logits, labels, "focal", focal_gamma=0.0), F.cross_entropy(logits, labels)
    )
    # Hand case: one pixel with p_true = 0.9 -> -(0.1)^2 * log(0.9)
    probs = torch.tensor([0.9, 0.05, 0.05]).view(1, 3, 1, 1)
    got = segmentation_loss(probs.log(), torch.zeros(1, 1, 1, dtype=torch.long), "focal", focal_gamma=2.0)
    assert math.isclose(got.item(), -(0.1**2) * math.log(0.9), rel_tol=1e-5)


def test_binary_losses():
    logits = torch.randn(2, 1, 6, 6)
    labels = torch.randint(0, 2, (2, 6, 6))
    ref = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), pos_weight=torch.tensor(3.0))
    torch.testing.assert_close(segmentation_loss(logits, labels, "ce", class_weights=[3.0]), ref)
    probs = torch.sigmoid(logits[:, 0])
    inter, total = (probs * labels).sum(), probs.sum() + labels.sum()
    torch.testing.assert_close(segmentation_loss(logits, labels, "dice", dice_smooth=0.0), 1 - 2 * inter / total)
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    torch.testing.assert_close(segmentation_loss(logits, labels, "focal", focal_gamma=0.0), bce)


def test_all_ignored_gives_zero_loss_with_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 4, 4), 255), "dice_ce")
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_soft_dice_weights():
    probs = torch.rand(1, 2, 3, 3)
    target = F.one_hot(torch.randint(0, 2, (1, 3, 3)), 2).permute(0, 3, 1, 2)
    valid = torch.ones(1, 3, 3, dtype=torch.bool)
    unweighted = soft_dice_loss(probs, target, valid)
    weighted = soft_dice_loss(probs, target, valid, weights=torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(unweighted, weighted)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.full((1, 4, 4), 3), r"outside the 3 classes"),
        (torch.full((1, 4, 4), -1), r"outside the 3 classes"),
        (torch.zeros(1, 5, 4, dtype=torch.long), r"do not match logits"),
        (torch.full((1, 4, 4), 0.5), r"integer class indices"),
    ],
)
def test_bad_labels_are_clear_errors(labels, message):
    with pytest.raises(ValueError, match=message):
        segmentation_loss(torch.randn(1, 3, 4, 4), labels, "ce")


def test_binary_labels_must_be_zero_or_one():
    with pytest.raises(ValueError, match=r"outside the 2 classes"):
        segmentation_loss(torch.randn(1, 1, 4, 4), torch.full((1, 4, 4), 2), "ce")


def test_unknown_loss_and_wrong_weights():
    with pytest.raises(ValueError, match="allowed values"):
        segmentation_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "jaccard")
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        segmentation_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "ce", class_weights=[1, 2])
