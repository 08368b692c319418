"""`benchmarks.time_to_dice` with tiny settings: hfseg and a peer through the demo recipe, timed to a Dice."""

import json

import pytest
import torch

from benchmarks import time_to_dice

TINY = ["--seeds", "0", "--epochs", "2", "--size", "32", "--max_train_samples", "8", "--max_eval_samples", "4",
        "--threads", "1"]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo-cache"))


def test_tiny_run_times_hfseg_and_a_peer_and_merges_earlier_runs(tmp_path, demo_cache):
    pytest.importorskip("monai")
    threads = torch.get_num_threads()
    first = tmp_path / "first.json"
    report = time_to_dice.main([*TINY, "--models", "hfseg-attention-unet,monai-unet", "--precisions", "no",
                                "--threshold", "0.0", "--cache_dir", demo_cache, "--output", str(first)])
    assert torch.get_num_threads() == threads
    saved = json.loads(first.read_text())
    assert set(saved["results"]) == {"hfseg-attention-unet", "monai-unet"}
    for model in saved["results"]:
        run = saved["runs"][f"{model} | no, 0.003"][0]  # the recipe's learning rate
        assert run["reached"] and run["at"]["epoch"] == 0 and [m["epoch"] for m in run["marks"]] == [0, 1]
        assert 0 < run["at"]["train_cpu_s"] <= run["at"]["total_cpu_s"]
        assert run["train_wall_s"] + run["eval_wall_s"] + run["save_wall_s"] == pytest.approx(run["total_wall_s"],
                                                                                             abs=0.05)
        assert run["eval_wall_s"] > 0 and run["save_wall_s"] > 0 and run["steps"] == 2
        assert 0 <= run["final_dice"] <= 1 and run["load_average_1min"] is not None
    assert "train_cpu_s" in report["target"] and (tmp_path / "first.md").is_file()

    second = time_to_dice.main([*TINY, "--models", "monai-unet", "--precisions", "no", "--threshold", "1.01",
                                "--seeds", "1", "--cache_dir", demo_cache, "--output", str(tmp_path / "second.json"),
                                "--merge", str(first)])
    merged = second["results"]["monai-unet"]["no, 0.003"]
    assert merged["seeds"] == 2 and merged["reached"] == 1  # seed 1 cannot reach a Dice above 1


def test_best_setting_prefers_reaching_then_less_cpu_time_and_the_target_ratio():
    def setting(reached, cpu, wall=None):
        return {"reached": reached, "train_cpu_s_mean": cpu, "train_wall_s_mean": wall or cpu}

    results = {"hfseg-attention-unet": {"no": setting(3, 60), "bf16": setting(3, 40)},
               "monai-unet": {"no": setting(3, 30), "bf16": setting(2, 10)},
               "smp-unet-resnet18": {"bf16": setting(3, 100, 50)}}
    best = time_to_dice.best_settings(results)
    assert best == {"hfseg-attention-unet": "bf16", "monai-unet": "no", "smp-unet-resnet18": "bf16"}
    target = time_to_dice.check_target(results, best)
    assert target["train_cpu_s"] == {"fastest_peer": "monai-unet", "ratio": pytest.approx(40 / 30), "met": False}
    assert target["train_wall_s"]["ratio"] == pytest.approx(40 / 30)
