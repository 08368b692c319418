"""What depends on the recipe's `task`: the model family, the loss, the metrics and the per-evaluation pictures.

The loop in `trainer.py` is the same for every task; it asks a task object (`SegmentationTask` or
`ClassificationTask`, picked by `make_task`) for these parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..metrics import ClassificationMetrics, SegmentationMetrics
from ..models.classifiers import create_classifier
from ..models.outputs import logits_at, predict
from ..models.unet.loss_unet import segmentation_loss
from ..models.zoo import create_model
from .config import RecipeConfig
from .data import RecipeData
from .report import confusion_figure, prediction_panel


def _loss(cfg: RecipeConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    c = cfg.loss
    return segmentation_loss(logits.float(), labels, loss=c.name, ignore_index=c.ignore_index,
                             class_weights=c.class_weights, dice_smooth=c.dice_smooth,
                             include_background=c.include_background, focal_gamma=c.focal_gamma)


class SegmentationTask:
    """Segmentation: a zoo model, logits resized to the label maps, `segmentation_loss`, `SegmentationMetrics` of
    the argmax maps, and a panel of image | truth | prediction (| attention) per evaluation."""

    name = "segmentation"

    def __init__(self, cfg: RecipeConfig, id2label: dict[int, str]) -> None:
        self.cfg = cfg
        self.id2label = id2label
        self.num_labels = len(id2label)

    def build_model(self, data: RecipeData) -> torch.nn.Module:
        m = self.cfg.model
        return create_model(m.name, id2label=data.id2label, num_channels=data.num_channels, pretrained=m.pretrained,
                            **m.kwargs)

    def forward_kwargs(self, model: torch.nn.Module, want_panel: bool) -> dict[str, Any]:
        """Extra model inputs at evaluation: the attention-gate maps while a panel is still to be drawn."""
        wants = getattr(getattr(model, "config", None), "attention", None) == "gate"
        return {"output_attentions": wants and want_panel}

    def align(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits_at(logits, labels.shape[1:])

    def training_loss(self, out: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(logits, loss)` of a training batch's model output (logits aligned to the labels)."""
        logits = self.align(out.logits, labels)
        return logits, self.loss(logits, labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _loss(self.cfg, logits, labels)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What is gathered across processes and given to the metrics: the predicted label maps."""
        return predict(logits)

    def metrics(self) -> SegmentationMetrics:
        return SegmentationMetrics(num_classes=max(self.num_labels, 2), ignore_index=self.cfg.loss.ignore_index,
                                   id2label=self.id2label if self.num_labels > 1 else None)

    def panel_sample(self, batch: dict[str, torch.Tensor], out: Any, scores: torch.Tensor) -> tuple | None:
        n = self.cfg.train.panels
        attention = getattr(out, "attentions", None)
        attention = attention[-1][:n, 0] if attention else None  # the finest gate
        return batch["pixel_values"][:n], batch["labels"][:n], scores[:n], attention

    def write_evaluation(self, output_dir: Path, epoch: int, result: dict[str, Any], sample: tuple | None) -> None:
        """panels/epoch_NNN.png: the first evaluation images with their truth and prediction."""
        if sample is None:
            return
        folder = output_dir / "panels"
        folder.mkdir(parents=True, exist_ok=True)
        metric = self.cfg.train.metric
        title = f"epoch {epoch}  {metric} {result.get(metric, float('nan')):.3f}"
        prediction_panel(*sample, title=title).save(folder / f"epoch_{epoch:03d}.png")


class ClassificationTask:
    """Image classification: a classifier of `create_classifier`, cross-entropy (class weights, label smoothing),
    `ClassificationMetrics` of the logits, and the confusion matrix as the picture of each evaluation."""

    name = "classification"

    def __init__(self, cfg: RecipeConfig, id2label: dict[int, str]) -> None:
        self.cfg = cfg
        self.id2label = id2label
        self.num_labels = len(id2label)
        weights = cfg.loss.class_weights
        if weights is not None and len(weights) != self.num_labels:
            raise ValueError(f"loss.class_weights has {len(weights)} entries but the data has {self.num_labels} "
                             f"classes ({', '.join(id2label.values())}); give one weight per class.")
        self.class_weights = torch.tensor(weights, dtype=torch.float32) if weights is not None else None

    def build_model(self, data: RecipeData) -> torch.nn.Module:
        m = self.cfg.model
        return create_classifier(m.name, id2label=data.id2label, num_channels=data.num_channels,
                                 pretrained=m.pretrained, image_size=self.cfg.data.size, **m.kwargs)

    def forward_kwargs(self, model: torch.nn.Module, want_panel: bool) -> dict[str, Any]:
        return {}

    def align(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits

    def training_loss(self, out: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(logits, loss)` of a training batch's model output."""
        return out.logits, self.loss(out.logits, labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        return F.cross_entropy(logits.float(), labels, weight=weight,
                               label_smoothing=self.cfg.loss.label_smoothing)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits themselves (B, K), so the metrics also get each answer's confidence."""
        return logits.float()

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(num_classes=self.num_labels, id2label=self.id2label)

    def panel_sample(self, batch: dict[str, torch.Tensor], out: Any, scores: torch.Tensor) -> tuple | None:
        return None  # the picture is drawn from the whole split's confusion matrix

    def write_evaluation(self, output_dir: Path, epoch: int, result: dict[str, Any], sample: tuple | None) -> None:
        """confusion.png (the latest evaluation) and, with `train.panels`, panels/epoch_NNN.png for panels.gif."""
        metric = self.cfg.train.metric
        title = f"epoch {epoch}  {metric} {result.get(metric, float('nan')):.3f}"
        image = confusion_figure(result["confusion_matrix"], result["labels"], title=title)
        image.save(output_dir / "confusion.png")
        if self.cfg.train.panels:
            folder = output_dir / "panels"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"epoch_{epoch:03d}.png")


TASKS = {"segmentation": SegmentationTask, "classification": ClassificationTask}


def make_task(cfg: RecipeConfig, id2label: dict[int, str]) -> SegmentationTask | ClassificationTask:
    """The task object of `cfg.task`."""
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r} is not allowed; choose one of {', '.join(TASKS)}.")
    return TASKS[cfg.task](cfg, id2label)
