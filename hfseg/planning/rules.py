"""nnU-Net v2's planning rules as plain functions: target spacing, resampled shapes, network topology, patch size
under a memory budget, batch size and per-channel normalization.

Each function names the nnU-Net v2 code it follows (`ExperimentPlanner` in
`nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py`, `get_pool_and_conv_props` in
`network_topology.py`). Where hfseg differs, the docstring says so; docs/planning.md has the full list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass

import numpy as np

ANISOTROPY_THRESHOLD = 3.0  # nnU-Net's ANISO_THRESHOLD
MIN_FEATURE_MAP_SIZE = 4  # nnU-Net's UNet_featuremap_min_edge_length
MAX_NUMPOOL = 999999
BASE_WIDTH = 32
MAX_WIDTH = {3: 320, 2: 512}
INITIAL_PATCH_EDGE = {3: 256, 2: 2048}  # the initial patch has the volume of 256**3 (3D) or 2048**2 (2D)
MIN_BATCH_SIZE = 2
MAX_DATASET_COVERED = 0.05  # a batch covers at most 5% of the dataset's voxels
NONZERO_MASK_THRESHOLD = 3 / 4  # use_mask_for_norm when the median relative size after cropping is below this
GB = 1024**3

# estimate_memory's per-stage factors (float32 feature maps of one stage's width kept for the backward pass).
ENCODER_MAPS_PER_STAGE = 4  # two convs, each keeping its conv output and its norm output (LeakyReLU in place)
DECODER_MAPS_PER_STAGE = 7  # transposed-conv output (1), the skip concatenation (2), two convs x 2
LOGIT_MAPS = 3  # logits, softmax and its gradient, at every (deep-supervision) output resolution
OPTIMIZER_COPIES = 4  # weights, gradients and two optimizer moments (Adam; SGD with momentum keeps one)
BYTES = 4  # float32


# --- spacing and shapes -------------------------------------------------------------------------------------------


def compute_new_shape(shape: Sequence[float], spacing: Sequence[float], new_spacing: Sequence[float]) -> list[int]:
    """The shape of a volume resampled from `spacing` to `new_spacing` (nnU-Net's `compute_new_shape`)."""
    return [int(round(s / n * k)) for s, n, k in zip(spacing, new_spacing, shape)]


@dataclass
class TargetSpacing:
    """The fullres target spacing and why: `anisotropic_axis` is the axis the anisotropy rule lowered, or None."""

    spacing: list[float]
    median_spacing: list[float]
    anisotropic_axis: int | None


def target_spacing(spacings: Sequence[Sequence[float]], shapes_after_crop: Sequence[Sequence[int]]) -> TargetSpacing:
    """nnU-Net's `determine_fullres_target_spacing`: the median spacing per axis, except for an anisotropic axis.

    The worst (largest median spacing) axis is anisotropic when its median spacing is more than 3x the largest
    other median spacing *and* its median size (median of the cropped shapes, in voxels) x 3 is below the smallest
    other median size. Its target spacing is then the 10th percentile of its spacings, but not below the largest
    other spacing (then that spacing + 1e-5, as nnU-Net).
    """
    spacings = np.asarray(spacings, dtype=np.float64)
    target = np.percentile(spacings, 50, axis=0)
    median_size = np.percentile(np.asarray(shapes_after_crop, dtype=np.float64), 50, axis=0)
    median = [float(v) for v in target]
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    if not others:
        return TargetSpacing(median, median, None)
    other_spacings = [target[i] for i in others]
    other_sizes = [median_size[i] for i in others]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(other_spacings)
    aniso_voxels = median_size[worst] * ANISOTROPY_THRESHOLD < min(other_sizes)
    if not (aniso_spacing and aniso_voxels):
        return TargetSpacing(median, median, None)
    value = float(np.percentile(spacings[:, worst], 10))
    if value < max(other_spacings):
        value = float(max(other_spacings)) + 1e-5
    target[worst] = value
    return TargetSpacing([float(v) for v in target], median, worst)


def median_resampled_shape(
    spacings: Sequence[Sequence[float]], shapes_after_crop: Sequence[Sequence[int]], spacing: Sequence[float]
) -> list[float]:
    """The median over cases of each cropped shape resampled to `spacing` (nnU-Net's `new_median_shape`)."""
    shapes = [compute_new_shape(shape, old, spacing) for old, shape in zip(spacings, shapes_after_crop)]
    return [float(v) for v in np.median(np.asarray(shapes, dtype=np.float64), axis=0)]


def slice_axis_of(spacing: Sequence[float]) -> int:
    """The lowest-resolution axis (largest spacing); ties go to the last axis."""
    return max(range(len(spacing)), key=lambda axis: (spacing[axis], axis))


# --- topology ------------------------------------------------------------------------------------------------------


def pad_shape(shape: Sequence[float], must_be_divisible_by: Sequence[int]) -> list[int]:
    """Round each axis of `shape` up to a multiple of `must_be_divisible_by` (nnU-Net's `pad_shape`)."""
    return [int(math.ceil(s / d) * d) if s % d else int(s) for s, d in zip(shape, must_be_divisible_by)]


@dataclass
class Topology:
    """nnU-Net's `get_pool_and_conv_props` result, as lists of ints."""

    num_pool_per_axis: list[int]
    strides: list[list[int]]  # pool_op_kernel_sizes, strides[0] all 1
    kernel_sizes: list[list[int]]  # conv_kernel_sizes, one per stage incl. the bottleneck
    patch_size: list[int]  # padded to a multiple of must_be_divisible_by
    must_be_divisible_by: list[int]


def get_pool_and_conv_props(
    spacing: Sequence[float],
    patch_size: Sequence[float],
    min_feature_map_size: int = MIN_FEATURE_MAP_SIZE,
    max_numpool: int = MAX_NUMPOOL,
) -> Topology:
    """nnU-Net v2's `get_pool_and_conv_props`: pool (stride 2) while some axis can, keeping the spacing isotropic.

    Each step pools the axes whose patch edge is at least 2 x `min_feature_map_size` and whose current spacing is
    within 2x of the smallest such spacing (a single remaining axis needs 3 x `min_feature_map_size`). An axis'
    kernel is 1 until its current spacing is within 2x of the smallest spacing, then 3. The bottleneck gets 3 on
    every axis, and the patch is padded to a multiple of the total stride per axis.

    The kernel test reads nnU-Net's `spacings_of_axes[d]`, a list over the axes still poolable by size, as nnU-Net
    does (so once an axis is too small, the test of axis d reads a later axis' spacing). Where that index runs past
    the list nnU-Net raises an IndexError (e.g. 5 slices at 5 mm with 0.8 mm in-plane); hfseg reads axis d's own
    spacing there instead.
    """
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]
    strides = [[1] * dim]
    kernel_sizes: list[list[int]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while True:
        size_valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not size_valid:
            break
        min_spacing_valid = min(current_spacing[i] for i in size_valid)
        valid = [i for i in size_valid if current_spacing[i] / min_spacing_valid < 2]
        valid = [i for i in valid if num_pool[i] < max_numpool]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        spacings_of_axes = [current_spacing[i] for i in size_valid]
        for d in range(dim):
            # nnU-Net reads spacings_of_axes[d] (a list over the size-valid axes only); past its end, where nnU-Net
            # raises an IndexError, hfseg reads the axis' own spacing
            spacing_d = spacings_of_axes[d] if d < len(spacings_of_axes) else current_spacing[d]
            if kernel[d] != 3 and spacing_d / min(current_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = math.ceil(current_size[v] / 2)
        strides.append(stride)
        kernel_sizes.append(deepcopy(kernel))
    divisible = [2**n for n in num_pool]
    kernel_sizes.append([3] * dim)
    return Topology(num_pool, strides, kernel_sizes, pad_shape(patch_size, divisible), divisible)


def hidden_sizes_for(num_stages: int, spatial_dims: int) -> list[int]:
    """nnU-Net's widths: 32 * 2**i, capped at 320 (3D) or 512 (2D)."""
    return [min(MAX_WIDTH[spatial_dims], BASE_WIDTH * 2**i) for i in range(num_stages)]


def total_stride(strides: Sequence[Sequence[int]]) -> list[int]:
    """The product of the strides per axis: what a patch edge must be a multiple of."""
    return [int(np.prod([s[axis] for s in strides])) for axis in range(len(strides[0]))]


# --- memory --------------------------------------------------------------------------------------------------------


def estimate_memory(
    patch_size: Sequence[int],
    strides: Sequence[Sequence[int]],
    hidden_sizes: Sequence[int],
    batch_size: int,
    num_channels: int,
    num_classes: int,
    kernel_sizes: Sequence[Sequence[int]] | None = None,
) -> int:
    """Bytes a training step of nnU-Net's plain U-Net needs: float32 activations kept for backward + weights.

    Activations, per sample: the input (`num_channels` maps), then at stage i (feature-map voxels
    v_i = prod(patch_size) / prod(strides[:i + 1])) `ENCODER_MAPS_PER_STAGE` (4) maps of width `hidden_sizes[i]`
    in the encoder, and, for every stage but the bottleneck, `DECODER_MAPS_PER_STAGE` (7) maps of that width in the
    decoder plus `LOGIT_MAPS` (3) maps of `num_classes` (deep supervision). Weights: two convs per encoder stage;
    a transposed conv, two convs and a 1x1 head per decoder stage; kernels `kernel_sizes` (default 3 on every
    axis), counted `OPTIMIZER_COPIES` (4) times (weights, gradients, two Adam moments). Not counted: cuDNN
    workspaces, the allocator's slack and the CUDA context, so leave headroom in the budget.
    """
    dims = len(patch_size)
    voxels = [float(np.prod(patch_size, dtype=np.float64))]
    for stride in strides[1:]:
        voxels.append(voxels[-1] / float(np.prod(stride)))
    n = len(hidden_sizes)
    kernels = [int(np.prod(k)) for k in kernel_sizes] if kernel_sizes is not None else [3**dims] * n
    activations = num_channels * voxels[0]
    params = 0
    for i, width in enumerate(hidden_sizes):
        activations += ENCODER_MAPS_PER_STAGE * width * voxels[i]
        fan_in = num_channels if i == 0 else hidden_sizes[i - 1]
        params += (fan_in + width) * width * kernels[i] + 6 * width  # two convs (+ biases, norm affines)
    for i in range(n - 1):
        width = hidden_sizes[i]
        activations += DECODER_MAPS_PER_STAGE * width * voxels[i] + LOGIT_MAPS * num_classes * voxels[i]
        params += hidden_sizes[i + 1] * width * int(np.prod(strides[i + 1])) + width  # transposed conv
        params += 3 * width * width * kernels[i] + 6 * width  # two convs on the concatenation
        params += width * num_classes + num_classes  # 1x1 head
    if n == 1:
        activations += LOGIT_MAPS * num_classes * voxels[0]
    return int(BYTES * (batch_size * activations + OPTIMIZER_COPIES * params))


@dataclass
class PatchPlan:
    """The patch size the memory budget allows, its topology, and how it was reached."""

    patch_size: list[int]
    topology: Topology
    initial_patch_size: list[int]
    memory_at_min_batch: int  # estimate_memory at batch size 2, bytes
    shrink_steps: int


def initial_patch_size(spacing: Sequence[float], median_shape: Sequence[float]) -> list[float]:
    """nnU-Net's start: aspect ratio from 1/spacing, volume 256**3 (3D) or 2048**2 (2D), clipped to the median shape."""
    dims = len(spacing)
    tmp = 1 / np.asarray(spacing, dtype=np.float64)
    edge = INITIAL_PATCH_EDGE[dims]
    initial = [round(v) for v in tmp * (edge**dims / np.prod(tmp)) ** (1 / dims)]
    return [min(float(i), float(m)) for i, m in zip(initial, median_shape)]


def fit_patch(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    num_channels: int,
    num_classes: int,
    budget_bytes: float,
) -> PatchPlan:
    """nnU-Net's patch loop: while the estimate at batch size 2 exceeds the budget, shrink the axis with the largest
    patch / median-shape ratio by its total stride (recomputed after the step, as nnU-Net) and re-derive the topology.
    """
    dims = len(spacing)
    start = initial_patch_size(spacing, median_shape)
    topology = get_pool_and_conv_props(spacing, start)
    patch = topology.patch_size

    def memory(topo: Topology) -> int:
        return estimate_memory(topo.patch_size, topo.strides, hidden_sizes_for(len(topo.strides), dims),
                               MIN_BATCH_SIZE, num_channels, num_classes, topo.kernel_sizes)

    estimate, steps = memory(topology), 0
    while estimate > budget_bytes:
        ratios = [p / m for p, m in zip(patch, median_shape)]
        axis = int(np.argsort(ratios, kind="stable")[-1])
        trial = list(patch)
        trial[axis] -= topology.must_be_divisible_by[axis]
        divisible = get_pool_and_conv_props(spacing, trial).must_be_divisible_by
        patch = list(patch)
        patch[axis] -= divisible[axis]
        if patch[axis] < 1:
            raise ValueError(
                f"memory_budget_gb={budget_bytes / GB:g} is too small for any patch (the estimate at "
                f"{list(map(int, trial))} is {estimate / GB:.2f} GB at batch size 2): raise memory_budget_gb."
            )
        topology = get_pool_and_conv_props(spacing, patch)
        patch = topology.patch_size
        estimate, steps = memory(topology), steps + 1
    return PatchPlan(patch, topology, [int(round(v)) for v in start], estimate, steps)


# --- batch size ----------------------------------------------------------------------------------------------------


@dataclass
class BatchSize:
    """The batch size and the limits that set it."""

    batch_size: int
    by_memory: int  # the largest batch the budget holds
    by_dataset: int  # the batch covering 5% of the dataset's voxels (nnU-Net's rounding)
    rule: str  # "memory", "5% of the dataset" or "minimum"


def batch_size_for(
    patch_size: Sequence[int],
    strides: Sequence[Sequence[int]],
    hidden_sizes: Sequence[int],
    kernel_sizes: Sequence[Sequence[int]],
    num_channels: int,
    num_classes: int,
    budget_bytes: float,
    dataset_voxels: float,
) -> BatchSize:
    """At least 2; the largest batch whose `estimate_memory` fits the budget; capped so that a batch covers at most 5%
    of the dataset's voxels (nnU-Net: `round(dataset_voxels * 0.05 / prod(patch_size))`).

    nnU-Net scales its batch linearly from a reference (`round(reference / estimate * 2)`); hfseg takes the largest
    batch whose estimate (activations grow with the batch, weights do not) stays within the budget.
    """
    def memory(batch: int) -> int:
        return estimate_memory(patch_size, strides, hidden_sizes, batch, num_channels, num_classes, kernel_sizes)

    per_sample = memory(1) - memory(0)
    by_memory = int((budget_bytes - memory(0)) // per_sample) if per_sample > 0 else MIN_BATCH_SIZE
    by_dataset = int(round(dataset_voxels * MAX_DATASET_COVERED / float(np.prod(patch_size, dtype=np.float64))))
    batch = max(min(by_memory, by_dataset), MIN_BATCH_SIZE)
    if batch == MIN_BATCH_SIZE and min(by_memory, by_dataset) < MIN_BATCH_SIZE:
        rule = "minimum"
    elif by_dataset < by_memory:
        rule = "5% of the dataset"
    else:
        rule = "memory"
    return BatchSize(batch, by_memory, by_dataset, rule)


# --- normalization -------------------------------------------------------------------------------------------------


def use_mask_for_norm(median_relative_size_after_cropping: float) -> bool:
    """nnU-Net: normalize inside the non-zero mask when cropping removes more than a quarter of the median case."""
    return bool(median_relative_size_after_cropping < NONZERO_MASK_THRESHOLD)


def normalization_for(
    channels: Sequence[str],
    intensity_statistics: Sequence[Mapping[str, float | None]],
    median_relative_size_after_cropping: float,
) -> list[dict]:
    """One scheme per channel: "CT" (any case) clips to the foreground 0.5-99.5 percentiles then applies the global
    foreground mean/std (nnU-Net's `CTNormalization`); any other channel is z-scored per case (`ZScoreNormalization`),
    inside the non-zero mask when `use_mask_for_norm`.
    """
    nonzero = use_mask_for_norm(median_relative_size_after_cropping)
    schemes = []
    for name, stats in zip(channels, intensity_statistics):
        if str(name).strip().lower() != "ct":
            schemes.append({"scheme": "zscore", "nonzero": nonzero})
            continue
        needed = ("percentile_00_5", "percentile_99_5", "mean", "std")
        if any(stats.get(key) is None or not np.isfinite(stats[key]) for key in needed):
            raise ValueError(
                f"Channel {name!r} is CT but the dataset has no foreground voxels (label > 0) to take its "
                "intensity statistics from: label some cases, or override `normalization` for this channel."
            )
        schemes.append({"scheme": "ct", "clip": [float(stats["percentile_00_5"]), float(stats["percentile_99_5"])],
                        "mean": float(stats["mean"]), "std": float(stats["std"])})
    return schemes
