"""Volume runs of the recipe (a `plan` section): plan from the data, preprocess, train on patches, evaluate whole
volumes, as nnU-Net does inside one recipe.

- **Plan**: `hfseg.planning.plan(train split, configuration=plan.configuration, ...)` with the section's other keys
  as overrides of the plan's fields; printed at the start and saved in the image processor (so inference resamples
  and normalizes the same way) and thus in the model card.
- **Data**: every training case is preprocessed once (`UNetImageProcessor.preprocess_volume`: crop to non-zero,
  per-channel normalization, resampling to the plan's spacing) and kept in memory; `PatchDataset` draws
  `data.samples_per_epoch` patches per epoch (default: 250 batches, nnU-Net's epoch), `data.foreground_fraction` of
  them centred on foreground, augmented on the fly in the DataLoader workers (`augment`: `VolumeAugmentConfig`
  fields). Each draw is a function of (seed, epoch, index), so a resumed run and any worker count give the same
  patches.
- **Model**: `model.name` built with `spatial_dims` and the plan's `hidden_sizes`, `strides` and `kernel_sizes`;
  `model.kwargs` (e.g. `norm`, `deep_supervision`) apply on top. With deep supervision the loss is nnU-Net's
  weighted sum over the decoder's resolutions.
- **Evaluation**: every validation case predicted whole (`hfseg.inference.planned`: Gaussian sliding window, back to
  the case's own grid) and scored per case in 3D with its spacing (Dice, IoU, HD95, ASSD in mm, volumes in mL); the
  pooled Dice of all cases' voxels is `mean_foreground_dice`, and the per-case means are the `case_*` keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import dataset_modality, load
from ..data import id2label as dataset_id2label
from ..data.volumes import case_arrays
from ..evaluation.volumes import is_volume_dataset, predict_cases, score_cases, shown_slice
from ..models.unet.image_processing_unet import UNetImageProcessor
from ..models.unet.loss_unet import deep_supervision_loss
from ..models.zoo import create_model
from ..planning import Plan, apply_overrides
from ..planning import plan as make_plan
from .config import RecipeConfig
from .data import RecipeData
from .tasks import SegmentationTask

# nnU-Net's epoch: 250 training iterations.
BATCHES_PER_EPOCH = 250
PLAN_OPTIONS = ("configuration", "memory_budget_gb")
# Recipe options of the plan section that are not planner arguments: `base_width` sets the widths to
# base_width * 2**i per stage (capped at `max_width`, default nnU-Net's 320 / 512), e.g. narrower networks on a CPU.
WIDTH_OPTIONS = ("base_width", "max_width")


@dataclass
class VolumeRecipeData(RecipeData):
    """`RecipeData` of a volume run: the plan and the preprocessed training cases too."""

    plan: Plan | None = None
    cases: list[dict[str, Any]] | None = None

    def describe_train(self) -> str:
        return f"{len(self.train)} training cases (patches of {' x '.join(map(str, self.plan.patch_size))})"


def is_volume_run(cfg: RecipeConfig) -> bool:
    """Whether `cfg` describes a volume run (a non-empty `plan` section)."""
    return bool(cfg.plan)


def build_plan(cfg: RecipeConfig, train: datasets.Dataset) -> Plan:
    """The plan of `train` with the `plan` section's options and overrides (a set `train.batch_size` is the plan's
    batch size too)."""
    options = {key: cfg.plan[key] for key in PLAN_OPTIONS if key in cfg.plan}
    overrides = {key: value for key, value in cfg.plan.items() if key not in PLAN_OPTIONS + WIDTH_OPTIONS}
    if cfg.train.batch_size is not None:
        overrides.setdefault("batch_size", cfg.train.batch_size)  # --batch_size: the plan shows what is trained
    result = make_plan(train, overrides=overrides or None, **options)
    base = cfg.plan.get("base_width")
    if base is not None and "hidden_sizes" not in cfg.plan:
        if not isinstance(base, int) or base < 1:
            raise ValueError(f"plan.base_width must be a positive int, got {base!r}.")
        cap = cfg.plan.get("max_width") or (320 if result.spatial_dims == 3 else 512)
        widths = [min(base * 2**i, cap) for i in range(len(result.strides))]
        result = apply_overrides(result, {"hidden_sizes": widths})
    return result


def plan_processor(plan: Plan, num_channels: int, modality: str | None, extra: dict[str, Any]) -> UNetImageProcessor:
    """The image processor saved with a volume model: the plan's preprocessing, and the plan itself."""
    return UNetImageProcessor(
        normalization="none", num_channels=num_channels, modality=modality, spatial_dims=plan.spatial_dims,
        target_spacing=list(plan.target_spacing), slice_axis=plan.slice_axis,
        channel_normalization=[dict(n) for n in plan.normalization], crop_to_nonzero=plan.crop_to_nonzero,
        patch_size=list(plan.patch_size), image_interpolation=plan.image_interpolation,
        mirror_axes=list(plan.mirror_axes), plan=plan.to_dict(), **extra)


