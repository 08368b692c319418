"""The comparison report: TP/FP/FN overlay colours by hand, tables from known metrics, the files written."""

import csv
import json

import numpy as np
import pytest
import torch

import hfseg
from PIL import Image

from hfseg.evaluation.report import comparison_table, markdown_table, overlay, write_metrics, write_report
from hfseg.metrics import ClassificationMetrics, SegmentationMetrics
from hfseg.viz import ERROR_COLORS, overlay_errors

TP, FP, FN, WRONG = (ERROR_COLORS[k] for k in ("TP", "FP", "FN", "wrong class"))

ID2LABEL = {0: "background", 1: "liver", 2: "tumour"}


def _segmentation_result(seed: int, examples: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(0, 3, (3, 16, 16)))
    pred = torch.where(torch.from_numpy(rng.random((3, 16, 16)) < 0.7), target, torch.randint(0, 3, (3, 16, 16)))
    metrics = SegmentationMetrics(3, id2label=ID2LABEL, surface=True)
    metrics.update(pred, target)
    result = {"task": "segmentation", "dataset": "toy", "split": "validation", **metrics.compute()}
    if examples:
        result["examples"] = [{"case_id": f"case {i}", "image": rng.random((16, 16)), "label": target[i].numpy(),
                               "pred": pred[i].numpy()} for i in range(examples)]
    return result


def test_overlay_colours_by_hand():
    image = np.full((3, 3), 7.0)  # constant: black
    target = np.array([[1, 0, 1], [0, 0, 255], [0, 2, 0]])
    pred = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0]])
    out = overlay(image, target, pred, alpha=1.0)
    assert out.shape == (3, 3, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == TP and tuple(out[0, 1]) == FP and tuple(out[0, 2]) == FN
    assert tuple(out[2, 1]) == WRONG  # every foreground class is scored: truth 2 predicted 1
    assert (out[1, 0] == 0).all() and (out[1, 2] == 0).all()  # true negative and ignored pixel stay as they were
    # Blended over a black-and-white image with the default alpha 0.5: half the image, half the colour.
    blended = overlay(np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[1, 1], [0, 0]]), np.array([[1, 0], [1, 0]]))
    assert blended[0, 0].tolist() == np.round(0.5 * np.array(TP)).tolist()  # the black pixel: TP
    assert blended[0, 1].tolist() == np.round(0.5 * 255 + 0.5 * np.array(FN)).tolist()
    assert blended[1, 0].tolist() == np.round(0.5 * 255 + 0.5 * np.array(FP)).tolist()
    assert tuple(blended[1, 1]) == (255, 255, 255)


def test_overlay_is_overlay_errors_without_a_legend():
    rng = np.random.default_rng(3)
    image, target, pred = rng.random((12, 10)), rng.integers(0, 3, (12, 10)), rng.integers(0, 3, (12, 10))
    target[0] = 255
    np.testing.assert_array_equal(overlay(image, target, pred),
                                  overlay_errors(image, pred, target, alpha=0.5, legend=False))
    np.testing.assert_array_equal(overlay(image, target, pred, cls=2, alpha=0.7, ignore_index=None),
                                  overlay_errors(image, pred, target, [2], ignore_index=None, alpha=0.7, legend=False))


def test_overlay_of_one_class():
    target, pred = np.array([[1, 2, 2]]), np.array([[2, 2, 1]])
    out = overlay(np.zeros((1, 3)), target, pred, cls=2, alpha=1.0)
    assert tuple(out[0, 0]) == FP and tuple(out[0, 1]) == TP and tuple(out[0, 2]) == FN
    with pytest.raises(ValueError, match="at the image's size"):
        overlay(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3)))


def test_segmentation_table_columns_and_values():
    results = {"a": _segmentation_result(0), "b": _segmentation_result(1)}
    columns, rows = comparison_table(results)
    assert columns[:6] == ["model", "Dice liver", "Dice tumour", "mean fg Dice", "mIoU", "HD95"]
    assert rows[0]["Dice tumour"] == pytest.approx(results["a"]["image_dice"][2])
    assert rows[1]["mean fg Dice"] == pytest.approx(results["b"]["image_mean_foreground_dice"])
    assert rows[0]["HD95"] == pytest.approx(results["a"]["image_mean_hd95"])
    _, pooled = comparison_table(results, reduction="dataset")
    assert pooled[0]["Dice liver"] == pytest.approx(results["a"]["dice"][1])
    assert pooled[0]["mIoU"] == pytest.approx(results["a"]["mean_iou"])
    with pytest.raises(ValueError, match="reduction"):
        comparison_table(results, reduction="volume")


