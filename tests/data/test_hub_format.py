"""push_to_hub-ready: a converted dataset survives save_to_disk and the parquet files `push_to_hub` uploads."""

import datasets
import numpy as np

import hfseg.data

from .fixtures.brats import write_h5


def parquet_round_trip(dataset_dict, folder):
    """Write each split as parquet (what `DatasetDict.push_to_hub` uploads) and read it back with `datasets`."""
    files = {}
    for split, dataset in dataset_dict.items():
        files[split] = str(folder / f"{split}.parquet")
        dataset.to_parquet(files[split])
    return datasets.load_dataset("parquet", data_files=files, cache_dir=str(folder / "cache"))


def test_demo_round_trips_through_parquet_with_its_classes(tmp_path):
    ds = hfseg.data.load("demo", cache_dir=str(tmp_path / "cache"))
    again = parquet_round_trip(ds, tmp_path)
    assert again["train"].features == ds["train"].features  # Image, ClassLabel names and all
    assert hfseg.data.id2label(again) == hfseg.data.DEMO_ID2LABEL
    np.testing.assert_array_equal(np.asarray(again["validation"][3]["label"]), np.asarray(ds["validation"][3]["label"]))
    np.testing.assert_array_equal(np.asarray(again["validation"][3]["image"]), np.asarray(ds["validation"][3]["image"]))


def test_multimodal_arrays_round_trip_through_parquet_and_disk(tmp_path):
    write_h5(tmp_path / "d")
    ds = hfseg.data.load("brats2020-h5", str(tmp_path / "d"), cache_dir=str(tmp_path / "cache"))
    for again in (parquet_round_trip(ds, tmp_path), _disk_round_trip(ds, tmp_path / "saved")):
        assert again["train"].features == ds["train"].features
        np.testing.assert_array_equal(np.asarray(again["train"][0]["image"], np.float32),
                                      np.asarray(ds["train"][0]["image"], np.float32))
        assert hfseg.data.id2label(again) == hfseg.data.id2label(ds)


def _disk_round_trip(ds, folder):
    ds.save_to_disk(str(folder))
    return datasets.load_from_disk(str(folder))
