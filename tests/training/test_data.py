"""The recipe's data side records what the model is trained on (the dataset's modality, the raw intensity range),
and its training items are a function of (seed, epoch, index): any worker count, a resumed epoch, the same items."""

import itertools

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from accelerate.data_loader import skip_first_batches

from hfseg.models.unet.image_processing_unet import UNetImageProcessor
from hfseg.training import load_config
from hfseg.training.data import RecipeData, build_dataloaders, load_recipe_data, raw_intensity_range
from hfseg.training.sampling import EpochSampler, KeyedDataset


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


def test_training_batches_are_a_function_of_seed_epoch_and_index_and_draw_nothing_global(tmp_path):
    """Shuffle and augmentation (hflip 0.5) depend on (seed, epoch, index) only: a loader built afresh and started
    mid-epoch (what a resumed run does) gives the rest of the epoch unchanged, persistent workers see each epoch,
    and iterating draws nothing from the global RNG."""
    overrides = [f"data.options.cache_dir={tmp_path}", "data.options.size=32", "data.size=[32, 32]",
                 "data.max_train_samples=12", "data.max_eval_samples=4", "train.batch_size=4", "augment.hflip=0.5"]
    cfg = load_config("demo", overrides)
    data = load_recipe_data(cfg)

    def epoch_batches(loader, epoch, skip=0):
        loader.sampler.set_epoch(epoch)
        return [batch["pixel_values"] for batch in itertools.islice(loader, skip, None)]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = torch.get_rng_state()
        loader, eval_loader = build_dataloaders(cfg, data)
        full = {epoch: epoch_batches(loader, epoch) for epoch in (0, 1)}
        list(eval_loader)
        assert torch.equal(torch.get_rng_state(), state)  # neither loader touched the global RNG
        torch.rand(10)  # a resumed run's global state is whatever the checkpoint held
        resumed = epoch_batches(build_dataloaders(cfg, data)[0], 1, skip=1)
        workers = build_dataloaders(load_config("demo", [*overrides, "data.num_workers=1"]), data)[0]
        in_workers = {epoch: epoch_batches(workers, epoch) for epoch in (0, 1)}
    assert len(full[0]) == 3 and not all(torch.equal(a, b) for a, b in zip(full[0], full[1]))
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[1][1:])) and len(resumed) == 2
    for epoch in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(in_workers[epoch], full[epoch]))
    # Each epoch is a permutation of the 12 images, and the flips do happen: an image's epoch-0 and epoch-1 draws
    # differ for some images, and the same key gives the same item.
    dataset = loader.dataset
    assert sorted(i for _, i in loader.sampler) == list(range(12))
    assert any(not torch.equal(dataset[(0, i)]["pixel_values"], dataset[(1, i)]["pixel_values"]) for i in range(12))
    assert torch.equal(dataset[(1, 5)]["pixel_values"], dataset[(1, 5)]["pixel_values"])


def tiny_recipe_data(count: int = 10) -> RecipeData:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (8, 12), dtype=np.uint8)) for _ in range(count)]
    labels = [Image.fromarray((np.asarray(image) > 128).astype(np.uint8)) for image in images]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    split = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    return RecipeData(split, None, {0: "background", 1: "bright"}, 1,
                      UNetImageProcessor(normalization="none", num_channels=1))


def tiny_loader(workers: int = 0, seed: int = 3) -> torch.utils.data.DataLoader:
    cfg = load_config("demo", ["data.size=null", "train.batch_size=4", f"data.num_workers={workers}",
                               f"train.seed={seed}", "augment.hflip=0.5", "augment.noise_std=0.1",
                               "augment.intensity_p=1.0"])
    return build_dataloaders(cfg, tiny_recipe_data())[0]


def assert_same_batches(first, second) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_accelerate_skip_first_batches_and_two_persistent_workers_give_the_same_items():
    """accelerate's `skip_first_batches` (what `--resume` uses: the skipped batches are not even read) in a process
    with another global RNG state, and 2 persistent workers over 3 epochs, give the in-process loader's items; the
    seed changes them."""
    reference = tiny_loader()
    batches = {}
    for epoch in (0, 1, 2):
        reference.sampler.set_epoch(epoch)
        batches[epoch] = list(reference)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        resumed = tiny_loader()
        resumed.sampler.set_epoch(1)
        assert_same_batches(list(skip_first_batches(resumed, 1)), batches[1][1:])
    workers = tiny_loader(workers=2)
    assert workers.persistent_workers
    for epoch in (0, 1, 2):
        workers.sampler.set_epoch(epoch)
        assert_same_batches(list(workers), batches[epoch])
    other = tiny_loader(seed=4)
    other.sampler.set_epoch(1)
    assert not torch.equal(next(iter(other))["pixel_values"], batches[1][0]["pixel_values"])


def test_epoch_sampler_and_keyed_dataset():
    sampler = EpochSampler(6, seed=0)
    first = list(sampler)
    assert sorted(index for _, index in first) == list(range(6)) and {epoch for epoch, _ in first} == {0}
    assert list(sampler) == first  # iterating again in one epoch changes nothing
    sampler.set_epoch(5)
    fifth = list(sampler)
    assert {epoch for epoch, _ in fifth} == {5} and [i for _, i in fifth] != [i for _, i in first]
    assert list(EpochSampler(4, seed=0, shuffle=False)) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    data = tiny_recipe_data(3).train.with_format("numpy")
    keyed = KeyedDataset(data, seed=0)
    assert len(keyed) == 3 and np.array_equal(keyed[2]["image"], data[2]["image"])  # an int reads as epoch 0
    assert [item["image"].shape for item in keyed.__getitems__([(0, 1), (4, 2)])] == [(8, 12), (8, 12)]
