"""Joint image/label transforms: config validation, alignment of every geometric op, exactness, eval = processor,
16-bit and multi-channel float inputs, intensity ops, seeding, the offline flip expansion and a with_transform run."""

import datasets
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hfseg.data.features import classification_features, segmentation_features
from hfseg.data.transforms import (
    EXPAND_OPS,
    AugmentConfig,
    ClassificationTransform,
    SegmentationTransform,
    expand,
    item_rng,
    item_seed,
)
from hfseg.models.unet.image_processing_unet import UNetImageProcessor

H, W = 20, 28  # non-square, so row/column mistakes show
ID2LABEL = {0: "background", 1: "a", 2: "b", 3: "c"}


def block_label(h: int = H, w: int = W) -> np.ndarray:
    """Large blocks of classes 0..3, so region interiors survive interpolation."""
    label = np.zeros((h, w), np.uint8)
    label[2 : h // 2, 2 : w // 2] = 1
    label[h // 2 + 1 : h - 2, 4 : w - 3] = 2
    label[3 : h // 2 - 1, w // 2 + 3 : w - 2] = 3
    return label


def encoded_image(label: np.ndarray) -> np.ndarray:
    """Each pixel's value encodes its class: value = label * 50 + 10."""
    return (label.astype(np.float32) * 50 + 10).astype(np.uint8)


def raw_processor(**kwargs) -> UNetImageProcessor:
    return UNetImageProcessor(normalization="none", **kwargs)


def run(transform, images, labels=None) -> dict:
    batch = {"image": list(images), "case_id": ["c"] * len(images)}
    if labels is not None:
        batch["label"] = list(labels)
    return transform(batch)


# -- AugmentConfig ---------------------------------------------------------------------------------------------------
def test_config_defaults_are_off():
    assert not AugmentConfig().enabled
    assert AugmentConfig.from_dict(None) == AugmentConfig() == AugmentConfig.from_dict({})
    assert AugmentConfig(hflip=0.5).enabled and AugmentConfig(gamma=(0.8, 1.2)).enabled
    assert not AugmentConfig(brightness=0.2, intensity_p=0).enabled


def test_config_round_trip_through_yaml():
    config = AugmentConfig(hflip=0.5, rot90=0.25, rotate_degrees=10, scale=(0.5, 1.0), elastic_alpha=20,
                           elastic_p=0.3, brightness=0.1, contrast=0.2, gamma=(0.7, 1.5), noise_std=0.02,
                           intensity_p=0.5)
    dumped = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    assert dumped["scale"] == [0.5, 1.0]
    again = AugmentConfig.from_dict(dumped)
    assert again == config and again.scale == (0.5, 1.0) and again.gamma == (0.7, 1.5)


def test_config_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"'hflp'.*valid: hflip, vflip, rot90"):
        AugmentConfig.from_dict({"hflp": 0.5})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hflip": 1.5}, r"hflip is a probability"),
        ({"intensity_p": -0.1}, r"intensity_p is a probability"),
        ({"scale": [0.9, 0.5]}, r"scale must satisfy 0 < low <= high <= 1"),
        ({"scale": [0.0, 0.5]}, r"scale must satisfy"),
        ({"scale": [0.2, 0.5, 0.9]}, r"scale must be a \(low, high\) pair"),
        ({"gamma": [0, 1.5]}, r"gamma must satisfy 0 < low"),
        ({"gamma": "wide"}, r"gamma must be a \(low, high\) pair"),
        ({"contrast": 1.2}, r"contrast must be in \[0, 1\)"),
        ({"noise_std": -1}, r"noise_std must be >= 0"),
        ({"rotate_degrees": 270}, r"rotate_degrees must be in \[0, 180\]"),
        ({"elastic_alpha": 30}, r"needs both elastic_alpha > 0 .* and elastic_p > 0"),
        ({"elastic_p": 0.5}, r"needs both elastic_alpha"),
        ({"elastic_sigma": 0}, r"elastic_sigma must be > 0"),
        ({"brightness": "0.1"}, r"brightness must be a finite number"),
        ({"hflip": True}, r"hflip must be a finite number"),
    ],
)
def test_config_rejects_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig.from_dict(options)


# -- geometric ops keep image and label aligned ---------------------------------------------------------------------
GEOMETRIC = {
    "hflip": {"hflip": 1.0},
    "vflip": {"vflip": 1.0},
    "rot90": {"rot90": 1.0},
    "rotate": {"rotate_degrees": 30},
    "scale": {"scale": (0.3, 0.7)},
    "elastic": {"elastic_alpha": 20.0, "elastic_sigma": 4.0, "elastic_p": 1.0},
    "all": {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5, "rotate_degrees": 20, "scale": (0.4, 1.0),
            "elastic_alpha": 15.0, "elastic_sigma": 3.0, "elastic_p": 0.5},
}


