"""Evaluate saved models on an hfseg dataset split, one image at a time at native resolution.

`evaluate_model(path, "demo")` loads the model and its processor (`inference.load_model`), predicts every item of
the split with `predict_logits` (so images of any size, with optional flip TTA and sliding window), and accumulates
`SegmentationMetrics` against the full-resolution labels: pooled and per-image overlap metrics, per-image surface
distances (`surface=True`, in mm when the dataset has a `pixel_spacing` column) and instance metrics
(`instance=True`). `regions="brats"` adds the BraTS regions WT/TC/ET (or any `{name: class ids}`) as binary
tasks. A classification dataset (its `label` a `ClassLabel`) is scored with `ClassificationMetrics`.
`evaluate_models([...])` loads the data once and evaluates several models on the same items.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import id2label as dataset_id2label
from ..data import load
from ..data.brats import BRATS_REGIONS
from ..metrics import ClassificationMetrics, SegmentationMetrics
from ..models.outputs import predict
from ..inference import (
    classify_logits,
    is_classifier,
    load_model,
    model_name,
    model_num_labels,
    predict_logits,
    resolve_model_path,
)

REGIONS: dict[str, dict[str, tuple[int, ...]]] = {"brats": dict(BRATS_REGIONS)}


def load_split(
    dataset: str | datasets.DatasetDict | datasets.Dataset,
    split: str = "validation",
    data_dir: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """One split: `hfseg.data.load(name, data_dir, **data_options)[split]`, a `DatasetDict`'s split, or a `Dataset`
    as given; the first `max_samples` items only when set."""
    if isinstance(dataset, str):
        dataset = load(dataset, data_dir, **dict(data_options or {}))
    if isinstance(dataset, (datasets.DatasetDict, dict)):
        if split not in dataset:
            raise ValueError(f"The dataset has no split {split!r}; it has {', '.join(dataset)}.")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"Expected a dataset name, DatasetDict or Dataset, got {type(dataset).__name__} "
                        "(streaming datasets are not supported: evaluation needs the item count and random access).")
    if max_samples is not None:
        dataset = dataset.select(range(min(int(max_samples), len(dataset))))
    return dataset


def is_classification(dataset: datasets.Dataset) -> bool:
    """Whether `label` is one class per image (a `ClassLabel`) rather than a mask."""
    return isinstance(dataset.features.get("label"), datasets.ClassLabel)


def resolve_regions(regions: str | Mapping[str, Sequence[int]] | None) -> dict[str, tuple[int, ...]]:
    """`"brats"` -> WT (1, 2, 3), TC (1, 3), ET (3); a mapping `{name: class ids}` as given; None -> {}."""
    if regions is None:
        return {}
    if isinstance(regions, str):
        if regions not in REGIONS:
            raise ValueError(f"Unknown regions {regions!r}; choose one of {', '.join(REGIONS)} or pass "
                             "{name: [class ids]}.")
        return REGIONS[regions]
    return {str(name): tuple(int(c) for c in ids) for name, ids in regions.items()}


def check_labels(model: torch.nn.Module, id2label: Mapping[int, str], model_label: str, data_label: str) -> None:
    """Raise when the model's outputs do not match the dataset's classes (a binary one-logit model fits 2 classes)."""
    k, n = model_num_labels(model), len(id2label)
    if k == n or (k == 1 and n == 2):
        return
    model_names = list(getattr(model.config, "id2label", {}).values())
    raise ValueError(
        f"Model {model_label!r} predicts {k} classes ({', '.join(map(str, model_names))}) but dataset {data_label!r} "
        f"has {n} classes ({', '.join(id2label.values())}): evaluate the model on the data it was trained for.")


def _image(value: Any) -> Any:
    return value if isinstance(value, Image.Image) else np.asarray(value)


def _format(image: Any) -> str | None:
    # Array3D images are channels last, the hfseg convention (as `SegmentationTransform`).
    return "channels_last" if isinstance(image, np.ndarray) and image.ndim == 3 else None


def _region_masks(pred: np.ndarray, label: np.ndarray, ids: tuple[int, ...], ignore_index: int | None):
    target = np.isin(label, ids).astype(np.int64)
    if ignore_index is not None:
        target[label == ignore_index] = ignore_index
    return np.isin(pred, ids).astype(np.int64), target


def _region_results(metrics: Mapping[str, SegmentationMetrics]) -> dict[str, dict[str, float]]:
    out = {}
    for name, acc in metrics.items():
        result = acc.compute()
        out[name] = {key: result[key][1] for key in ("dice", "iou", "image_dice", "image_iou", "image_hd",
                                                       "image_hd95", "image_assd") if key in result}
    return out


def _load(model: Any, device: str | None) -> tuple[torch.nn.Module, Any, str]:
    if isinstance(model, (tuple, list)):
        net, processor = model
        return net.eval(), processor, type(net).__name__
    net, processor = load_model(model, device)
    return net, processor, model_name(model)


def evaluate_model(
    model: str | os.PathLike | tuple[torch.nn.Module, Any],
    dataset: str | datasets.DatasetDict | datasets.Dataset,
    split: str = "validation",
    data_dir: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    tta_flip: bool = False,
    sliding_window: str | Sequence[int] | None = None,
    overlap: float = 0.5,
    surface: bool = True,
    instance: bool = False,
    spacing: Sequence[float] | None = None,
    regions: str | Mapping[str, Sequence[int]] | None = None,
    max_samples: int | None = None,
    ignore_index: int | None = 255,
    examples: int = 0,
    device: str | None = None,
    batch_size: int = 4,
    name: str | None = None,
    dataset_name: str | None = None,
) -> dict[str, Any]:
    """Metrics of one model on one split.

    Args:
        model: a `save_pretrained` folder or Hub id (see `load_model`), or a loaded `(model, processor)` pair.
        dataset: an `hfseg.data.load` name (with `data_dir` and `data_options`), a `DatasetDict` or a `Dataset`.
        split (`str`, *optional*, defaults to `"validation"`): the split of a name or `DatasetDict`.
        tta_flip, sliding_window, overlap, batch_size: inference options of `predict_logits` (`tta_flip` also
            applies to classifiers).
        surface (`bool`, *optional*, defaults to `True`): HD, HD95 and ASSD per image (`image_mean_hd95`, ...).
        instance (`bool`, *optional*, defaults to `False`): PQ and AJI of each class's connected components.
        spacing (`(row, col)` mm, *optional*): pixel size for every item; by default each item's `pixel_spacing`
            column when the dataset has one (uw-madison-gi), else 1 (distances in pixels).
        regions (`"brats"` or `{name: class ids}`, *optional*): also score unions of classes as binary tasks; the
            result's `regions` is `{name: {dice, iou, image_dice, image_iou, image_hd, image_hd95, image_assd}}`.
        max_samples (`int`, *optional*): evaluate the first items only.
        ignore_index (`int`, *optional*, defaults to 255): label value left out of every metric.
        examples (`int`, *optional*, defaults to 0): keep the first `examples` items' `image`, `label` and `pred`
            arrays under `examples` (for `report.overlay`); not JSON: drop the key before writing the result.
        device (`str`, *optional*): where a model loaded from a path runs (CUDA when available by default).
        name (`str`, *optional*): the model's name in the result (defaults to `model_name(path)`).
        dataset_name (`str`, *optional*): the dataset's name in the result and in errors (defaults to `dataset`
            when it is a name).

    Returns:
        `dict`: `SegmentationMetrics.compute()` (or `ClassificationMetrics.compute()`), plus `model`, `task`,
        `dataset`, `split`, the inference options, `seconds`, and `regions` / `examples` when asked for.

    Raises:
        FileNotFoundError / OSError: the model cannot be found or loaded.
        ValueError: the model's number of labels does not match the dataset's classes, or a segmentation model is
            given classification data (or the other way round).
    """
    start = time.perf_counter()
    net, processor, default_name = _load(model, device)  # first: a wrong path fails before the data loads
    data = load_split(dataset, split, data_dir, data_options, max_samples)
    data_label = dataset_name or (dataset if isinstance(dataset, str) else "dataset")
    name = name or default_name
    classification = is_classification(data)
    if classification != is_classifier(net):
        raise ValueError(f"Model {name!r} is {'an image classifier' if is_classifier(net) else 'a segmentation model'}"
                         f" but dataset {data_label!r} has {'one label per image' if classification else 'masks'}.")
    id2label = dataset_id2label(data)
    check_labels(net, id2label, name, data_label)
    options = {"tta_flip": tta_flip, "sliding_window": sliding_window, "overlap": overlap}
    if classification:
        result = _classify(net, processor, data, id2label, tta_flip, name)
    else:
        result = _segment(net, processor, data, id2label, name, options, surface, instance, spacing,
                          resolve_regions(regions), ignore_index, examples, batch_size)
    meta = {"model": name, "task": "classification" if classification else "segmentation", "dataset": data_label,
            "split": split if not isinstance(dataset, datasets.Dataset) else None, **options,
            "seconds": round(time.perf_counter() - start, 2)}
    return {**meta, **result}


def _segment(net, processor, data, id2label, name, options, surface, instance, spacing, regions, ignore_index,
             examples, batch_size) -> dict[str, Any]:
    num_classes = len(id2label)
    common = dict(ignore_index=ignore_index, surface=surface, spacing=spacing)
    metrics = SegmentationMetrics(num_classes, id2label=id2label, instance=instance, **common)
    region_metrics = {region: SegmentationMetrics(2, id2label={0: "background", 1: region}, **common)
                      for region in regions}
    use_column = spacing is None and "pixel_spacing" in data.column_names
    kept: list[dict[str, Any]] = []
    for i, item in enumerate(tqdm(data, desc=f"evaluate {name}", leave=False, disable=None)):
        image = _image(item["image"])
        label = np.asarray(item["label"]).astype(np.int64)
        logits = predict_logits(net, processor, image, batch_size=batch_size, input_data_format=_format(image),
                                **options)
        pred = predict(logits[None])[0].numpy()
        if pred.shape != label.shape:
            raise ValueError(f"Item {i}: the prediction is {pred.shape} but the label is {label.shape}; labels must "
                             "match their image pixel for pixel.")
        item_spacing = item["pixel_spacing"] if use_column else None
        metrics.update(pred[None], label[None], spacing=item_spacing)
        for region, acc in region_metrics.items():
            region_pred, region_target = _region_masks(pred, label, regions[region], ignore_index)
            acc.update(region_pred[None], region_target[None], spacing=item_spacing)
        if i < examples:
            kept.append({"case_id": item.get("case_id", str(i)), "image": np.asarray(image), "label": label,
                         "pred": pred})
    result = metrics.compute()
    if regions:
        result["regions"] = _region_results(region_metrics)
    if examples:
        result["examples"] = kept
    return result


def _classify(net, processor, data, id2label, tta_flip, name) -> dict[str, Any]:
    metrics = ClassificationMetrics(len(id2label), id2label=id2label)
    for item in tqdm(data, desc=f"evaluate {name}", leave=False, disable=None):
        image = _image(item["image"])
        logits = classify_logits(net, processor, image, tta_flip=tta_flip, input_data_format=_format(image))
        metrics.update(logits[None], torch.tensor([int(item["label"])]))
    return metrics.compute()


def _unique_names(models: Sequence[Any]) -> list[str]:
    names = [model_name(m) if not isinstance(m, (tuple, list)) else type(m[0]).__name__ for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"{n} ({i})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def evaluate_models(
    models: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike | tuple[torch.nn.Module, Any]],
    dataset: str | datasets.DatasetDict | datasets.Dataset,
    split: str = "validation",
    data_dir: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    max_samples: int | None = None,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """`{name: evaluate_model(...)}` for several models on the same items (the data is loaded once).

    `models` is a list of paths (named by `model_name`, made unique) or a mapping `{name: path or (model,
    processor)}`; `kwargs` go to `evaluate_model`.
    """
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = dict(zip(_unique_names(list(models)), models))
    if not named:
        raise ValueError("No models to evaluate.")
    for model in named.values():  # fail on a wrong path before evaluating the others
        if not isinstance(model, (tuple, list)):
            resolve_model_path(model)
    data = load_split(dataset, split, data_dir, data_options, max_samples)
    label = dataset if isinstance(dataset, str) else "dataset"
    split_name = None if isinstance(dataset, datasets.Dataset) else split
    results = {}
    for name, model in named.items():
        results[name] = evaluate_model(model, data, name=name, dataset_name=label, **kwargs)
        results[name]["split"] = split_name
    return results
