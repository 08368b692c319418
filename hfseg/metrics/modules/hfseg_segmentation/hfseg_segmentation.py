"""hfseg segmentation metrics as an `evaluate` module: Dice, IoU, precision, recall, HD95, PQ... per class.

Loaded by path with `hfseg.metrics.load("segmentation")` (works offline); the numbers come from
`hfseg.metrics.SegmentationMetrics`, so the module and the training loop agree to the last digit.
"""

import datasets
import evaluate
import numpy as np

from hfseg.metrics.segmentation import SegmentationMetrics

_DESCRIPTION = """
Overlap metrics of semantic segmentation (Dice/F1, IoU/Jaccard, precision, recall/sensitivity, specificity,
FPR, FNR, pixel accuracy, mean pixel accuracy) in two reductions: pooled over the dataset (keys without prefix,
like the `mean_iou` metric) and per image then averaged (keys prefixed `image_`, the per-case mean of medical
papers). Optionally surface distances (HD, HD95, ASSD) and instance metrics (PQ, AJI) per image.
A class absent from both prediction and reference is undefined (NaN) and skipped by means, unless `empty_score`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 2D `list`/`np.ndarray` of `int`): predicted class ids, one map per image.
    references (`list` of 2D `list`/`np.ndarray` of `int`): true class ids, same shapes as the predictions.
    num_labels (`int`): number of classes K, including background 0.
    ignore_index (`int`, *optional*): reference value of pixels left out of every metric (e.g. 255).
    id2label (`dict[int, str]`, *optional*): class names for the `per_class` entry.
    empty_score (`float`, *optional*): score of a class absent from both sides (default: NaN, skipped).
    surface (`bool`, *optional*, defaults to `False`): add `image_hd`, `image_hd95`, `image_assd`.
    instance (`bool`, *optional*, defaults to `False`): add `pq`, `sq`, `rq`, `aji` (pooled and `image_`).
    spacing (`list[float]`, *optional*): pixel size per axis for the surface distances.
    hd_mode (`str`, *optional*, defaults to `"union"`): HD95 of the pooled distances (medpy) or `"max"` (MONAI).
Returns:
    `dict`: `mean_dice`, `mean_foreground_dice`, `mean_iou`, `pixel_accuracy`, ... (floats), per-class lists
    `dice`, `iou`, ..., the same with `image_` prefix, `num_images`, and `per_class` keyed by class name.
Examples:
    >>> import hfseg.metrics
    >>> metric = hfseg.metrics.load("segmentation")
    >>> metric.compute(predictions=[[[0, 1], [1, 1]]], references=[[[0, 1], [0, 1]]], num_labels=2)["dice"]
    [0.6666666666666666, 0.8]
"""

_CITATION = """
@article{maier2024metrics,
  title={Metrics reloaded: recommendations for image analysis validation},
  author={Maier-Hein, Lena and Reinke, Annika and others},
  journal={Nature Methods}, volume={21}, pages={195--212}, year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HfsegSegmentation(evaluate.Metric):
    """Semantic segmentation metrics of hfseg (see `hfseg.metrics.SegmentationMetrics`)."""

    def _info(self):
        label_map = datasets.Sequence(datasets.Sequence(datasets.Value("int64")))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": label_map, "references": label_map}),
            reference_urls=["https://doi.org/10.1038/s41592-023-02151-z"],
        )

    def _compute(self, predictions, references, num_labels, ignore_index=None, id2label=None, empty_score=None,
                 surface=False, instance=False, spacing=None, hd_mode="union"):
        metrics = SegmentationMetrics(num_labels, ignore_index=ignore_index, id2label=id2label,
                                      empty_score=empty_score, surface=surface, instance=instance, spacing=spacing,
                                      hd_mode=hd_mode)
        for prediction, reference in zip(predictions, references):
            metrics.update(np.asarray(prediction)[None], np.asarray(reference)[None])
        return metrics.compute()
