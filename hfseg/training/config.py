"""The recipe's configuration: nested dataclasses, read from YAML, overridden by dotted `key=value` pairs.

```yaml
task: segmentation  # or classification (model.name a classifier, data.label_column a ClassLabel column)
model: {name: attention-unet, kwargs: {base_channels: 16}}
data: {dataset: demo, size: [128, 128]}
optim: {name: adam, lr: 1.0e-3}
train: {epochs: 10, batch_size: 8}
```
`load_config("demo", ["optim.lr=3e-4", "model.name=segformer-b0"])`: the config is a bundled name (the YAML files of
`hfseg/training/configs/`, see `bundled_configs()`) or a path; values are parsed as YAML (`3e-4` is a float, `[1, 2]`
a list, `null` None). An unknown key is an error listing the valid keys of its section.
The resolved config is saved with every run (`config.yaml`), and a run is reproduced from it. `loss.name` and
`train.metric` default by task (segmentation: `dice_ce`, `mean_foreground_dice`; classification: `ce`, `accuracy`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

TASKS = ("segmentation", "classification")
LOSSES = ("ce", "dice", "dice_ce", "focal")
CLASSIFICATION_LOSSES = ("ce",)
# Scalars of `hfseg.metrics.ClassificationMetrics.compute()` usable as train.metric (higher is better).
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                          "weighted_f1", "mean_max_probability", "mean_true_class_probability")
DEFAULT_LOSS = {"segmentation": "dice_ce", "classification": "ce"}
DEFAULT_METRIC = {"segmentation": "mean_foreground_dice", "classification": "accuracy"}
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "exponential", "step", "multistep", "cosine", "polynomial")
PRECISIONS = ("no", "fp16", "bf16", "auto")  # auto: bf16 where the hardware has it, see training/precision.py
# The study configs shipped with the package (`--config demo`, `--config chaos_attention_unet`).
CONFIGS_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelSection:
    """Which model: a zoo name (`attention-unet`, `segformer-b0`, ...) or a checkpoint folder / Hub id."""

    name: str = "attention-unet"
    pretrained: bool | str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # config fields overriding the preset
    channels_last: bool = False
    compile: bool = False


@dataclass
class DataSection:
    """Which dataset (a `hfseg.data.load` name), its options, and the image processor's normalization.

    Classification reads the class of each image from `label_column` (a `ClassLabel` column: `label` for
    brain-tumor-mri, `grade` for oral-epithelium) and needs `size`. `emphasis` is the segment-then-classify hook
    (`{segmenter: <run folder>, mode: dim, background: 0.3}`), see `hfseg.training.data.build_emphasis`.
    """

    dataset: str = "demo"
    data_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # passed to hfseg.data.load
    train_split: str = "train"
    eval_split: str = "validation"
    size: list[int] | None = None  # [height, width] the network sees; None keeps the native size
    normalization: str | None = None  # None: per-image zscore (see UNetImageProcessor)
    processor: dict[str, Any] = field(default_factory=dict)  # other UNetImageProcessor fields
    num_workers: int = 0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    label_column: str = "label"  # classification: the ClassLabel column holding each image's class
    emphasis: dict[str, Any] = field(default_factory=dict)  # classification: segment-then-classify preprocessing
    # Volume runs (a `plan` section): patches drawn per epoch (None: 250 batches, nnU-Net's epoch) and the share of
    # patches centred on a foreground voxel (nnU-Net's 1/3).
    samples_per_epoch: int | None = None
    foreground_fraction: float = 0.33
    # Read the training split lazily (the loader's `streaming=True`), sharded across processes: an epoch is then
    # `samples_per_epoch` rows (or the whole run, `train.max_steps`); see `hfseg.training.data.StreamLoader`.
    streaming: bool = False
    shuffle_buffer: int = 1000  # streaming: rows held to shuffle from


@dataclass
class LossSection:
    """Training loss; see `hfseg.models.unet.loss_unet` for the Dice policy on absent classes.

    `name` defaults by task: `dice_ce` for segmentation, `ce` (cross-entropy, the only classification loss) for
    classification. `label_smoothing` is classification's (torch `cross_entropy`'s); `class_weights` serve both.
    """

    name: str | None = None  # None: the task's default
    class_weights: list[float] | None = None
    ignore_index: int = 255
    include_background: bool = False
    dice_smooth: float = 1e-5
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0


@dataclass
class OptimSection:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedulerSection:
    """Learning-rate schedule, stepped every optimizer step (epoch-based ones are converted to steps)."""

    name: str = "none"
    gamma: float = 0.1  # exponential: factor per epoch; step/multistep: factor at each decay
    step_size: int = 10  # step: epochs between decays
    milestones: list[int] = field(default_factory=list)  # multistep: epochs
    power: float = 0.9  # polynomial
    min_lr_ratio: float = 0.0  # cosine/polynomial floor, as a fraction of lr
    warmup_steps: int = 0  # linear warm-up from 0 before the schedule


@dataclass
class TrainSection:
    output_dir: str = "runs/demo"
    epochs: int = 10
    max_steps: int | None = None  # optimizer steps of the run; when set, `epochs` is no limit (as in transformers)
    batch_size: int | None = 8  # volume runs (a plan section): null takes the plan's batch size
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "auto"  # no (fp32), fp16, bf16, or auto: bf16 on hardware with native bf16
    seed: int = 0
    ema_decay: float | None = None  # e.g. 0.999: evaluate and save an exponential moving average of the weights
    # Validation metric for the best checkpoint and early stopping (higher is better); None: the task's default,
    # mean_foreground_dice (segmentation) or accuracy (classification).
    metric: str | None = None
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    early_stopping_min_delta: float = 0.0  # an improvement must exceed the best by more than this
    checkpointing: str | int = "epoch"  # "epoch", or every N optimizer steps
    checkpoints_total_limit: int | None = 2
    resume: str | None = None  # a checkpoint folder or "latest"
    overwrite_output_dir: bool = False  # start a new run in an output_dir that holds one (else refused)
    eval_every: int = 1  # epochs
    panels: int = 2  # validation images in the per-epoch prediction panel (0: none)
    log_every: int = 10  # steps between tracker logs
    report_to: str | None = "tensorboard"
    push_to_hub: bool = False
    hub_model_id: str | None = None


@dataclass
class RecipeConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: dict[str, Any] = field(default_factory=dict)  # hfseg.data.transforms.AugmentConfig fields
    # Volumes: a non-empty `plan` makes a patch-based volume run planned from the data (`hfseg.planning.plan`):
    # `configuration` (3d_fullres or 2d), `memory_budget_gb`, and any `Plan` field to override (patch_size, ...).
    # `augment` then holds `hfseg.data.augment3d.VolumeAugmentConfig` fields.
    plan: dict[str, Any] = field(default_factory=dict)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    train: TrainSection = field(default_factory=TrainSection)
    task: str = "segmentation"  # or "classification"; last, so the sections keep their places in messages

    def __post_init__(self) -> None:
        """Fill the task-dependent defaults (`loss.name`, `train.metric`) left unset."""
        if self.loss.name is None:
            self.loss.name = DEFAULT_LOSS.get(self.task)
        if self.train.metric is None:
            self.train.metric = DEFAULT_METRIC.get(self.task)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


# Keys whose values are free-form mappings (their inner keys are checked by the code that consumes them).
_FREE = {"model.kwargs", "data.options", "data.processor", "data.emphasis", "augment", "plan"}


def _section_type(cls: type, name: str) -> type | None:
    hints = {f.name: f for f in fields(cls)}
    default = hints[name].default_factory if hints[name].default_factory is not dataclasses.MISSING else None
    if default is not None:
        value = default()
        if dataclasses.is_dataclass(value):
            return type(value)
    return None


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ValueError(f"Config section {prefix or 'root'!r} must be a mapping, got {values!r}.")
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        where = f"section {prefix!r}" if prefix else "the top level"
        raise ValueError(f"Unknown config key {prefix + '.' if prefix else ''}{unknown[0]!r} in {where}; valid keys: "
                         f"{', '.join(valid)}.")
    kwargs = {}
    for key, value in values.items():
        sub = _section_type(cls, key)
        path = f"{prefix}.{key}" if prefix else key
        if sub is not None:
            kwargs[key] = _build(sub, value or {}, path)
        elif path in _FREE and value is not None and not isinstance(value, Mapping):
            raise ValueError(f"Config key {path!r} must be a mapping, got {value!r}.")
        elif path not in _FREE and isinstance(value, Mapping):
            raise ValueError(f"Config key {path!r} is not a section; it takes a single value, got {dict(value)!r}.")
        else:
            kwargs[key] = dict(value) if path in _FREE else value
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"Cannot set {key!r}: {'.'.join(parts[: i + 1])!r} is not a section.")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`"optim.lr=3e-4"` -> `("optim.lr", 0.0003)`; the value is parsed as YAML."""
    if "=" not in item:
        raise ValueError(f"Override {item!r} is not key=value (e.g. optim.lr=3e-4).")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"Override {item!r} has an empty key.")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
    return key, value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bundled_configs() -> list[str]:
    """Names of the configs shipped with hfseg (`demo`, `chaos_attention_unet`, ...), usable as `--config NAME`."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.yaml"))


def config_path(config: str | Path) -> Path:
    """The YAML file of `config`: an existing file, else a bundled config name (with or without `.yaml`)."""
    path = Path(config)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    bundled = CONFIGS_DIR / f"{name}.yaml"
    if path.parent == Path(".") and bundled.is_file():
        return bundled
    raise FileNotFoundError(f"Config file {config} does not exist, and it is not a bundled config name; bundled: "
                            f"{', '.join(bundled_configs())}.")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                values: Mapping[str, Any] | None = None) -> RecipeConfig:
    """A validated `RecipeConfig` from defaults, then the YAML file `path` (or a bundled config name, see
    `config_path`), then `values`, then `overrides`."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = config_path(path)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"Config file {path} must hold a mapping of sections, got {type(loaded).__name__}.")
        tree = loaded
    for key, value in (values or {}).items():
        _set_dotted(tree, key, value)
    for item in overrides:
        _set_dotted(tree, *parse_override(item))
    config = _build(RecipeConfig, tree, "")
    validate(config)
    return config


