"""From the recipe's data section to `DataLoader`s: load the dataset, pick the processor, attach the transforms.

Segmentation items are `{"pixel_values": (C, H, W), "labels": (H, W)}`; classification items (`task:
classification`) are `{"pixel_values": (C, h, w), "labels": ()}`, the class read from `data.label_column`.

With `data.streaming: true` the training split is read lazily, each process reading its own shards (`StreamLoader`);
the evaluation split is read into memory (`data.max_eval_samples` rows at most), as evaluation needs its length.
With the environment variable `HFSEG_SAMPLE_LOG` set to a folder, training items also carry `sample_id`
(`sample_fingerprint` of the image) and the trainer logs the ids each process trains on, per epoch: a check that
the data is shared out.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader

from ..data import dataset_modality, load, loader_function
from ..data import id2label as dataset_id2label
from ..data.transforms import AugmentConfig, ClassificationTransform, SegmentationTransform
from ..models.unet.image_processing_unet import UNetImageProcessor, resolve_instance_classes
from .config import RecipeConfig
from .sampling import EpochSampler, KeyedDataset

Emphasis = Callable[[np.ndarray], np.ndarray]


@dataclass
class RecipeData:
    """Everything the loop needs from the data side.

    `emphasis` (classification only) is applied to every image before its transform (see `build_emphasis`).
    """

    train: datasets.Dataset | datasets.IterableDataset  # iterable with data.streaming
    eval: datasets.Dataset | None
    id2label: dict[int, str]
    num_channels: int
    processor: UNetImageProcessor
    task: str = "segmentation"
    label_column: str = "label"
    emphasis: Emphasis | None = None

    def describe_train(self) -> str:
        """`"120 training images"`, for the recipe's messages."""
        if isinstance(self.train, datasets.IterableDataset):
            return f"a streaming training split ({self.train.n_shards} shards)"
        return f"{len(self.train)} training images"


def build_emphasis(spec: Mapping[str, Any] | None) -> Emphasis | None:
    """The segment-then-classify hook: `data.emphasis` -> a per-image callable, or None when the spec is empty.

    The spec names a segmentation run and how its mask emphasizes the image, e.g. `{segmenter: runs/oral_ag/best,
    mode: dim, background: 0.3}` (`hfseg.pipeline.emphasize`); the callable takes the decoded image as an array
    (H, W) or (H, W, C) and returns the emphasized one (see `ClassificationTransform`).
    """
    if not spec:
        return None
    from ..pipeline import SegmenterEmphasis

    allowed = ("segmenter", "mode", "background", "classes", "margin", "device")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown data.emphasis key(s) {unknown}; valid keys: {', '.join(allowed)}.")
    if not spec.get("segmenter"):
        raise ValueError("data.emphasis needs `segmenter`: a segmentation model folder (e.g. runs/oral_ag/best) or "
                         "Hub id whose mask emphasizes the images.")
    return SegmenterEmphasis(**spec)


