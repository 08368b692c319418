"""The validation metrics as `EvalResult`s and table rows: which ones, their names, and what is left out."""

import math

from huggingface_hub import ModelCard, ModelCardData

from hfseg.hub.results import class_names, eval_results, headline, per_class

SEG = {"mean_foreground_dice": 0.75, "mean_dice": 0.8, "mean_iou": 0.7, "mean_foreground_iou": None,
       "pixel_accuracy": 0.9, "image_mean_foreground_dice": float("nan"), "dice": [0.95, 0.5, None],
       "iou": [0.9, 0.4, 0.1], "precision": [1.0, 0.6, 0.2], "num_images": 4,
       "per_class": {"background": {}, "liver": {}, "tumour": {}}}


def test_segmentation_results_skip_undefined_values():
    results = eval_results("segmentation", SEG, ["background", "liver", "tumour"], dataset_type="liver-voc",
                           dataset_name="liver-voc", split="validation", selection_metric="mean_foreground_dice")
    got = {r.metric_name: (r.metric_type, r.metric_value, r.metric_config) for r in results}
    assert got == {
        "Mean foreground Dice": ("dice", 0.75, None), "Mean Dice": ("dice", 0.8, None),
        "mIoU": ("mean_iou", 0.7, None), "Pixel accuracy": ("accuracy", 0.9, None),
        "Dice (background)": ("dice", 0.95, "background"), "Dice (liver)": ("dice", 0.5, "liver"),
        "IoU (background)": ("iou", 0.9, "background"), "IoU (liver)": ("iou", 0.4, "liver"),
        "IoU (tumour)": ("iou", 0.1, "tumour"),
    }
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == {
        ("image-segmentation", "liver-voc", "validation")}


def test_the_selection_metric_is_reported_even_if_not_a_headline_metric():
    rows = headline("segmentation", {**SEG, "image_mean_dice": 0.66}, "image_mean_dice")
    assert rows[0] == ("image_mean_dice", "image_mean_dice", "image_mean_dice", 0.66)
    assert len(headline("segmentation", SEG, "mean_dice")) == 4  # already a headline metric: not repeated


def test_per_class_table_keeps_undefined_values_as_none():
    table = per_class("segmentation", SEG, ["background", "liver", "tumour"])
    assert list(table) == ["dice", "iou", "precision"]  # image_dice absent
    assert table["dice"] == {"background": 0.95, "liver": 0.5, "tumour": None}
    assert per_class("segmentation", SEG, ["a", "b"]) == {}  # lists of another length are not this model's classes


def test_class_names_prefer_the_metrics_then_the_model():
    assert class_names(SEG, {0: "x", 1: "y", 2: "z"}) == ["background", "liver", "tumour"]
    assert class_names({"labels": ["a", "b"]}, {0: "x"}) == ["a", "b"]
    assert class_names({}, {"1": "y", "0": "x"}) == ["x", "y"]


def test_classification_results_round_trip_through_a_model_index():
    metrics = {"accuracy": 0.8, "balanced_accuracy": 0.75, "macro_f1": 0.7, "weighted_f1": 0.72,
               "mean_max_probability": 0.9, "f1": [0.5, 1.0, math.nan], "precision": [1, 1, 0], "recall": [0, 1, 1],
               "support": [2, 1, 1], "labels": ["a", "b", "c"]}
    results = eval_results("classification", metrics, ["a", "b", "c"], dataset_type="org/data", dataset_name="data",
                           split="test", selection_metric="accuracy")
    assert [r.metric_name for r in results] == ["Accuracy", "Balanced accuracy", "Macro F1", "Weighted F1",
                                                "Mean max probability", "F1 (a)", "F1 (b)"]
    data = ModelCardData(model_name="m", eval_results=results)
    loaded = ModelCard(f"---\n{data.to_yaml()}\n---\n").data.eval_results
    assert [(r.metric_name, r.metric_value, r.task_type) for r in loaded] == [
        (r.metric_name, r.metric_value, "image-classification") for r in results]