@pytest.mark.parametrize("ignore_index", [None, 255])
@pytest.mark.parametrize("name", list(GEOMETRIC))
def test_geometric_ops_keep_image_and_label_aligned(name, ignore_index):
    label = block_label(2 * H, 2 * W)
    transform = SegmentationTransform(raw_processor(), GEOMETRIC[name], train=True, ignore_index=ignore_index, seed=1)
    allowed = {0, 1, 2, 3} | ({ignore_index} if ignore_index is not None else set())
    for _ in range(3):
        out = run(transform, [Image.fromarray(encoded_image(label))], [Image.fromarray(label)])
        image, target = out["pixel_values"][0][0], out["labels"][0]
        assert target.dtype == torch.long and image.shape == target.shape == label.shape
        assert set(target.unique().tolist()) <= allowed  # exact class indices, no interpolated values
        decoded = (image - 10) / 50
        # Defined: the image is a pure code value and constant over its 3x3 neighbourhood (a region interior).
        spread = torch.nn.functional.max_pool2d(image[None, None], 3, 1, 1) + \
            torch.nn.functional.max_pool2d(-image[None, None], 3, 1, 1)
        defined = ((decoded - decoded.round()).abs() < 1e-3) & (spread[0, 0] < 1e-3) & (target != ignore_index)
        assert defined.float().mean() > 0.25
        assert torch.equal(decoded.round().long()[defined], target[defined])


def test_hflip_is_exact_torch_flip():
    image = torch.rand(3, H, W).numpy().transpose(1, 2, 0)  # float HWC, 3 channels
    label = block_label()
    transform = SegmentationTransform(raw_processor(), {"hflip": 1.0}, train=True)
    out = run(transform, [image], [Image.fromarray(label)])
    expected = torch.flip(torch.from_numpy(image.transpose(2, 0, 1).copy()), dims=(-1,))
    assert torch.equal(out["pixel_values"][0], expected)
    assert torch.equal(out["labels"][0], torch.flip(torch.from_numpy(label).long(), dims=(-1,)))


def test_rot90_is_exact_torch_rot90():
    label = block_label(24, 24)
    image = torch.rand(24, 24).numpy()
    transform = SegmentationTransform(raw_processor(), {"rot90": 1.0}, train=True, seed=0)
    seen = set()
    for _ in range(12):
        out = run(transform, [image], [label])
        ks = [k for k in (1, 2, 3) if torch.equal(out["pixel_values"][0][0], torch.rot90(torch.from_numpy(image), k))]
        assert len(ks) == 1
        assert torch.equal(out["labels"][0], torch.rot90(torch.from_numpy(label).long(), ks[0]))
        seen.add(ks[0])
    assert seen == {1, 2, 3}


def test_rot90_on_non_square_output_only_turns_half():
    image, label = encoded_image(block_label()), block_label()
    transform = SegmentationTransform(raw_processor(), {"rot90": 1.0}, train=True, seed=0)
    for _ in range(4):
        out = run(transform, [image], [label])
        assert torch.equal(out["labels"][0], torch.rot90(torch.from_numpy(label).long(), 2))
    # A square output size allows quarter turns: the shape is the output size either way.
    square = SegmentationTransform(raw_processor(), {"rot90": 1.0}, size=(16, 16), train=True, seed=0)
    shapes = {tuple(run(square, [image], [label])["labels"][0].shape) for _ in range(4)}
    assert shapes == {(16, 16)}


def test_elastic_sigma_too_large_for_the_image_is_a_clear_error():
    transform = SegmentationTransform(raw_processor(), {"elastic_alpha": 10.0, "elastic_p": 1.0}, train=True)
    with pytest.raises(ValueError, match=r"elastic_sigma=5.0 is too large for an image of size \(20, 28\)"):
        run(transform, [encoded_image(block_label())], [block_label()])


def test_scale_crops_to_size_directly():
    transform = SegmentationTransform(raw_processor(), {"scale": (0.5, 1.0)}, size=(12, 16), train=True, seed=0)
    out = run(transform, [encoded_image(block_label())], [block_label()])
    assert out["pixel_values"][0].shape == (1, 12, 16) and out["labels"][0].shape == (12, 16)


