"""The embedded demo dataset: built offline from nilearn's template, labelled by the documented rule, cached."""

import numpy as np
import pytest

import hfseg.data
import hfseg.data.demo as demo_module
from hfseg.data.demo import DEMO_ID2LABEL, demo_slices


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo-cache")
    ds = hfseg.data.load("demo", cache_dir=str(cache))
    return ds, cache


def test_splits_features_and_labels(demo):
    ds, _ = demo
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) > 3 * len(ds["validation"]) / 2 > 0
    assert hfseg.data.id2label(ds) == DEMO_ID2LABEL
    item = ds["train"][0]
    image, label = np.asarray(item["image"]), np.asarray(item["label"])
    assert image.shape == label.shape == (128, 128) and image.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1, 2, 3}
    assert item["classes"] == sorted(np.unique(label).tolist())


def test_no_slice_block_in_two_splits(demo):
    ds, _ = demo
    assert not set(ds["train"]["case_id"]) & set(ds["validation"]["case_id"])


def test_label_rule_on_the_template():
    images, labels, zs = demo_slices(size=64)
    assert images.shape[1:] == (64, 64) and len(zs) == len(images)
    assert zs == sorted(zs) and zs[-1] - zs[0] + 1 == len(zs)  # contiguous axial range
    fractions = np.bincount(labels.ravel(), minlength=4) / labels.size
    # A brain slice: grey and white matter are large, CSF/other a thinner rim, and the corners are background.
    assert fractions[2] > 0.1 and fractions[3] > 0.08 and 0.01 < fractions[1] < fractions[2]
    assert (labels[:, 0, 0] == 0).all()
    # T1 contrast: white matter is brighter than grey matter, grey brighter than CSF.
    means = [images[labels == c].mean() for c in (1, 2, 3)]
    assert means[0] < means[1] < means[2]


def test_second_load_comes_from_the_cache(demo, monkeypatch):
    ds, cache = demo
    files = {path: path.stat().st_mtime_ns for path in cache.rglob("*.arrow")}
    reads = []
    demo_slices.cache_clear()  # the in-memory memo too: a rebuild would have to read the template again
    monkeypatch.setattr(demo_module, "_volumes", lambda: reads.append(1) or pytest.fail("the demo was rebuilt"))
    again = hfseg.data.load("demo", cache_dir=str(cache))
    assert not reads
    for split in ("train", "validation"):  # the same Arrow files, not rewritten, and nothing new in the cache
        assert [f["filename"] for f in again[split].cache_files] == [f["filename"] for f in ds[split].cache_files]
    assert files and {path: path.stat().st_mtime_ns for path in cache.rglob("*.arrow")} == files
    assert len(again["train"]) == len(ds["train"])


def test_registry():
    assert set(hfseg.data.available()) >= {"demo", "image-mask-folder"}
    with pytest.raises(ValueError, match="Unknown dataset 'kits'; available: demo"):
        hfseg.data.load("kits", "x")
    with pytest.raises(ValueError, match="takes no data_dir"):
        hfseg.data.load("demo", "somewhere")
