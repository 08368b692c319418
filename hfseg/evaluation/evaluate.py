"""Evaluate saved models on an hfseg dataset split, in batches at native resolution, per image and per case.

`evaluate_model(path, "demo")` loads the model and its processor (`inference.load_model`), reads the split through a
`torch.utils.data.DataLoader` (`batch_size` items at a time, decoded in `num_workers` worker processes when > 0),
predicts each batch with `predict_logits_batch` (images of one size run together, each normalized on its own, so
the metrics equal those of `predict_logits` image by image; a sliding window tiles each image on its own, with
optional flip TTA), and accumulates `SegmentationMetrics` against the full-resolution labels: pooled and per-image
overlap metrics, per-image surface distances (`surface=True`, in mm when the dataset has a `pixel_spacing` column)
and instance metrics (`instances="connected"` or `"watershed"`, see below). `regions="brats"` adds the BraTS
regions WT/TC/ET (or any `{name: class ids}`) as binary tasks. A classification dataset (its `label` a
`ClassLabel`) is scored with `ClassificationMetrics`.

**Per case.** When the split has a `case_id` column (demo, BraTS, CHAOS, UW-Madison), the slices of each case are
also stacked into one volume, wherever they sit in the split (in `slice_index` / `slice` order when the dataset has
that column, else in split order), and scored as one 3D label map: Dice, IoU, precision, recall and, with
`surface=True`, HD/HD95/ASSD with voxel spacing (slice thickness, row, col); the unit BraTS and CHAOS report. Rows
and columns are spaced as the 2D metrics are (`spacing`, else the `pixel_spacing` column, else 1); the slice
thickness is a `slice_thickness` column's, or the first value of a 3-value `spacing` column, else 1. The result's
`cases` says which were used. ⚠ `case_id` is the unit as the loader wrote it: `uw-madison-gi` groups a patient's
scan days by default (`group_by="case_day"` gives one scan per case). A case's slices are kept in memory until its
last slice is predicted, so a split whose cases are scattered holds more at once.

**Instances.** `instances="connected"` (what `instance=True` means) scores PQ and AJI of each class's connected
components, as before, and `instances="watershed"` separates touching objects in the predicted probabilities first
(`watershed_instances` of `hfseg.models.unet.image_processing_unet`: seeded by a boundary model's interior, or by the
foreground's distance maxima for a semantic model). Either way the result's `instances` entry holds object-level
PQ/SQ/RQ/AJI (all foreground classes as one, pooled and per image, with match counts) against the split's true
instance maps where it has an `instances` column (`image-mask-folder` with `instance_masks=True`), else against the
connected components of the label's foreground; and `regions["foreground"]` the Dice of the foreground (every
non-background class as one: interior and boundary of a boundary model, the nucleus papers report).

`evaluate_models([...])` loads the data once and evaluates several models on the same items; `case_table(results)`
is their per-case scores as table rows (one per model and case).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import id2label as dataset_id2label
from ..data import load
from ..data.brats import BRATS_REGIONS
from ..inference import (
    is_planned,
    classify_logits,
    is_classifier,
    load_model,
    model_name,
    model_num_labels,
    predict_logits_batch,
    resolve_model_path,
)
from ..metrics import ClassificationMetrics, SegmentationMetrics
from ..metrics.instance import InstanceMetrics, connected_instances
from ..models.outputs import predict
from ..models.unet.image_processing_unet import _foreground_probabilities, resolve_instance_classes, watershed_instances
from .cases import CASE_COLUMN, CaseMetrics, region_masks
from .volumes import evaluate_volumes, is_volume_dataset

REGIONS: dict[str, dict[str, tuple[int, ...]]] = {"brats": dict(BRATS_REGIONS)}
INSTANCE_METHODS = ("connected", "watershed")
INSTANCE_COLUMN = "instances"
FOREGROUND_REGION = "foreground"


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


class _Items(torch.utils.data.Dataset):
    """The split's items as evaluation reads them: `index`, `image` (PIL or array), `label` (an int64 array, or the
    class id of a classification item), and `pixel_spacing` / `instances` (an instance map) when asked for; decoded
    in the DataLoader's workers."""

    def __init__(self, data: datasets.Dataset, classification: bool, spacing_column: bool,
                 instance_column: bool = False):
        columns = ["image", "label"] + (["pixel_spacing"] if spacing_column else []) \
            + ([INSTANCE_COLUMN] if instance_column else [])
        self.data, self.classification = data.select_columns(columns), classification

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.data[int(index)]
        label = int(item["label"]) if self.classification else np.asarray(item["label"]).astype(np.int64)
        out = {"index": int(index), "image": _image(item["image"]), "label": label}
        if "pixel_spacing" in item:
            out["pixel_spacing"] = item["pixel_spacing"]
        if INSTANCE_COLUMN in item:
            out[INSTANCE_COLUMN] = np.asarray(item[INSTANCE_COLUMN]).astype(np.int64)
        return out


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch  # items keep their own sizes: no stacking


