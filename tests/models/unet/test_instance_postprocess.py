"""`UNetImageProcessor.post_process_instance_segmentation` and `watershed_instances`: touching objects split, the
transformers return convention, target sizes, class resolution and errors."""

import json

import numpy as np
import pytest
import torch

from hfseg.data.instances import boundary_target
from hfseg.metrics.instance import connected_instances, panoptic_quality
from hfseg.models.unet.image_processing_unet import UNetImageProcessor, resolve_instance_classes, watershed_instances


def touching_discs(shape=(40, 60), radius=10, gap=16):
    """Two discs of `radius` whose centres are `gap` apart: they overlap, one connected blob."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    instances = np.zeros(shape, np.int32)
    instances[(yy - 20) ** 2 + (xx - 20) ** 2 < radius**2] = 1
    instances[((yy - 20) ** 2 + (xx - 20 - gap) ** 2 < radius**2) & (instances == 0)] = 2
    return instances


def semantic_logits(instances):
    fg = torch.from_numpy((instances > 0).astype(np.float32))
    return torch.stack([-4 * fg + 2, 4 * fg - 2])[None]  # (1, 2, H, W)


def boundary_logits(instances):
    target = torch.from_numpy(boundary_target(instances).astype(np.int64))
    return (torch.nn.functional.one_hot(target, 3).permute(2, 0, 1).float() * 8 - 4)[None]  # (1, 3, H, W)


def test_watershed_splits_touching_discs_that_connected_components_merge():
    truth = touching_discs()
    merged = connected_instances(truth > 0)
    assert merged.max() == 1 and panoptic_quality(merged, truth)["pq"] < 0.5
    processor = UNetImageProcessor()
    semantic = processor.post_process_instance_segmentation(semantic_logits(truth))[0]["segmentation"]
    boundary = processor.post_process_instance_segmentation(
        boundary_logits(truth), instance_classes={"interior": 1, "boundary": 2})[0]["segmentation"]
    assert panoptic_quality(semantic.numpy(), truth)["rq"] == 1.0
    assert panoptic_quality(semantic.numpy(), truth)["pq"] > 0.9
    assert panoptic_quality(boundary.numpy(), truth)["pq"] > 0.95


def test_return_convention_and_target_sizes():
    truth = touching_discs()
    logits = torch.cat([boundary_logits(truth), boundary_logits(np.zeros_like(truth))])
    processor = UNetImageProcessor(instance_classes={"interior": 1, "boundary": 2})
    results = processor.post_process_instance_segmentation(logits, target_sizes=[(80, 120), (20, 30)])
    assert isinstance(results, list) and len(results) == 2
    first, empty = results
    assert first["segmentation"].dtype == torch.long and tuple(first["segmentation"].shape) == (80, 120)
    assert tuple(empty["segmentation"].shape) == (20, 30) and empty["segments_info"] == [] \
        and int(empty["segmentation"].max()) == 0
    info = first["segments_info"]
    assert [s["id"] for s in info] == [1, 2] == sorted(first["segmentation"].unique().tolist())[1:]
    assert all(s["label_id"] == 1 and 0.9 < s["score"] <= 1 for s in info)


def test_semantic_multiclass_label_ids_and_one_logit_model():
    truth = touching_discs()
    two = semantic_logits(truth)
    three = torch.cat([two[:, :1], torch.full_like(two[:, :1], -9.0), two[:, 1:]], 1)  # class 2 is the object
    info = UNetImageProcessor().post_process_instance_segmentation(three)[0]["segments_info"]
    assert [s["label_id"] for s in info] == [2, 2]
    one = UNetImageProcessor().post_process_instance_segmentation(two[:, 1:] - two[:, :1])[0]
    assert int(one["segmentation"].max()) == 2 and one["segments_info"][0]["label_id"] == 1


def test_small_objects_removed_and_unseeded_foreground_kept():
    probs = np.zeros((3, 20, 20), np.float32)
    probs[0] = 1
    probs[:, 2:4, 2:4] = [[[0]], [[1]], [[0]]]  # 4 px: under min_size
    probs[:, 10:16, 10:16] = [[[0]], [[0]], [[1]]]  # boundary only: no seed, kept whole
    labels = watershed_instances(probs, {"interior": 1, "boundary": 2}, min_size=5)
    assert labels.max() == 1 and (labels == 1).sum() == 36 and labels[3, 3] == 0


def test_instance_classes_resolution_saved_and_errors(tmp_path):
    assert resolve_instance_classes(3, None, {0: "background", 1: "interior", 2: "boundary"}) == \
        {"interior": 1, "boundary": 2}
    assert resolve_instance_classes(3, None, {0: "background", 1: "liver", 2: "tumour"}) is None
    with pytest.raises(ValueError, match="beyond"):
        resolve_instance_classes(2, {"interior": 1, "boundary": 2})
    with pytest.raises(ValueError, match="instance_classes"):
        UNetImageProcessor(instance_classes={"nucleus": 1})
    with pytest.raises(ValueError, match="distinct"):
        UNetImageProcessor(instance_classes={"interior": 1, "boundary": 1})
    UNetImageProcessor(instance_classes={"interior": 1, "boundary": 2}).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["instance_classes"] == {"interior": 1, "boundary": 2}
    assert UNetImageProcessor.from_pretrained(tmp_path).instance_classes == {"interior": 1, "boundary": 2}
    processor = UNetImageProcessor()
    with pytest.raises(ValueError, match="target sizes"):
        processor.post_process_instance_segmentation(semantic_logits(touching_discs()), target_sizes=[(4, 4)] * 2)
    with pytest.raises(ValueError, match="Expected logits"):
        processor.post_process_instance_segmentation(torch.zeros(2, 8, 8))


def test_the_pipeline_convention_gives_class_masks_for_semantic_models_and_instances_for_boundary_models():
    """transformers' image-segmentation pipeline calls the instance post-processor when it exists, with
    `threshold`, `mask_threshold` and `overlap_mask_area_threshold`."""
    truth = touching_discs()
    processor = UNetImageProcessor()
    kwargs = dict(threshold=0.9, mask_threshold=0.5, overlap_mask_area_threshold=0.5)
    semantic = semantic_logits(truth)
    answer = processor.post_process_instance_segmentation(semantic, **kwargs)[0]
    expected = processor.post_process_semantic_segmentation(semantic)[0]
    assert torch.equal(answer["segmentation"], expected)
    assert [s["id"] for s in answer["segments_info"]] == torch.unique(expected).tolist()
    assert all(s["score"] is None and s["label_id"] == s["id"] for s in answer["segments_info"])
    boundary = UNetImageProcessor(instance_classes={"interior": 1, "boundary": 2})
    split = boundary.post_process_instance_segmentation(boundary_logits(truth), **kwargs)[0]
    assert len(split["segments_info"]) == 2 and all(s["score"] >= 0.9 for s in split["segments_info"])
    none_kept = boundary.post_process_instance_segmentation(boundary_logits(truth), threshold=1.01, mask_threshold=0.5)
    assert none_kept[0]["segments_info"] == [] and int(none_kept[0]["segmentation"].max()) == 0
