"""nnU-Net's rules, against expectations worked by hand: target spacing, topology, memory, batch, normalization."""

import pytest

from hfseg.planning import estimate_memory, get_pool_and_conv_props
from hfseg.planning import rules
from tests.planning import CT_STATS


# --- target spacing ------------------------------------------------------------------------------------------------


def test_isotropic_spacing_is_the_median():
    spacings = [[1.0, 1.0, 1.0], [0.8, 0.8, 0.8], [1.2, 1.2, 1.2]]
    result = rules.target_spacing(spacings, [[100, 100, 100]] * 3)
    assert result.spacing == [1.0, 1.0, 1.0] and result.anisotropic_axis is None


def test_anisotropic_axis_with_few_slices_takes_its_10th_percentile():
    z = [5.0, 5.0, 4.5, 3.0, 5.0]
    spacings = [[0.8, 0.8, s] for s in z]
    shapes = [[256, 256, 20]] * 5
    result = rules.target_spacing(spacings, shapes)
    # median z 5 > 3 x 0.8 and 20 x 3 < 256: 10th percentile of [3, 4.5, 5, 5, 5] = 3 + 0.4 x 1.5 = 3.6
    assert result.anisotropic_axis == 2
    assert result.spacing == pytest.approx([0.8, 0.8, 3.6])
    assert result.median_spacing == [0.8, 0.8, 5.0]
    # median over cases of round(z_spacing / 3.6 * 20): [28, 28, 25, 17, 28] -> 28
    assert rules.median_resampled_shape(spacings, shapes, result.spacing) == [256.0, 256.0, 28.0]


def test_anisotropic_percentile_is_kept_above_the_other_spacings():
    spacings = [[0.8, 0.8, s] for s in (0.5, 0.6, 5.0, 5.0, 5.0)]
    result = rules.target_spacing(spacings, [[256, 256, 20]] * 5)
    assert result.spacing[2] == pytest.approx(0.8 + 1e-5)  # 10th percentile 0.54 < 0.8


def test_anisotropic_spacing_with_many_slices_keeps_the_median():
    spacings = [[0.8, 0.8, 5.0]] * 3
    result = rules.target_spacing(spacings, [[256, 256, 100]] * 3)  # 100 x 3 > 256: not few slices
    assert result.spacing == [0.8, 0.8, 5.0] and result.anisotropic_axis is None


def test_compute_new_shape_and_slice_axis():
    assert rules.compute_new_shape([100, 100, 20], [1.0, 1.0, 5.0], [2.0, 2.0, 2.5]) == [50, 50, 40]
    assert rules.slice_axis_of([0.8, 0.8, 3.0]) == 2
    assert rules.slice_axis_of([3.0, 0.8, 0.8]) == 0
    assert rules.slice_axis_of([1.0, 2.0, 2.0]) == 2  # tie: the last axis
    assert rules.slice_axis_of([1.0, 1.0, 1.0]) == 2


# --- topology (worked by hand through nnU-Net's get_pool_and_conv_props) -------------------------------------------


def test_isotropic_128_pools_five_times():
    topo = get_pool_and_conv_props([1, 1, 1], [128, 128, 128])
    assert topo.strides == [[1, 1, 1]] + [[2, 2, 2]] * 5  # 128 -> 4
    assert topo.kernel_sizes == [[3, 3, 3]] * 6
    assert topo.patch_size == [128, 128, 128] and topo.must_be_divisible_by == [32, 32, 32]


