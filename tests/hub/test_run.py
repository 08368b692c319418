"""`read_run`: what a run folder holds, which weights are packaged, and clear errors for folders that are no run."""

import json
import shutil

import pytest
import yaml

from hfseg.hub import read_run


def test_reads_the_best_weights_and_their_metrics(seg_run):
    run = read_run(seg_run)
    summary = json.loads((seg_run / "metrics.json").read_text())
    assert run.weights == "best" and run.weights_dir == seg_run / "best"
    assert run.metrics == json.loads((seg_run / "best" / "metrics.json").read_text())
    assert run.summary == summary and run.config == yaml.safe_load((seg_run / "config.yaml").read_text())
    assert (run.task, run.model_name, run.dataset, run.eval_split) == ("segmentation", "attention-unet", "demo",
                                                                       "validation")
    assert run.epoch == summary["best_epoch"] == run.metrics["epoch"]


def test_final_weights_use_the_summary_final_metrics(seg_run):
    run = read_run(seg_run, "final")
    summary = json.loads((seg_run / "metrics.json").read_text())
    assert run.weights_dir == seg_run / "final" and run.metrics == summary["final"] and run.epoch == 1


def test_a_run_without_best_packages_final(seg_run, tmp_path):
    (tmp_path / "final").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(seg_run / "final" / name, tmp_path / "final" / name)
    run = read_run(tmp_path)
    assert run.weights == "final" and run.metrics == {} and run.config == {} and run.model_name == tmp_path.name
    with pytest.raises(FileNotFoundError, match=r"no best/ folder \(it has final/\); pass weights='final'"):
        read_run(tmp_path, "best")


def test_folders_that_are_not_runs_are_refused(seg_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_run(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not an hfseg training run: it has neither best/ nor final/"):
        read_run(tmp_path)
    with pytest.raises(ValueError, match="weights='last' is not allowed; choose one of best, final"):
        read_run(seg_run, "last")
    (tmp_path / "best").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        read_run(tmp_path)
    shutil.copy(seg_run / "best" / "config.json", tmp_path / "best")
    with pytest.raises(FileNotFoundError, match="has no model weights"):
        read_run(tmp_path)


def test_task_comes_from_the_config_or_the_architecture(cls_run, tmp_path):
    assert read_run(cls_run).task == "classification"
    shutil.copytree(cls_run, tmp_path / "run")
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    del config["task"]
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_run(tmp_path / "run").task == "classification"  # TimmWrapperForImageClassification
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({**config, "task": "detection"}))
    with pytest.raises(ValueError, match="task='detection' is not allowed"):
        read_run(tmp_path / "run").task


def test_unreadable_metadata_is_a_clear_error(seg_run, tmp_path):
    shutil.copytree(seg_run / "best", tmp_path / "best")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        read_run(tmp_path)


def test_redact_paths_hides_absolute_local_paths_only():
    from hfseg.hub.run import redact_paths

    value = {"data": {"data_dir": "/home/me/data/CHAOS", "cache_dir": "C:\\Users\\me\\cache", "size": [64, 64]},
             "train": {"output_dir": "runs/demo", "hub_model_id": "me/unet"}, "home": "~/x/y", "n": 3}
    assert redact_paths(value) == {
        "data": {"data_dir": "<local>/CHAOS", "cache_dir": "<local>/cache", "size": [64, 64]},
        "train": {"output_dir": "runs/demo", "hub_model_id": "me/unet"}, "home": "<local>/y", "n": 3}
