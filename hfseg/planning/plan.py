"""`Plan`: the preprocessing, network topology and training shape nnU-Net v2's planner would choose, and `plan()`,
which makes one from a dataset (or its fingerprint). `apply_overrides` changes fields as the recipe YAML asks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from . import rules
from .fingerprint import Fingerprint, as_fingerprint

CONFIGURATIONS = {"3d_fullres": 3, "2d": 2}
INTERPOLATIONS = ("linear", "cubic")
DEFAULT_MEMORY_BUDGET_GB = 8.0  # nnU-Net's default gpu_memory_target_in_gb
PLANNED_FIELDS = ("target_spacing", "patch_size", "batch_size", "strides", "kernel_sizes", "hidden_sizes",
                  "normalization", "crop_to_nonzero", "image_interpolation", "mirror_axes")


@dataclass
class Plan:
    """How to preprocess, build and train a U-Net for one dataset; see docs/planning.md for every field."""

    configuration: str
    spatial_dims: int
    target_spacing: list[float | None]
    slice_axis: int | None
    patch_size: list[int]
    batch_size: int
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    hidden_sizes: list[int]
    normalization: list[dict[str, Any]]
    crop_to_nonzero: bool = True
    image_interpolation: str = "linear"
    mirror_axes: list[int] | None = None  # None: every patch axis (nnU-Net's default)
    channels: list[str] = field(default_factory=list)
    num_classes: int = 2
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _field_names():
            setattr(self, name, _plain(getattr(self, name)))
        if self.mirror_axes is None:
            self.mirror_axes = list(range(self.spatial_dims)) if self.spatial_dims in (2, 3) else []
        self.validate()

    @property
    def patch_axes(self) -> list[int]:
        """The array axes the patch covers: all three in 3D, the two in-plane axes (array order) in 2D."""
        return [a for a in range(3) if a != self.slice_axis]

    @property
    def patch_spacing(self) -> list[float]:
        """The target spacing of the patch axes."""
        return [float(self.target_spacing[a]) for a in self.patch_axes]

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        _check_keys(data)
        return cls(**{k: _plain(v) for k, v in data.items()})

    def validate(self) -> None:
        """Raise a ValueError naming the field and the fix when the plan is inconsistent."""
        _validate(self)

    def describe(self) -> str:
        """A readable summary: what was planned and which rule decided it (printed by the recipe, shown on the
        model card)."""
        return "\n".join(_describe_lines(self))


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Plan)]


def _check_keys(data: Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - set(_field_names()))
    if unknown:
        raise ValueError(f"Unknown plan field(s) {unknown}; a plan has the fields {_field_names()}.")


def _plain(value: Any) -> Any:
    """JSON-able Python values: lists for tuples and arrays, floats and ints for numpy scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    return value


# --- validation ----------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_lists(name: str, value: Any, count: int | None, dims: int, minimum: int = 1) -> None:
    if not isinstance(value, list) or not value or (count is not None and len(value) != count):
        want = f"{count} entries" if count is not None else "at least one entry"
        raise ValueError(f"Plan field {name!r} needs {want}, one per stage, got {value!r}.")
    for entry in value:
        if not isinstance(entry, list) or len(entry) != dims or not all(_is_int(v) and v >= minimum for v in entry):
            raise ValueError(f"Plan field {name!r}: each entry is {dims} ints >= {minimum}, got {entry!r}.")


