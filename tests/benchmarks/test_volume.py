"""`benchmarks.volume` on a slab of the template with a tiny untrained model: both inputs read, predicted, written,
scored, and the NIfTI and DICOM-series masks agree voxel for voxel."""

import json

import numpy as np

import hfseg
from benchmarks import volume


def test_truth_follows_the_demo_rule():
    labels, kept = volume.truth_slices()
    assert labels.shape == (189, 233, 197) and set(np.unique(labels)) == {0, 1, 2, 3}
    assert 100 < kept.sum() < 189 and not kept[0] and kept[len(kept) // 2]


def test_a_slab_runs_end_to_end(tmp_path):
    folder = tmp_path / "model"
    config = hfseg.UNetConfig(num_channels=1, num_labels=4, base_channels=4, depth=2,
                              id2label={0: "background", 1: "csf", 2: "gm", 3: "wm"})
    hfseg.UNetForSemanticSegmentation(config).save_pretrained(folder)
    hfseg.UNetImageProcessor(normalization="zscore", num_channels=1, do_resize=True,
                             size={"height": 32, "width": 32}).save_pretrained(folder)
    report = volume.main(["--model", str(folder), "--slab", "3",  # no --threads: it would outlive the test
                          "--output", str(tmp_path / "v.json")])
    assert report["slices"] == 3 and report["masks_agree"]
    nifti, series = report["results"]
    assert nifti["shape"] == [197, 233, 3] and series["shape"] == [197, 233, 3]  # series: (columns, rows, slices)
    assert nifti["dice_kept"] == series["dice_kept"] and all(0 <= d <= 1 for d in nifti["dice_all"])
    assert json.loads((tmp_path / "v.json").read_text())["results"][1]["formats"] == ["nifti", "dicom-seg"]
    assert "| dicom series |" in (tmp_path / "v.md").read_text()
