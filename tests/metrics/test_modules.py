"""The shipped `evaluate` modules load by path, offline, and give the same numbers as the functions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import hfseg.metrics
from hfseg.metrics import ClassificationMetrics, SegmentationMetrics, confusion_matrix, overlap_from_confusion


def _same(a, b):
    np.testing.assert_equal(json.loads(json.dumps(a)), json.loads(json.dumps(b)))  # NaN-aware, tuples = lists


def test_segmentation_module_equals_the_functions():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 3, size=(4, 10, 12))
    references[0, :2] = 255
    predictions = np.where(rng.random(references.shape) < 0.7, references % 3, 1)
    metric = hfseg.metrics.load("segmentation")
    out = metric.compute(predictions=[p.tolist() for p in predictions], references=list(references), num_labels=3,
                         ignore_index=255, id2label={0: "bg", 1: "liver", 2: "tumour"})
    direct = SegmentationMetrics(3, ignore_index=255, id2label={0: "bg", 1: "liver", 2: "tumour"})
    direct.update(torch.from_numpy(predictions), torch.from_numpy(references))
    _same(out, direct.compute())
    scores = overlap_from_confusion(confusion_matrix(predictions, references, 3, ignore_index=255))
    assert out["mean_iou"] == pytest.approx(scores["mean_iou"].item())
    assert out["dice"] == pytest.approx(scores["dice"].tolist())
    assert set(out["per_class"]) == {"bg", "liver", "tumour"}


def test_segmentation_module_with_images_of_different_sizes_and_extras():
    predictions = [np.eye(6, dtype=int), np.ones((4, 9), dtype=int)]
    references = [np.eye(6, dtype=int)[::-1], np.pad(np.ones((2, 7), dtype=int), 1)]
    out = hfseg.metrics.load("segmentation").compute(predictions=predictions, references=references, num_labels=2,
                                                     surface=True, instance=True)
    direct = SegmentationMetrics(2, surface=True, instance=True)
    for p, r in zip(predictions, references):
        direct.update(p[None], r[None])
    _same(out, direct.compute())
    assert "image_mean_hd95" in out and "mean_aji" in out


def test_classification_module_equals_the_accumulator():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(20, 3, generator=g), torch.randint(0, 3, (20,), generator=g)
    metric = hfseg.metrics.load("classification")
    out = metric.compute(predictions=logits.tolist(), references=labels.tolist(), num_labels=3)
    direct = ClassificationMetrics(3)
    direct.update(logits, labels)
    expected = direct.compute()
    probability_keys = {"mean_max_probability", "mean_true_class_probability"}
    _same({k: v for k, v in out.items() if k not in probability_keys},
          {k: v for k, v in expected.items() if k not in probability_keys})
    for key in probability_keys:  # the module stores logits as float32
        assert out[key] == pytest.approx(expected[key], rel=1e-6)
    ids = metric.compute(predictions=logits.argmax(1).tolist(), references=labels.tolist(), num_labels=3)
    assert ids["accuracy"] == expected["accuracy"] and np.isnan(ids["mean_max_probability"])


def test_unknown_module():
    with pytest.raises(ValueError, match="segmentation, classification"):
        hfseg.metrics.load("mean_iou")


def test_loads_offline_from_a_fresh_cache_without_importing_evaluate_early(tmp_path):
    script = (
        "import sys, json\n"
        "import hfseg.metrics as m\n"
        "assert 'evaluate' not in sys.modules, 'import hfseg.metrics imported evaluate'\n"
        "seg = m.load('segmentation').compute(predictions=[[[0, 1], [1, 1]]], references=[[[0, 1], [0, 1]]],"
        " num_labels=2)\n"
        "cls = m.load('classification').compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)\n"
        "print(json.dumps([seg['dice'], cls['accuracy']]))\n"
    )
    dead = "http://127.0.0.1:9"  # nothing listens: any network attempt fails at once
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_HOME": str(tmp_path),
           "HF_ENDPOINT": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    dice, acc = json.loads(done.stdout.strip().splitlines()[-1])
    # dice: background tp 1, fn 1 -> 2/3; foreground tp 2, fp 1 -> 4/5. accuracy: 2 of 3
    assert dice == pytest.approx([2 / 3, 4 / 5]) and acc == pytest.approx(2 / 3)
    assert (tmp_path / "modules" / "evaluate_modules" / "metrics" / "hfseg_segmentation").is_dir()
