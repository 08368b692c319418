"""plan(): end to end from datasets and fingerprints, 2d plans, overrides, the dict round trip and describe()."""

import json

import numpy as np
import pytest

from hfseg.planning import Plan, apply_overrides, estimate_memory, get_pool_and_conv_props, plan
from hfseg.planning import rules
from tests.planning import synthetic_fingerprint, volume_dataset

CT = synthetic_fingerprint((512, 512, 100), (0.8, 0.8, 2.5), num_cases=40)


def _memory(p: Plan, batch: int) -> int:
    return estimate_memory(p.patch_size, p.strides, p.hidden_sizes, batch, len(p.channels), p.num_classes,
                           p.kernel_sizes)


def test_plan_from_a_tiny_dataset():
    rng = np.random.default_rng(0)
    cases = []
    for i in range(4):
        image = np.zeros((1, 20, 18, 16), np.float32)
        image[:, 2:18, 1:17, 1:15] = rng.normal(0, 1, (1, 16, 16, 14))
        label = np.zeros((20, 18, 16), np.uint8)
        label[5:12, 5:12, 4:10] = 1 + i % 2
        cases.append({"image": image, "label": label, "spacing": (1.5, 1.5, 2.0)})
    p = plan(volume_dataset(cases, channels=("T2",)))
    assert p.configuration == "3d_fullres" and p.spatial_dims == 3
    assert p.target_spacing == [1.5, 1.5, 2.0] and p.slice_axis is None
    assert p.fingerprint["median_shape_after_crop"] == [16, 16, 14]
    assert p.fingerprint["median_shape_after_resampling"] == [16, 16, 14]
    # the whole median volume fits: (16, 16, 14) padded to the total stride (4, 4, 2)
    assert p.patch_size == [16, 16, 14]
    # (16, 16, 14) at (1.5, 1.5, 2) mm: all axes pool (2 / 1.5 < 2) to (8, 8, 7); then z (7 < 8) stops
    assert p.strides == [[1, 1, 1], [2, 2, 2], [2, 2, 1]]
    assert p.kernel_sizes == [[3, 3, 3]] * 3
    assert p.hidden_sizes == [32, 64, 128]
    assert p.batch_size == 2  # 5% of 4 small volumes is far below one patch
    assert p.num_classes == 3 and p.channels == ["T2"]
    # cropping keeps 16*16*14 / (20*18*16) = 62% < 75% of the median case: z-score inside the non-zero mask
    assert p.fingerprint["median_relative_size_after_cropping"] == pytest.approx(3584 / 5760)
    assert p.normalization == [{"scheme": "zscore", "nonzero": True}]
    assert p.mirror_axes == [0, 1, 2] and p.crop_to_nonzero and p.image_interpolation == "linear"


def test_demo_sized_volumes_plan_the_whole_median_volume():
    p = plan(synthetic_fingerprint((48, 56, 44), (3.5, 3.5, 4.0), num_cases=16, channels=("MRI",), num_classes=4))
    median = p.fingerprint["median_shape_after_resampling"]
    assert all(patch >= m for patch, m in zip(p.patch_size, median))
    assert p.patch_size == [48, 56, 48]
    assert p.fingerprint["planner"]["shrink_steps"] == 0


def test_large_ct_is_shrunk_to_fit_the_budget():
    p = plan(CT)
    assert p.target_spacing == [0.8, 0.8, 2.5]
    assert p.fingerprint["planner"]["anisotropic_axis"] == 2
    assert p.fingerprint["planner"]["initial_patch_size"] == [374, 374, 100]
    assert p.patch_size == [192, 192, 40]
    assert p.batch_size == 2
    assert _memory(p, 2) <= 8 * rules.GB
    assert p.strides[1] == [2, 2, 1] and p.kernel_sizes[0] == [3, 3, 1]


@pytest.mark.parametrize("budget", [2.0, 4.0, 8.0, 16.0])
def test_patch_and_batch_stay_within_the_budget(budget):
    for fp in (CT, synthetic_fingerprint((240, 240, 155), (1, 1, 1), channels=("T1", "T2"))):
        for configuration in ("3d_fullres", "2d"):
            p = plan(fp, configuration=configuration, memory_budget_gb=budget)
            assert _memory(p, p.batch_size) <= budget * rules.GB
            assert p.batch_size >= 2
            total = rules.total_stride(p.strides)
            assert all(size % t == 0 for size, t in zip(p.patch_size, total))


def test_more_memory_never_gives_a_smaller_patch():
    sizes = [np.prod(plan(CT, memory_budget_gb=b).patch_size) for b in (2, 4, 8, 16)]
    assert sizes == sorted(sizes)


