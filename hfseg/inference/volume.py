"""Prediction on what `hfseg.io.read` gives: one 2D image, or a volume slice by slice with a 2D model (a planned
volume model, 3D or nnU-Net's 2d configuration, goes through `hfseg.inference.planned` instead).

A volume is cut into 2D slices in hfseg's display convention (`hfseg.io.to_slices`: axial slices with anterior
at the top and the patient's right on the image's left, as radiology viewers show them and as the `demo` and
BraTS loaders give their training slices), the slices are predicted in batches, and the labels are put back in
the volume's storage order, so the mask has the scan's shape and geometry whatever order the file stores voxels
in. `plane` picks axial, coronal or sagittal slices (default: axial, or the plane of a single-slice volume);
`plane=0|1|2` slices along a storage axis as stored.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..io import MedicalImage, default_plane, from_slices, to_slices
from ..models.outputs import predict as labels_of
from .checks import check_input
from .image import predict_logits_batch, predict_mask
from .planned import is_planned, predict_planned


def _channels_last(array: np.ndarray) -> str | None:
    return "channels_last" if array.ndim == 3 else None


def predict_volume(model: nn.Module, processor: Any, image: MedicalImage, plane: str | int | None = None,
                   batch_size: int = 8, progress: bool | None = None, **options: Any) -> np.ndarray:
    """Labels of a volume, `image.array`'s shape, predicted slice by slice (see the module docstring).

    Args:
        model, processor: as `load_model` gives them (a 2D segmentation model).
        image (`MedicalImage`): a volume (`image.is_volume`).
        plane (`str` or `int`, *optional*): `"axial"`, `"coronal"`, `"sagittal"`, or a storage axis 0-2.
        batch_size (`int`, *optional*, defaults to 8): slices per forward pass.
        progress (`bool`, *optional*): a progress bar over slices (default: when the output is a terminal).
        **options: `tta_flip`, `sliding_window`, `overlap`, `size` of `predict_logits`.
    """
    if not image.is_volume:
        raise ValueError(f"{image.name} is one 2D image, not a volume: use predict().")
    plane = default_plane(image.affine, image.array.shape, image.name) if plane is None else plane
    slices = to_slices(image.array, image.affine, plane, image.name)
    labels = np.zeros(slices.shape[:3], dtype=np.uint8)
    bar = tqdm(total=len(slices), desc=f"{image.name} ({plane})", unit="slice", leave=False,
               disable=None if progress is None else not progress)
    with bar:
        for start in range(0, len(slices), batch_size):
            chunk = [np.ascontiguousarray(s) for s in slices[start : start + batch_size]]
            logits = predict_logits_batch(model, processor, chunk, batch_size=batch_size, **options)
            for offset, score in enumerate(logits):
                label = labels_of(score[None])[0].numpy()
                if label.max() > 255 and labels.dtype == np.uint8:
                    labels = labels.astype(np.uint16)
                labels[start + offset] = label
            bar.update(len(chunk))
    return np.ascontiguousarray(from_slices(labels, image.affine, plane, image.name))


def predict(model: nn.Module, processor: Any, image: MedicalImage | Any, plane: str | int | None = None,
            batch_size: int = 8, progress: bool | None = None, warn: bool = True, **options: Any) -> np.ndarray:
    """Labels of a `MedicalImage` (a volume slice by slice, a 2D image at once) or of an array / PIL image, in the
    input's own layout (a volume: `image.array`'s shape; a 2D image: (rows, columns)).

    With `warn`, `check_input` messages (a modality or intensity mismatch with the training data) are issued as
    warnings first. `options` go to `predict_logits` (`tta_flip`, `sliding_window`, `overlap`, `size`).
    """
    if warn:
        for message in check_input(processor, image, getattr(image, "name", "The input")):
            warnings.warn(message, stacklevel=2)
    if isinstance(image, MedicalImage) and is_planned(processor):
        if not image.is_volume:
            raise ValueError(f"{image.name} is one 2D image, but the model is a planned volume model: give it a "
                             "volume (NIfTI file or DICOM series).")
        return predict_planned(model, processor, image, tta=bool(options.get("tta_flip")), progress=bool(progress),
                               batch_size=batch_size)
    if isinstance(image, MedicalImage):
        if image.is_volume:
            return predict_volume(model, processor, image, plane=plane, batch_size=batch_size, progress=progress,
                                  **options)
        array = image.array
        return predict_mask(model, processor, array, input_data_format=_channels_last(array), **options).numpy()
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    return predict_mask(model, processor, array, **options).numpy()