def validate(config: RecipeConfig) -> None:
    """Raise `ValueError` for values no run can use, naming the key and the allowed values."""
    if config.task not in TASKS:
        raise ValueError(f"task={config.task!r} is not allowed; choose one of {', '.join(TASKS)}.")
    if config.task == "classification" and config.loss.name not in CLASSIFICATION_LOSSES:
        raise ValueError(f"loss.name={config.loss.name!r} is a segmentation loss; task: classification trains with "
                         f"{', '.join(CLASSIFICATION_LOSSES)} (cross-entropy; see loss.label_smoothing).")
    checks = [
        ("loss.name", config.loss.name, LOSSES),
        ("optim.name", config.optim.name, OPTIMIZERS),
        ("scheduler.name", config.scheduler.name, SCHEDULERS),
        ("train.mixed_precision", config.train.mixed_precision, PRECISIONS),
    ]
    for key, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{key}={value!r} is not allowed; choose one of {', '.join(allowed)}.")
    t = config.train
    positive = {"train.epochs": t.epochs, "train.batch_size": t.batch_size,
                "train.gradient_accumulation_steps": t.gradient_accumulation_steps, "train.eval_every": t.eval_every,
                "optim.lr": config.optim.lr}
    if t.batch_size is None and config.plan:
        del positive["train.batch_size"]  # the plan's
    for key, value in positive.items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{key} must be a positive number, got {value!r}.")
    if t.max_steps is not None and t.max_steps <= 0:
        raise ValueError(f"train.max_steps must be positive or null, got {t.max_steps}.")
    if not (t.checkpointing == "epoch" or (isinstance(t.checkpointing, int) and t.checkpointing > 0)):
        raise ValueError(f"train.checkpointing must be 'epoch' or a positive number of steps, got {t.checkpointing!r}.")
    if t.ema_decay is not None and not 0 < t.ema_decay < 1:
        raise ValueError(f"train.ema_decay must be in (0, 1), got {t.ema_decay}.")
    size = config.data.size
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"data.size must be [height, width], got {size!r}.")
    if config.plan:
        if config.task != "segmentation":
            raise ValueError("A plan section (volume training) needs task: segmentation.")
        if size is not None:
            raise ValueError("data.size does not apply to volume runs (a plan section): the plan resamples every "
                             "volume to its target spacing and trains on patches (override plan.patch_size instead).")
        if not 0 <= config.data.foreground_fraction <= 1:
            raise ValueError(f"data.foreground_fraction must be in [0, 1], got {config.data.foreground_fraction}.")
        planned = config.plan.get("batch_size")
        if planned is not None and t.batch_size is not None and planned != t.batch_size:
            raise ValueError(f"plan.batch_size={planned} and train.batch_size={t.batch_size} disagree: set one of "
                             "them (train.batch_size: null trains with the plan's).")
        if config.data.samples_per_epoch is not None and config.data.samples_per_epoch <= 0:
            raise ValueError(f"data.samples_per_epoch must be positive or null, got {config.data.samples_per_epoch}.")
    if t.push_to_hub and not t.hub_model_id:
        raise ValueError("train.push_to_hub needs train.hub_model_id (e.g. your-name/unet-demo).")
    if not 0 <= config.loss.label_smoothing < 1:
        raise ValueError(f"loss.label_smoothing must be in [0, 1), got {config.loss.label_smoothing}.")
    _validate_task(config)