def test_batch_is_capped_at_5_percent_of_the_dataset():
    small = synthetic_fingerprint((64, 64, 64), (1, 1, 1), num_cases=200, channels=("MR",))
    p = plan(small, memory_budget_gb=64)
    # 200 volumes of 64**3, patch 64**3: 5% of the dataset is 10 patches, although the memory holds more
    assert p.patch_size == [64, 64, 64]
    assert p.fingerprint["planner"]["batch_size_by_memory"] > 10
    assert p.batch_size == 10 and p.fingerprint["planner"]["batch_size_rule"] == "5% of the dataset"


def test_2d_plan_slices_along_the_lowest_resolution_axis():
    p = plan(CT, configuration="2d")
    assert p.configuration == "2d" and p.spatial_dims == 2 and p.slice_axis == 2
    assert p.target_spacing == [0.8, 0.8, None]
    assert p.patch_size == [512, 512]
    assert len(p.strides) == 8 and p.hidden_sizes[-1] == 512
    assert p.mirror_axes == [0, 1]
    assert p.batch_size > plan(CT).batch_size
    assert _memory(p, p.batch_size) <= 8 * rules.GB


def test_2d_plan_of_a_first_axis_stack_and_ties():
    stack = synthetic_fingerprint((30, 200, 160), (4.0, 1.0, 1.0), channels=("MR",))
    p = plan(stack, configuration="2d")
    assert p.slice_axis == 0 and p.patch_axes == [1, 2]
    assert p.target_spacing[0] is None and p.patch_spacing == [1.0, 1.0]
    # (200, 160) -> (100, 80) -> (50, 40) -> (25, 20) -> (13, 10) -> (7, 5): five poolings, 200 padded to 224
    assert p.patch_size == [224, 160] and len(p.strides) == 6
    tie = plan(synthetic_fingerprint((64, 64, 64), (1.0, 2.0, 2.0), channels=("MR",)), configuration="2d")
    assert tie.slice_axis == 2 and tie.target_spacing == [1.0, 2.0, None]
    assert plan(stack, configuration="2d", overrides={"slice_axis": 2}).patch_axes == [0, 1]


# --- overrides -----------------------------------------------------------------------------------------------------


def test_override_plain_fields():
    p = plan(CT)
    q = apply_overrides(p, {"batch_size": 4, "image_interpolation": "cubic", "mirror_axes": [0, 1]})
    assert (q.batch_size, q.image_interpolation, q.mirror_axes) == (4, "cubic", [0, 1])
    assert p.batch_size == 2  # the original is untouched
    assert q.patch_size == p.patch_size and q.strides == p.strides


def test_override_patch_size_rederives_the_topology():
    p = plan(CT)
    q = apply_overrides(p, {"patch_size": [128, 128, 32]})
    expected = get_pool_and_conv_props([0.8, 0.8, 2.5], [128, 128, 32])
    assert q.patch_size == [128, 128, 32]
    assert q.strides == expected.strides and q.kernel_sizes == expected.kernel_sizes
    assert q.hidden_sizes == rules.hidden_sizes_for(len(expected.strides), 3)


def test_override_patch_size_that_the_topology_cannot_divide():
    with pytest.raises(ValueError, match=r"not a multiple of the total stride .*use axis 0: 96 or 112"):
        apply_overrides(plan(CT), {"patch_size": [100, 128, 32]})