# -- evaluation mode ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "processor_kwargs",
    [{}, {"normalization": "percentile"}, {"do_resize": True, "size": {"height": 16, "width": 16}}],
)
def test_eval_is_deterministic_and_equals_processor(processor_kwargs):
    processor = UNetImageProcessor(**processor_kwargs)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8))
    label = Image.fromarray(block_label())
    # An augment config is ignored with train=False.
    transform = SegmentationTransform(processor, GEOMETRIC["all"] | {"gamma": (0.5, 2.0)}, train=False)
    first, second = run(transform, [image], [label]), run(transform, [image], [label])
    expected = processor.preprocess(image, label)
    assert torch.equal(first["pixel_values"][0], second["pixel_values"][0])
    torch.testing.assert_close(first["pixel_values"][0], expected["pixel_values"][0], rtol=0, atol=1e-6)
    assert torch.equal(first["labels"][0], expected["labels"][0])


def test_size_resizes_image_bilinear_and_label_nearest():
    processor = UNetImageProcessor(do_resize=True, size={"height": 40, "width": 56})
    out = run(SegmentationTransform(UNetImageProcessor(), size=(40, 56)), [encoded_image(block_label())],
              [block_label()])
    expected = processor.preprocess(encoded_image(block_label()), block_label())
    torch.testing.assert_close(out["pixel_values"][0], expected["pixel_values"][0], rtol=0, atol=1e-6)
    assert torch.equal(out["labels"][0], expected["labels"][0])
    assert set(out["labels"][0].unique().tolist()) == {0, 1, 2, 3}


def test_16bit_and_multichannel_float_inputs():
    label = block_label()
    image16 = (label.astype(np.uint16) * 15000 + 300)
    pil16 = Image.fromarray(image16)
    assert np.asarray(pil16).dtype == np.uint16
    out = run(SegmentationTransform(raw_processor()), [pil16], [label])
    assert torch.equal(out["pixel_values"][0][0], torch.from_numpy(image16.astype(np.float32)))
    processor = UNetImageProcessor(num_channels=4)
    mri = np.random.default_rng(0).normal(size=(H, W, 4)).astype(np.float32)
    transform = SegmentationTransform(processor, {"hflip": 1.0, "gamma": (0.5, 2.0), "noise_std": 0.05}, train=True)
    out = run(transform, [mri.tolist(), mri], [label, label])  # nested lists: how datasets hands out Array3D
    assert all(p.shape == (4, H, W) and p.dtype == torch.float32 for p in out["pixel_values"])
    evaluated = run(SegmentationTransform(processor), [mri], [label])["pixel_values"][0]
    torch.testing.assert_close(evaluated, processor.preprocess(mri)["pixel_values"][0])


def test_label_of_another_size_is_an_error():
    transform = SegmentationTransform(raw_processor())
    with pytest.raises(ValueError, match=r"Label of size \(10, 28\).*image of size \(20, 28\)"):
        run(transform, [encoded_image(block_label())], [block_label()[:10]])
    with pytest.raises(ValueError, match=r"\(H, W\) map of class indices"):
        run(transform, [encoded_image(block_label())], [np.zeros((H, W, 3), np.uint8)])


def test_channel_count_is_checked():
    with pytest.raises(ValueError, match="1 channels but 4 are expected"):
        run(SegmentationTransform(UNetImageProcessor(num_channels=4)), [encoded_image(block_label())])


def test_unlabelled_batch_gives_pixel_values_only():
    out = run(SegmentationTransform(raw_processor()), [encoded_image(block_label())])
    assert list(out) == ["pixel_values"]


# -- intensity ops --------------------------------------------------------------------------------------------------
INTENSITY = {"brightness": 0.2, "contrast": 0.3, "gamma": (0.5, 2.0), "noise_std": 0.05}


@pytest.mark.parametrize("name", list(INTENSITY))
def test_intensity_ops_change_only_the_image(name):
    image, label = encoded_image(block_label()), block_label()
    reference = run(SegmentationTransform(raw_processor()), [image], [label])
    out = run(SegmentationTransform(raw_processor(), {name: INTENSITY[name]}, train=True, seed=3), [image], [label])
    assert torch.equal(out["labels"][0], reference["labels"][0])
    assert not torch.equal(out["pixel_values"][0], reference["pixel_values"][0])


@pytest.mark.parametrize("options", [{"brightness": 0.0, "contrast": 0.0, "noise_std": 0.0, "gamma": None},
                                     {**INTENSITY, "intensity_p": 0.0}])
def test_intensity_ops_are_identity_when_off(options):
    image = np.random.default_rng(0).normal(size=(H, W, 2)).astype(np.float32)
    out = run(SegmentationTransform(raw_processor(), options, train=True, seed=0), [image], [block_label()])
    assert torch.equal(out["pixel_values"][0], torch.from_numpy(image.transpose(2, 0, 1).copy()))


