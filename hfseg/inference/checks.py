"""Does an input look like what the model was trained on? Warnings for a modality or intensity mismatch.

The recipe saves the training data's DICOM modality (`modality`) and its 1st-99th intensity percentiles
(`intensity_range`) in the image processor's config. An input is flagged when:

- its DICOM `Modality` differs from the model's (a CT series through a brain-MRI model);
- it has clearly negative intensities (below -5% of the training range's width) while the training images had
  none (CT in Hounsfield units through a model trained on MR or photos);
- with an absolute normalization (`window`, `mean_std`, `none`, where the raw scale matters), less than half of
  its 1st-99th percentile range lies within the training range widened by 10% on each side.

Per-image normalizations (z-score, percentiles) make the absolute scale irrelevant, so only the first two apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ABSOLUTE = ("window", "mean_std", "none")
_SAMPLE = 200_000


def _percentiles(array: np.ndarray) -> tuple[float, float]:
    flat = np.asarray(array, dtype=np.float32).ravel()
    if flat.size > _SAMPLE:
        flat = flat[:: flat.size // _SAMPLE]
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return 0.0, 0.0
    low, high = np.percentile(flat, [1, 99])
    return float(low), float(high)


def check_input(processor: Any, image: Any, name: str = "The input") -> list[str]:
    """Messages saying how `image` (a `MedicalImage` or an array) differs from the model's training data; empty
    when it looks alike or the processor records nothing (models saved before hfseg recorded it)."""
    messages = []
    trained = getattr(processor, "modality", None)
    modality = getattr(image, "modality", None)
    if trained and modality and str(modality).upper() != str(trained).upper():
        messages.append(f"{name} is {modality} but the model was trained on {trained} images: its prediction is "
                        "unlikely to mean anything.")
    span = getattr(processor, "intensity_range", None)
    if not span or len(span) != 2:
        return messages
    array = getattr(image, "array", image)
    array = np.asarray(array.cpu() if hasattr(array, "cpu") else array)
    low, high = _percentiles(array)
    t_low, t_high = float(span[0]), float(span[1])
    width = max(t_high - t_low, 1e-6)
    if t_low >= 0 and low < -0.05 * width:
        messages.append(f"{name} has negative intensities (1st percentile {low:.4g}) but the model's training images "
                        f"had none ({t_low:.4g} to {t_high:.4g}): is it CT in Hounsfield units through a model for "
                        f"{trained or 'another modality'}?")
    elif getattr(processor, "normalization", None) in ABSOLUTE and high > low:
        inside = max(0.0, min(high, t_high + 0.1 * width) - max(low, t_low - 0.1 * width))
        if inside / (high - low) < 0.5:
            messages.append(f"{name} has intensities {low:.4g} to {high:.4g} (1st-99th percentile) but the model was "
                            f"trained on {t_low:.4g} to {t_high:.4g} without per-image normalization: rescale it.")
    return messages
