"""The recipe's data side records what the model is trained on: the dataset's modality, the raw intensity range."""

import datasets
import numpy as np
import pytest
from PIL import Image

from hfseg.training import load_config
from hfseg.training.data import load_recipe_data, raw_intensity_range


def test_intensity_range_is_the_raw_1st_and_99th_percentiles():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 4000, (12, 10)).astype(np.uint16) for _ in range(5)]
    split = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in images]},
                                       features=datasets.Features({"image": datasets.Image()}))
    expected = np.percentile(np.concatenate([a.ravel() for a in images]).astype(np.float64), [1, 99])
    np.testing.assert_allclose(raw_intensity_range(split), expected, rtol=1e-5)  # 16-bit values, as stored


def test_intensity_range_reads_up_to_64_evenly_spaced_images_and_skips_non_finite_values():
    values = np.arange(200, dtype=np.float32)  # image i is filled with i
    arrays = [np.full((4, 4, 2), v, np.float32) for v in values]
    arrays[0][0, 0, 0], arrays[-1][1, 1, 1] = np.nan, np.inf
    split = datasets.Dataset.from_dict({"image": arrays},
                                       features=datasets.Features({"image": datasets.Array3D((4, 4, 2), "float32")}))
    rows = np.linspace(0, 199, 64).round()
    expected = np.percentile(np.repeat(rows, 32)[1:-1], [1, 99])  # the two non-finite values left out
    assert raw_intensity_range(split) == pytest.approx(expected, rel=1e-5)
    assert raw_intensity_range(split.select([])) is None


def test_demo_recipe_processor_records_modality_and_intensity_range(tmp_path):
    common = [f"data.options.cache_dir={tmp_path}", "data.max_train_samples=16"]
    processor = load_recipe_data(load_config("demo", common)).processor
    low, high = processor.intensity_range
    assert processor.modality == "MR" and 0 <= low < high <= 255  # uint8 T1 slices
    custom = load_recipe_data(load_config("demo", [*common, "data.processor.modality=OT",
                                                   "data.processor.intensity_range=[1, 2]"])).processor
    assert custom.modality == "OT" and custom.intensity_range == [1.0, 2.0]  # the YAML overrides both
