"""Image-level classification metrics: accuracy, confidence, confusion matrix, per-class precision/recall/F1.

Per-class scores come from the same confusion-matrix code as the segmentation metrics (`overlap.py`), so the
same empty policy holds: a ratio with a zero denominator is NaN (e.g. the precision of a class never predicted)
and macro averages skip NaN (as `sklearn.metrics` with `zero_division=np.nan`). F1 is 2TP / (2TP + FP + FN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .overlap import confusion_matrix, overlap_from_confusion


def probabilities(logits: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Class probabilities (N, K): softmax over the last dimension; one logit per sample (N,) or (N, 1) is a
    binary classifier's, giving sigmoid probabilities for classes (0, 1)."""
    logits = torch.as_tensor(logits).detach().float()
    if logits.dim() == 1 or logits.shape[-1] == 1:
        positive = torch.sigmoid(logits.reshape(-1))
        return torch.stack([1 - positive, positive], dim=-1)
    return logits.softmax(dim=-1)


def accuracy(preds: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Fraction of correct predicted class ids; NaN for no samples."""
    preds = torch.as_tensor(preds).reshape(-1)
    labels = torch.as_tensor(labels).to(preds.device).reshape(-1)
    return (preds == labels).double().mean().item() if labels.numel() else float("nan")


def mean_confidence(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | None = None
                    ) -> dict[str, float]:
    """`mean_max_probability` (the model's mean confidence in its own answer) and, given `labels`,
    `mean_true_class_probability` (mean probability given to the correct class)."""
    probs = probabilities(logits)
    out = {"mean_max_probability": probs.max(dim=-1).values.double().mean().item()}
    if labels is not None:
        labels = torch.as_tensor(labels, device=probs.device).long().reshape(-1, 1)
        out["mean_true_class_probability"] = probs.gather(-1, labels).double().mean().item()
    return out


def _names(num_classes: int, id2label: Mapping[int, str] | None) -> list[str]:
    id2label = {int(k): v for k, v in (id2label or {}).items()}
    return [str(id2label.get(i, i)) for i in range(num_classes)]


def confusion_table(cm: torch.Tensor | np.ndarray, id2label: Mapping[int, str] | None = None
                    ) -> dict[str, dict[str, int]]:
    """The confusion matrix with names: `{true name: {predicted name: count}}`."""
    cm = torch.as_tensor(cm)
    names = _names(cm.shape[0], id2label)
    return {names[t]: {names[p]: int(cm[t, p]) for p in range(len(names))} for t in range(len(names))}


def per_class_scores(cm: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
    """Per-class `precision`, `recall`, `f1` (float64) and `support` (true count) from a (K, K) confusion matrix."""
    scores = overlap_from_confusion(cm)
    return {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["dice"],
            "support": torch.as_tensor(cm).sum(-1)}


def _floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.tolist()]


class ClassificationMetrics:
    """Accumulates a confusion matrix and probability sums over batches.

    Args:
        num_classes (`int`): K (2 for a single-logit binary classifier).
        id2label (`Mapping[int, str]`, *optional*): class names for `per_class` and `confusion_matrix`.

    Example:
        ```python
        >>> metrics = ClassificationMetrics(num_classes=3)
        >>> metrics.update(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), torch.tensor([0, 2]))
        >>> metrics.compute()["accuracy"]
        0.5

        ```
    """

    def __init__(self, num_classes: int, id2label: Mapping[int, str] | None = None):
        self.num_classes = int(num_classes)
        self.names = _names(self.num_classes, id2label)
        self.reset()

    def reset(self) -> None:
        self.cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.count = 0
        self.scored = 0  # samples given as logits (with probabilities)
        self.max_prob_sum = 0.0
        self.true_prob_sum = 0.0

    def update(self, logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> None:
        """Add a batch: `logits` (N, K), a binary classifier's (N,)/(N, 1) float logits, or predicted ids (N,)
        of an integer dtype (then no confidence is recorded); `labels` (N,) true class ids."""
        logits = torch.as_tensor(logits).detach()
        labels = torch.as_tensor(labels).detach().to(logits.device).reshape(-1)
        if logits.is_floating_point():
            probs = probabilities(logits)
            preds = probs.argmax(dim=-1)
            self.max_prob_sum += probs.max(dim=-1).values.double().sum().item()
            self.true_prob_sum += probs.gather(-1, labels.long().reshape(-1, 1)).double().sum().item()
            self.scored += labels.numel()
        else:
            preds = logits.reshape(-1)
        self.cm += confusion_matrix(preds, labels, self.num_classes).cpu()
        self.count += labels.numel()

    def compute(self) -> dict[str, Any]:
        """`accuracy`, `balanced_accuracy` (= macro recall), `macro_{precision,recall,f1}`, `weighted_f1`,
        `mean_max_probability`, `mean_true_class_probability` (NaN if no logits were given), per-class lists
        `precision`, `recall`, `f1`, `support`, plus `labels`, `confusion_matrix` (nested list, rows = true),
        `confusion_table` and `per_class` keyed by class name, and `num_samples`."""
        scores = per_class_scores(self.cm)
        support = scores["support"].double()
        f1 = scores["f1"]
        weighted = torch.nansum(f1 * support) / support.sum()  # classes without support weigh 0 (their F1 may be NaN)
        nan = float("nan")
        out: dict[str, Any] = {
            "accuracy": self.cm.trace().item() / self.count if self.count else nan,
            "balanced_accuracy": float(torch.nanmean(scores["recall"])),
            "macro_precision": float(torch.nanmean(scores["precision"])),
            "macro_recall": float(torch.nanmean(scores["recall"])),
            "macro_f1": float(torch.nanmean(f1)),
            "weighted_f1": float(weighted),
            "mean_max_probability": self.max_prob_sum / self.scored if self.scored else nan,
            "mean_true_class_probability": self.true_prob_sum / self.scored if self.scored else nan,
            "num_samples": self.count,
        }
        for name in ("precision", "recall", "f1"):
            out[name] = _floats(scores[name])
        out["support"] = [int(v) for v in scores["support"].tolist()]
        out["labels"] = list(self.names)
        out["confusion_matrix"] = self.cm.tolist()
        out["confusion_table"] = confusion_table(self.cm, dict(enumerate(self.names)))
        out["per_class"] = {
            name: {"precision": out["precision"][i], "recall": out["recall"][i], "f1": out["f1"][i],
                   "support": out["support"][i]}
            for i, name in enumerate(self.names)
        }
        return out
