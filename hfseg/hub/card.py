"""The model card (README.md) of a packaged run: `huggingface_hub.ModelCard` with a `model-index` and a body.

The YAML header carries `library_name: transformers`, the pipeline tag, tags, the license, the dataset and the
validation results (`model-index`, see `hub.results`). The body says what the model is, its intended use and
limits (research use only, not a medical device), the data and splits, the preprocessing, the training settings,
the results per class, the run's images and how to load the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import huggingface_hub
import torch
import transformers
import yaml
from huggingface_hub import ModelCard, ModelCardData

from .. import __version__
from ..viz import PALETTE
from . import results as M
from .run import TrainingRun, redact_paths

MEDICAL_DISCLAIMER = (
    "**Research use only. This model is not a medical device.** It has not been cleared or approved by any "
    "regulatory body (e.g. FDA, CE marking under the EU MDR), has not been clinically validated, and must not be "
    "used for diagnosis, treatment, triage or any other clinical decision, nor in place of the judgement of a "
    "qualified professional."
)

# Per-dataset notes: the terms the data's publisher attaches, and what its split can and cannot measure.
DATASET_NOTES: dict[str, dict[str, str]] = {
    "demo": {
        "terms": (
            "The training data is derived from the MNI ICBM152 2009a nonlinear symmetric template (T1 and tissue "
            "probability maps, as shipped with nilearn). Its notice, which must accompany copies: *Copyright (C) "
            "1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill "
            "University. Permission to use, copy, modify, and distribute this data and its documentation for any "
            "purpose and without fee is hereby granted, provided that the above copyright notice appear in all "
            "copies. The authors and McGill University make no representations about the suitability of this data "
            "for any purpose. It is provided \"as is\" without express or implied warranty.* References: Fonov et "
            "al., NeuroImage 2011 and 2009; Collins et al., 1999."
        ),
        "population": (
            "The data is one template brain (an average of healthy young adults' T1 MRI), not patients: every slice "
            "comes from the same synthetic \"subject\", labels come from thresholded tissue probability maps rather "
            "than expert annotation, and the validation split is blocks of contiguous slices of that same brain, so "
            "it measures generalization across the brain's height only, not across people, scanners or pathology. "
            "This is a demonstration model."
        ),
    },
}

# Descriptions of UNetImageProcessor normalizations (hfseg/models/unet/image_processing_unet.py).
NORMALIZATIONS = {
    "zscore": "z-score per image and channel (subtract the mean, divide by the standard deviation)",
    "percentile": "clip each image and channel to its {percentiles} percentiles, then scale to [0, 1]",
    "window": "CT window: clip to {window_center} +- {window_width}/2 HU, then scale to [0, 1]",
    "minmax": "min-max scaling of each image and channel to [0, 1]",
    "mean_std": "multiply by {rescale_factor:.6g}, then subtract image_mean {image_mean} and divide by image_std "
                "{image_std}",
    "none": "none (raw intensities)",
}
# Config fields worth showing in the model details, when the model's config has them.
ARCHITECTURE_FIELDS = ("architecture", "encoder", "hidden_sizes", "depths", "attention", "channel_attention",
                       "conv_type", "norm", "skip", "upsample", "bottleneck")
IMAGE_CAPTIONS = {
    "curves.png": "Training and validation loss, and the validation selection metric, per epoch.",
    "predictions.png": "Validation images of the packaged epoch: image | ground truth | prediction (| the finest "
                       "attention gate's map, for attention U-Nets).",
    "predictions.gif": "The same validation panel over the epochs of training.",
    "confusion.png": "Confusion matrix on the validation split.",
}
FILE_NOTES = {
    "config.json": "model configuration (architecture, class names, `auto_map` for remote code)",
    "model.safetensors": "weights (safetensors)",
    "preprocessor_config.json": "image processor settings",
    "training_config.yaml": "the resolved training recipe (reproduce: `recipes/train.py --config "
                            "training_config.yaml`)",
    "metrics.json": "run summary: epochs, steps, time, best epoch and final validation metrics",
    "eval_results.json": "every validation metric of the packaged weights (pooled and per image, per class)",
    "history.csv": "per-epoch training loss, learning rate and validation metrics",
}


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("n/a" if v is None else _fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _dataset_description(name: str | None) -> str | None:
    if name is None:
        return None
    from ..data import available

    return available().get(name)


def _base_model(run: TrainingRun) -> str | None:
    """The Hub id of the pretrained checkpoint the run started from, when it was one."""
    pretrained = run.section("model").get("pretrained")
    if pretrained is True:
        from ..models.zoo import FAMILIES

        family = FAMILIES.get(run.model_name)
        return family.checkpoint if family else None
    if isinstance(pretrained, str) and pretrained.count("/") == 1 and not pretrained.startswith((".", "/", "~")):
        return pretrained
    return None


def _num_channels(model: torch.nn.Module, processor: Any) -> int | None:
    config = model.config
    value = getattr(config, "num_channels", None) or getattr(processor, "num_channels", None)
    if value is None:
        value = (getattr(config, "model_args", None) or {}).get("in_chans")
    return int(value) if value else None


def needs_remote_code(model: torch.nn.Module, processor: Any) -> bool:
    """Whether loading needs `trust_remote_code=True`: the config maps the model, or the processor, to shipped code."""
    return bool(getattr(model.config, "auto_map", None)) or getattr(processor, "_auto_class", None) is not None


def _processor_settings(processor: Any) -> dict[str, Any]:
    skip = {"auto_map", "image_processor_type", "processor_class"}
    settings = {k: v for k, v in processor.to_dict().items() if not k.startswith("_") and k not in skip}
    return json.loads(json.dumps(settings, default=str))  # tuples -> lists: plain YAML


# -- sections ---------------------------------------------------------------------------------------------------
def _summary(run: TrainingRun, model: torch.nn.Module, names: Sequence[str], repo_id: str) -> str:
    what = "semantic segmentation" if run.task == "segmentation" else "image classification"
    text = (f"# {repo_id.split('/')[-1]}\n\n`{run.model_name}` (`{type(model).__name__}`) for {what} of "
            f"{len(names)} classes ({', '.join(f'`{n}`' for n in names)})")
    if run.dataset:
        text += f", trained on the `{run.dataset}` dataset"
    text += f" with hfseg {__version__}."
    metric = run.summary.get("metric") or run.section("train").get("metric")
    value = M.number(run.metrics.get(metric)) if metric else None
    if value is not None:
        where = f"epoch {run.epoch}" if run.epoch is not None else f"the {run.weights} epoch"
        text += f" Validation `{metric}`: **{value:.4f}** ({where})."
    return (text + "\n\n> **Research use only, not a medical device:** see [Intended use and limitations]"
                   "(#intended-use-and-limitations).")


def _model_details(run: TrainingRun, model: torch.nn.Module, processor: Any, names: Sequence[str], license: str
                   ) -> str:
    config = model.config
    fields = config.to_dict()
    arch = ", ".join(f"`{k}={fields[k]}`" for k in ARCHITECTURE_FIELDS if fields.get(k) not in (None, "none"))
    channels = _num_channels(model, processor)
    params = sum(p.numel() for p in model.parameters())
    output = ("per-pixel logits `(batch, num_labels, H, W)`" if run.task == "segmentation"
              else "logits `(batch, num_labels)`")
    lines = [
        f"- **Architecture:** `{type(model).__name__}` (`model_type` `{config.model_type}`), hfseg model name "
        f"`{run.model_name}`" + (f"; {arch}" if arch else ""),
        f"- **Parameters:** {params / 1e6:.2f} M",
        f"- **Input:** `pixel_values` `(batch, {channels or 'C'}, H, W)`, prepared by the image processor",
        f"- **Output:** {output} over {len(names)} classes",
        f"- **Weights:** the {'best validation epoch' if run.weights == 'best' else 'last epoch'} of the run "
        f"(`{run.weights}/`), safetensors",
    ]
    base = _base_model(run)
    if base:
        lines.append(f"- **Fine-tuned from:** [`{base}`](https://huggingface.co/{base})")
    if needs_remote_code(model, processor):
        lines.append("- **Code:** hfseg's code ships with the weights (`auto_map`): load with "
                     "`trust_remote_code=True`, no hfseg install needed")
    lines.append(f"- **License:** {license} (the weights; see the data's terms below)")
    table = _table(["id", "class"], list(enumerate(names)))
    return "## Model details\n\n" + "\n".join(lines) + "\n\nClasses:\n\n" + table


def _intended_use(run: TrainingRun, channels: int | None) -> str:
    dataset = run.dataset or "its training data"
    note = DATASET_NOTES.get(run.dataset or "", {})
    kind = "segmentation" if run.task == "segmentation" else "classification"
    limits = [
        f"Trained and validated on one dataset (`{dataset}`). Performance on other populations, institutions, "
        "scanners or acquisition protocols, modalities, resolutions or pathologies is unknown and is expected to "
        "drop (domain shift); validate on your own data before drawing any conclusion.",
        f"Inputs must look like the training data: the same modality and {channels or 'number of'} channel(s), "
        "prepared by the included image processor.",
    ]
    if run.task == "segmentation":
        limits.append("It works on 2D images (slices) one at a time, without 3D context.")
    if run.weights == "best" and run.metrics:
        limits.append("The reported results come from the validation split that also selected the checkpoint (the "
                      "best epoch), so they are optimistic; no held-out test set was evaluated.")
    limits.append("Annotation errors and biases of the training labels are learnt; the demographic make-up of the "
                  "training data is not documented here: check the dataset's own documentation.")
    if note.get("population"):
        limits.append(note["population"])
    terms = note.get("terms") or (
        f"The terms of the training data (`{dataset}`) apply to this model's use and redistribution; check its "
        "licence and data-use agreement before sharing or using the model.")
    return ("## Intended use and limitations\n\n" + MEDICAL_DISCLAIMER + "\n\n"
            f"Intended for research and education: studying and comparing {kind} methods, a baseline, or a starting "
            "point for fine-tuning on your own data.\n\nLimitations:\n\n" + "\n".join(f"- {x}" for x in limits)
            + "\n\n### Data terms\n\n" + terms)


def _training_data(run: TrainingRun) -> str:
    data = run.section("data")
    dataset = run.dataset
    if not dataset:
        return "## Training data\n\nThe run does not record its dataset."
    options = {k: v for k, v in (data.get("options") or {}).items() if k not in ("cache_dir", "num_proc")}
    args = [repr(dataset)] + (["data_dir=..."] if data.get("data_dir") else [])
    args += [f"{k}={v!r}" for k, v in options.items()]
    description = _dataset_description(dataset)
    lines = [f"- **Dataset:** `{dataset}`" + (f": {description}" if description else ""),
             f"- **Loaded with:** `hfseg.data.load({', '.join(args)})`",
             f"- **Training split:** `{data.get('train_split', 'train')}`"
             + (f" (first {data['max_train_samples']} images)" if data.get("max_train_samples") else ""),
             f"- **Validation split:** `{run.eval_split}`"
             + (f" (first {data['max_eval_samples']} images)" if data.get("max_eval_samples") else "")]
    count = run.metrics.get("num_images", run.metrics.get("num_samples"))
    if count:
        lines[-1] += f", {count} images evaluated"
    return ("## Training data\n\n" + "\n".join(lines) + "\n\nThe splits come from `hfseg.data`; "
            f"`help(hfseg.data.loader_function({dataset!r}))` documents their unit: grouped by patient or case where "
            "the data identifies them, so that no case spans both splits; otherwise per image, where images of one "
            "patient may fall in both and make validation optimistic.")


def _preprocessing(run: TrainingRun, processor: Any) -> str:
    back = "; predictions are resized back to the input's size" if run.task == "segmentation" else ""
    settings = _processor_settings(processor)
    lines = []
    normalization = settings.get("normalization")
    if normalization in NORMALIZATIONS:
        lines.append("- **Intensity normalization:** " + NORMALIZATIONS[normalization].format(**{
            "percentiles": settings.get("percentiles"), "window_center": settings.get("window_center"),
            "window_width": settings.get("window_width"), "rescale_factor": settings.get("rescale_factor") or 1.0,
            "image_mean": settings.get("image_mean"), "image_std": settings.get("image_std")}))
    size = settings.get("size")
    if settings.get("do_resize") and isinstance(size, Mapping) and "height" in size:
        lines.append(f"- **Size:** resized to {size['height']} x {size['width']} (bilinear, antialiased){back}")
    elif settings.get("do_resize") and size:
        lines.append(f"- **Size:** resized to {size}")
    elif "do_resize" in settings:
        lines.append("- **Size:** native resolution (no resizing)")
    augment = run.config.get("augment") or {}
    lines.append("- **Training augmentation:** "
                 + (", ".join(f"`{k}={v}`" for k, v in augment.items()) if augment else "none"))
    plan = settings.pop("plan", None)
    block = yaml.safe_dump(settings, sort_keys=False).strip()
    text = (f"## Preprocessing\n\n`{type(processor).__name__}` (preprocessor_config.json), applied by "
            f"`processor(image)`:\n\n" + "\n".join(lines) + f"\n\nAll settings:\n\n```yaml\n{block}\n```")
    if plan:
        text += "\n\n" + _plan_section(plan)
    return text


def _plan_section(plan: Mapping[str, Any]) -> str:
    """The volume model's plan (`hfseg.planning`), as the recipe printed it: inference resamples, normalizes and
    slides its windows by it (`processor.preprocess_volume`, `hfseg.inference.predict_planned`)."""
    from ..planning import Plan

    try:
        described = Plan.from_dict(plan).describe()
    except (TypeError, ValueError, KeyError):  # a plan of another hfseg version: show the fields as saved
        described = yaml.safe_dump({k: v for k, v in plan.items() if k != "fingerprint"}, sort_keys=False).strip()
    return ("### Plan\n\nPlanned from the training data by nnU-Net's rules (`hfseg.planning`). Inference resamples "
            "every volume to the target spacing, normalizes each channel and predicts it with Gaussian sliding "
            "windows of the patch size, then resamples the mask back onto the scan's grid "
            f"(`hfseg predict`):\n\n```\n{described}\n```")


def _duration(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)):
        return None
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _training(run: TrainingRun) -> str:
    train, optim, sched, loss = (run.section(k) for k in ("train", "optim", "scheduler", "loss"))
    summary = run.summary
    rows: list[tuple[str, Any]] = [
        ("epochs", f"{summary.get('epochs', train.get('epochs')):g}" if summary.get("epochs", train.get("epochs"))
         is not None else None),
        ("optimizer steps", summary.get("steps")),
        ("batch size", train.get("batch_size")),
        ("gradient accumulation", train.get("gradient_accumulation_steps")),
        ("optimizer", optim.get("name") and f"{optim['name']}, lr {optim.get('lr')}, weight decay "
                                            f"{optim.get('weight_decay')}"),
        ("schedule", sched.get("name") and f"{sched['name']}, {sched.get('warmup_steps', 0)} warm-up steps"),
        ("loss", loss.get("name") and f"{loss['name']}" + (f", class weights {loss['class_weights']}"
                                                           if loss.get("class_weights") else "")),
        ("mixed precision", train.get("mixed_precision")),
        ("EMA decay", train.get("ema_decay")),
        ("seed", train.get("seed")),
        ("checkpoint selection", summary.get("metric", train.get("metric"))),
        ("best epoch", summary.get("best_epoch")),
        ("training time", _duration(summary.get("seconds"))),
    ]
    table = _table(["setting", "value"], [(k, v) for k, v in rows if v is not None])
    text = "## Training procedure\n\n" + table
    if run.config:
        block = yaml.safe_dump(redact_paths(run.config), sort_keys=False).strip()
        text += ("\n\n<details>\n<summary>Full training configuration (training_config.yaml)</summary>\n\n"
                 f"```yaml\n{block}\n```\n\n</details>")
    return text


def _evaluation(run: TrainingRun, names: Sequence[str]) -> str:
    if not run.metrics:
        return "## Evaluation\n\nThe run had no validation split: no results are reported."
    metric = run.summary.get("metric") or run.section("train").get("metric")
    rows = [(f"{name} (`{key}`)", value) for key, _, name, value in M.headline(run.task, run.metrics, metric)]
    where = f"epoch {run.epoch}" if run.epoch is not None else f"the {run.weights} weights"
    text = (f"## Evaluation\n\nOn the `{run.eval_split}` split, {where} (the packaged weights):\n\n"
            + _table(["metric", "value"], rows))
    table = M.per_class(run.task, run.metrics, names)
    if table:
        columns = [(key, label) for key, label in M.TABLE_COLUMNS[run.task] if key in table]
        rows = [[name] + [table[key][name] for key, _ in columns] for name in names]
        text += "\n\nPer class:\n\n" + _table(["class"] + [label for _, label in columns], rows)
    if run.task == "segmentation":
        text += ("\n\nDice and IoU without \"per image\" pool every validation pixel into one confusion matrix; "
                 "\"per image\" values average each image's score (what most medical papers report). "
                 "eval_results.json has every metric.")
    return text


def _images(images: Sequence[str], names: Sequence[str]) -> str:
    if not images:
        return ""
    parts = []
    for name in images:
        caption = IMAGE_CAPTIONS.get(name, name)
        parts.append(f"![{name}](images/{name})\n\n*{caption}*")
    text = "## Images\n\n" + "\n\n".join(parts)
    if any(n.startswith("predictions") for n in images):
        legend = ", ".join(f"`{n}` #{''.join(f'{c:02x}' for c in PALETTE[i % len(PALETTE)])}"
                           for i, n in enumerate(names))
        text += f"\n\nMask colours: {legend}."
    return text


def usage_snippets(task: str, repo_id: str, channels: int | None, remote_code: bool) -> tuple[str, str]:
    """Python snippets loading the model from `repo_id` with transformers and with hfseg (each reads image.png)."""
    mode = "L" if channels == 1 else "RGB"
    trust = ", trust_remote_code=True" if remote_code else ""
    if task == "segmentation":
        plain = (
            "import torch\nfrom PIL import Image\n"
            "from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation\n\n"
            f"repo_id = {json.dumps(repo_id)}\n"
            f"model = AutoModelForSemanticSegmentation.from_pretrained(repo_id{trust}).eval()\n"
            f"processor = AutoImageProcessor.from_pretrained(repo_id{trust})\n"
            f"image = Image.open(\"image.png\").convert(\"{mode}\")\n"
            "inputs = processor(image, return_tensors=\"pt\")\n"
            "with torch.no_grad():\n    outputs = model(**inputs)\n"
            "mask = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]\n"
            "print({model.config.id2label[int(i)]: int((mask == i).sum()) for i in mask.unique()})  # pixels per "
            "class\n")
        hfseg = (
            "from PIL import Image\nfrom hfseg.evaluation import load_model, predict_mask\n\n"
            f"repo_id = {json.dumps(repo_id)}\n"
            "model, processor = load_model(repo_id)\n"
            f"image = Image.open(\"image.png\").convert(\"{mode}\")\n"
            "mask = predict_mask(model, processor, image)  # (H, W) class ids at the image's size; tta_flip=True, "
            "sliding_window=\"auto\" available\n")
    else:
        plain = (
            "import torch\nfrom PIL import Image\n"
            "from transformers import AutoImageProcessor, AutoModelForImageClassification\n\n"
            f"repo_id = {json.dumps(repo_id)}\n"
            f"model = AutoModelForImageClassification.from_pretrained(repo_id{trust}).eval()\n"
            f"processor = AutoImageProcessor.from_pretrained(repo_id{trust})\n"
            f"image = Image.open(\"image.png\").convert(\"{mode}\")\n"
            "inputs = processor(image, return_tensors=\"pt\")\n"
            "with torch.no_grad():\n    logits = model(**inputs).logits\n"
            "print(model.config.id2label[int(logits.argmax(-1))], logits.softmax(-1).max().item())\n")
        hfseg = (
            "from PIL import Image\nfrom hfseg.evaluation import classify_logits, load_model\n\n"
            f"repo_id = {json.dumps(repo_id)}\n"
            "model, processor = load_model(repo_id)\n"
            f"image = Image.open(\"image.png\").convert(\"{mode}\")\n"
            "logits = classify_logits(model, processor, image)  # (num_labels,)\n"
            "print(model.config.id2label[int(logits.argmax())])\n")
    return plain, hfseg


def _usage(task: str, repo_id: str, channels: int | None, remote_code: bool) -> str:
    plain, hfseg = usage_snippets(task, repo_id, channels, remote_code)
    where = "with transformers only (the code comes from this repository)" if remote_code else "with transformers"
    return (f"## How to use\n\n{where.capitalize()}:\n\n```python\n{plain}```\n\nWith hfseg installed, which adds "
            "native-resolution inference, flip TTA and sliding windows:\n\n"
            f"```python\n{hfseg}```")


def _files(files: Sequence[str]) -> str:
    rows = [(f"`{name}`", FILE_NOTES.get(name, "model or processor code, for `trust_remote_code=True`"
                                         if name.endswith(".py") else ""))
            for name in files if not name.startswith("images/") and name != "README.md"]
    return "## Files\n\n" + _table(["file", "contents"], rows)


def _versions() -> str:
    return (f"## Framework versions\n\nhfseg {__version__}, transformers {transformers.__version__}, "
            f"torch {torch.__version__}, huggingface_hub {huggingface_hub.__version__}")


# -- the card ---------------------------------------------------------------------------------------------------
def card_data(run: TrainingRun, model: torch.nn.Module, *, repo_id: str, license: str = "apache-2.0",
              dataset_id: str | None = None, tags: Sequence[str] = ()) -> ModelCardData:
    """The card's YAML header: library, pipeline tag, tags, license, dataset and the `model-index`.

    `datasets` holds Hub dataset ids, so it is set only from `dataset_id` (an hfseg loader name such as `demo` is no
    Hub id); the `model-index` names the dataset by `dataset_id` or else the loader name.
    """
    names = M.class_names(run.metrics, model.config.id2label)
    dataset = run.dataset or "unknown"
    metric = run.summary.get("metric") or run.section("train").get("metric")
    results = M.eval_results(run.task, run.metrics, names, dataset_type=dataset_id or dataset, dataset_name=dataset,
                             split=run.eval_split, selection_metric=metric)
    all_tags = ["medical-imaging", "hfseg", run.model_name, M.PIPELINE_TAGS[run.task]]
    all_tags += [run.dataset] if run.dataset else []
    all_tags += ["custom_code"] if getattr(model.config, "auto_map", None) else []  # as transformers tags it
    all_tags += list(tags)
    return ModelCardData(
        license=license, library_name="transformers", pipeline_tag=M.PIPELINE_TAGS[run.task],
        tags=list(dict.fromkeys(all_tags)), datasets=[dataset_id] if dataset_id else None,
        metrics=list(dict.fromkeys(kind for _, kind, _, _ in M.headline(run.task, run.metrics, metric))) or None,
        base_model=_base_model(run), model_name=repo_id.split("/")[-1], eval_results=results or None)


def model_card(run: TrainingRun, model: torch.nn.Module, processor: Any, *, repo_id: str,
               license: str = "apache-2.0", dataset_id: str | None = None, tags: Sequence[str] = (),
               images: Sequence[str] = (), files: Sequence[str] = ()) -> ModelCard:
    """The model card of `run`'s packaged model.

    Args:
        run (`TrainingRun`): the run (`read_run`).
        model, processor: the packaged model and image processor.
        repo_id (`str`): the Hub repository, used in the title and the snippets.
        license (`str`, *optional*, defaults to `"apache-2.0"`): the weights' Hub license id.
        dataset_id (`str`, *optional*): the Hub dataset id of the training data, if it is on the Hub.
        tags (`Sequence[str]`, *optional*): extra tags.
        images (`Sequence[str]`, *optional*): file names under images/ to show.
        files (`Sequence[str]`, *optional*): the repository's files, listed in the card.
    """
    data = card_data(run, model, repo_id=repo_id, license=license, dataset_id=dataset_id, tags=tags)
    names = M.class_names(run.metrics, model.config.id2label)
    channels = _num_channels(model, processor)
    remote = needs_remote_code(model, processor)
    sections = [
        _summary(run, model, names, repo_id),
        _model_details(run, model, processor, names, license),
        _intended_use(run, channels),
        _training_data(run),
        _preprocessing(run, processor),
        _training(run),
        _evaluation(run, names),
        _images(images, names),
        _usage(run.task, repo_id, channels, remote),
        _files(files) if files else "",
        _versions(),
    ]
    body = "\n\n".join(s for s in sections if s)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")
