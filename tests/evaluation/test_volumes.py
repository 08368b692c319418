"""Evaluation of a planned volume model: whole cases scored in 3D, the same numbers as the run's own evaluation."""

import csv
import json

import numpy as np
import pytest

from hfseg.evaluation import evaluate_model
from hfseg.training.cli import evaluate_main


def test_a_volume_model_is_evaluated_per_case_as_the_run_evaluated_it(tiny_3d_run, spheres_nnunet, tmp_path):
    run, _ = tiny_3d_run
    options = {"cache_dir": str(tmp_path / "cache")}
    result = evaluate_model(run / "best", "nnunet", data_dir=str(spheres_nnunet), data_options=options,
                            device="cpu")
    recorded = json.loads((run / "best" / "metrics.json").read_text())
    assert result["mean_foreground_dice"] == pytest.approx(recorded["mean_foreground_dice"], abs=1e-9)
    assert result["num_cases"] == 1 and result["cases"]["spacing"]["axes"] == ["axis 0", "axis 1", "axis 2"]
    case = next(iter(result["cases"]["per_case"].values()))
    assert case["shape"] == [20, 24, 16] and len(case["volume_ml"]) == 2
    voxel_ml = 1.5 * 1.5 * 3.0 / 1000
    assert case["volume_ml"][0] + case["volume_ml"][1] == pytest.approx(20 * 24 * 16 * voxel_ml)


def test_hfseg_evaluate_writes_the_per_case_table_of_volumes(tiny_3d_run, spheres_nnunet, tmp_path):
    run, _ = tiny_3d_run
    evaluate_main(["--model", str(run / "best"), "--dataset", "nnunet", "--data_dir", str(spheres_nnunet),
                   "--data_options", f"cache_dir={tmp_path / 'cache'}", "--output_dir", str(tmp_path / "report"),
                   "--device", "cpu"])
    rows = list(csv.DictReader(open(tmp_path / "report" / "per_case.csv")))
    assert len(rows) == 1 and rows[0]["shape"] == "20 x 24 x 16" and "volume_ml_ball" in rows[0]
    assert np.isfinite(float(rows[0]["dice_ball"]))


def test_a_2d_model_on_volumes_is_refused(spheres_nnunet, tmp_path):
    import hfseg
    from hfseg.models.unet.image_processing_unet import UNetImageProcessor

    model = hfseg.create_model("unet", num_channels=1, num_labels=2, base_channels=4, depth=2)
    with pytest.raises(ValueError, match="a 2D model but dataset 'nnunet' holds whole volumes"):
        evaluate_model((model, UNetImageProcessor()), "nnunet", data_dir=str(spheres_nnunet),
                       data_options={"cache_dir": str(tmp_path / "cache")})
