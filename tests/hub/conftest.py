"""Run folders for the hub tests: a real tiny training run on `demo`, its hub folder, and a classification run
written by hand (a TimmWrapper classifier with real `ClassificationMetrics` results)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

import hfseg
from hfseg.hub import build_hub_folder
from hfseg.metrics import ClassificationMetrics
from hfseg.training import load_config, train
from hfseg.evaluation.report import write_json

DEMO_CONFIG = "demo"
TINY = ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[32, 32]", "data.max_train_samples=16",
        "data.max_eval_samples=8", "train.batch_size=8", "train.panels=2", "augment.hflip=0.0",
        "scheduler.warmup_steps=0", "train.epochs=2", "train.report_to=tensorboard"]
CLASSES = {0: "glioma", 1: "meningioma", 2: "notumor"}
REPO_ID = "me/tiny-attention-unet"


@pytest.fixture(scope="session")
def seg_run(tmp_path_factory) -> Path:
    """A finished 2-epoch run of a tiny attention U-Net on 32 px `demo` slices (best/, final/, panels, logs/)."""
    root = tmp_path_factory.mktemp("hub-seg")
    cfg = load_config(DEMO_CONFIG, [*TINY, f"data.options.cache_dir={root / 'cache'}",
                                    f"train.output_dir={root / 'run'}"])
    train(cfg)
    return root / "run"


@pytest.fixture(scope="session")
def hub_folder(seg_run, tmp_path_factory) -> Path:
    """`build_hub_folder(seg_run)`; tests must not modify it."""
    return build_hub_folder(seg_run, tmp_path_factory.mktemp("hub-folder") / "upload", repo_id=REPO_ID)


def _picture(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="session")
def cls_run(tmp_path_factory) -> Path:
    """A classification run folder as the recipe writes it: config.yaml with `task: classification`, a
    `TimmWrapperForImageClassification` (timm `test_resnet`, 1 channel) and hfseg's processor in best/, its metrics
    from `ClassificationMetrics`, metrics.json, history.csv, curves.png and confusion.png."""
    run = tmp_path_factory.mktemp("hub-cls") / "run"
    best = run / "best"
    torch.manual_seed(0)
    config = TimmWrapperConfig(architecture="test_resnet", num_labels=3, id2label=CLASSES,
                               label2id={v: k for k, v in CLASSES.items()}, model_args={"in_chans": 1})
    TimmWrapperForImageClassification(config).save_pretrained(best)
    hfseg.UNetImageProcessor(normalization="mean_std", image_mean=[0.5], image_std=[0.25], do_resize=True,
                             size={"height": 32, "width": 32}, num_channels=1).save_pretrained(best)
    metrics = ClassificationMetrics(3, CLASSES)
    metrics.update(torch.tensor([[2.0, 0.1, 0.0], [0.2, 1.0, 0.0], [0.0, 0.3, 0.9], [1.5, 0.0, 0.2], [0.0, 0.0, 3.0]]),
                   torch.tensor([0, 1, 1, 0, 2]))
    result = {"epoch": 2, **metrics.compute(), "loss": 0.61}
    write_json(best / "metrics.json", result)
    recipe = {"task": "classification",
              "model": {"name": "test_resnet", "pretrained": None, "kwargs": {}},
              "data": {"dataset": "brain-tumor-mri", "data_dir": "data/brain-tumor-mri", "options": {},
                       "train_split": "train", "eval_split": "validation", "size": [32, 32]},
              "augment": {"hflip": 0.5},
              "loss": {"name": "ce"}, "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
              "scheduler": {"name": "cosine", "warmup_steps": 5},
              "train": {"output_dir": str(run), "epochs": 3, "batch_size": 16, "metric": "accuracy", "seed": 0,
                        "push_to_hub": False, "hub_model_id": None}}
    (run / "config.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    write_json(run / "metrics.json", {"model": "test_resnet", "dataset": "brain-tumor-mri", "epochs": 3.0,
                                      "steps": 30, "seconds": 12.5, "metric": "accuracy", "best": result["accuracy"],
                                      "best_epoch": 2, "final": result})
    (run / "history.csv").write_text("epoch,step,train_loss,eval_accuracy\n0,10,1.1,0.4\n1,20,0.9,0.6\n2,30,0.7,0.8\n")
    _picture(run / "curves.png", 1)
    _picture(run / "confusion.png", 2)
    return run
