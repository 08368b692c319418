"""`evaluate_model(s)` on tiny trained demo runs: metrics equal to hand-computed ones, batched equal to one at a
time, spacing, regions, the report, the CLI (and its per-case CSV), a tiny transformers classifier, and the errors
for bad input. The per-case metrics on hand-made volumes are in `test_cases.py`."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ResNetConfig, ResNetForImageClassification

import hfseg
import hfseg.data
from hfseg.data.features import classification_features
from hfseg.evaluation import evaluate_model, evaluate_models, load_model, predict_mask, write_report
from hfseg.inference import classify_logits
from hfseg.metrics import confusion_matrix, overlap_from_confusion

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread: on a busy 2-core machine two threads are up to 30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_options(tmp_path_factory):
    return {"cache_dir": str(tmp_path_factory.mktemp("demo_cache")), "size": 64}


def _train(output_dir: Path, options: dict, *extra: str) -> Path:
    from hfseg.training import load_config, train

    train(load_config("demo", [
        f"train.output_dir={output_dir}", "train.epochs=1", "model.kwargs.base_channels=4", "data.size=[32,32]",
        f"data.options.cache_dir={options['cache_dir']}", f"data.options.size={options['size']}",
        "train.report_to=null", "train.panels=0", "data.max_train_samples=8", f"data.max_eval_samples={SAMPLES}",
        "train.checkpointing=1000", *extra]))
    return output_dir / "best"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_options):
    """Two tiny runs trained on 64 px demo images at 32 px: evaluation resizes, then upsamples to 64 px."""
    root = tmp_path_factory.mktemp("runs")
    return {"attention": _train(root / "attention", demo_options),
            "unet": _train(root / "unet", demo_options, "model.name=unet", "model.kwargs.depth=3")}


@pytest.fixture(scope="module")
def validation(demo_options):
    return hfseg.data.load("demo", **demo_options)["validation"].select(range(SAMPLES))


@pytest.fixture(scope="module")
def loaded(runs):
    return load_model(runs["attention"], device="cpu")


def _by_hand(loaded, data):
    """Predicted and true label maps (N, H, W) of every item, from `predict_mask`."""
    preds = torch.stack([predict_mask(*loaded, item["image"]) for item in data])
    labels = torch.stack([torch.from_numpy(np.asarray(item["label"]).astype(np.int64)) for item in data])
    return preds, labels


def test_evaluate_model_equals_metrics_by_hand(runs, loaded, validation, demo_options):
    result = evaluate_model(runs["attention"], "demo", data_options=demo_options, max_samples=SAMPLES, device="cpu")
    assert result["model"] == "attention/best" and result["num_images"] == SAMPLES and result["split"] == "validation"
    preds, labels = _by_hand(loaded, validation)
    assert preds.shape == labels.shape == (SAMPLES, 64, 64)
    pooled = overlap_from_confusion(confusion_matrix(preds, labels, 4, ignore_index=255))
    assert result["mean_foreground_dice"] == pytest.approx(float(pooled["mean_foreground_dice"]))
    per_image = overlap_from_confusion(confusion_matrix(preds, labels, 4, ignore_index=255, per_image=True))
    image_dice = torch.nanmean(per_image["dice"], dim=0)
    assert result["image_dice"] == pytest.approx(image_dice.tolist(), nan_ok=True)
    assert result["image_mean_foreground_dice"] == pytest.approx(float(torch.nanmean(image_dice[1:])))
    assert "image_mean_hd95" in result and list(result["per_class"]) == list(hfseg.data.DEMO_ID2LABEL.values())


def _numbers(value, path=""):
    """Every number of a result, by its path (`cases/per_case/<case>/dice/1`, ...)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{path}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}/{i}").items()}
    return {path: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else {}


def test_batches_give_the_one_at_a_time_metrics(loaded, demo_options):
    """10 slices (one whole case and 2 slices of the next) in batches of 4 (4, 4, 2), decoded in 2 workers: the
    metrics of batch_size=1, per image and per case, to 1e-6."""
    data = hfseg.data.load("demo", **demo_options)["validation"].select(range(10))
    one = evaluate_model(loaded, data, batch_size=1, regions={"tissue": [2, 3]})
    assert one["num_cases"] == 2 and [e["num_slices"] for e in one["cases"]["per_case"].values()] == [8, 2]
    expected = {k: v for k, v in _numbers(one).items() if k not in ("/seconds", "/batch_size")}
    for options in ({"batch_size": 4}, {"batch_size": 4, "num_workers": 2}):
        batched = evaluate_model(loaded, data, regions={"tissue": [2, 3]}, **options)
        numbers = {k: v for k, v in _numbers(batched).items() if k in expected}
        assert numbers.keys() == expected.keys() and batched["batch_size"] == 4
        assert numbers == pytest.approx(expected, abs=1e-6, nan_ok=True)


def test_pixel_spacing_column_scales_surface_distances(loaded, validation):
    plain = evaluate_model(loaded, validation)
    spaced = validation.add_column("pixel_spacing", [[2.0, 2.0]] * len(validation))
    doubled = evaluate_model(loaded, spaced)
    assert doubled["image_mean_hd95"] == pytest.approx(2 * plain["image_mean_hd95"])
    assert doubled["mean_foreground_dice"] == plain["mean_foreground_dice"]
    given = evaluate_model(loaded, spaced, spacing=(3.0, 3.0))  # an explicit spacing wins over the column
    assert given["image_mean_hd95"] == pytest.approx(3 * plain["image_mean_hd95"])


def test_brats_regions_are_unions_of_classes(loaded, validation):
    result = evaluate_model(loaded, validation, regions="brats", surface=False)
    preds, labels = _by_hand(loaded, validation)
    for region, ids in {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}.items():
        ids = torch.tensor(ids)
        cm = confusion_matrix(torch.isin(preds, ids).long(), torch.isin(labels, ids).long(), 2)
        assert result["regions"][region]["dice"] == pytest.approx(float(overlap_from_confusion(cm)["dice"][1]))
    with pytest.raises(ValueError, match="brats"):
        evaluate_model(loaded, validation, regions="kits")


def test_two_models_compared_in_a_report(runs, demo_options, tmp_path):
    results = evaluate_models([runs["attention"], runs["unet"]], "demo", data_options=demo_options,
                              max_samples=SAMPLES, examples=2, surface=False, device="cpu")
    assert list(results) == ["attention/best", "unet/best"]
    report = write_report(results, tmp_path)
    for name in ("report.md", "report.csv", "dice.png"):
        assert (tmp_path / name).is_file()
    lines = report["markdown"].splitlines()
    assert len(lines) == 4 and lines[2].startswith("| attention/best |") and lines[3].startswith("| unet/best |")
    for column in ("Dice csf_other_brain", "Dice grey_matter", "Dice white_matter", "mean fg Dice", "mIoU"):
        assert column in lines[0]
    assert len(report["paths"]["overlays"]) == 4 and report["overlays"]["unet/best"][0].shape == (64, 64, 3)


def test_cli_prints_the_table(runs, demo_options, tmp_path):
    command = [sys.executable, str(ROOT / "recipes" / "evaluate.py"), "--models", str(runs["attention"]),
               str(runs["unet"]), "--dataset", "demo", "--data_options", f"cache_dir={demo_options['cache_dir']}",
               f"size={demo_options['size']}", "--max_samples", "2", "--overlays", "1", "--tta",
               "--output_dir", str(tmp_path / "report"), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| model | Dice csf_other_brain" in done.stdout
    assert "| attention/best |" in done.stdout and "| unet/best |" in done.stdout
    metrics = json.loads((tmp_path / "report" / "attention_best" / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and metrics["tta_flip"] is True and "examples" not in metrics
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "overlays" / "unet_best").is_dir()


def test_cli_model_flag_batches_and_writes_per_case_csv(runs, demo_options, tmp_path, capsys):
    from hfseg.training.cli import evaluate_main

    output = tmp_path / "report"
    results = evaluate_main(["--model", str(runs["unet"]), "--dataset", "demo", "--data_options",
                             f"cache_dir={demo_options['cache_dir']}", f"size={demo_options['size']}",
                             "--max_samples", "10", "--batch_size", "3", "--num_workers", "0", "--overlays", "0",
                             "--output_dir", str(output), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "| unet/best |" in out and "Per-case metrics (2 rows) written to" in out
    (result,) = results.values()
    assert result["batch_size"] == 3 and result["num_cases"] == 2
    metrics = json.loads((output / "unet_best" / "metrics.json").read_text())
    assert metrics["case_mean_foreground_dice"] == pytest.approx(result["case_mean_foreground_dice"])
    assert list(metrics["cases"]["per_case"]) == list(result["cases"]["per_case"]) and "case_dice" in metrics
    with open(output / "per_case.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["case_id"]) for r in rows] == [("unet/best", case) for case in result["cases"]["per_case"]]
    case = rows[0]["case_id"]
    assert float(rows[0]["dice_grey_matter"]) == pytest.approx(result["cases"]["per_case"][case]["dice"][2])
    assert rows[0]["num_slices"] == "8" and "mean_hd95" in rows[0]
    evaluate_main(["--models", str(runs["unet"]), "--dataset", "demo", "--data_options",
                   f"cache_dir={demo_options['cache_dir']}", f"size={demo_options['size']}", "--max_samples", "2",
                   "--overlays", "0", "--no_cases", "--no_surface", "--output_dir", str(tmp_path / "plain"),
                   "--device", "cpu"])
    assert not (tmp_path / "plain" / "per_case.csv").exists()


def _classification_data(seed: int = 0) -> datasets.DatasetDict:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (20 + i, 24), dtype=np.uint8)) for i in range(6)]
    features = classification_features(["glioma", "meningioma", "notumor"])
    data = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2, 0, 1, 2],
                                       "case_id": [f"c{i}" for i in range(6)]}, features=features)
    return datasets.DatasetDict({"validation": data})


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    torch.manual_seed(0)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1], num_labels=3,
                          id2label={0: "glioma", 1: "meningioma", 2: "notumor"})
    folder = tmp_path_factory.mktemp("classifier")
    ResNetForImageClassification(config).save_pretrained(folder)
    hfseg.UNetImageProcessor(normalization="zscore", num_channels=1, do_resize=True,
                             size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_classification_with_a_tiny_classifier(classifier):
    data = _classification_data()
    result = evaluate_model(classifier, data, device="cpu")
    assert result["task"] == "classification" and result["num_samples"] == 6
    model, processor = load_model(classifier, device="cpu")
    preds = [int(classify_logits(model, processor, item["image"]).argmax()) for item in data["validation"]]
    assert result["accuracy"] == pytest.approx(np.mean(np.array(preds) == np.array([0, 1, 2, 0, 1, 2])))
    assert np.asarray(result["confusion_matrix"]).sum() == 6
    tta = evaluate_model((model, processor), data, tta_flip=True)
    assert 0 <= tta["accuracy"] <= 1 and tta["tta_flip"] is True


def test_missing_model_is_a_clear_error(tmp_path, demo_options):
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        evaluate_model(tmp_path / "no_such_run" / "best", "demo", data_options=demo_options)
    with pytest.raises(FileNotFoundError, match="also/missing/run"):  # before any model is evaluated
        evaluate_models([tmp_path, "also/missing/run"], "demo", data_options=demo_options)


def test_wrong_number_of_labels_names_both(tmp_path, validation):
    model = hfseg.UNetForSemanticSegmentation(hfseg.UNetConfig(num_channels=1, num_labels=5, base_channels=4, depth=2))
    with pytest.raises(ValueError, match=r"predicts 5 classes.*has 4 classes"):
        evaluate_model((model, hfseg.UNetImageProcessor()), validation, dataset_name="demo")


def test_task_mismatch(classifier, validation):
    with pytest.raises(ValueError, match="image classifier"):
        evaluate_model(classifier, validation, device="cpu")
