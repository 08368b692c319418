"""`task: classification` in-process: outputs, numbers against sklearn, the grade column, learning, resume, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from transformers import AutoImageProcessor, AutoModelForImageClassification

import hfseg.data
from hfseg.evaluation import classify_logits, load_model
from hfseg.training import load_config, train
from hfseg.training.data import build_emphasis
from hfseg.training.tasks import ClassificationTask
from hfseg.training.trainer import Trainer
from tests.data.fixtures.brain_tumor_mri import CLASSES, write_brain_tumor_mri
from tests.data.fixtures.oral_epithelium import GRADES, write_archive

SMALL_CNN = ["task=classification", "model.name=small-cnn", "model.kwargs.hidden_sizes=[4, 8]",
             "model.kwargs.convs_per_block=1", "data.size=[16, 16]", "train.batch_size=4", "train.report_to=null",
             "train.panels=0"]


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    """The brain-tumor-mri fixture (5 training images per class, grey and RGB JPEGs of varying sizes) and a cache."""
    root = tmp_path_factory.mktemp("brain")
    write_brain_tumor_mri(root / "data")
    return ["data.dataset=brain-tumor-mri", f"data.data_dir={root / 'data'}",
            f"data.options.cache_dir={root / 'cache'}"]


def run(tmp_path, data, name, *overrides):
    return train(load_config(None, [*SMALL_CNN, *data, f"train.output_dir={tmp_path / name}", *overrides]))


def test_resnet18_run_writes_the_segmentation_outputs_plus_the_confusion_matrix(tmp_path, brain):
    summary = run(tmp_path, brain, "r18", "model.name=resnet18", "model.kwargs={}", "data.size=[32, 32]",
                  "train.epochs=2", "train.panels=1", "data.max_train_samples=8")
    out = tmp_path / "r18"
    for name in ("config.yaml", "history.csv", "metrics.json", "curves.png", "confusion.png", "panels.gif",
                 "panels/epoch_000.png", "panels/epoch_001.png", "best/metrics.json", "final/model.safetensors"):
        assert (out / name).is_file(), name
    assert summary["task"] == "classification" and summary["metric"] == "accuracy" and summary["steps"] == 4
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["labels"] == list(CLASSES) and final["num_samples"] == 4  # 1 validation image per class
    assert 0 <= final["accuracy"] <= 1 and 0.25 <= final["mean_max_probability"] <= 1
    assert np.asarray(final["confusion_matrix"]).sum() == 4
    assert "eval_accuracy" in (out / "history.csv").read_text().splitlines()[0]
    model = AutoModelForImageClassification.from_pretrained(out / "best")
    processor = AutoImageProcessor.from_pretrained(out / "best")
    assert model.config.id2label == dict(enumerate(CLASSES)) and processor.size == {"height": 32, "width": 32}
    assert model.config.model_args["in_chans"] == 1  # the first training image is grey; RGB files are converted
    with Image.open(out / "panels" / "epoch_000.png") as first, Image.open(out / "panels" / "epoch_001.png") as last:
        assert first.size == last.size  # frames of one GIF


def test_evaluation_numbers_match_sklearn_on_the_saved_model(tmp_path, brain):
    summary = run(tmp_path, brain, "check", "train.epochs=3", "data.eval_split=train")
    model, processor = load_model(tmp_path / "check" / "final", device="cpu")
    cfg = load_config(tmp_path / "check" / "config.yaml")
    split = hfseg.data.load(cfg.data.dataset, cfg.data.data_dir, **cfg.data.options)["train"]
    probs, truth = [], []
    for item in split:  # one image at a time through the inference API, not the trainer's loader
        probs.append(classify_logits(model, processor, item["image"]).softmax(-1).numpy())
        truth.append(item["label"])
    probs, truth = np.stack(probs), np.asarray(truth)
    preds = probs.argmax(1)
    final = summary["final"]
    assert final["num_samples"] == len(truth) == 16
    assert final["accuracy"] == pytest.approx(accuracy_score(truth, preds), abs=1e-12)
    assert final["confusion_matrix"] == confusion_matrix(truth, preds, labels=range(4)).tolist()
    assert final["macro_f1"] == pytest.approx(f1_score(truth, preds, average="macro", labels=range(4)), abs=1e-9)
    assert final["mean_max_probability"] == pytest.approx(probs.max(1).mean(), abs=1e-5)
    assert final["mean_true_class_probability"] == pytest.approx(probs[np.arange(len(truth)), truth].mean(), abs=1e-5)


def test_oral_epithelium_grade_column(tmp_path):
    write_archive(tmp_path / "oral")
    data = ["data.dataset=oral-epithelium", f"data.data_dir={tmp_path / 'oral'}",
            f"data.options.cache_dir={tmp_path / 'cache'}", "data.label_column=grade"]
    summary = run(tmp_path, data, "grade", "train.max_steps=2")
    assert summary["steps"] == 2 and summary["final"]["labels"] == list(GRADES)
    saved = json.loads((tmp_path / "grade" / "final" / "config.json").read_text())
    assert saved["num_channels"] == 3 and saved["id2label"] == {str(i): g for i, g in enumerate(GRADES)}


def write_bars(root: Path, per_class: int = 40, size: int = 16) -> None:
    """Two classes any CNN separates: a bright horizontal or vertical bar at a random place, on noise."""
    rng = np.random.default_rng(0)
    for name in ("horizontal", "vertical"):
        folder = root / "Training" / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            image = rng.integers(0, 90, (size, size)).astype(np.uint8)
            at, start = rng.integers(2, size - 2), rng.integers(0, size // 2)
            if name == "horizontal":
                image[at - 1 : at + 1, start : start + size // 2] = 255
            else:
                image[start : start + size // 2, at - 1 : at + 1] = 255
            Image.fromarray(image).save(folder / f"{name}_{k:03d}.png")


def test_small_cnn_learns_a_separable_task(tmp_path):
    write_bars(tmp_path / "bars")
    data = ["data.dataset=brain-tumor-mri", f"data.data_dir={tmp_path / 'bars'}",
            "data.options.classes=[horizontal, vertical]", f"data.options.cache_dir={tmp_path / 'cache'}"]
    summary = run(tmp_path, data, "learn", "model.kwargs.hidden_sizes=[8, 16]", "train.epochs=4",
                  "train.batch_size=8", "optim.lr=0.01")
    assert summary["final"]["num_samples"] == 16  # chance is 0.5
    assert summary["best"] >= 0.9, summary["final"]["confusion_matrix"]


class Interrupted(Exception):
    pass


def test_interrupted_and_resumed_classification_run_ends_with_the_same_weights(tmp_path, brain, monkeypatch):
    # Exact only for a run without random ops (as the segmentation test): no dropout, no augmentation.
    common = ("train.epochs=3", "train.checkpointing=5", "scheduler.name=cosine", "model.kwargs.dropout=0.0")
    run(tmp_path, brain, "full", *common)
    save = Trainer.save_checkpoint

    def save_then_crash(self):
        save(self)
        if self.state.step == 5:
            raise Interrupted  # inside epoch 1 (4 steps per epoch)

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(Interrupted):
        run(tmp_path, brain, "cut", *common)
    monkeypatch.undo()
    summary = run(tmp_path, brain, "cut", *common, "train.resume=latest")
    assert summary["steps"] == 12
    full = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0, msg=key)


def test_ema_and_early_stopping(tmp_path, brain):
    summary = run(tmp_path, brain, "ema", "train.epochs=5", "train.ema_decay=0.5", "train.early_stopping_patience=1",
                  "train.early_stopping_min_delta=2.0")
    # Accuracy cannot improve by 2: epoch 1 does not improve on epoch 0, so patience 1 stops after it.
    assert summary["epochs"] == 2 and summary["best_epoch"] == 0
    final = load_file(str(tmp_path / "ema" / "final" / "model.safetensors"))
    raw = load_file(str(tmp_path / "ema" / "checkpoints" / "step_0000008" / "model.safetensors"))
    assert any(not torch.equal(final[k], raw[k]) for k in final if final[k].is_floating_point())


def test_loss_is_cross_entropy_with_class_weights_and_label_smoothing():
    cfg = load_config(None, [*SMALL_CNN, "loss.class_weights=[1.0, 3.0, 0.5]", "loss.label_smoothing=0.2"])
    task = ClassificationTask(cfg, {0: "a", 1: "b", 2: "c"})
    logits, labels = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])
    # By hand: target q = (1 - e) one-hot + e / K, per-sample loss -sum_k w_k q_k log p_k, mean weighted by w_y.
    w, e = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64), 0.2
    q = (1 - e) * F.one_hot(labels, 3) + e / 3
    per_sample = -(w * q * logits.log_softmax(-1)).sum(-1)
    expected = per_sample.sum() / w[labels].sum()
    torch.testing.assert_close(task.loss(logits, labels).double(), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="class_weights has 2 entries but the data has 3 classes"):
        ClassificationTask(load_config(None, [*SMALL_CNN, "loss.class_weights=[1, 2]"]), {0: "a", 1: "b", 2: "c"})


@pytest.mark.parametrize(("overrides", "error", "message"), [
    (["data.label_column=grade"], ValueError, r"no column data.label_column='grade'; its columns are image, label, "
                                              r"case_id \(ClassLabel columns: label\)"),
    (["data.label_column=case_id"], ValueError,
     r"'case_id' .* is not a ClassLabel column .* ClassLabel columns: label"),
    (["data.emphasis.segmenter=runs/oral_ag/best"], FileNotFoundError, "runs/oral_ag/best. not found"),
    (["task=segmentation", "model.name=unet", "model.kwargs={}", "loss.name=null", "train.metric=null"], ValueError,
     "is a classification dataset .* set task: classification"),
])
def test_data_errors(tmp_path, brain, overrides, error, message):
    with pytest.raises(error, match=message):
        run(tmp_path, brain, "bad", *overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.size=null"], r"task: classification needs data.size=\[height, width\]"),
    (["model.name=attention-unet"], "'attention-unet' is a segmentation model but task is classification"),
    (["task=segmentation", "loss.name=null", "train.metric=null"], "'small-cnn' is an image classifier but task is "
                                                                   "segmentation"),
    (["loss.name=dice_ce"], r"loss.name=.dice_ce. is a segmentation loss; task: classification trains with ce"),
    (["train.metric=mean_foreground_dice"], "not a classification metric; choose one of accuracy"),
    (["task=detection"], "task='detection' is not allowed; choose one of segmentation, classification"),
    (["task=segmentation", "model.name=unet", "loss.name=null", "train.metric=null", "loss.label_smoothing=0.1"],
     "label_smoothing is a classification option"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [*SMALL_CNN, *overrides])


def test_task_defaults_and_the_emphasis_hook():
    cfg = load_config(None, SMALL_CNN)
    assert (cfg.loss.name, cfg.train.metric, cfg.data.label_column) == ("ce", "accuracy", "label")
    seg = load_config(None, [])
    assert (seg.task, seg.loss.name, seg.train.metric) == ("segmentation", "dice_ce", "mean_foreground_dice")
    assert build_emphasis({}) is None and build_emphasis(None) is None


def test_segment_then_classify_recipe_trains_on_emphasized_images(tmp_path):
    """`data.emphasis` names a segmenter: the classifier sees its emphasized images, in training and evaluation."""
    import hfseg
    from hfseg.pipeline import emphasize
    from hfseg.training.data import load_recipe_data

    write_archive(tmp_path / "oral")
    segmenter = hfseg.create_model("unet", id2label={0: "background", 1: "nuclei"}, num_channels=3,
                                   base_channels=4, depth=3)
    segmenter.save_pretrained(tmp_path / "seg")
    hfseg.UNetImageProcessor(normalization="zscore", num_channels=3).save_pretrained(tmp_path / "seg")
    data = ["data.dataset=oral-epithelium", f"data.data_dir={tmp_path / 'oral'}",
            f"data.options.cache_dir={tmp_path / 'cache'}", "data.label_column=grade",
            f"data.emphasis={{segmenter: {tmp_path / 'seg'}, mode: mask}}"]
    cfg = load_config(None, [*SMALL_CNN, *data, f"train.output_dir={tmp_path / 'run'}", "train.max_steps=2"])
    recipe = load_recipe_data(cfg)
    image = np.asarray(recipe.train[0]["image"])
    model, processor = load_model(tmp_path / "seg", device="cpu")
    from hfseg.evaluation import predict_mask
    region = predict_mask(model, processor, image).numpy() > 0
    np.testing.assert_array_equal(recipe.emphasis(image), emphasize(image, region, mode="mask"))
    summary = train(cfg)
    assert summary["steps"] == 2 and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert load_config(tmp_path / "run" / "config.yaml").data.emphasis["mode"] == "mask"
    with pytest.raises(ValueError, match="needs `segmenter`"):
        build_emphasis({"mode": "dim"})
    with pytest.raises(ValueError, match="Unknown data.emphasis key"):
        build_emphasis({"segmenter": str(tmp_path / "seg"), "blur": 1})