def test_anisotropic_spacing_pools_in_plane_first():
    topo = get_pool_and_conv_props([0.8, 0.8, 3.0], [160, 160, 64])
    # step 1: 3 / 0.8 >= 2, so only x, y pool and z keeps kernel 1; then the spacing is (1.6, 1.6, 3): all pool
    assert topo.strides == [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert topo.kernel_sizes == [[3, 3, 1]] + [[3, 3, 3]] * 5
    assert topo.num_pool_per_axis == [5, 5, 4] and topo.patch_size == [160, 160, 64]


def test_patch_is_padded_to_the_total_stride():
    topo = get_pool_and_conv_props([1, 1, 1], [50, 50, 50])  # 50 -> 25 -> 13 -> 7: three poolings
    assert topo.strides == [[1, 1, 1]] + [[2, 2, 2]] * 3
    assert topo.patch_size == [56, 56, 56]
    assert rules.pad_shape([50.5, 48, 1], [8, 8, 1]) == [56, 48, 1]


def test_a_single_remaining_axis_needs_three_times_the_minimum_size():
    topo = get_pool_and_conv_props([1, 1], [64, 10])
    # (64, 10) -> (32, 5); axis 1 is now too small; axis 0 alone pools while >= 12: 32 -> 16, then 8 < 12 stops
    assert topo.strides == [[1, 1], [2, 2], [2, 1], [2, 1]]
    assert topo.kernel_sizes == [[3, 3]] * 4
    assert topo.num_pool_per_axis == [3, 1] and topo.patch_size == [64, 10]


def test_too_thin_axis_never_pools():
    # z (5 slices) is never poolable: nnU-Net would index past its list of poolable axes here (an IndexError);
    # hfseg reads z's own spacing: kernel 1 while 5 mm / in-plane >= 2, then 3 (in-plane 3.2 mm at stage 2)
    topo = get_pool_and_conv_props([0.8, 0.8, 5.0], [64, 64, 5])
    assert topo.strides == [[1, 1, 1]] + [[2, 2, 1]] * 4
    assert topo.kernel_sizes == [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert topo.patch_size == [64, 64, 5]


def test_hidden_sizes_are_capped():
    assert rules.hidden_sizes_for(7, 3) == [32, 64, 128, 256, 320, 320, 320]
    assert rules.hidden_sizes_for(8, 2) == [32, 64, 128, 256, 512, 512, 512, 512]


# --- memory and batch size -----------------------------------------------------------------------------------------


def test_estimate_memory_by_hand():
    # patch 4x4, two stages of widths 2 and 4, 1 channel, 2 classes, batch 1, 3x3 kernels
    # activations: input 16 + encoder 4*2*16 + 4*4*4 + decoder 7*2*16 + logits 3*2*16 = 528
    # params: enc (1+2)*2*9+12 = 66, (2+4)*4*9+24 = 240; dec: transposed 4*2*4+2 = 34, convs 3*2*2*9+12 = 120,
    # head 2*2+2 = 6: 466, kept 4 times
    assert estimate_memory([4, 4], [[1, 1], [2, 2]], [2, 4], 1, 1, 2) == 4 * (528 + 4 * 466)
    two = estimate_memory([4, 4], [[1, 1], [2, 2]], [2, 4], 2, 1, 2)
    assert two == 4 * (2 * 528 + 4 * 466)  # activations grow with the batch, weights do not
    assert estimate_memory([4, 4], [[1, 1], [2, 2]], [2, 4], 1, 1, 2, kernel_sizes=[[3, 1], [3, 3]]) < 4 * 2392


def test_batch_size_by_memory_dataset_cap_and_minimum():
    patch, strides, hidden, kernels = [32, 32, 32], [[1, 1, 1], [2, 2, 2]], [32, 64], [[3, 3, 3]] * 2

    def mem(batch):
        return estimate_memory(patch, strides, hidden, batch, 1, 2, kernels)

    voxels = 32**3
    big_dataset = 1000 * voxels
    result = rules.batch_size_for(patch, strides, hidden, kernels, 1, 2, mem(5), big_dataset)
    assert (result.batch_size, result.by_memory, result.rule) == (5, 5, "memory")
    result = rules.batch_size_for(patch, strides, hidden, kernels, 1, 2, mem(5) - 1, big_dataset)
    assert result.batch_size == 4
    # 5% of 80 patches' worth of voxels is 4 patches
    result = rules.batch_size_for(patch, strides, hidden, kernels, 1, 2, mem(50), 80 * voxels)
    assert (result.batch_size, result.by_dataset, result.rule) == (4, 4, "5% of the dataset")
    # never below 2, whatever the dataset or the memory
    result = rules.batch_size_for(patch, strides, hidden, kernels, 1, 2, mem(50), 10 * voxels)
    assert (result.batch_size, result.rule) == (2, "minimum")
    assert rules.batch_size_for(patch, strides, hidden, kernels, 1, 2, mem(1), big_dataset).batch_size == 2


def test_fit_patch_stays_within_the_budget_and_raises_when_nothing_fits():
    budget = 1.0 * rules.GB
    fitted = rules.fit_patch([1.0, 1.0, 1.0], [200.0, 200.0, 200.0], 1, 3, budget)
    topo = fitted.topology
    hidden = rules.hidden_sizes_for(len(topo.strides), 3)
    assert fitted.memory_at_min_batch <= budget and fitted.shrink_steps > 0
    assert estimate_memory(fitted.patch_size, topo.strides, hidden, 2, 1, 3, topo.kernel_sizes) <= budget
    assert fitted.initial_patch_size == [200, 200, 200]
    assert all(p % d == 0 for p, d in zip(fitted.patch_size, topo.must_be_divisible_by))
    with pytest.raises(ValueError, match="too small for any patch"):
        rules.fit_patch([1.0, 1.0, 1.0], [64.0, 64.0, 64.0], 1, 3, 1000)


def test_initial_patch_follows_the_inverse_spacing():
    # 1/spacing (1.25, 1.25, 0.4) scaled to 256**3 voxels: (374, 374, 120), z clipped to the median 100
    assert rules.initial_patch_size([0.8, 0.8, 2.5], [512, 512, 100]) == [374, 374, 100]
    # 2D: the volume of 2048**2, here clipped on both axes
    assert rules.initial_patch_size([1.0, 1.0], [1000, 300]) == [1000, 300]
    assert rules.initial_patch_size([1.0, 4.0], [5000, 5000]) == [4096, 1024]


# --- normalization -------------------------------------------------------------------------------------------------


def test_ct_uses_global_foreground_statistics():
    norm = rules.normalization_for(["ct"], [CT_STATS], 0.5)
    assert norm == [{"scheme": "ct", "clip": [-50.0, 250.0], "mean": 50.0, "std": 30.0}]


@pytest.mark.parametrize("relative, nonzero", [(0.5, True), (0.74, True), (0.75, False), (1.0, False)])
def test_other_channels_are_zscored_inside_the_mask_when_cropping_removes_a_quarter(relative, nonzero):
    norm = rules.normalization_for(["T2", "CT", "ADC"], [CT_STATS] * 3, relative)
    assert norm[0] == norm[2] == {"scheme": "zscore", "nonzero": nonzero}
    assert norm[1]["scheme"] == "ct"


def test_ct_without_foreground_is_an_error():
    with pytest.raises(ValueError, match="no foreground"):
        rules.normalization_for(["CT"], [dict.fromkeys(CT_STATS)], 1.0)
    assert rules.normalization_for(["MR"], [dict.fromkeys(CT_STATS)], 1.0) == [{"scheme": "zscore", "nonzero": False}]


def test_estimate_memory_against_the_hfseg_3d_unet():
    """The weight term counts hfseg's 3D U-Net's parameters; the activation term stays above what autograd saves."""
    import torch

    import hfseg

    topo = get_pool_and_conv_props([0.8, 0.8, 2.0], [16, 16, 8])
    hidden = [4, 8, 16][: len(topo.strides)]
    config = hfseg.UNetConfig(num_channels=1, num_labels=3, spatial_dims=3, hidden_sizes=hidden, strides=topo.strides,
                              kernel_sizes=topo.kernel_sizes, deep_supervision=True, norm="instancenorm",
                              activation="leaky_relu")
    model = hfseg.UNetForSemanticSegmentation(config)
    weights = estimate_memory(topo.patch_size, topo.strides, hidden, 0, 1, 3, topo.kernel_sizes)
    params = sum(p.numel() for p in model.parameters())
    assert weights / (rules.BYTES * rules.OPTIMIZER_COPIES) == pytest.approx(params, rel=0.02)

    saved: dict = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(1, 1, *topo.patch_size)
    y = torch.randint(0, 3, (1, *topo.patch_size))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(pixel_values=x, labels=y)
    per_sample = estimate_memory(topo.patch_size, topo.strides, hidden, 1, 1, 3, topo.kernel_sizes) - weights
    assert 1.0 <= per_sample / sum(saved.values()) <= 2.5
