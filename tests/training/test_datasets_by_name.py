"""The recipe trains on every segmentation loader by name, from fixtures in the published layouts."""

import json

import pytest

from hfseg.data import dataset_modality
from hfseg.training import load_config, train
from tests.data.fixtures.brats import write_h5, write_nifti
from tests.data.fixtures.chaos import write_chaos
from tests.data.fixtures.liver_voc import write_liver_voc
from tests.data.fixtures.oral_epithelium import write_archive
from tests.data.fixtures.uw_madison import write_uw_madison

CASES = {
    # name: (fixture writer, data_dir below root, loader options, channels, classes)
    "brats2020-h5": (write_h5, "", {}, 4, 4),
    "brats2020-nifti": (write_nifti, "", {}, 4, 4),
    "chaos-mr-t2spir": (write_chaos, "", {}, 1, 5),
    "liver-voc": (write_liver_voc, "", {}, 1, 2),
    "oral-epithelium": (write_archive, "", {}, 3, 2),
    "uw-madison-gi": (write_uw_madison, "", {}, 1, 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe_trains_on_the_dataset_by_name(tmp_path, name):
    writer, sub, options, channels, classes = CASES[name]
    writer(tmp_path / "data")
    overrides = [f"data.dataset={name}", f"data.data_dir={tmp_path / 'data' / sub}", "data.size=[16, 16]",
                 f"data.options.cache_dir={tmp_path / 'cache'}", "model.name=unet", "model.kwargs.base_channels=4",
                 "model.kwargs.depth=2", "train.epochs=1", "train.max_steps=2", "train.batch_size=2",
                 "train.report_to=null", "train.panels=1", f"train.output_dir={tmp_path / 'run'}",
                 "data.normalization=zscore"]
    cfg = load_config(None, overrides, values={f"data.options.{k}": v for k, v in options.items()})
    summary = train(cfg)
    assert summary["steps"] == 2
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved["num_channels"] == channels and len(saved["id2label"]) == classes
    processor = json.loads((tmp_path / "run" / "final" / "preprocessor_config.json").read_text())
    low, high = processor["intensity_range"]
    assert processor["modality"] == dataset_modality(name) and low <= high
    assert summary["final"]["num_images"] > 0
