"""From the recipe's data section to `DataLoader`s: load the dataset, pick the processor, attach the transforms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import id2label as dataset_id2label
from ..data import load
from ..data.transforms import AugmentConfig, SegmentationTransform
from ..models.unet.image_processing_unet import UNetImageProcessor
from .config import RecipeConfig


@dataclass
class RecipeData:
    """Everything the loop needs from the data side."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    id2label: dict[int, str]
    num_channels: int
    processor: UNetImageProcessor


def build_processor(cfg: RecipeConfig, num_channels: int) -> UNetImageProcessor:
    """The image processor saved with the model: normalization per `data.normalization`, resize to `data.size`."""
    kwargs: dict[str, Any] = {"normalization": cfg.data.normalization or "zscore", "num_channels": num_channels,
                              **cfg.data.processor}
    if cfg.data.size is not None:
        kwargs.update(do_resize=True, size={"height": int(cfg.data.size[0]), "width": int(cfg.data.size[1])})
    return UNetImageProcessor(**kwargs)


def load_recipe_data(cfg: RecipeConfig) -> RecipeData:
    """Load the dataset by name, check the splits, and read the classes and channel count from it."""
    data = cfg.data
    splits = load(data.dataset, data.data_dir, **data.options)
    if data.train_split not in splits:
        raise ValueError(f"Dataset {data.dataset!r} has no split {data.train_split!r}; it has {', '.join(splits)}.")
    train = splits[data.train_split]
    evaluation = splits[data.eval_split] if data.eval_split and data.eval_split in splits else None
    if data.max_train_samples:
        train = train.select(range(min(data.max_train_samples, len(train))))
    if evaluation is not None and data.max_eval_samples:
        evaluation = evaluation.select(range(min(data.max_eval_samples, len(evaluation))))
    if isinstance(train.features.get("label"), datasets.ClassLabel):
        raise ValueError(f"Dataset {data.dataset!r} is a classification dataset; the recipe trains segmentation "
                         "models only (classification training is not available yet).")
    image = train[0]["image"]
    image = np.asarray(image, dtype=np.float32) if isinstance(image, list) else image  # Array3D rows are lists
    probe = UNetImageProcessor(normalization="none").to_channels_first(image, "channels_last")
    return RecipeData(train, evaluation, dataset_id2label(splits), int(probe.shape[0]),
                      build_processor(cfg, int(probe.shape[0])))


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    shapes = {tuple(item["pixel_values"].shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"Images of different sizes {sorted(shapes)} in one batch: set data.size=[height, width] "
                         "to resize them (or use batch_size 1).")
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def build_dataloaders(cfg: RecipeConfig, data: RecipeData) -> tuple[DataLoader, DataLoader | None]:
    """Training loader (shuffled, augmented) and evaluation loader (in order, no augmentation)."""
    size = tuple(cfg.data.size) if cfg.data.size is not None else None
    augment = AugmentConfig.from_dict(cfg.augment)
    ignore = cfg.loss.ignore_index
    train = data.train.with_transform(SegmentationTransform(data.processor, augment, size, train=True,
                                                            ignore_index=ignore))
    workers = cfg.data.num_workers
    common = dict(collate_fn=_collate, num_workers=workers, persistent_workers=workers > 0,
                  pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train, batch_size=cfg.train.batch_size, shuffle=True, drop_last=False, **common)
    if data.eval is None:
        return train_loader, None
    evaluation = data.eval.with_transform(SegmentationTransform(data.processor, None, size, train=False,
                                                                ignore_index=ignore))
    eval_loader = DataLoader(evaluation, batch_size=cfg.train.eval_batch_size or cfg.train.batch_size,
                             shuffle=False, **common)
    return train_loader, eval_loader
