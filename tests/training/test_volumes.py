"""Volume runs of the recipe: plan, preprocess, patches, a 3D model, whole-volume evaluation, saved plan."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hfseg.inference import is_planned, load_model, predict_planned
from hfseg.io import read
from hfseg.training import load_config
from hfseg.training.config import CONFIGS_DIR


def test_the_run_trains_a_planned_3d_model_and_saves_its_plan(tiny_3d_run, spheres_nnunet):
    run, summary = tiny_3d_run
    assert summary["steps"] == 3 and summary["stopped_by"] == "max_steps"
    processor = json.loads((run / "best" / "preprocessor_config.json").read_text())
    plan = processor["plan"]
    assert processor["spatial_dims"] == 3 and plan["configuration"] == "3d_fullres"
    assert processor["target_spacing"] == plan["target_spacing"] == [1.5, 1.5, 3.0]
    assert processor["channel_normalization"][0]["scheme"] == "ct"  # the channel is named CT
    assert plan["hidden_sizes"] == [4 * 2**i for i in range(len(plan["strides"]))]  # plan.base_width=4
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["spatial_dims"] == 3 and config["strides"] == plan["strides"]
    assert config["deep_supervision"] is True and config["norm"] == "instancenorm"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["batch_size"] == 2 and saved["plan"]["base_width"] == 4
    metrics = json.loads((run / "metrics.json").read_text())["final"]
    case = next(iter(metrics["cases"]["per_case"].values()))  # the validation case of fold 0, scored in 3D
    assert set(case) >= {"dice", "hd95", "assd", "volume_ml", "predicted_volume_ml", "shape", "spacing"}
    assert case["spacing"] == [1.5, 1.5, 3.0] and case["shape"] == [20, 24, 16]
    assert 0.0 <= metrics["mean_foreground_dice"] <= 1.0
    assert (run / "panels" / "epoch_000.png").is_file()


def test_a_planned_model_predicts_a_volume_on_its_own_grid(tiny_3d_run, spheres_nnunet):
    run, _ = tiny_3d_run
    model, processor = load_model(run / "best", device="cpu")
    assert is_planned(processor)
    image = read(spheres_nnunet / "imagesTs" / "ball_005_0000.nii.gz")
    mask = predict_planned(model, processor, image)
    assert mask.shape == image.array.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    tta = predict_planned(model, processor, image, tta=True)
    assert tta.shape == mask.shape


def test_volume_runs_refuse_options_they_cannot_use():
    with pytest.raises(ValueError, match="data.size does not apply"):
        load_config("nnunet_3d", ["data.size=[64,64]"])
    with pytest.raises(ValueError, match="foreground_fraction"):
        load_config("nnunet_3d", ["data.foreground_fraction=1.5"])


def test_the_bundled_volume_configs_are_found_from_the_recipes_folder():
    recipes = Path(__file__).resolve().parents[2] / "recipes" / "configs"
    if not recipes.is_dir():
        pytest.skip("not a checkout (recipes/ is not installed)")
    for name, configuration in (("nnunet_3d", "3d_fullres"), ("nnunet_2d", "2d")):
        assert (recipes / f"{name}.yaml").read_bytes() == (CONFIGS_DIR / f"{name}.yaml").read_bytes()
        cfg = load_config(recipes / f"{name}.yaml")
        assert cfg.plan["configuration"] == configuration and cfg.train.batch_size is None


def test_a_plan_section_needs_a_volume_dataset(tmp_path):
    from hfseg.training import train

    cfg = load_config("nnunet_3d", ["train.report_to=null", "train.max_steps=1"],
                      values={"data.dataset": "demo", "data.options": {}, "train.output_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="not a volume dataset"):
        train(cfg)