def _validate(plan: Plan) -> None:
    if plan.configuration not in CONFIGURATIONS:
        raise ValueError(f"Plan configuration {plan.configuration!r} is not one of {list(CONFIGURATIONS)}.")
    dims = CONFIGURATIONS[plan.configuration]
    if plan.spatial_dims != dims:
        raise ValueError(f"Plan configuration {plan.configuration!r} has spatial_dims {dims}, not "
                         f"{plan.spatial_dims!r}; choose the configuration with plan(configuration=...).")
    _validate_spacing(plan)
    if not isinstance(plan.patch_size, list) or len(plan.patch_size) != dims or not all(
            _is_int(v) and v > 0 for v in plan.patch_size):
        raise ValueError(f"Plan field 'patch_size' needs {dims} positive ints, got {plan.patch_size!r}.")
    if not _is_int(plan.batch_size) or plan.batch_size < 1:
        raise ValueError(f"Plan field 'batch_size' needs a positive int, got {plan.batch_size!r}.")
    _int_lists("strides", plan.strides, None, dims)
    if any(v != 1 for v in plan.strides[0]):
        raise ValueError(f"Plan field 'strides': the first stage does not downsample, so strides[0] is "
                         f"{[1] * dims}, got {plan.strides[0]!r}.")
    stages = len(plan.strides)
    _int_lists("kernel_sizes", plan.kernel_sizes, stages, dims)
    if not isinstance(plan.hidden_sizes, list) or len(plan.hidden_sizes) != stages or not all(
            _is_int(v) and v > 0 for v in plan.hidden_sizes):
        raise ValueError(f"Plan field 'hidden_sizes' needs {stages} positive ints (one per stage of 'strides'), got "
                         f"{plan.hidden_sizes!r}.")
    check_divisible(plan.patch_size, plan.strides)
    _validate_normalization(plan)
    if plan.image_interpolation not in INTERPOLATIONS:
        raise ValueError(f"Plan field 'image_interpolation' is one of {list(INTERPOLATIONS)}, got "
                         f"{plan.image_interpolation!r}.")
    if not isinstance(plan.mirror_axes, list) or len(set(plan.mirror_axes)) != len(plan.mirror_axes) or not all(
            _is_int(a) and 0 <= a < dims for a in plan.mirror_axes):
        raise ValueError(f"Plan field 'mirror_axes' lists distinct patch axes in 0..{dims - 1}, got "
                         f"{plan.mirror_axes!r}.")
    if not isinstance(plan.crop_to_nonzero, bool):
        raise ValueError(f"Plan field 'crop_to_nonzero' is true or false, got {plan.crop_to_nonzero!r}.")
    if not _is_int(plan.num_classes) or plan.num_classes < 1:
        raise ValueError(f"Plan field 'num_classes' needs a positive int, got {plan.num_classes!r}.")
    if not isinstance(plan.fingerprint, dict):
        raise ValueError(f"Plan field 'fingerprint' is a dict, got {type(plan.fingerprint).__name__}.")


def _validate_spacing(plan: Plan) -> None:
    spacing = plan.target_spacing
    if not isinstance(spacing, list) or len(spacing) != 3:
        raise ValueError(f"Plan field 'target_spacing' needs 3 values (mm per array axis), got {spacing!r}.")
    if plan.configuration == "2d":
        if not _is_int(plan.slice_axis) or not 0 <= plan.slice_axis < 3:
            raise ValueError(f"A 2d plan needs 'slice_axis' in 0..2, got {plan.slice_axis!r}.")
        if spacing[plan.slice_axis] is not None:
            raise ValueError(f"In a 2d plan target_spacing[{plan.slice_axis}] (the slice axis) is None (slices are "
                             f"not resampled), got {spacing!r}.")
    elif plan.slice_axis is not None:
        raise ValueError(f"Only 2d plans have a 'slice_axis'; this {plan.configuration} plan has "
                         f"{plan.slice_axis!r}.")
    for axis in plan.patch_axes:
        value = spacing[axis]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"Plan field 'target_spacing': axis {axis} needs a positive mm value, got {spacing!r}.")


def _validate_normalization(plan: Plan) -> None:
    norms = plan.normalization
    if not isinstance(norms, list) or (plan.channels and len(norms) != len(plan.channels)):
        raise ValueError(f"Plan field 'normalization' needs one dict per channel {plan.channels}, got {norms!r}.")
    for channel, norm in enumerate(norms):
        scheme = norm.get("scheme") if isinstance(norm, dict) else None
        if scheme == "zscore" and set(norm) == {"scheme", "nonzero"} and isinstance(norm["nonzero"], bool):
            continue
        if scheme == "ct" and set(norm) == {"scheme", "clip", "mean", "std"} and isinstance(norm["clip"], list) \
                and len(norm["clip"]) == 2 and all(isinstance(v, (int, float)) for v in [*norm["clip"],
                                                                                         norm["mean"], norm["std"]]):
            continue
        raise ValueError(
            f"Plan field 'normalization'[{channel}] is {norm!r}; use {{'scheme': 'zscore', 'nonzero': bool}} or "
            "{'scheme': 'ct', 'clip': [low, high], 'mean': m, 'std': s}."
        )


