"""The embedded demo dataset: built offline from nilearn's template, labelled by the documented rule, cached."""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_fill_holes

import hfseg.data
import hfseg.data.demo as demo_module
from hfseg.data.demo import _FILES, DEMO_ID2LABEL, demo_slices
from hfseg.io import read_nifti, to_slices


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


def _template(key):
    """A template volume read with hfseg.io from nilearn's file, as a NIfTI volume given to hfseg.inference is."""
    return read_nifti(Path(str(resources.files("nilearn") / "datasets" / "data" / _FILES[key])), dtype="stored")


def test_template_slices_are_the_volume_cut_in_the_display_convention():
    slices = demo_module.template_slices()
    for key in ("t1", "gm", "wm"):
        volume = _template(key)
        assert volume.array.dtype == np.uint8 and slices[key].dtype == np.uint8
        np.testing.assert_array_equal(slices[key], to_slices(volume.array, volume.affine, "axial"))
    # The template is stored RAS (i toward the patient's right, j anterior, k superior): a radiological axial slice
    # is the stored one turned anterior-up (np.rot90, the former demo's slice, right on the right) and mirrored.
    volume = _template("t1")
    np.testing.assert_allclose(volume.affine[:3, :3], np.eye(3))
    for z in (40, 90, 150):
        np.testing.assert_array_equal(slices["t1"][z], np.rot90(volume.array[:, :, z])[:, ::-1])


def test_the_symmetric_template_is_left_right_symmetric():
    """Mirroring the template changes no voxel (max |a - a[::-1]| along x is 0), so the radiological slices equal
    the former neurological ones and a model trained on the old demo still fits the new one."""
    for key in ("t1", "gm", "wm"):
        a = _template(key).array.astype(np.int16)
        assert np.abs(a - a[::-1]).max() == 0


def test_demo_images_are_the_display_slices_cropped_and_resized_by_the_documented_rule():
    size, fraction, margin = 64, 0.2, 4
    t1, gm, wm = (_template(key) for key in ("t1", "gm", "wm"))
    t1s, gms, wms = (to_slices(v.array, v.affine, "axial").astype(np.float32) for v in (t1, gm, wm))
    envelopes = [binary_fill_holes(s >= 0.1) for s in (gms + wms) / 255]
    areas = np.array([e.sum() for e in envelopes])
    kept = [z for z in range(len(areas)) if areas[z] >= fraction * areas.max()]
    rows, cols = np.nonzero(np.any([envelopes[z] for z in kept], axis=0))
    side = max(np.ptp(rows), np.ptp(cols)) + 1 + 2 * margin
    top = max(0, (rows.min() + rows.max()) // 2 - side // 2)
    left = max(0, (cols.min() + cols.max()) // 2 - side // 2)
    images, _, zs = demo_slices(size=size, min_brain_fraction=fraction, margin=margin)
    assert zs == kept
    for i in (0, len(kept) // 2, len(kept) - 1):
        square = np.zeros((side, side), np.float32)
        patch = t1s[kept[i]][top : top + side, left : left + side]
        square[: patch.shape[0], : patch.shape[1]] = patch
        want = F.interpolate(torch.from_numpy(square)[None, None], size=(size, size), mode="bilinear",
                             antialias=True, align_corners=False)[0, 0].round().clamp(0, 255).to(torch.uint8)
        np.testing.assert_array_equal(images[i], want.numpy())


def test_second_load_comes_from_the_cache(demo, monkeypatch):
    ds, cache = demo
    files = {path: path.stat().st_mtime_ns for path in cache.rglob("*.arrow")}
    reads = []
    demo_slices.cache_clear()  # the in-memory memo too: a rebuild would have to read the template again
    monkeypatch.setattr(demo_module, "_template", lambda: reads.append(1) or pytest.fail("the demo was rebuilt"))
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