def _validate_task(config: RecipeConfig) -> None:
    """The keys whose meaning depends on `task`: the model family, the data size, the metric, label smoothing."""
    from ..models import available_classifiers, available_models

    name, task = config.model.name, config.task
    if task == "classification":
        if name in available_models():
            raise ValueError(f"model.name={name!r} is a segmentation model but task is classification; choose a "
                             f"classifier ({', '.join(available_classifiers())}) or set task: segmentation.")
        if config.data.size is None:
            raise ValueError("task: classification needs data.size=[height, width]: every image is resized to it to "
                             "be batched (e.g. data.size=[224, 224]).")
        if config.train.metric not in CLASSIFICATION_METRICS:
            raise ValueError(f"train.metric={config.train.metric!r} is not a classification metric; choose one of "
                             f"{', '.join(CLASSIFICATION_METRICS)}.")
        return
    if name in available_classifiers():
        raise ValueError(f"model.name={name!r} is an image classifier but task is segmentation; set task: "
                         f"classification, or choose a segmentation model ({', '.join(available_models())}).")
    if config.loss.label_smoothing:
        raise ValueError("loss.label_smoothing is a classification option (task: classification); segmentation "
                         "losses do not use it.")
    if config.data.emphasis:
        raise ValueError("data.emphasis (segment-then-classify) applies to task: classification only.")
