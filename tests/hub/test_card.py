"""The model card: a parseable header whose `model-index` equals the run's metrics, the medical-use and data-terms
text, and usage snippets that run."""

import json
import re
import shutil

import numpy as np
import torch
from huggingface_hub import ModelCard
from PIL import Image

import hfseg.data.demo
from hfseg.evaluation import classify_logits, load_model, predict_mask
from hfseg.hub import build_hub_folder, card_data, read_run
from hfseg.hub.card import DATASET_NOTES, MEDICAL_DISCLAIMER
from hfseg.hub.run import TrainingRun


def snippets(readme):
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)


def results_by_name(card):
    return {r.metric_name: r.metric_value for r in card.data.eval_results}


def test_header_is_valid_and_its_model_index_equals_the_best_metrics(hub_folder, seg_run):
    card = ModelCard.load(hub_folder / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "image-segmentation",
                                                                    "apache-2.0")
    assert {"medical-imaging", "hfseg", "attention-unet", "demo", "custom_code"} <= set(data.tags)
    assert data.model_name == "tiny-attention-unet" and data.datasets is None  # `demo` is no Hub dataset id
    best = json.loads((seg_run / "best" / "metrics.json").read_text())
    names = ["background", "csf_other_brain", "grey_matter", "white_matter"]
    expected = {"Mean foreground Dice": best["mean_foreground_dice"],
                "Mean foreground Dice (per image)": best["image_mean_foreground_dice"],
                "Mean Dice": best["mean_dice"], "mIoU": best["mean_iou"],
                "Mean foreground IoU": best["mean_foreground_iou"], "Pixel accuracy": best["pixel_accuracy"],
                **{f"Dice ({n})": best["dice"][i] for i, n in enumerate(names) if best["dice"][i] is not None},
                **{f"IoU ({n})": best["iou"][i] for i, n in enumerate(names) if best["iou"][i] is not None}}
    assert results_by_name(card) == {k: v for k, v in expected.items() if v is not None}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in data.eval_results} == {
        ("image-segmentation", "demo", "validation")}


def test_body_states_intended_use_license_data_and_results(hub_folder, seg_run):
    text = (hub_folder / "README.md").read_text()
    for needle in [MEDICAL_DISCLAIMER, "not a medical device", "## Intended use and limitations", "apache-2.0",
                   DATASET_NOTES["demo"]["terms"], DATASET_NOTES["demo"]["population"], "## Training data",
                   "`hfseg.data.load('demo')`", "(first 16 images)", "## Preprocessing", "z-score",
                   "resized to 32 x 32", "`hflip=0.0`", "## Training procedure", "| optimizer steps | 4 |",
                   "training_config.yaml", "## Evaluation", "| grey_matter |", "## How to use"]:
        assert needle in text, needle
    summary = json.loads((seg_run / "metrics.json").read_text())
    assert f"Validation `mean_foreground_dice`: **{summary['best']:.4f}** (epoch {summary['best_epoch']})" in text
    for image in re.findall(r"\]\((images/[^)]+)\)", text):
        assert (hub_folder / image).is_file(), image
    assert len(re.findall(r"\]\((images/[^)]+)\)", text)) == 3


def test_demo_data_terms_quote_the_dataset_modules_notice():
    quoted = re.search(r"\*(Copyright .*?)\*", DATASET_NOTES["demo"]["terms"]).group(1)
    assert " ".join(quoted.split()) in " ".join(hfseg.data.demo.__doc__.split())


def test_the_cards_hfseg_snippet_runs(hub_folder, tmp_path, monkeypatch):
    code = snippets(hub_folder / "README.md")[1]
    image = np.random.default_rng(2).integers(0, 255, (41, 50), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(code.replace('"me/tiny-attention-unet"', repr(str(hub_folder))), scope)
    model, processor = load_model(hub_folder)
    assert scope["mask"].shape == (41, 50)
    assert torch.equal(scope["mask"], predict_mask(model, processor, image))


def test_classification_card(cls_run, tmp_path, monkeypatch):
    folder = build_hub_folder(cls_run, tmp_path / "hub", repo_id="me/tumour-classifier", dataset_id="org/brain-mri",
                              license="cc-by-nc-4.0", tags=["mri"])
    card = ModelCard.load(folder / "README.md")
    assert (card.data.pipeline_tag, card.data.license, card.data.datasets) == (
        "image-classification", "cc-by-nc-4.0", ["org/brain-mri"])
    assert {"mri", "brain-tumor-mri", "test_resnet", "image-classification"} <= set(card.data.tags)
    best = json.loads((cls_run / "best" / "metrics.json").read_text())
    expected = {"Accuracy": best["accuracy"], "Balanced accuracy": best["balanced_accuracy"],
                "Macro F1": best["macro_f1"], "Weighted F1": best["weighted_f1"],
                "Mean max probability": best["mean_max_probability"],
                **{f"F1 ({n})": v for n, v in zip(best["labels"], best["f1"]) if v is not None}}
    assert results_by_name(card) == expected and len(expected) == 8
    assert {r.dataset_type for r in card.data.eval_results} == {"org/brain-mri"}
    text = card.text
    for needle in ["![confusion.png](images/confusion.png)", "| meningioma |", "| Support |",
                   "subtract image_mean [0.5]", "data_dir=...",
                   "terms of the training data (`brain-tumor-mri`)"]:
        assert needle in text, needle
    plain, with_hfseg = snippets(folder / "README.md")
    assert "AutoModelForImageClassification" in plain and "trust_remote_code=True" in plain  # hfseg's processor
    Image.fromarray(np.full((30, 30), 120, np.uint8)).save(tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(with_hfseg.replace('"me/tumour-classifier"', repr(str(folder))), scope)
    model, processor = load_model(folder)
    assert torch.equal(scope["logits"], classify_logits(model, processor, np.full((30, 30), 120, np.uint8)))


def test_a_run_without_validation_has_no_model_index(seg_run, tmp_path):
    shutil.copytree(seg_run / "final", tmp_path / "run" / "final")
    shutil.copy(seg_run / "config.yaml", tmp_path / "run")
    card = ModelCard.load(build_hub_folder(tmp_path / "run") / "README.md")
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "no results are reported" in card.text and "(`final/`)" in card.text


def test_base_model_is_the_pretrained_checkpoint(seg_run):
    model, _ = load_model(seg_run / "best", device="cpu")
    metrics = read_run(seg_run).metrics
    for pretrained, base in [(True, "nvidia/mit-b0"), ("org/my-unet", "org/my-unet"), ("runs/x/best", None),
                             (None, None)]:
        run = TrainingRun(run_dir=seg_run, weights="best", metrics=metrics,
                          config={"model": {"name": "segformer-b0", "pretrained": pretrained}})
        assert card_data(run, model, repo_id="me/x").base_model == base, pretrained


def test_a_volume_model_card_shows_its_plan(tiny_3d_run, tmp_path):
    from hfseg.hub import build_hub_folder

    run, _ = tiny_3d_run
    folder = build_hub_folder(run, tmp_path / "hub")
    readme = (folder / "README.md").read_text()
    assert "### Plan" in readme and "3d_fullres" in readme and "target spacing   1.50 x 1.50 x 3.00 mm" in readme
    assert "fingerprint" not in readme.split("### Plan")[0]  # the settings block leaves the plan to its section
