"""`data.streaming`: the training split read lazily, each process its own shards, a fixed number of batches per epoch;
the split logic in-process for ranks 0 and 1, then one real 2-process gloo run in which every row is seen once."""

import json
import multiprocessing
import os
import socket
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hfseg.training import load_config, train
from hfseg.training.data import (SAMPLE_LOG_ENV, StreamLoader, load_recipe_data, sample_fingerprint,
                                 shard_for_process, stream_batches_per_epoch)


def _rows(items):
    for i in items:
        yield {"id": i}


def stream(rows: int) -> datasets.IterableDataset:
    """`rows` rows `{"id": i}` in `rows` shards (one per item, as hfseg's loaders shard their files)."""
    return datasets.IterableDataset.from_generator(_rows, gen_kwargs={"items": list(range(rows))})


def ids(dataset) -> list[int]:
    return [row["id"] for row in dataset]


def test_ranks_read_disjoint_whole_shards_and_together_every_row():
    data = stream(8)
    parts = [shard_for_process(data, rank, 2) for rank in (0, 1)]
    assert [part.n_shards for part in parts] == [4, 4]
    assert sorted(ids(parts[0]) + ids(parts[1])) == list(range(8)) and not set(ids(parts[0])) & set(ids(parts[1]))


def test_uneven_shards_warn_with_the_numbers():
    with pytest.warns(UserWarning, match=r"n_shards=3, not a multiple of the 2 processes"):
        part = shard_for_process(stream(3), 0, 2)
    assert ids(part) == [0, 2]  # rows skipped, not shards: every process reads all 3


def loader(rows: int, batches: int) -> StreamLoader:
    part = shard_for_process(stream(rows), 0, 1).shuffle(seed=0, buffer_size=4)
    return StreamLoader(DataLoader(part, batch_size=2), batches)


def test_an_epoch_is_a_fixed_number_of_batches_passing_again_over_the_shards():
    epoch = [batch["id"].tolist() for batch in loader(6, 6)]
    assert len(epoch) == 6 and all(len(b) == 2 for b in epoch)  # 12 rows: the 6 rows twice, reshuffled
    flat = [i for b in epoch for i in b]
    assert Counter(flat) == Counter(list(range(6)) * 2) and flat[:6] != flat[6:]
    short = loader(6, 2)
    assert [b["id"].tolist() for b in short] == epoch[:2]  # the same epoch, cut short
    short.set_epoch(1)
    first = [b["id"].tolist() for b in short]
    assert first != epoch[:2] and [b["id"].tolist() for b in short.skip_first_batches(1)] == first[1:]


def test_streaming_needs_a_length_and_a_loader_that_streams():
    cfg = load_config("demo", ["data.streaming=true"])
    with pytest.raises(ValueError, match="data.samples_per_epoch .* or train.max_steps"):
        stream_batches_per_epoch(cfg, 2)
    assert stream_batches_per_epoch(load_config("demo", ["data.samples_per_epoch=20", "train.batch_size=4"]), 2) == 3
    accumulating = load_config("demo", ["data.samples_per_epoch=20", "train.batch_size=4",
                                        "train.gradient_accumulation_steps=2"])
    assert stream_batches_per_epoch(accumulating, 2) == 4  # whole optimizer steps
    with pytest.raises(ValueError, match="'demo' cannot stream"):
        load_recipe_data(load_config("demo", ["data.streaming=true", "train.max_steps=2"]))


def write_folder(root: Path, train: int, validation: int) -> list[int]:
    """A small image-mask-folder dataset with predefined splits; the training images' fingerprints."""
    rng = np.random.default_rng(0)
    fingerprints = []
    for split, count in (("train", train), ("validation", validation)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i:02d}.png")
            Image.fromarray((image > 127).astype(np.uint8)).save(root / split / "masks" / f"{i:02d}.png")
            if split == "train":
                fingerprints.append(sample_fingerprint(Image.open(root / split / "images" / f"{i:02d}.png")))
    return fingerprints


def _process(rank: int, port: int, overrides: list[str], log: str) -> None:
    """One of the two processes of the run (forked: the parent's imports come along)."""
    from accelerate.state import AcceleratorState

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    os.environ[SAMPLE_LOG_ENV] = log
    AcceleratorState._reset_state(reset_partial_state=True)  # the parent's single-process state
    torch.set_num_threads(1)
    train(load_config("demo", overrides))


def test_two_processes_see_every_row_once_per_epoch(tmp_path):
    fingerprints = write_folder(tmp_path / "data", train=8, validation=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = ["data.dataset=image-mask-folder", f"data.data_dir={tmp_path / 'data'}", "data.streaming=true",
                 "data.samples_per_epoch=8", "data.size=[16, 16]", "model.kwargs.base_channels=4",
                 "model.kwargs.depth=2", "train.batch_size=2", "train.epochs=2", "train.report_to=null",
                 "train.panels=0", "augment.hflip=0.0", "scheduler.warmup_steps=0",
                 f"train.output_dir={tmp_path / 'run'}"]
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_process, args=(rank, port, overrides, str(tmp_path / "log")))
                 for rank in (0, 1)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
    for process in processes:
        process.kill()
    assert [process.exitcode for process in processes] == [0, 0]
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["steps"] == 4 and summary["epochs"] == 2 and "mean_foreground_dice" in summary["final"]
    logs = [[json.loads(line) for line in (tmp_path / "log" / f"rank_{rank}.jsonl").read_text().splitlines()]
            for rank in (0, 1)]
    for epoch in (0, 1):
        seen = [[i for batch in log if batch["epoch"] == epoch for i in batch["ids"]] for log in logs]
        assert len(seen[0]) == len(seen[1]) == 4
        assert Counter(seen[0] + seen[1]) == Counter(fingerprints), f"epoch {epoch}"