def raw_intensity_range(
    split: datasets.Dataset, max_images: int = 64, max_values: int = 1 << 16
) -> list[float] | None:
    """[low, high]: the 1st and 99th percentiles of the raw pixel values of `split`'s images, as loaded.

    Read from up to `max_images` evenly spaced rows, at most `max_values` evenly strided values of each (all
    channels pooled), non-finite values left out; rounded to 6 significant digits. None for a split without rows or
    without finite values, or one that cannot be indexed (streaming).
    """
    if not isinstance(split, datasets.Dataset) or len(split) == 0:
        return None
    rows = np.unique(np.linspace(0, len(split) - 1, min(max_images, len(split))).round().astype(int))
    values = []
    for row in split.select(rows).with_format("numpy", columns=["image"]):
        flat = np.asarray(row["image"]).ravel()
        flat = flat[:: max(1, flat.size // max_values)].astype(np.float64)
        values.append(flat[np.isfinite(flat)])
    pooled = np.concatenate(values) if values else np.empty(0)
    if pooled.size == 0:
        return None
    low, high = np.percentile(pooled, [1, 99])
    return [float(f"{low:.6g}"), float(f"{high:.6g}")]


def build_processor(
    cfg: RecipeConfig, num_channels: int, intensity_range: list[float] | None = None,
    id2label: Mapping[int, str] | None = None,
) -> UNetImageProcessor:
    """The image processor saved with the model: normalization per `data.normalization`, resize to `data.size`.

    It records what the model was trained on: `modality`, the dataset's DICOM Modality code
    (`hfseg.data.dataset_modality`), and `intensity_range`, the training images' raw 1st/99th percentiles (see
    `raw_intensity_range`); `data.processor.modality` / `data.processor.intensity_range` override them. Classes
    named `interior` and `boundary` in `id2label` (an instance target, `image-mask-folder` with `instance_masks`)
    become its `instance_classes`, so `post_process_instance_segmentation` and `pipeline("image-segmentation")`
    separate instances by watershed; `data.processor.instance_classes` overrides them.
    """
    instance_classes = resolve_instance_classes(len(id2label), None, dict(id2label)) if id2label else None
    kwargs: dict[str, Any] = {"normalization": cfg.data.normalization or "zscore", "num_channels": num_channels,
                              "modality": dataset_modality(cfg.data.dataset), "intensity_range": intensity_range,
                              "instance_classes": instance_classes, **cfg.data.processor}
    if cfg.data.size is not None:
        kwargs.update(do_resize=True, size={"height": int(cfg.data.size[0]), "width": int(cfg.data.size[1])})
    return UNetImageProcessor(**kwargs)


def _class_label(split: datasets.Dataset, cfg: RecipeConfig) -> datasets.ClassLabel:
    """The `ClassLabel` feature of `data.label_column`, or an error listing the columns that would do."""
    column, features = cfg.data.label_column, split.features
    usable = [name for name, feature in features.items() if isinstance(feature, datasets.ClassLabel)]
    hint = f"ClassLabel columns: {', '.join(usable)}" if usable else "it has no ClassLabel column"
    if column not in features:
        raise ValueError(f"Dataset {cfg.data.dataset!r} has no column data.label_column={column!r}; its columns are "
                         f"{', '.join(features)} ({hint}).")
    if not isinstance(features[column], datasets.ClassLabel):
        raise ValueError(f"data.label_column={column!r} of dataset {cfg.data.dataset!r} is not a ClassLabel column "
                         f"(one class per image) but {type(features[column]).__name__}; {hint}.")
    return features[column]


def _labelled(split: datasets.Dataset | datasets.IterableDataset | None, column: str, name: str
              ) -> datasets.Dataset | datasets.IterableDataset | None:
    """The rows whose class is known: a ClassLabel holds -1 for a missing value (an ungraded oral ROI)."""
    if split is None:
        return None
    if isinstance(split, datasets.IterableDataset):
        return split.filter(_has_class, fn_kwargs={"column": column})
    labels = np.asarray(split[column])
    keep = np.flatnonzero(labels >= 0)
    if len(keep) == len(labels):
        return split
    warnings.warn(f"{len(labels) - len(keep)} of {len(labels)} {name} images have no {column!r} (-1) and are left out.",
                  stacklevel=3)
    return split.select(keep)


def _has_class(row: dict[str, Any], column: str) -> bool:
    return row[column] >= 0


def _streaming_options(cfg: RecipeConfig) -> dict[str, Any]:
    """`data.options` with `streaming=True`, or an error when the loader cannot stream or the config needs a length."""
    data = cfg.data
    if "streaming" not in inspect.signature(loader_function(data.dataset)).parameters:
        raise ValueError(f"data.streaming: dataset {data.dataset!r} cannot stream (its loader has no `streaming` "
                         "option); set data.streaming=false.")
    if data.max_train_samples:
        raise ValueError("data.max_train_samples does not apply to a streaming training split; bound the run with "
                         "data.samples_per_epoch and train.max_steps instead.")
    stream_batches_per_epoch(cfg, 1)  # the length check
    return {**data.options, "streaming": True}


def _materialize(split: datasets.IterableDataset, limit: int | None) -> datasets.Dataset:
    """A streaming evaluation split (its first `limit` rows) read into memory: evaluation needs its length and
    random access."""
    return datasets.Dataset.from_list(list(itertools.islice(split, limit)), features=split.features)


def load_recipe_data(cfg: RecipeConfig) -> RecipeData:
    """Load the dataset by name, check the splits, and read the classes and channel count from it."""
    data = cfg.data
    options = _streaming_options(cfg) if data.streaming else data.options
    splits = load(data.dataset, data.data_dir, **options)
    if data.train_split not in splits:
        raise ValueError(f"Dataset {data.dataset!r} has no split {data.train_split!r}; it has {', '.join(splits)}.")
    train = splits[data.train_split]
    evaluation = splits[data.eval_split] if data.eval_split and data.eval_split in splits else None
    if isinstance(evaluation, datasets.IterableDataset):
        evaluation = _materialize(evaluation, data.max_eval_samples)
    classification = cfg.task == "classification"
    if classification:
        id2label = dict(enumerate(_class_label(train, cfg).names))
        train = _labelled(train, data.label_column, "training")
        evaluation = _labelled(evaluation, data.label_column, "evaluation")
    elif isinstance(train.features.get("label"), datasets.ClassLabel):
        raise ValueError(f"Dataset {data.dataset!r} is a classification dataset (one class per image): set "
                         "task: classification (and model.name to a classifier, e.g. resnet18) to train on it.")
    if data.max_train_samples and not data.streaming:
        train = train.select(range(min(data.max_train_samples, len(train))))
    if evaluation is not None and data.max_eval_samples:
        evaluation = evaluation.select(range(min(data.max_eval_samples, len(evaluation))))
    if not classification:
        id2label = dataset_id2label(splits)
    image = next(iter(train))["image"] if data.streaming else train[0]["image"]
    image = np.asarray(image, dtype=np.float32) if isinstance(image, list) else image  # Array3D rows are lists
    probe = UNetImageProcessor(normalization="none").to_channels_first(image, "channels_last")
    channels = int(probe.shape[0])
    emphasis = build_emphasis(data.emphasis) if classification else None
    recorded = None if "intensity_range" in data.processor else raw_intensity_range(train)
    processor = build_processor(cfg, channels, recorded, None if classification else id2label)
    return RecipeData(train, evaluation, id2label, channels, processor, task=cfg.task,
                      label_column=data.label_column, emphasis=emphasis)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    shapes = {tuple(item["pixel_values"].shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"Images of different sizes {sorted(shapes)} in one batch: set data.size=[height, width] "
                         "to resize them (or use batch_size 1).")
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _transform(cfg: RecipeConfig, data: RecipeData, train: bool) -> SegmentationTransform | ClassificationTransform:
    size = tuple(cfg.data.size) if cfg.data.size is not None else None
    augment = AugmentConfig.from_dict(cfg.augment) if train else None
    if data.task == "classification":
        return ClassificationTransform(data.processor, augment, size, train=train, label_column=data.label_column,
                                       emphasis=data.emphasis)
    return SegmentationTransform(data.processor, augment, size, train=train, ignore_index=cfg.loss.ignore_index)


SAMPLE_LOG_ENV = "HFSEG_SAMPLE_LOG"


def sample_fingerprint(image: Any) -> int:
    """A signed 64-bit hash of an image's raw values (as loaded): the `sample_id` of a row in the sample log."""
    raw = np.ascontiguousarray(np.asarray(image))
    return int.from_bytes(hashlib.blake2b(raw.tobytes(), digest_size=8).digest(), "little", signed=True)


class _WithSampleIds:
    """A transform that adds each row's `sample_id` (`sample_fingerprint` of its image) to its items."""

    def __init__(self, transform: Callable[[dict[str, list]], dict[str, list]]) -> None:
        self.transform = transform

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        ids = [torch.tensor(sample_fingerprint(image)) for image in batch["image"]]
        return {**self.transform(batch), "sample_id": ids}


def stream_batches_per_epoch(cfg: RecipeConfig, world_size: int) -> int:
    """Batches each process trains per epoch of a streaming split: `data.samples_per_epoch` rows over all
    processes (rounded up to whole optimizer steps), or, without it, the whole run (`train.max_steps`) as one epoch."""
    t, samples = cfg.train, cfg.data.samples_per_epoch
    if samples is not None and samples <= 0:
        raise ValueError(f"data.samples_per_epoch must be positive or null, got {samples}.")
    if samples:
        steps = math.ceil(samples / (t.batch_size * world_size * t.gradient_accumulation_steps))
        return max(steps, 1) * t.gradient_accumulation_steps
    if t.max_steps:
        return t.max_steps * t.gradient_accumulation_steps
    raise ValueError("data.streaming: a stream has no length; set data.samples_per_epoch (rows per epoch, over all "
                     "processes) or train.max_steps (the run's length).")


def shard_for_process(split: datasets.IterableDataset, rank: int, world_size: int) -> datasets.IterableDataset:
    """This process's part of a streaming split (`datasets.distributed.split_dataset_by_node`): whole shards when
    `n_shards` is a multiple of `world_size`, else every process reads every row and keeps one in `world_size`."""
    if world_size > 1 and split.n_shards % world_size:
        warnings.warn(f"The streaming training split has n_shards={split.n_shards}, not a multiple of the "
                      f"{world_size} processes (world size): every process reads every row and keeps 1 in "
                      f"{world_size}. Store the data in a multiple of {world_size} files (shards) to read each row "
                      "once.", stacklevel=2)
    return split_dataset_by_node(split, rank=rank, world_size=world_size)


class StreamLoader:
    """The training batches of a streaming split: `batches` per epoch, on every process alike (DDP needs it).

    `loader` iterates this process's shards (`shard_for_process`), shuffled from a buffer; when they run out within
    an epoch another pass starts, reshuffled. Pass `e * 1000 + p` of epoch `e` shuffles with `set_epoch` of that
    number, so an epoch's batches are reproducible (resume). Not for `accelerator.prepare`, which would shard it
    again: the batches are moved to `device` here.
    """

    def __init__(self, loader: DataLoader, batches: int, device: torch.device | str = "cpu") -> None:
        self.loader, self.batches, self.device, self.epoch = loader, batches, torch.device(device), 0

    def __len__(self) -> int:
        return self.batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_first_batches(self, skip: int) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's batches after the first `skip` (read and dropped: a stream cannot seek)."""
        return itertools.islice(iter(self), skip, None)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        produced = 0
        for passes in itertools.count():
            self.loader.dataset.set_epoch(self.epoch * 1000 + passes)
            before = produced
            for batch in self.loader:
                yield {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
                produced += 1
                if produced == self.batches:
                    return
            if produced == before:
                raise ValueError("The streaming training split gives this process no rows (fewer shards or rows "
                                 "than processes?).")


def build_dataloaders(
    cfg: RecipeConfig, data: RecipeData, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"
) -> tuple[DataLoader | StreamLoader, DataLoader | None]:
    """Training loader (shuffled, augmented) and evaluation loader (in order, no augmentation).

    The training loader's items are a function of (`train.seed`, epoch, index) (`sampling.py`): call
    `loader.sampler.set_epoch(epoch)` (or accelerate's `set_epoch` of the prepared loader) before each epoch; a
    loader iterated again without it repeats its epoch. No loader draws from the global RNG. A streaming training
    split gives a `StreamLoader` of process `rank`'s shards (of `world_size`) on `device`.
    """
    transform = _transform(cfg, data, train=True)
    if os.environ.get(SAMPLE_LOG_ENV):
        transform = _WithSampleIds(transform)
    workers = cfg.data.num_workers
    common = dict(collate_fn=_collate, num_workers=workers, persistent_workers=workers > 0,
                  pin_memory=torch.cuda.is_available())
    if isinstance(data.train, datasets.IterableDataset):
        part = shard_for_process(data.train, rank, world_size).shuffle(seed=cfg.train.seed,
                                                                       buffer_size=cfg.data.shuffle_buffer)
        part = part.map(transform, batched=True, batch_size=cfg.train.batch_size, remove_columns=part.column_names)
        stream = DataLoader(part, batch_size=cfg.train.batch_size, **common)
        train_loader = StreamLoader(stream, stream_batches_per_epoch(cfg, world_size), device)
    else:  # shuffled and augmented as a function of (seed, epoch, index): exact on resume (`sampling.py`)
        seed = cfg.train.seed
        train = KeyedDataset(data.train.with_transform(transform), seed)
        train_loader = DataLoader(train, batch_size=cfg.train.batch_size, sampler=EpochSampler(len(train), seed),
                                  drop_last=False, generator=_loader_generator(seed), **common)
    if data.eval is None:
        return train_loader, None
    evaluation = data.eval.with_transform(_transform(cfg, data, train=False))
    eval_loader = DataLoader(evaluation, batch_size=cfg.train.eval_batch_size or cfg.train.batch_size,
                             shuffle=False, generator=_loader_generator(cfg.train.seed), **common)
    return train_loader, eval_loader


def _loader_generator(seed: int) -> torch.Generator:
    """A loader's own generator: a new iterator draws its workers' base seed from it, not from the global RNG."""
    return torch.Generator().manual_seed(int(seed))