def test_markdown_marks_the_best_and_undefined_values():
    columns = ["model", "Dice x", "HD95", "mIoU"]
    rows = [{"model": "a", "Dice x": 0.5, "HD95": 3.0, "mIoU": 0.2}, {"model": "b", "Dice x": 0.75, "HD95": 4.0,
                                                                        "mIoU": 0.2},
            {"model": "c", "Dice x": float("nan"), "HD95": float("nan"), "mIoU": 0.2}]
    lines = markdown_table(columns, rows).splitlines()
    assert lines[0] == "| model | Dice x | HD95 | mIoU |" and lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| a | 0.500 | **3.000** | 0.200 |"  # HD95: lower is better; a tie is not marked
    assert lines[3] == "| b | **0.750** | 4.000 | 0.200 |" and lines[4] == "| c | n/a | n/a | 0.200 |"


def test_write_report_files(tmp_path):
    results = {"run a": _segmentation_result(0, examples=3), "run/b": _segmentation_result(1, examples=3)}
    report = write_report(results, tmp_path, num_overlays=2)
    text = (tmp_path / "report.md").read_text()
    assert report["markdown"] in text and "| run a |" in text and "| run/b |" in text
    with open(tmp_path / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["run a", "run/b"]
    assert float(rows[0]["Dice liver"]) == pytest.approx(results["run a"]["image_dice"][1])
    assert Image.open(tmp_path / "dice.png").size[0] > 100
    paths = report["paths"]["overlays"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths[:2]] == ["overlays/run_a/000_case_0.png",
                                                                      "overlays/run_a/001_case_1.png"]
    assert len(paths) == 4 and len(report["overlays"]["run/b"]) == 2
    assert np.array_equal(np.asarray(Image.open(paths[-1])), report["overlays"]["run/b"][1])
    example = results["run a"]["examples"][0]
    assert np.array_equal(report["overlays"]["run a"][0], overlay(example["image"], example["label"], example["pred"]))


def test_write_metrics_json(tmp_path):
    result = _segmentation_result(0, examples=1)
    result["nan"] = float("nan")
    path = write_metrics({"m/best": result}, tmp_path)["m/best"]
    data = json.loads(path.read_text())
    assert path == tmp_path / "m_best" / "metrics.json" and "examples" not in data and data["nan"] is None


def test_classification_table_and_report(tmp_path):
    results = {}
    for name, logits in {"good": [[3.0, 0, 0], [0, 3.0, 0]], "bad": [[0, 3.0, 0], [0, 3.0, 0]]}.items():
        metrics = ClassificationMetrics(3, id2label={0: "glioma", 1: "meningioma", 2: "notumor"})
        metrics.update(torch.tensor(logits), torch.tensor([0, 1]))
        results[name] = {"task": "classification", **metrics.compute()}
    columns, rows = comparison_table(results)
    assert columns == ["model", "accuracy", "balanced acc", "macro F1", "weighted F1", "F1 glioma", "F1 meningioma",
                       "F1 notumor"]
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == 0.5
    write_report(results, tmp_path)
    assert (tmp_path / "dice.png").is_file() and "| good |" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="segmentation and classification"):
        comparison_table({**results, "seg": _segmentation_result(0)})


def test_the_report_adds_a_per_case_table_when_results_have_cases(tmp_path):
    from hfseg.evaluation import evaluate_model
    from hfseg.evaluation.report import comparison_table, write_report

    model = hfseg.UNetForSemanticSegmentation(hfseg.UNetConfig(num_channels=1, num_labels=4, base_channels=4,
                                                               depth=2)).eval()
    processor = hfseg.UNetImageProcessor(normalization="zscore", num_channels=1)
    result = evaluate_model((model, processor), "demo", max_samples=12, surface=True)
    assert result["num_cases"] >= 1
    columns, rows = comparison_table({"tiny": result}, "case")
    assert rows[0]["mean fg Dice"] == pytest.approx(result["case_mean_foreground_dice"])
    assert rows[0]["HD95"] == pytest.approx(result["case_mean_hd95"], nan_ok=True)
    text = write_report({"tiny": result}, tmp_path)["paths"]["report"].read_text()
    assert f"Per case ({result['num_cases']} cases)" in text and "voxel spacing" in text
