"""hfseg classification metrics as an `evaluate` module: accuracy, confidence, confusion matrix, per-class F1.

Loaded by path with `hfseg.metrics.load("classification")` (works offline); the numbers come from
`hfseg.metrics.ClassificationMetrics`.
"""

import datasets
import evaluate
import numpy as np

from hfseg.metrics.classification import ClassificationMetrics

_DESCRIPTION = """
Image-level classification metrics: accuracy, balanced accuracy, macro and per-class precision/recall/F1,
weighted F1, the confusion matrix (also keyed by class names) and, when logits are given, the mean confidence
(mean max softmax probability) and the mean probability of the true class. Ratios with a zero denominator are
NaN and skipped by macro averages (as scikit-learn with `zero_division=np.nan`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sample either the logits (`list` of `float`, K values; one value = a binary classifier's
        single logit) or the predicted class id (`int`).
    references (`list` of `int`): true class ids.
    num_labels (`int`): number of classes K.
    id2label (`dict[int, str]`, *optional*): class names for `per_class` and `confusion_table`.
Returns:
    `dict`: `accuracy`, `balanced_accuracy`, `macro_precision`, `macro_recall`, `macro_f1`, `weighted_f1`,
    `mean_max_probability`, `mean_true_class_probability`, per-class lists, `confusion_matrix`, `per_class`.
Examples:
    >>> import hfseg.metrics
    >>> metric = hfseg.metrics.load("classification")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)["accuracy"]
    0.6666666666666666
"""

_CITATION = """
@article{sokolova2009systematic,
  title={A systematic analysis of performance measures for classification tasks},
  author={Sokolova, Marina and Lapalme, Guy},
  journal={Information Processing \\& Management}, volume={45}, number={4}, pages={427--437}, year={2009}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HfsegClassification(evaluate.Metric):
    """Classification metrics of hfseg (see `hfseg.metrics.ClassificationMetrics`)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                   "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references, num_labels, id2label=None):
        metrics = ClassificationMetrics(num_labels, id2label=id2label)
        if len(references):
            metrics.update(np.asarray(predictions), np.asarray(references))
        return metrics.compute()