def _batches(data: datasets.Dataset, classification: bool, batch_size: int, num_workers: int, name: str,
             spacing_column: bool = False, instance_column: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Lists of `batch_size` items in split order, read by a DataLoader, with a progress bar over the items."""
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}.")
    loader = torch.utils.data.DataLoader(_Items(data, classification, spacing_column, instance_column),
                                         batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers, collate_fn=_as_list)
    with tqdm(total=len(data), desc=f"evaluate {name}", leave=False, disable=None) as bar:
        for batch in loader:
            yield batch
            bar.update(len(batch))


def _predict_batch(net, processor, images: list[Any], batch_size: int, options: Mapping[str, Any]
                   ) -> list[torch.Tensor]:
    """`predict_logits_batch` of `images`, run once per input format (a split's items normally share one)."""
    formats = [_format(image) for image in images]
    out: list[torch.Tensor | None] = [None] * len(images)
    for fmt in dict.fromkeys(formats):
        where = [i for i, f in enumerate(formats) if f == fmt]
        logits = predict_logits_batch(net, processor, [images[i] for i in where], batch_size=batch_size,
                                      input_data_format=fmt, **options)
        for i, value in zip(where, logits):
            out[i] = value
    return out  # type: ignore[return-value]


def _region_results(metrics: Mapping[str, SegmentationMetrics]) -> dict[str, dict[str, float]]:
    out = {}
    for name, acc in metrics.items():
        result = acc.compute()
        out[name] = {key: result[key][1] for key in ("dice", "iou", "image_dice", "image_iou", "image_hd",
                                                       "image_hd95", "image_assd") if key in result}
    return out


def _load(model: Any, device: str | None, trust_remote_code: bool = False) -> tuple[torch.nn.Module, Any, str]:
    if isinstance(model, (tuple, list)):
        net, processor = model
        return net.eval(), processor, type(net).__name__
    net, processor = load_model(model, device, trust_remote_code=trust_remote_code)
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
    instances: str | None = None,
    instance_options: Mapping[str, Any] | None = None,
    spacing: Sequence[float] | None = None,
    regions: str | Mapping[str, Sequence[int]] | None = None,
    max_samples: int | None = None,
    ignore_index: int | None = 255,
    examples: int = 0,
    device: str | None = None,
    batch_size: int = 4,
    num_workers: int = 0,
    per_case: bool = True,
    name: str | None = None,
    dataset_name: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Metrics of one model on one split, per image and (with a `case_id` column) per case. A planned volume model
    on a volume dataset predicts and scores every case whole (`hfseg.evaluation.volumes`; `tta_flip` mirrors over
    the plan's axes, the 2D options do not apply).

    Args:
        model: a `save_pretrained` folder or Hub id (see `load_model`), or a loaded `(model, processor)` pair.
        dataset: an `hfseg.data.load` name (with `data_dir` and `data_options`), a `DatasetDict` or a `Dataset`.
        split (`str`, *optional*, defaults to `"validation"`): the split of a name or `DatasetDict`.
        tta_flip, sliding_window, overlap: inference options of `predict_logits_batch` (`tta_flip` also applies
            to classifiers).
        batch_size (`int`, *optional*, defaults to 4): items per DataLoader batch and per forward pass (windows per
            pass with a sliding window). The metrics do not depend on it (batched logits differ from one-at-a-time
            ones by float rounding only, ~1e-6).
        num_workers (`int`, *optional*, defaults to 0): DataLoader worker processes decoding the items (0: in this
            process).
        surface (`bool`, *optional*, defaults to `True`): HD, HD95 and ASSD per image (`image_mean_hd95`, ...).
        instance (`bool`, *optional*, defaults to `False`): PQ and AJI of each class's connected components (the
            same as `instances="connected"`).
        instances (`str`, *optional*): `"connected"` or `"watershed"`: also object-level PQ and AJI (the result's
            `instances`) and the foreground Dice (`regions["foreground"]`); see the module docstring.
        instance_options (`dict`, *optional*): keyword arguments of `watershed_instances` (`threshold`,
            `seed_threshold`, `min_size`, `min_seed_size`, `seed_erosion`, `split_depth`) for `"watershed"`.
        spacing (`(row, col)` mm, *optional*): pixel size for every item; by default each item's `pixel_spacing`
            column when the dataset has one (uw-madison-gi), else 1 (distances in pixels).
        per_case (`bool`, *optional*, defaults to `True`): with a `case_id` column, also score each case's stacked
            slices as one volume (see the module docstring).
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
        trust_remote_code (`bool`, *optional*, defaults to `False`): run model code shipped with a checkpoint whose
            classes hfseg and transformers do not have (`load_model`); only for code you trust.

    Returns:
        `dict`: `SegmentationMetrics.compute()` (or `ClassificationMetrics.compute()`), plus `model`, `task`,
        `dataset`, `split`, the inference options, `batch_size`, `seconds`, and `regions` / `examples` when asked
        for. Per case (segmentation with a `case_id` column): `num_cases`, `case_<name>` for every `image_<name>`
        of `SegmentationMetrics` (`case_mean_dice`, `case_mean_foreground_dice`, `case_dice` per class,
        `case_mean_hd95`, ...: means over cases), `case_<name>` entries in `per_class` and `regions`, and `cases`:
        `per_case` (`{case_id: {num_slices, spacing, dice, iou, precision, recall, hd, hd95, assd (per class),
        mean_dice, mean_foreground_dice, mean_iou, mean_foreground_iou, mean_hd95, ..., regions}}`), `mean` (the
        `case_*` values without prefix), `std` (sample standard deviation over cases, NaN classes skipped: per
        class, and of the per-case `mean_*` values), `per_class`, `regions`, `num_cases`, `slice_order` and
        `spacing` (`{"axes", "slice", "row_col", "values"}`: where the spacing came from and the distinct values).

    Raises:
        FileNotFoundError / OSError: the model cannot be found or loaded.
        ValueError: the model's number of labels does not match the dataset's classes, or a segmentation model is
            given classification data (or the other way round).
    """
    start = time.perf_counter()
    instances = _instance_method(instance, instances)
    net, processor, default_name = _load(model, device, trust_remote_code)  # first: a wrong path fails before the data loads
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
    loader = {"batch_size": int(batch_size), "num_workers": int(num_workers)}
    planned, volumes = is_planned(processor), is_volume_dataset(data)
    if planned != volumes:
        raise ValueError(f"Model {name!r} is {'a planned volume model' if planned else 'a 2D model'} but dataset "
                         f"{data_label!r} holds {'whole volumes' if volumes else 'images'}: evaluate a volume model "
                         "on a volume dataset (nnunet, demo3d, or brats2020-nifti / chaos-mr-t2spir with volumes: "
                         "true), and a 2D model on images or slices.")
    if instances is not None and (classification or volumes):
        raise ValueError(f"instances={instances!r} scores objects in 2D segmentations; dataset {data_label!r} holds "
                         f"{'one label per image' if classification else 'whole volumes'}.")
    if classification:
        result = _classify(net, processor, data, id2label, tta_flip, name, **loader)
    elif volumes:
        result = evaluate_volumes(net, processor, data, id2label, resolve_regions(regions), ignore_index, surface,
                                  tta=tta_flip, examples=examples, name=name)
    else:
        scoring = _InstanceScoring.build(instances, net, processor, id2label, data, instance_options)
        result = _segment(net, processor, data, id2label, name, options, surface, scoring, spacing,
                          _with_foreground(resolve_regions(regions), id2label, scoring), ignore_index, examples,
                          per_case, **loader)
    meta = {"model": name, "task": "classification" if classification else "segmentation", "dataset": data_label,
            "split": split if not isinstance(dataset, datasets.Dataset) else None, **options,
            "batch_size": int(batch_size), "seconds": round(time.perf_counter() - start, 2)}
    return {**meta, **result}


def _instance_method(instance: bool, instances: str | None) -> str | None:
    if instances is None:
        return "connected" if instance else None
    if instances not in INSTANCE_METHODS:
        raise ValueError(f"Unknown instances={instances!r}; choose one of {', '.join(INSTANCE_METHODS)} (or None).")
    return instances


def _with_foreground(regions: dict[str, tuple[int, ...]], id2label: Mapping[int, str],
                     scoring: _InstanceScoring | None) -> dict[str, tuple[int, ...]]:
    """`regions` plus `foreground` (every non-background class) when instances are scored."""
    if scoring is None or FOREGROUND_REGION in regions:
        return regions
    return {**regions, FOREGROUND_REGION: tuple(range(1, len(id2label)))}


class _InstanceScoring:
    """Object-level PQ/AJI of one evaluation: how predicted instances are made, and what they are compared with."""

    def __init__(self, method: str, classes: dict[str, int] | None, options: Mapping[str, Any], column: bool
                 ) -> None:
        self.method, self.classes, self.options, self.column = method, classes, dict(options), column
        self.metrics = InstanceMetrics()

    @classmethod
    def build(cls, method: str | None, net, processor, id2label, data, options) -> _InstanceScoring | None:
        if method is None:
            return None
        k = model_num_labels(net)
        classes = resolve_instance_classes(max(k, 2), getattr(processor, "instance_classes", None),
                                           getattr(getattr(net, "config", None), "id2label", None))
        if classes is None:
            classes = resolve_instance_classes(max(k, 2), None, dict(id2label))
        allowed = {"threshold", "seed_threshold", "min_size", "min_seed_size", "seed_erosion", "split_depth"}
        unknown = sorted(set(options or {}) - allowed)
        if unknown:
            raise ValueError(f"Unknown instance_options {unknown}; valid keys: {', '.join(sorted(allowed))}.")
        return cls(method, classes if method == "watershed" else None, options or {},
                   INSTANCE_COLUMN in data.column_names)

    def add(self, logits: torch.Tensor, pred: np.ndarray, item: Mapping[str, Any], ignore_index: int | None) -> None:
        label = item["label"]
        ignore = label == ignore_index if ignore_index is not None else np.zeros(label.shape, dtype=bool)
        if self.method == "watershed":
            probs, _ = _foreground_probabilities(logits)
            predicted = watershed_instances(probs, self.classes, **self.options)
        else:
            predicted = connected_instances(pred > 0)
        truth = item[INSTANCE_COLUMN] if self.column else connected_instances((label > 0) & ~ignore)
        self.metrics.update(predicted, truth, ignore)

    def compute(self) -> dict[str, Any]:
        truth = "instances column" if self.column else "connected components of the label"
        return {"method": self.method, "truth": truth, "classes": self.classes, "options": self.options,
                **self.metrics.compute()}


def _segment(net, processor, data, id2label, name, options, surface, scoring, spacing, regions, ignore_index,
             examples, per_case, batch_size, num_workers) -> dict[str, Any]:
    num_classes = len(id2label)
    common = dict(ignore_index=ignore_index, surface=surface, spacing=spacing)
    connected = scoring is not None and scoring.method == "connected"
    metrics = SegmentationMetrics(num_classes, id2label=id2label, instance=connected, **common)
    region_metrics = {region: SegmentationMetrics(2, id2label={0: "background", 1: region}, **common)
                      for region in regions}
    use_column = spacing is None and "pixel_spacing" in data.column_names
    has_cases = CASE_COLUMN in data.column_names
    cases = CaseMetrics(data, id2label, regions, ignore_index, surface, spacing) if per_case and has_cases else None
    case_ids = [str(c) for c in data[CASE_COLUMN]] if has_cases and examples else None
    kept: list[dict[str, Any]] = []
    for batch in _batches(data, False, batch_size, num_workers, name, use_column,
                          scoring is not None and scoring.column):
        logits = _predict_batch(net, processor, [item["image"] for item in batch], batch_size, options)
        for item, item_logits in zip(batch, logits):
            i, label = item["index"], item["label"]
            pred = predict(item_logits[None])[0].numpy()
            if pred.shape != label.shape:
                raise ValueError(f"Item {i}: the prediction is {pred.shape} but the label is {label.shape}; labels "
                                 "must match their image pixel for pixel.")
            item_spacing = item["pixel_spacing"] if use_column else None
            metrics.update(pred[None], label[None], spacing=item_spacing)
            for region, acc in region_metrics.items():
                region_pred, region_target = region_masks(pred, label, regions[region], ignore_index)
                acc.update(region_pred[None], region_target[None], spacing=item_spacing)
            if scoring is not None:
                scoring.add(item_logits, pred, item, ignore_index)
            if cases is not None:
                cases.add(i, pred, label)
            if i < examples:
                kept.append({"case_id": case_ids[i] if case_ids else str(i), "image": np.asarray(item["image"]),
                             "label": label, "pred": pred})
    result = metrics.compute()
    if regions:
        result["regions"] = _region_results(region_metrics)
    if scoring is not None:
        result["instances"] = scoring.compute()
    if cases is not None:
        cases.merge_into(result)
    if examples:
        result["examples"] = kept
    return result


# -- per case ----------------------------------------------------------------------------------------------------
def _classify(net, processor, data, id2label, tta_flip, name, batch_size, num_workers) -> dict[str, Any]:
    metrics = ClassificationMetrics(len(id2label), id2label=id2label)
    for batch in _batches(data, True, batch_size, num_workers, name):
        logits = torch.stack([classify_logits(net, processor, item["image"], tta_flip=tta_flip,
                                              input_data_format=_format(item["image"])) for item in batch])
        metrics.update(logits, torch.tensor([item["label"] for item in batch]))
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