def preprocess_cases(processor: UNetImageProcessor, split: datasets.Dataset, progress: bool = True
                     ) -> list[dict[str, Any]]:
    """Every labelled case of `split` preprocessed as the plan says: `{"image", "label", "case_id"}` arrays."""
    cases = []
    for i in tqdm(range(len(split)), desc="preprocess", unit="case", leave=False, disable=not progress):
        case = case_arrays(split, i)
        if case.label is None:
            continue
        out = processor.preprocess_volume(case.image, case.spacing, label=case.label)
        cases.append({"image": out["pixel_values"].numpy(), "label": out["labels"].numpy().astype(np.int16),
                      "case_id": str(case.case_id)})
    if not cases:
        raise ValueError("The training split has no labelled case to train on.")
    return cases


def load_volume_data(cfg: RecipeConfig, progress: bool = True) -> VolumeRecipeData:
    """Load the volume dataset, plan it, build the processor and preprocess the training cases."""
    data = cfg.data
    splits = load(data.dataset, data.data_dir, **data.options)
    if data.train_split not in splits:
        raise ValueError(f"Dataset {data.dataset!r} has no split {data.train_split!r}; it has {', '.join(splits)}.")
    train = splits[data.train_split]
    if not is_volume_dataset(train):
        raise ValueError(f"Dataset {data.dataset!r} is not a volume dataset (rows of whole volumes with a spacing): "
                         "a plan section needs one, e.g. nnunet, demo3d, or brats2020-nifti with volumes: true.")
    evaluation = splits[data.eval_split] if data.eval_split and data.eval_split in splits else None
    if data.max_train_samples:
        train = train.select(range(min(data.max_train_samples, len(train))))
    if evaluation is not None and data.max_eval_samples:
        evaluation = evaluation.select(range(min(data.max_eval_samples, len(evaluation))))
    id2label = dataset_id2label(splits)
    channels = int(case_arrays(train, 0).image.shape[0])
    plan = build_plan(cfg, train)
    processor = plan_processor(plan, channels, dataset_modality(data.dataset), dict(cfg.data.processor))
    cases = preprocess_cases(processor, train, progress)
    if cfg.train.batch_size is None:
        cfg.train.batch_size = plan.batch_size  # saved resolved in the run's config.yaml
    return VolumeRecipeData(train, evaluation, id2label, channels, processor, plan=plan, cases=cases)