def test_override_patch_with_given_strides_rechecks_divisibility():
    p = plan(CT)
    strides = [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    q = apply_overrides(p, {"patch_size": [96, 96, 20], "strides": strides, "kernel_sizes": [[3, 3, 1]] + [[3] * 3] * 2,
                            "hidden_sizes": [8, 16, 32]})
    assert q.strides == strides and q.hidden_sizes == [8, 16, 32]
    with pytest.raises(ValueError, match="not a multiple of the total stride"):
        apply_overrides(p, {"patch_size": [96, 96, 21], "strides": strides,
                            "kernel_sizes": [[3, 3, 3]] * 3, "hidden_sizes": [8, 16, 32]})
    with pytest.raises(ValueError, match="'kernel_sizes' needs 3 entries"):
        apply_overrides(p, {"strides": strides})


def test_override_target_spacing_rederives_the_topology():
    p = apply_overrides(plan(CT), {"target_spacing": [0.8, 0.8, 0.8]})
    assert p.strides == get_pool_and_conv_props([0.8] * 3, p.patch_size).strides
    assert p.kernel_sizes[0] == [3, 3, 3]


def test_target_spacing_override_in_plan_is_planned_for():
    p = plan(CT, overrides={"target_spacing": [1.6, 1.6, 2.5], "batch_size": 3})
    assert p.target_spacing == [1.6, 1.6, 2.5] and p.batch_size == 3
    assert p.fingerprint["median_shape_after_resampling"] == [256, 256, 100]
    assert _memory(p, 2) <= 8 * rules.GB


def test_unknown_and_invalid_overrides():
    p = plan(CT)
    with pytest.raises(ValueError, match=r"Unknown plan field\(s\) \['patch'\].*'patch_size'"):
        apply_overrides(p, {"patch": [64, 64, 64]})
    with pytest.raises(ValueError, match="Unknown plan field"):
        plan(CT, overrides={"lr": 0.01})
    with pytest.raises(ValueError, match="image_interpolation"):
        apply_overrides(p, {"image_interpolation": "nearest"})
    with pytest.raises(ValueError, match="mirror_axes"):
        apply_overrides(p, {"mirror_axes": [3]})
    with pytest.raises(ValueError, match="batch_size"):
        apply_overrides(p, {"batch_size": 0})
    with pytest.raises(ValueError, match="normalization"):
        apply_overrides(p, {"normalization": [{"scheme": "minmax"}]})
    with pytest.raises(ValueError, match="re-plan"):
        apply_overrides(p, {"configuration": "2d"})
    assert plan(CT, overrides={"configuration": "2d"}).configuration == "2d"


def test_normalization_override():
    p = apply_overrides(plan(CT), {"normalization": [{"scheme": "zscore", "nonzero": True}]})
    assert p.normalization == [{"scheme": "zscore", "nonzero": True}]


# --- dict round trip and describe ----------------------------------------------------------------------------------


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_to_dict_from_dict_round_trip_through_json(configuration):
    p = plan(CT, configuration=configuration)
    data = json.loads(json.dumps(p.to_dict()))
    assert Plan.from_dict(data) == p
    assert Plan.from_dict(data).to_dict() == p.to_dict()
    with pytest.raises(ValueError, match="Unknown plan field"):
        Plan.from_dict({**data, "stages": 3})


def test_from_dict_validates():
    data = plan(CT).to_dict()
    with pytest.raises(ValueError, match="strides\\[0\\]"):
        Plan.from_dict({**data, "strides": [[2, 2, 1]] + data["strides"][1:]})
    with pytest.raises(ValueError, match="slice axis"):
        Plan.from_dict({**plan(CT, configuration="2d").to_dict(), "target_spacing": [0.8, 0.8, 2.5]})


def test_describe_names_the_values_and_the_rules():
    text = plan(CT).describe()
    for expected in ("3d_fullres", "0.80 x 0.80 x 2.50 mm", "anisotropic", "192 x 192 x 40", "shrunk",
                     "batch size       2", "stage", "3 x 3 x 1", "CT: clip to [-50, 250]", "mirror axes      0, 1, 2",
                     "linear", "512 x 512 x 100"):
        assert expected in text
    assert len(text.splitlines()) > 15
    overridden = apply_overrides(plan(CT), {"batch_size": 5}).describe()
    assert "overridden; planned 2" in overridden
    text_2d = plan(CT, configuration="2d").describe()
    assert "along array axis 2" in text_2d and "0.80 x 0.80 x - mm" in text_2d
    mr = plan(synthetic_fingerprint((64, 64, 64), (1, 1, 1), channels=("T2",), relative_size=0.5)).describe()
    assert "z-score per case inside the non-zero mask" in mr


def test_planning_inputs_in_overrides_are_checked():
    with pytest.raises(ValueError, match="only a 2d plan's slice axis may be None"):
        plan(CT, overrides={"target_spacing": [0.8, None, 2.5]})
    with pytest.raises(ValueError, match="slice_axis must be 0, 1 or 2"):
        plan(CT, configuration="2d", overrides={"slice_axis": 3})
    with pytest.raises(ValueError, match="for configuration='2d' only"):
        plan(CT, overrides={"slice_axis": 2})
    given = plan(CT, configuration="2d", overrides={"target_spacing": [1.0, 1.0, None]})
    assert given.target_spacing == [1.0, 1.0, None] and given.slice_axis == 2
    assert "given in the overrides" in given.describe()
    # a CT channel without foreground cannot be planned, unless its normalization is given
    empty = synthetic_fingerprint((64, 64, 64), (1, 1, 1))
    empty.intensity_statistics = [dict.fromkeys(empty.intensity_statistics[0])]
    with pytest.raises(ValueError, match="no foreground"):
        plan(empty)
    norm = [{"scheme": "zscore", "nonzero": False}]
    assert plan(empty, overrides={"normalization": norm}).normalization == norm


def test_a_hand_written_plan_validates_and_describes():
    p = Plan(configuration="3d_fullres", spatial_dims=3, target_spacing=(1.0, 1.0, 1.0), slice_axis=None,
             patch_size=(32, 32, 32), batch_size=2, strides=[[1, 1, 1], [2, 2, 2]], kernel_sizes=[[3, 3, 3]] * 2,
             hidden_sizes=[8, 16], normalization=[{"scheme": "zscore", "nonzero": False}], channels=["MR"])
    assert p.mirror_axes == [0, 1, 2] and p.patch_size == [32, 32, 32]
    text = p.describe()
    assert "32 x 32 x 32" in text and "MR: z-score per case over the whole image" in text
    with pytest.raises(ValueError, match="'hidden_sizes' needs 2"):
        Plan.from_dict({**p.to_dict(), "hidden_sizes": [8]})
