"""What a run writes besides checkpoints: history.csv, metrics.json, curve plots, prediction panels (confusion
matrices for classification) and their GIF.

The prediction panels are drawn by `hfseg.viz.prediction_panel`, re-exported here.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..viz import prediction_panel  # noqa: F401  (re-exported: the segmentation task's panels)


def write_history(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """One row per epoch; columns are the union of the keys, in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def plot_curves(path: Path, history: Sequence[Mapping[str, Any]], metric: str) -> None:
    """Loss (train/validation) and the validation metric against the epoch, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in (("train_loss", "train"), ("eval_loss", "validation")):
        values = [row.get(key) for row in history]
        if any(v is not None and v == v for v in values):
            ax_loss.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    values = [row.get(f"eval_{metric}") for row in history]
    ax_metric.plot(epochs, [np.nan if v is None else v for v in values], marker="o", color="tab:green")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=f"Validation {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_figure(cm: Sequence[Sequence[int]] | np.ndarray | torch.Tensor, names: Sequence[str],
                     title: str = "") -> Image.Image:
    """A confusion matrix (rows = true class, columns = predicted) as an image: each cell coloured by its share of
    the true class (row-normalized, so classes of any size compare) and labelled with its count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(torch.as_tensor(cm).cpu(), dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(names):
        raise ValueError(f"A confusion matrix must be (K, K) with K = {len(names)} class names, got {counts.shape}.")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    k = len(names)
    side = 2.2 + 0.6 * k
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    shown = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for t in range(k):
        for p in range(k):
            ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=9,
                    color="white" if share[t, p] > 0.5 else "black")
    ax.set_xticks(range(k), [str(n) for n in names], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(n) for n in names])
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return image


def write_gif(path: Path, frames: Sequence[Path], duration_ms: int = 600) -> None:
    """An animated GIF of the per-epoch panels, in order."""
    images = [Image.open(frame).convert("RGB") for frame in frames]
    if images:
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