def check_divisible(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> None:
    """Raise a ValueError with the nearest valid sizes when a patch edge is not a multiple of its total stride."""
    total = rules.total_stride(strides)
    bad = [axis for axis, (p, t) in enumerate(zip(patch_size, total)) if p % t]
    if bad:
        hints = ", ".join(f"axis {a}: {patch_size[a] // total[a] * total[a] or total[a]} or "
                          f"{-(-patch_size[a] // total[a]) * total[a]}" for a in bad)
        raise ValueError(f"patch_size {list(patch_size)} is not a multiple of the total stride {total} per axis "
                         f"(the product of 'strides'); use {hints}, or give strides that divide it.")


# --- planning ------------------------------------------------------------------------------------------------------


def plan(
    source: datasets.Dataset | datasets.DatasetDict | Fingerprint | Mapping[str, Any],
    configuration: str = "3d_fullres",
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
    overrides: Mapping[str, Any] | None = None,
) -> Plan:
    """Plan a dataset as nnU-Net v2's `ExperimentPlanner` does (see docs/planning.md for the rules).

    `source` is a volume dataset, its `fingerprint()` or that fingerprint's dict. `memory_budget_gb` bounds
    `estimate_memory` (GB = 2**30 bytes). `overrides` sets plan fields afterwards (`apply_overrides`);
    `configuration`, `target_spacing` and `slice_axis` among them are used while planning, so the patch and batch
    are planned for them.
    """
    fp = as_fingerprint(source)
    overrides = _plain(dict(overrides or {}))
    _check_keys(overrides)
    configuration = overrides.pop("configuration", configuration)
    if configuration not in CONFIGURATIONS:
        raise ValueError(f"configuration {configuration!r} is not one of {list(CONFIGURATIONS)}.")
    if not memory_budget_gb or memory_budget_gb <= 0:
        raise ValueError(f"memory_budget_gb must be > 0, got {memory_budget_gb!r}.")
    dims = CONFIGURATIONS[configuration]
    budget = float(memory_budget_gb) * rules.GB

    spacing_rule, fullres, full3d, slice_axis = _planning_spacing(fp, dims, overrides)
    median_shape = rules.median_resampled_shape(fp.spacings, fp.shapes_after_crop, full3d)
    dataset_voxels = float(np.prod(median_shape, dtype=np.float64)) * fp.num_cases

    axes = [a for a in range(3) if a != slice_axis]
    patch_spacing = [float(fullres[a]) for a in axes]
    patch_median = [median_shape[a] for a in axes]
    num_channels = len(fp.channels)
    fitted = rules.fit_patch(patch_spacing, patch_median, num_channels, fp.num_classes, budget)
    topology = fitted.topology
    hidden = rules.hidden_sizes_for(len(topology.strides), dims)
    batch = rules.batch_size_for(topology.patch_size, topology.strides, hidden, topology.kernel_sizes, num_channels,
                                 fp.num_classes, budget, dataset_voxels)
    normalization = overrides.get("normalization") or rules.normalization_for(
        fp.channels, fp.intensity_statistics, fp.median_relative_size_after_cropping)
    summary = fp.summary()
    summary["median_shape_after_resampling"] = median_shape
    result = Plan(
        configuration=configuration, spatial_dims=dims, target_spacing=fullres, slice_axis=slice_axis,
        patch_size=topology.patch_size, batch_size=batch.batch_size, strides=topology.strides,
        kernel_sizes=topology.kernel_sizes, hidden_sizes=hidden, normalization=normalization, crop_to_nonzero=True,
        image_interpolation="linear", mirror_axes=list(range(dims)), channels=list(fp.channels),
        num_classes=fp.num_classes, fingerprint=summary,
    )
    result.fingerprint["planner"] = _planner_notes(result, spacing_rule, fitted, batch, memory_budget_gb, fp)
    return apply_overrides(result, overrides) if overrides else result


def _planning_spacing(fp: Fingerprint, dims: int, overrides: dict[str, Any]
                      ) -> tuple[rules.TargetSpacing | None, list[float | None], list[float], int | None]:
    """The target spacing (None for a 2d plan's slice axis), the full-res spacing the dataset's size is counted at
    (nnU-Net counts it at the 3D spacing for 2d plans too), and the slice axis. Pops `target_spacing` and
    `slice_axis` from `overrides`; the rule is None when `target_spacing` was given."""
    spacing_rule: rules.TargetSpacing | None = rules.target_spacing(fp.spacings, fp.shapes_after_crop)
    ruled = list(spacing_rule.spacing)
    fullres: list[float | None] = list(ruled)
    given = overrides.pop("target_spacing", None)
    if given is not None:
        if not isinstance(given, list) or len(given) != 3 or any(
                v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0) for v in given):
            raise ValueError(f"target_spacing needs 3 positive mm values (one per array axis), got {given!r}.")
        fullres, spacing_rule = [None if v is None else float(v) for v in given], None
    full3d = [r if v is None else v for v, r in zip(fullres, ruled)]
    slice_axis = overrides.pop("slice_axis", None)
    if dims == 3 and slice_axis is not None:
        raise ValueError(f"slice_axis ({slice_axis!r}) is for configuration='2d' only.")
    if dims == 2 and slice_axis is None:
        slice_axis = rules.slice_axis_of([math.inf if v is None else v for v in fullres])
    if dims == 2 and (not _is_int(slice_axis) or not 0 <= slice_axis < 3):
        raise ValueError(f"slice_axis must be 0, 1 or 2 (an array axis), got {slice_axis!r}.")
    if any(v is None for a, v in enumerate(fullres) if a != slice_axis):
        raise ValueError(f"target_spacing {given!r} leaves a patch axis without a spacing; only a 2d plan's slice "
                         "axis may be None.")
    if dims == 2:
        fullres = [None if a == slice_axis else v for a, v in enumerate(fullres)]
    return spacing_rule, fullres, full3d, slice_axis


