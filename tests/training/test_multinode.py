"""`recipes/train.py` as two nodes of one process each (two `torchrun --nnodes 2` on 127.0.0.1, gloo): both finish,
each epoch's images are shared out once, only the global main process writes the run, the metrics equal a
single-process evaluation of the saved weights, and DDP does not warn about the gradients' layout."""

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hfseg.data import load
from hfseg.evaluation import evaluate_model
from hfseg.training.data import SAMPLE_LOG_ENV, sample_fingerprint

ROOT = Path(__file__).parents[2]
TRAIN, EVAL, EPOCHS = 16, 6, 2  # 16 images = 2 batches of 4 per node and epoch; 6 leave the last eval batch short


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_nodes(tmp_path: Path, overrides: list[str]) -> list[subprocess.CompletedProcess]:
    """Node 0 and node 1, each in its own working folder (a machine's disk), the dataset cache shared."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", SAMPLE_LOG_ENV: str(tmp_path / "samples")}
    nodes = []
    for rank in (0, 1):
        folder = tmp_path / f"node{rank}"
        folder.mkdir()
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                   "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                   str(ROOT / "recipes" / "train.py"), *overrides]
        nodes.append(subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        outputs = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    results = [subprocess.CompletedProcess(node.args, node.returncode, *out) for node, out in zip(nodes, outputs)]
    for rank, result in enumerate(results):
        assert result.returncode == 0, f"node {rank}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return results


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("multinode")
    cache = str(tmp_path / "cache")
    load("demo", size=32, cache_dir=cache)  # built here, read by both nodes
    overrides = ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.options.size=32", "data.size=null",
                 f"data.options.cache_dir={cache}", f"data.max_train_samples={TRAIN}", f"data.max_eval_samples={EVAL}",
                 "train.batch_size=4", f"train.epochs={EPOCHS}", "train.mixed_precision='no'", "train.report_to=null",
                 "train.panels=0", "augment.hflip=0.0", "scheduler.warmup_steps=0", "train.output_dir=run"]
    return tmp_path, run_nodes(tmp_path, overrides), cache


def test_both_nodes_train_and_each_image_is_seen_once_per_epoch(two_node_run):
    tmp_path, results, cache = two_node_run
    assert "2 process(es)" in results[0].stdout
    train = load("demo", size=32, cache_dir=cache)["train"].select(range(TRAIN))
    expected = Counter(sample_fingerprint(row["image"]) for row in train)
    assert len(expected) == TRAIN  # the images are distinct, so their fingerprints name them
    logs = {rank: [json.loads(line) for line in (tmp_path / "samples" / f"rank_{rank}.jsonl").read_text().splitlines()]
            for rank in (0, 1)}
    for epoch in range(EPOCHS):
        per_rank = [[i for batch in logs[rank] if batch["epoch"] == epoch for i in batch["ids"]] for rank in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1]) == TRAIN // 2
        assert Counter(per_rank[0] + per_rank[1]) == expected, f"epoch {epoch}"


def test_only_the_global_main_process_writes_the_run(two_node_run):
    tmp_path, _, _ = two_node_run
    main, other = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    for name in ("config.yaml", "history.csv", "metrics.json", "curves.png", "best/model.safetensors",
                 "final/model.safetensors", "best/metrics.json"):
        assert (main / name).is_file(), name
    # Node 1 keeps only its own random states in each checkpoint (accelerate's save_state on every process), with
    # the completeness marker that lets it resume on its own.
    written = sorted(str(path.relative_to(other)) for path in other.rglob("*") if path.is_file())
    assert written and all(name.startswith("checkpoints/") and name.endswith(("random_states_1.pkl", "checkpoint.json"))
                           for name in written), written
    assert len(list((main / "checkpoints").iterdir())) == len(list((other / "checkpoints").iterdir())) == EPOCHS


def test_metrics_equal_a_single_process_evaluation_of_the_saved_model(two_node_run):
    tmp_path, _, cache = two_node_run
    summary = json.loads((tmp_path / "node0" / "run" / "metrics.json").read_text())
    assert summary["epochs"] == EPOCHS and summary["steps"] == EPOCHS * 2
    reference = evaluate_model(str(tmp_path / "node0" / "run" / "final"), "demo",
                               data_options={"size": 32, "cache_dir": cache}, max_samples=EVAL, surface=False)
    final = summary["final"]
    assert reference["num_images"] == final["num_images"] == EVAL
    assert final["mean_foreground_dice"] == pytest.approx(reference["mean_foreground_dice"], abs=1e-6)
    assert final["dice"] == pytest.approx(reference["dice"], abs=1e-6, nan_ok=True)  # per class
    assert final["pixel_accuracy"] == pytest.approx(reference["pixel_accuracy"], abs=1e-9)


def test_no_gradient_layout_warning_under_ddp(two_node_run):
    _, results, _ = two_node_run
    for result in results:
        assert "Grad strides do not match bucket view strides" not in result.stderr
