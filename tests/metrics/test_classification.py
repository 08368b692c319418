"""Classification metrics: hand-computed probabilities and scores, sklearn, accumulation over batches."""

import math

import numpy as np
import pytest
import torch

from hfseg.metrics import ClassificationMetrics, accuracy, confusion_table, mean_confidence, probabilities


def test_hand_computed():
    # softmax of log-probabilities gives them back: rows are (0.25, 0.75), (0.5, 0.5) -> argmax 0, (0.9, 0.1)
    logits = torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]]).log()
    labels = torch.tensor([1, 1, 1])
    conf = mean_confidence(logits, labels)
    assert conf["mean_max_probability"] == pytest.approx((0.75 + 0.5 + 0.9) / 3)
    assert conf["mean_true_class_probability"] == pytest.approx((0.75 + 0.5 + 0.1) / 3)
    metrics = ClassificationMetrics(2, id2label={0: "benign", 1: "malignant"})
    metrics.update(logits, labels)
    out = metrics.compute()
    # predictions (1, 0, 0) vs labels (1, 1, 1): one correct
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["confusion_matrix"] == [[0, 0], [2, 1]]
    assert out["confusion_table"] == {"benign": {"benign": 0, "malignant": 0},
                                      "malignant": {"benign": 2, "malignant": 1}}
    # malignant: tp 1, fn 2, fp 0 -> precision 1, recall 1/3, F1 2 / (2 + 2) = 1/2
    assert out["per_class"]["malignant"] == {"precision": 1.0, "recall": pytest.approx(1 / 3), "f1": 0.5,
                                             "support": 3}
    # benign: tp 0, fp 2, no support -> precision 0, recall undefined, F1 0 / (0 + 2) = 0
    assert out["precision"][0] == 0.0 and math.isnan(out["recall"][0]) and out["f1"][0] == 0.0
    assert out["macro_recall"] == pytest.approx(1 / 3)  # NaN class skipped
    assert out["macro_f1"] == pytest.approx(0.25)
    assert out["weighted_f1"] == pytest.approx(0.5)  # all support is malignant
    assert out["mean_true_class_probability"] == pytest.approx(conf["mean_true_class_probability"])


def test_single_logit_is_binary_sigmoid():
    probs = probabilities(torch.tensor([0.0, math.log(3.0)]))  # sigmoid: 0.5, 0.75
    torch.testing.assert_close(probs, torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    metrics = ClassificationMetrics(2)
    metrics.update(torch.tensor([[-2.0], [3.0]]), torch.tensor([0, 1]))
    assert metrics.compute()["accuracy"] == 1.0


def test_predicted_ids_without_logits():
    metrics = ClassificationMetrics(3)
    metrics.update(torch.tensor([0, 2, 2]), torch.tensor([0, 1, 2]))
    out = metrics.compute()
    assert out["accuracy"] == pytest.approx(2 / 3) and math.isnan(out["mean_max_probability"])
    assert accuracy([0, 2, 2], [0, 1, 2]) == pytest.approx(2 / 3)
    assert math.isnan(ClassificationMetrics(2).compute()["accuracy"])  # no samples


def test_batches_accumulate_like_one_batch_and_match_sklearn():
    metrics_module = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(90, 4, generator=g), torch.randint(0, 3, (90,), generator=g)  # class 3 unseen
    whole, parts = ClassificationMetrics(4), ClassificationMetrics(4)
    whole.update(logits, labels)
    for chunk in range(3):
        parts.update(logits[chunk * 30:(chunk + 1) * 30], labels[chunk * 30:(chunk + 1) * 30])
    a, b = whole.compute(), parts.compute()
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["mean_max_probability"] == pytest.approx(b["mean_max_probability"])
    preds = logits.argmax(1).numpy()
    precision, recall, f1, support = metrics_module.precision_recall_fscore_support(
        labels.numpy(), preds, labels=[0, 1, 2, 3], zero_division=np.nan)
    np.testing.assert_allclose(a["precision"], precision)
    np.testing.assert_allclose(a["recall"], recall)
    np.testing.assert_allclose(a["f1"], f1)
    assert a["support"] == support.tolist()
    assert a["macro_f1"] == pytest.approx(np.nanmean(f1))
    assert a["accuracy"] == pytest.approx(metrics_module.accuracy_score(labels.numpy(), preds))
    probs = torch.softmax(logits, 1)
    assert a["mean_true_class_probability"] == pytest.approx(probs[torch.arange(90), labels].mean().item())


def test_confusion_table_default_names():
    assert confusion_table(torch.tensor([[1, 2], [3, 4]])) == {"0": {"0": 1, "1": 2}, "1": {"0": 3, "1": 4}}
