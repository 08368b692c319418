"""A recipe trained on instance masks saves a processor that separates instances: its `instance_classes` are the
dataset's interior and boundary classes."""

import numpy as np
import torch

from hfseg.models.unet.image_processing_unet import UNetImageProcessor
from hfseg.training import load_config
from hfseg.training.data import load_recipe_data
from tests.data.test_folder import write_instance_fixture


def _recipe(tmp_path, *options):
    if not (tmp_path / "d").exists():
        write_instance_fixture(tmp_path / "d")
    return load_config("demo", ["data.dataset=image-mask-folder", f"data.data_dir={tmp_path / 'd'}",
                                "data.size=null", f"data.options.cache_dir={tmp_path / 'c'}",
                                "data.options.instance_masks=true", *options])


def test_boundary_target_gives_the_processor_its_instance_classes(tmp_path):
    processor = load_recipe_data(_recipe(tmp_path)).processor
    assert processor.instance_classes == {"interior": 1, "boundary": 2}
    processor.save_pretrained(tmp_path / "saved")
    reloaded = UNetImageProcessor.from_pretrained(tmp_path / "saved")
    assert reloaded.instance_classes == {"interior": 1, "boundary": 2}
    # Two touching squares, interior logits high inside each and boundary high on the shared column: two instances
    # (a semantic model's class masks would give one segment of class 1).
    logits = torch.full((1, 3, 8, 12), -4.0)
    logits[0, 0] = 4.0
    logits[0, 1, 2:6, 1:5] = logits[0, 1, 2:6, 6:10] = 4.0
    logits[0, 0, 2:6, 1:10] = -4.0
    logits[0, 2, 2:6, 5] = 4.0
    result = reloaded.post_process_instance_segmentation(logits, min_size=1, min_seed_size=1)[0]
    ids = np.unique(result["segmentation"].numpy())
    assert list(ids) == [0, 1, 2]


def test_semantic_target_and_explicit_choice(tmp_path):
    assert load_recipe_data(_recipe(tmp_path, "data.options.boundary=false")).processor.instance_classes is None
    chosen = load_recipe_data(_recipe(tmp_path, "data.processor.instance_classes={interior: 1}")).processor
    assert chosen.instance_classes == {"interior": 1}  # the YAML overrides what the classes say