def test_gamma_is_monotone_and_keeps_the_range():
    ramp = np.linspace(100, 4000, H * W, dtype=np.float32).reshape(H, W)
    transform = SegmentationTransform(raw_processor(), {"gamma": (0.3, 0.3)}, train=True)
    out = run(transform, [ramp], [block_label()])["pixel_values"][0][0].flatten()
    assert torch.all(out[1:] > out[:-1])
    torch.testing.assert_close(out[[0, -1]], torch.tensor([100.0, 4000.0]))
    assert out[len(out) // 2] > float(np.median(ramp))  # gamma < 1 brightens the mid-tones


def test_intensity_ops_mean_the_same_at_any_bit_depth():
    image8 = np.random.default_rng(0).integers(0, 256, (H, W)).astype(np.uint8)
    image16 = image8.astype(np.uint16) * 257
    options = {"brightness": 0.2, "contrast": 0.3, "gamma": (0.5, 2.0)}
    out8 = run(SegmentationTransform(raw_processor(), options, train=True, seed=5), [image8], [block_label()])
    out16 = run(SegmentationTransform(raw_processor(), options, train=True, seed=5), [image16], [block_label()])
    torch.testing.assert_close(out16["pixel_values"][0], out8["pixel_values"][0] * 257, rtol=1e-4, atol=1e-2)


# -- seeding -------------------------------------------------------------------------------------------------------
def test_seed_reproduces_and_leaves_global_rng_alone():
    image, label = encoded_image(block_label()), block_label()
    options = GEOMETRIC["all"] | INTENSITY

    def draws(seed):
        transform = SegmentationTransform(raw_processor(), options, train=True, seed=seed)
        return [run(transform, [image], [label])["pixel_values"][0] for _ in range(3)]

    state = torch.get_rng_state()
    first = draws(7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, draws(7)))
    assert not all(torch.equal(a, b) for a, b in zip(first, draws(8)))
    assert not torch.equal(first[0], first[1])  # the generator moves on between calls


def test_global_rng_without_seed():
    image, label = encoded_image(block_label()), block_label()
    transform = SegmentationTransform(raw_processor(), {"rotate_degrees": 30, "noise_std": 0.1}, train=True)
    torch.manual_seed(11)
    first = run(transform, [image], [label])["pixel_values"][0]
    torch.manual_seed(11)
    assert torch.equal(first, run(transform, [image], [label])["pixel_values"][0])


def test_item_seed_is_a_function_of_its_key():
    seeds = {key: item_seed(*key) for key in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 0), (7, 3, 123456)]}
    assert len(set(seeds.values())) == len(seeds)  # distinct keys, distinct seeds
    assert all(0 <= seed < 2**63 and item_seed(*key) == seed for key, seed in seeds.items())
    # Independent reference: numpy's SeedSequence of the key (its length as spawn key), its first two 32-bit words.
    low, high = np.random.SeedSequence([7, 3, 123456], spawn_key=(3,)).generate_state(2, dtype=np.uint32)
    assert seeds[(7, 3, 123456)] == (int(high) << 32 | int(low)) & (2**63 - 1)
    for bad in [(), (-1, 0, 0), (0, 1.5, 0), (True, 0)]:
        with pytest.raises(ValueError, match="non-negative integers"):
            item_seed(*bad)


def test_item_rng_draws_depend_on_the_key_only_and_leave_the_global_rng_alone():
    image, label = encoded_image(block_label()), block_label()
    transform = SegmentationTransform(raw_processor(), GEOMETRIC["all"] | INTENSITY, train=True)  # global RNG

    def draw(key):
        with item_rng(*key):
            return run(transform, [image], [label])["pixel_values"][0]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        state = torch.get_rng_state()
        first = draw((0, 2, 5))
        assert torch.equal(torch.get_rng_state(), state)
        torch.rand(100)  # whatever was drawn before does not matter
        assert torch.equal(draw((0, 2, 5)), first)
        assert not torch.equal(draw((0, 3, 5)), first) and not torch.equal(draw((0, 2, 6)), first)


# -- classification ------------------------------------------------------------------------------------------------
def test_classification_transform():
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = ClassificationTransform(raw_processor(), {"hflip": 1.0}, train=True)({"image": [Image.fromarray(image)],
                                                                                  "label": [2]})
    assert out["labels"][0].dtype == torch.long and out["labels"][0].item() == 2
    expected = torch.flip(torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32)), dims=(-1,))
    assert torch.equal(out["pixel_values"][0], expected)
    resized = ClassificationTransform(UNetImageProcessor(), GEOMETRIC["all"], size=(16, 16), train=True, seed=0)
    assert resized({"image": [image], "label": [1]})["pixel_values"][0].shape == (3, 16, 16)