def _planner_notes(result: Plan, spacing_rule: rules.TargetSpacing | None, fitted: rules.PatchPlan, batch: rules.BatchSize,
                   memory_budget_gb: float, fp: Fingerprint) -> dict[str, Any]:
    """What decided each planned value, kept in `Plan.fingerprint["planner"]` for `describe()`."""
    return _plain({
        "memory_budget_gb": float(memory_budget_gb),
        "target_spacing_given": spacing_rule is None,
        "anisotropic_axis": spacing_rule.anisotropic_axis if spacing_rule is not None else None,
        "initial_patch_size": fitted.initial_patch_size,
        "shrink_steps": fitted.shrink_steps,
        "batch_size_by_memory": batch.by_memory,
        "batch_size_by_dataset": batch.by_dataset,
        "batch_size_rule": batch.rule,
        "use_mask_for_norm": rules.use_mask_for_norm(fp.median_relative_size_after_cropping),
        "planned": {name: getattr(result, name) for name in PLANNED_FIELDS},
    })


# --- overrides -----------------------------------------------------------------------------------------------------


def apply_overrides(plan: Plan, mapping: Mapping[str, Any] | None) -> Plan:
    """A copy of `plan` with the fields in `mapping` replaced (the recipe YAML's `plan:` overrides).

    An unknown key is a ValueError listing the fields. A new `patch_size` or `target_spacing` re-derives `strides`,
    `kernel_sizes` (nnU-Net's topology rule) and, when the stage count changes, `hidden_sizes`, unless those are
    given too; a given patch must be a multiple of the total stride. `configuration`, `spatial_dims` and
    `slice_axis` are decided while planning: pass them to `plan(..., overrides=...)` instead.
    """
    mapping = _plain(dict(mapping or {}))
    _check_keys(mapping)
    for name in ("configuration", "spatial_dims", "slice_axis"):
        if name in mapping and mapping[name] != getattr(plan, name):
            raise ValueError(f"Overriding {name!r} ({getattr(plan, name)!r} -> {mapping[name]!r}) changes what was "
                             f"planned; re-plan with hfseg.planning.plan(dataset, overrides={{{name!r}: ...}}).")
    data = {**plan.to_dict(), **mapping}
    topology_given = "strides" in mapping or "kernel_sizes" in mapping
    if ("patch_size" in mapping or "target_spacing" in mapping) and not topology_given:
        axes = [a for a in range(3) if a != data["slice_axis"]]
        spacing = data["target_spacing"]
        if not isinstance(spacing, list) or len(spacing) != 3 or any(
                not isinstance(spacing[a], (int, float)) or spacing[a] <= 0 for a in axes):
            raise ValueError(f"Plan field 'target_spacing' needs 3 positive mm values (None for a 2d plan's slice "
                             f"axis), got {spacing!r}.")
        patch = data["patch_size"]
        if not isinstance(patch, list) or len(patch) != plan.spatial_dims or not all(
                _is_int(v) and v > 0 for v in patch):
            raise ValueError(f"Plan field 'patch_size' needs {plan.spatial_dims} positive ints, got {patch!r}.")
        topology = rules.get_pool_and_conv_props([spacing[a] for a in axes], patch)
        if "patch_size" in mapping and topology.patch_size != patch:
            check_divisible(patch, topology.strides)
        data["patch_size"] = topology.patch_size
        data["strides"], data["kernel_sizes"] = topology.strides, topology.kernel_sizes
    if "hidden_sizes" not in mapping and len(data["hidden_sizes"]) != len(data["strides"]):
        data["hidden_sizes"] = rules.hidden_sizes_for(len(data["strides"]), plan.spatial_dims)
    return Plan.from_dict(data)


