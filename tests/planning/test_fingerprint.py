"""fingerprint(): per-case spacing and shapes, non-zero cropping, foreground intensity statistics vs numpy."""

import datasets
import numpy as np
import pytest

from hfseg.planning import Fingerprint, fingerprint
from hfseg.planning.fingerprint import nonzero_bbox
from tests.planning import volume_dataset


def _case(shape, box, spacing, seed, channels=1, fg=True):
    """An image that is non-zero only inside `box`, with a label blob inside it."""
    rng = np.random.default_rng(seed)
    image = np.zeros((channels, *shape), np.float32)
    image[(slice(None), *box)] = rng.normal(100, 20, (channels, *[b.stop - b.start for b in box]))
    label = np.zeros(shape, np.uint8)
    if fg:
        inner = tuple(slice(b.start + 1, b.stop - 1) for b in box)
        label[inner] = 1
        label[inner[0].start, inner[1].start, inner[2].start] = 2
    return {"image": image, "label": label, "spacing": spacing}


@pytest.fixture
def cases():
    return [
        _case((12, 10, 8), (slice(2, 9), slice(1, 9), slice(0, 6)), (1.0, 1.0, 2.5), 0),
        _case((12, 10, 8), (slice(0, 12), slice(3, 8), slice(2, 8)), (0.9, 0.9, 3.0), 1),
        _case((10, 10, 6), (slice(1, 7), slice(1, 7), slice(1, 5)), (1.1, 1.1, 2.0), 2),
    ]


def test_shapes_crop_and_statistics_match_numpy(cases):
    fp = fingerprint(volume_dataset(cases))
    assert fp.case_ids == ["case_0", "case_1", "case_2"]
    assert fp.spacings == [[1.0, 1.0, 2.5], [0.9, 0.9, 3.0], [1.1, 1.1, 2.0]]
    assert fp.shapes == [[12, 10, 8], [12, 10, 8], [10, 10, 6]]
    assert fp.shapes_after_crop == [[7, 8, 6], [12, 5, 6], [6, 6, 4]]
    relative = [7 * 8 * 6 / (12 * 10 * 8), 12 * 5 * 6 / (12 * 10 * 8), 6 * 6 * 4 / (10 * 10 * 6)]
    assert fp.relative_sizes_after_cropping == pytest.approx(relative)
    assert fp.median_relative_size_after_cropping == pytest.approx(np.median(relative))
    assert fp.channels == ["CT"] and fp.num_classes == 3
    pooled = np.concatenate([c["image"][0][c["label"] > 0] for c in cases]).astype(np.float64)
    stats = fp.intensity_statistics[0]
    assert stats["mean"] == pytest.approx(pooled.mean())
    assert stats["std"] == pytest.approx(pooled.std())
    assert stats["median"] == pytest.approx(np.median(pooled))
    assert stats["min"] == pytest.approx(pooled.min()) and stats["max"] == pytest.approx(pooled.max())
    assert stats["percentile_00_5"] == pytest.approx(np.percentile(pooled, 0.5))
    assert stats["percentile_99_5"] == pytest.approx(np.percentile(pooled, 99.5))
    assert fp.median_spacing == [1.0, 1.0, 2.5]


def test_bbox_spans_all_channels_and_label_outside_is_ignored():
    image = np.zeros((2, 6, 6, 6), np.float32)
    image[0, 1, 2, 3] = 1.0
    image[1, 4, 5, 0] = -2.0
    assert nonzero_bbox(image) == (slice(1, 5), slice(2, 6), slice(0, 4))
    assert nonzero_bbox(np.zeros((1, 3, 4, 5))) == (slice(0, 3), slice(0, 4), slice(0, 5))
    label = np.zeros((6, 6, 6), np.uint8)
    label[0, 0, 0] = 1  # outside the box: not counted, as nnU-Net crops before collecting intensities
    label[1, 2, 3] = 1
    ds = volume_dataset([{"image": image, "label": label, "spacing": (1, 1, 1)}], channels=("T1", "T2"))
    fp = fingerprint(ds)
    assert fp.shapes_after_crop == [[4, 4, 4]]
    assert [s["mean"] for s in fp.intensity_statistics] == [1.0, 0.0]


def test_unlabelled_rows_are_skipped_and_datasetdict_uses_train(cases):
    test_case = dict(cases[0], label=None)
    train = volume_dataset([*cases, test_case])
    fp = fingerprint(datasets.DatasetDict({"train": train, "validation": volume_dataset(cases[:1])}))
    assert fp.num_cases == 3
    with pytest.raises(ValueError, match="no labelled case"):
        fingerprint(volume_dataset([test_case]))
    with pytest.raises(ValueError, match="'train' split"):
        fingerprint(datasets.DatasetDict({"validation": train}))


def test_sampling_caps_voxels_per_case_with_a_fixed_seed(cases):
    ds = volume_dataset(cases)
    a, b = fingerprint(ds, samples_per_case=20), fingerprint(ds, samples_per_case=20)
    assert a.intensity_statistics == b.intensity_statistics
    full = fingerprint(ds).intensity_statistics[0]
    sampled = a.intensity_statistics[0]
    assert sampled != full
    assert full["min"] <= sampled["min"] and sampled["max"] <= full["max"]


def test_no_foreground_gives_none_statistics_and_round_trips():
    case = _case((8, 8, 8), (slice(1, 7),) * 3, (1, 1, 1), 3, fg=False)
    fp = fingerprint(volume_dataset([case], channels=("MR",)))
    assert set(fp.intensity_statistics[0].values()) == {None}
    assert Fingerprint.from_dict(fp.to_dict()) == fp
    with pytest.raises(ValueError, match="Unknown fingerprint keys"):
        Fingerprint.from_dict({**fp.to_dict(), "extra": 1})


def test_bad_rows_are_named(cases):
    with pytest.raises(ValueError, match="spacing"):
        fingerprint(volume_dataset([dict(cases[0], spacing=(1.0, 0.0, 1.0))]))
    with pytest.raises(ValueError, match="needs volume rows"):
        fingerprint(datasets.Dataset.from_dict({"image": [[1.0]]}))