def build_volume_dataloaders(cfg: RecipeConfig, data: VolumeRecipeData) -> tuple[DataLoader, None]:
    """The training loader of patches (no evaluation loader: whole volumes are evaluated by the task)."""
    # Imported here: MONAI (augment3d) takes seconds to import, and only volume runs need it.
    from ..data.augment3d import VolumeAugmentConfig, build_volume_augmentation
    from ..data.patches import PatchDataset

    plan = data.plan
    augmentation = build_volume_augmentation(VolumeAugmentConfig.from_dict(cfg.augment), list(plan.patch_size),
                                             list(plan.mirror_axes))
    samples = cfg.data.samples_per_epoch or BATCHES_PER_EPOCH * cfg.train.batch_size
    patches = PatchDataset(data.cases, list(plan.patch_size), samples_per_epoch=samples,
                           foreground_fraction=cfg.data.foreground_fraction, seed=cfg.train.seed,
                           augmentation=augmentation, slice_axis=plan.slice_axis if plan.spatial_dims == 2 else None)
    workers = cfg.data.num_workers
    # `PatchDataset.set_epoch` reaches persistent workers too (the epoch lives in shared memory); the loader's own
    # generator keeps a new iterator (each epoch, a resumed one) from drawing on the global RNG.
    loader = DataLoader(patches, batch_size=cfg.train.batch_size, shuffle=False, num_workers=workers,
                        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                        generator=torch.Generator().manual_seed(int(cfg.train.seed)))
    return loader, None


class VolumeSegmentationTask(SegmentationTask):
    """Segmentation of volumes: a planned model, deep supervision, and whole-volume evaluation per case."""

    def __init__(self, cfg: RecipeConfig, id2label: dict[int, str], plan: Plan) -> None:
        super().__init__(cfg, id2label)
        self.plan = plan

    def build_model(self, data: RecipeData) -> torch.nn.Module:
        m, plan = self.cfg.model, self.plan
        kwargs = {"spatial_dims": plan.spatial_dims, "hidden_sizes": list(plan.hidden_sizes),
                  "strides": [list(s) for s in plan.strides], "kernel_sizes": [list(k) for k in plan.kernel_sizes],
                  **m.kwargs}
        return create_model(m.name, id2label=data.id2label, num_channels=data.num_channels, pretrained=m.pretrained,
                            **kwargs)

    def align(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits  # patches: logits and labels share the patch's shape

    def training_loss(self, out: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = getattr(out, "deep_supervision_logits", None)
        if not extra:
            return out.logits, self.loss(out.logits, labels)
        c = self.cfg.loss
        loss = deep_supervision_loss(out.logits.float(), [e.float() for e in extra], labels, loss=c.name,
                                     ignore_index=c.ignore_index, class_weights=c.class_weights,
                                     dice_smooth=c.dice_smooth, include_background=c.include_background,
                                     focal_gamma=c.focal_gamma)
        return out.logits, loss

    def evaluate(self, model: torch.nn.Module, data: RecipeData, accelerator: Accelerator, epoch: int
                 ) -> dict[str, Any]:
        """Predict every validation case whole (shared between processes) and score it per case in 3D."""
        rank, world = accelerator.process_index, accelerator.num_processes
        mine = predict_cases(model, data.processor, data.eval, range(rank, len(data.eval), world),
                             keep_images=self.cfg.train.panels, device=accelerator.device,
                             progress=accelerator.is_main_process, desc=f"eval {epoch}")
        scored = gather_object(mine) if world > 1 else mine
        result = score_cases(scored, self.id2label, ignore_index=self.cfg.loss.ignore_index)
        result["loss"] = float("nan")  # whole volumes are scored, not a patch loss
        shown = sorted((case for case in scored if case.image is not None), key=lambda case: case.index)
        if shown:
            result["_panel"] = _panel([shown_slice(case) for case in shown])
        return result

def _panel(examples: list[dict[str, Any]]) -> tuple:
    """`prediction_panel` rows from `shown_slice` examples (padded to one size)."""
    height = max(e["label"].shape[0] for e in examples)
    width = max(e["label"].shape[1] for e in examples)

    def pad(array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        return torch.nn.functional.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]))

    return (torch.stack([pad(e["image"])[None] for e in examples]),
            torch.stack([pad(e["label"].astype(np.int64)) for e in examples]),
            torch.stack([pad(e["pred"]) for e in examples]), None)
