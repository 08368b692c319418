"""`evaluate_model(..., instances=...)`: object-level PQ/AJI against true instance maps, connected components vs
watershed, the foreground Dice of a boundary model, the report and CLI flags, end to end with exact tiny models."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import hfseg.data
from hfseg.data.instances import boundary_target
from hfseg.evaluation import evaluate_model
from hfseg.evaluation.report import comparison_table
from hfseg.models.unet.image_processing_unet import UNetImageProcessor
from hfseg.training.cli import add_evaluate_arguments


def touching_discs(shift=0):
    yy, xx = np.mgrid[:40, :60]
    instances = np.zeros((40, 60), np.uint16)
    instances[(yy - 20) ** 2 + (xx - 18 - shift) ** 2 < 100] = 1
    instances[((yy - 20) ** 2 + (xx - 34 - shift) ** 2 < 100) & (instances == 0)] = 2
    return instances


class ClassOfIntensity(torch.nn.Module):
    """A 'model' predicting class round(pixel / 100): exact, so the metrics depend only on the post-processing."""

    def __init__(self, num_labels):
        super().__init__()
        self.config = SimpleNamespace(num_labels=num_labels, id2label={})
        self.num_labels = num_labels

    def forward(self, pixel_values, **kwargs):
        classes = (pixel_values[:, 0] / 100).round().long().clamp(0, self.num_labels - 1)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(classes, self.num_labels).permute(0, 3, 1, 2) * 8.0
                               - 4.0)


def write_folder(root, boundary):
    for split in ("train", "validation"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(2):
            instances = touching_discs(shift=4 * i)
            classes = boundary_target(instances) if boundary else (instances > 0).astype(np.uint8)
            Image.fromarray((classes * 100).astype(np.uint8)).save(root / split / "images" / f"t{i}.png")
            Image.fromarray(instances).save(root / split / "masks" / f"t{i}.png")


@pytest.fixture(scope="module", params=[False, True], ids=["semantic", "boundary"])
def case(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    write_folder(root, request.param)
    data = hfseg.data.load("image-mask-folder", str(root), instance_masks=True, boundary=request.param,
                           cache_dir=str(root / "cache"))
    model = (ClassOfIntensity(3 if request.param else 2), UNetImageProcessor(normalization="none"))
    return request.param, data, model


def test_watershed_separates_what_connected_components_merge(case):
    boundary, data, model = case
    watershed = evaluate_model(model, data, instances="watershed", surface=False, device="cpu")
    objects = watershed["instances"]
    assert objects["method"] == "watershed" and objects["truth"] == "instances column"
    assert objects["num_true"] == 4 == objects["num_pred"] and objects["pq"] > 0.9 and objects["aji"] > 0.9
    assert watershed["regions"]["foreground"]["dice"] == pytest.approx(1.0)
    if boundary:  # interior + boundary is the nucleus: exact, though each class alone is not the nucleus
        assert objects["classes"] == {"interior": 1, "boundary": 2}
        assert len(watershed["per_class"]) == 3
    else:
        connected = evaluate_model(model, data, instances="connected", surface=False, device="cpu")
        merged = connected["instances"]
        assert merged["num_pred"] == 2 and merged["fn"] == 2 and merged["pq"] < 0.4 and merged["aji"] < 0.7
        assert "mean_pq" in connected  # the per-class connected-component metrics, as instance=True gives
        legacy = evaluate_model(model, data, instance=True, surface=False, device="cpu")
        assert legacy["instances"]["method"] == "connected" and legacy["mean_pq"] == connected["mean_pq"]
        columns, rows = comparison_table({"ws": watershed, "cc": connected})
        assert rows[0]["PQ"] > 0.9 and rows[1]["PQ"] < 0.4 and "Dice foreground" in columns


def test_truth_without_instance_column_is_connected_components(case):
    _, data, model = case
    plain = data["validation"].remove_columns("instances")
    objects = evaluate_model(model, plain, instances="watershed", surface=False, device="cpu")["instances"]
    assert objects["truth"] == "connected components of the label"
    assert objects["num_true"] == 2 and objects["fp"] == 2  # the touching pair is one true object per tile


def test_errors_and_cli_flag(case):
    _, data, model = case
    with pytest.raises(ValueError, match="Unknown instances"):
        evaluate_model(model, data, instances="stardist", device="cpu")
    with pytest.raises(ValueError, match="instance_options"):
        evaluate_model(model, data, instances="watershed", instance_options={"sigma": 1}, device="cpu")
    import argparse

    parser = add_evaluate_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--models", "m", "--dataset", "d", "--instances", "watershed"])
    assert args.instances == "watershed"