# -- expand --------------------------------------------------------------------------------------------------------
FLIPS = {"identity": lambda a: a, "hflip": lambda a: a[:, ::-1], "vflip": lambda a: a[::-1],
         "hvflip": lambda a: a[::-1, ::-1]}


def tiny_dataset(kind: str) -> tuple[datasets.Dataset, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    if kind == "array3d":
        images = [rng.normal(size=(H, W, 4)).astype(np.float32) for _ in range(2)]
        image_feature = datasets.Array3D((H, W, 4), "float32")
    else:
        dtype, shape, high = {"grey8": (np.uint8, (H, W), 256), "grey16": (np.uint16, (H, W), 65536),
                              "rgb": (np.uint8, (H, W, 3), 256)}[kind]
        images = [rng.integers(0, high, shape).astype(dtype) for _ in range(2)]
        image_feature = None
    labels = [block_label(), np.flipud(block_label()).copy()]
    features = segmentation_features(ID2LABEL, image=image_feature)
    data = {"image": images, "label": labels, "case_id": ["p1", "p2"], "classes": [[0, 1, 2, 3]] * 2}
    return datasets.Dataset.from_dict(data, features=features), images


@pytest.mark.parametrize("kind", ["grey8", "grey16", "rgb", "array3d"])
def test_expand_flips_exactly(kind):
    dataset, images = tiny_dataset(kind)
    expanded = expand(dataset)
    assert len(expanded) == 4 * len(dataset)
    assert {k: v for k, v in expanded.features.items() if k != "augmentation"} == dataset.features
    assert expanded["augmentation"] == list(EXPAND_OPS) * 2
    assert expanded["case_id"] == ["p1"] * 4 + ["p2"] * 4
    for row in range(len(expanded)):
        item, source = expanded[row], row // 4
        flip = FLIPS[item["augmentation"]]
        image = np.asarray(item["image"], dtype=np.float32 if kind == "array3d" else None)
        assert image.dtype == images[source].dtype
        assert np.array_equal(image, flip(images[source]))
        assert np.array_equal(np.asarray(item["label"]), flip(np.asarray(dataset[source]["label"])))
        assert item["classes"] == dataset[source]["classes"]


def test_expand_options_and_errors():
    dataset, _ = tiny_dataset("grey8")
    two = expand(dataset, ops=("identity", "vflip"), column=None)
    assert len(two) == 4 and two.features == dataset.features
    with pytest.raises(ValueError, match="ops must be distinct values of identity, hflip, vflip, hvflip"):
        expand(dataset, ops=("identity", "rot45"))
    with pytest.raises(ValueError, match="already has a column 'augmentation'"):
        expand(expand(dataset))
    with pytest.raises(TypeError, match=r"one split"):
        expand(datasets.DatasetDict({"train": dataset}))


def test_expand_keeps_classification_labels():
    images = [np.random.default_rng(0).integers(0, 256, (H, W), dtype=np.uint8)]
    features = classification_features(["no", "yes"])
    dataset = datasets.Dataset.from_dict({"image": images, "label": [1], "case_id": ["x"]}, features=features)
    expanded = expand(dataset)
    assert expanded["label"] == [1] * 4 and expanded.features["label"] == features["label"]


# -- with_transform round trip -------------------------------------------------------------------------------------
def test_with_transform_round_trip_and_dataloader():
    dataset, images = tiny_dataset("array3d")
    processor = UNetImageProcessor(num_channels=4)
    val = dataset.with_transform(SegmentationTransform(processor, size=(16, 16)))
    item = val[1]
    assert set(item) == {"pixel_values", "labels"}
    assert item["pixel_values"].shape == (4, 16, 16) and item["labels"].shape == (16, 16)
    expected = processor.preprocess(images[1], np.asarray(dataset[1]["label"]))
    torch.testing.assert_close(item["pixel_values"], torch.nn.functional.interpolate(
        expected["pixel_values"], size=(16, 16), mode="bilinear", antialias=True, align_corners=False)[0])
    train = expand(dataset).with_transform(
        SegmentationTransform(processor, GEOMETRIC["all"] | INTENSITY, size=(16, 16), train=True, seed=0))
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["pixel_values"].shape == (4, 4, 16, 16) and batch["labels"].dtype == torch.long
    assert set(batch["labels"].unique().tolist()) <= {0, 1, 2, 3}