# --- describe ------------------------------------------------------------------------------------------------------


def _x(values: Sequence[Any], digits: int = 0) -> str:
    """`160 x 160 x 80` (rounded to `digits`, so `0.80 x 0.80 x 2.50` with 2), `-` for None."""
    def one(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.{digits}f}" if digits else str(int(round(v)))

    return " x ".join(one(v) for v in values)


def _planned(plan: Plan, name: str) -> str:
    """`  (overridden; planned ...)` when the field differs from what the planner chose."""
    planned = plan.fingerprint.get("planner", {}).get("planned", {})
    if name in planned and planned[name] != getattr(plan, name):
        value = planned[name]
        shown = {"patch_size": lambda v: _x(v), "target_spacing": lambda v: _x(v, 2)}.get(name, lambda v: v)(value)
        return f"  (overridden; planned {shown})"
    return ""


def _spacing_reason(plan: Plan, notes: Mapping[str, Any]) -> str:
    if "planner" not in plan.fingerprint:
        return ""
    if _planned(plan, "target_spacing"):
        return _planned(plan, "target_spacing")
    if notes.get("target_spacing_given"):
        return "  given in the overrides (the patch and batch were planned for it)"
    axis = notes.get("anisotropic_axis")
    if axis is None:
        return "  median spacing per axis"
    return (f"  median per axis, but axis {axis} is anisotropic (> 3x the others' spacing, < 1/3 of their voxels): "
            "the 10th percentile of its spacings")


def _patch_reason(plan: Plan, notes: Mapping[str, Any]) -> str:
    if "planner" not in plan.fingerprint:
        return ""
    if _planned(plan, "patch_size"):
        return _planned(plan, "patch_size")
    start = notes.get("initial_patch_size")
    steps = notes.get("shrink_steps", 0)
    text = f"  from {_x(start)} (aspect 1/spacing, clipped to the median shape), padded to the total stride"
    if steps:
        text += f", shrunk {steps} time(s) to fit {notes.get('memory_budget_gb'):g} GB at batch size 2"
    return text


def _batch_reason(plan: Plan, notes: Mapping[str, Any]) -> str:
    if "planner" not in plan.fingerprint:
        return ""
    if _planned(plan, "batch_size"):
        return _planned(plan, "batch_size")
    memory, dataset = notes.get("batch_size_by_memory"), notes.get("batch_size_by_dataset")
    return {
        "memory": f"  as many as the memory budget holds (5% of the dataset's voxels would allow {dataset})",
        "5% of the dataset": f"  capped so a batch covers at most 5% of the dataset's voxels (memory holds {memory})",
    }.get(notes.get("batch_size_rule"),
          f"  nnU-Net's minimum (memory holds {memory}, 5% of the dataset's voxels allows {dataset})")


def _normalization_lines(plan: Plan, notes: Mapping[str, Any]) -> list[str]:
    lines = []
    relative = plan.fingerprint.get("median_relative_size_after_cropping")
    for i, norm in enumerate(plan.normalization):
        name = plan.channels[i] if i < len(plan.channels) else str(i)
        if norm["scheme"] == "ct":
            low, high = norm["clip"]
            lines.append(f"{name}: clip to [{low:.4g}, {high:.4g}], then (x - {norm['mean']:.4g}) / "
                         f"{norm['std']:.4g} (CT: the dataset's foreground 0.5/99.5 percentiles, mean and std)")
        else:
            where = "inside the non-zero mask" if norm["nonzero"] else "over the whole image"
            why = ""
            if relative is not None:
                why = f" (cropping to non-zero keeps {relative:.0%} of the median case; the mask is used below 75%)"
            lines.append(f"{name}: z-score per case {where}{why}")
    if _planned(plan, "normalization"):
        lines.append("(overridden)")
    return lines


def _describe_lines(plan: Plan) -> list[str]:
    fp = plan.fingerprint
    notes = fp.get("planner", {})
    dims = plan.spatial_dims
    head = f"Plan: {plan.configuration} ({dims}D U-Net, {len(plan.strides)} stages)"
    if "num_cases" in fp:
        head += f", planned from {fp['num_cases']} case(s)"
    lines = [head, f"  channels         {', '.join(plan.channels) or '-'}; {plan.num_classes} classes"]
    if plan.slice_axis is not None:
        lines.append(f"  slices           along array axis {plan.slice_axis} (its lowest-resolution axis); patch "
                     f"axes {', '.join(map(str, plan.patch_axes))}")
    if "median_spacing" in fp:
        lines.append(f"  median spacing   {_x(fp['median_spacing'], 2)} mm")
    lines.append(f"  target spacing   {_x(plan.target_spacing, 2)} mm{_spacing_reason(plan, notes)}")
    if "median_shape_after_crop" in fp and "median_shape_after_resampling" in fp:
        lines.append(f"  median shape     {_x(fp.get('median_shape', fp['median_shape_after_crop']))} stored, "
                     f"{_x(fp['median_shape_after_crop'])} cropped to non-zero, "
                     f"{_x(fp['median_shape_after_resampling'])} resampled to the target spacing")
    lines.append(f"  patch size       {_x(plan.patch_size)}{_patch_reason(plan, notes)}")
    lines.append(f"  batch size       {plan.batch_size}{_batch_reason(plan, notes)}")
    memory = rules.estimate_memory(plan.patch_size, plan.strides, plan.hidden_sizes, plan.batch_size,
                                   max(len(plan.channels), 1), plan.num_classes, plan.kernel_sizes)
    budget = f" (budget {notes['memory_budget_gb']:g} GB)" if "memory_budget_gb" in notes else ""
    lines.append(f"  memory estimate  {memory / rules.GB:.2f} GB at batch size {plan.batch_size}{budget}")
    lines.append("  stages           stage  stride      kernel      width   feature map")
    size = list(plan.patch_size)
    for i, (stride, kernel, width) in enumerate(zip(plan.strides, plan.kernel_sizes, plan.hidden_sizes)):
        size = [s // t for s, t in zip(size, stride)]
        lines.append(f"                   {i:>5}  {_x(stride):<10}  {_x(kernel):<10}  {width:>5}   {_x(size)}")
    nnunet = plan.hidden_sizes == rules.hidden_sizes_for(len(plan.strides), dims)
    widths = (f"widths 32 * 2**i, capped at {rules.MAX_WIDTH[dims]}" if nnunet
              else "widths as set, not nnU-Net's 32 * 2**i")
    lines.append(f"                   (strides and kernels by nnU-Net's get_pool_and_conv_props; {widths})"
                 f"{_planned(plan, 'strides') or _planned(plan, 'kernel_sizes')}")
    norm_lines = _normalization_lines(plan, notes)
    lines.append(f"  normalization    {norm_lines[0] if norm_lines else '-'}")
    lines.extend(f"                   {line}" for line in norm_lines[1:])
    lines.append(f"  crop to nonzero  {'yes' if plan.crop_to_nonzero else 'no'}{_planned(plan, 'crop_to_nonzero')}")
    lines.append(f"  interpolation    {plan.image_interpolation} for images, nearest for labels"
                 f"{_planned(plan, 'image_interpolation')}")
    mirror = ", ".join(map(str, plan.mirror_axes)) or "none"
    lines.append(f"  mirror axes      {mirror} (patch axes){_planned(plan, 'mirror_axes')}")
    return lines
