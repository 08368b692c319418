"""The U-Net image processor: medical normalizations by hand, resizing, label maps, post-processing, Auto loading."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg import UNetImageProcessor


def test_zscore_per_channel():
    image = np.stack([np.arange(36.0).reshape(6, 6), 100 + 5 * np.arange(36.0).reshape(6, 6)], axis=-1)
    out = UNetImageProcessor()(image)["pixel_values"]
    assert out.shape == (1, 2, 6, 6)
    for c in range(2):
        expected = (image[..., c] - image[..., c].mean()) / image[..., c].std()
        np.testing.assert_allclose(out[0, c].numpy(), expected, rtol=1e-5)


def test_zscore_over_nonzero_keeps_background():
    image = np.zeros((6, 6), dtype=np.float32)
    image[2:4, 2:4] = [[1, 2], [3, 4]]
    out = UNetImageProcessor(zscore_nonzero=True)(image)["pixel_values"][0, 0].numpy()
    brain = np.array([1, 2, 3, 4.0])
    np.testing.assert_allclose(out[2:4, 2:4].ravel(), (brain - brain.mean()) / brain.std(), rtol=1e-5)
    assert (out[0] == 0).all()


def test_percentile_clipping_then_minmax():
    image = np.arange(101, dtype=np.float32).reshape(1, 101)  # percentile p of 0..100 is p
    out = UNetImageProcessor(normalization="percentile", percentiles=(10, 90))(image)["pixel_values"][0, 0, 0]
    expected = (np.clip(np.arange(101), 10, 90) - 10) / 80
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_ct_window():
    hu = np.array([[-1000, -160, 40, 240, 3000]], dtype=np.int16)
    out = UNetImageProcessor(normalization="window", window_center=40, window_width=400)(hu)["pixel_values"]
    np.testing.assert_allclose(out[0, 0, 0].numpy(), [0, 0, 0.5, 1, 1], atol=1e-6)


def test_mean_std_like_imagenet():
    image = np.full((2, 2, 3), 255, dtype=np.uint8)
    proc = UNetImageProcessor(normalization="mean_std", image_mean=[0.5, 0.4, 0.3], image_std=[0.5, 0.2, 0.1])
    out = proc(image)["pixel_values"][0, :, 0, 0]
    torch.testing.assert_close(out, torch.tensor([1.0, 3.0, 7.0]))


def test_16bit_png_is_kept_losslessly(tmp_path):
    array = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(array).save(tmp_path / "ct.png")
    out = UNetImageProcessor(normalization="none")(Image.open(tmp_path / "ct.png"))["pixel_values"]
    np.testing.assert_array_equal(out[0, 0].numpy(), array.astype(np.float32))


def test_16bit_and_float_images_keep_their_values(tmp_path):
    values = np.arange(48).reshape(6, 8) * 1300  # up to 61100: needs 16 bits
    inputs = {
        "uint16 array": values.astype(np.uint16),
        "PIL I;16": Image.fromarray(values.astype(np.uint16)),
        "PIL I;16B": Image.frombytes("I;16B", (8, 6), values.astype(">u2").tobytes()),
        "PIL I": Image.fromarray(values.astype(np.int32)),
        "PIL F": Image.fromarray(values.astype(np.float32)),
        "float64 array": values.astype(np.float64),
        "big-endian array": values.astype(">u2"),
    }
    proc = UNetImageProcessor(normalization="none", num_channels=1)
    for name, image in inputs.items():
        out = proc(image)["pixel_values"]
        assert out.dtype == torch.float32, name
        np.testing.assert_array_equal(out[0, 0].numpy(), values.astype(np.float32), err_msg=name)


def test_grey_made_rgb_gives_the_grey_image():
    """transformers' image-segmentation pipeline converts every image to RGB: a 1-channel model sees the grey."""
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7), dtype=np.uint8))
    proc = UNetImageProcessor(num_channels=1)
    for rgb in (grey.convert("RGB"), np.repeat(np.asarray(grey, dtype=np.uint16)[None], 3, axis=0)):
        torch.testing.assert_close(proc(rgb)["pixel_values"], proc(grey)["pixel_values"], rtol=0, atol=0)


def test_colour_image_for_a_grey_model_is_its_luminance(caplog, monkeypatch):
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    proc = UNetImageProcessor(normalization="none", num_channels=1)
    caplog.set_level("WARNING", logger="hfseg.models.unet.image_processing_unet")
    monkeypatch.setattr("hfseg.models.unet.image_processing_unet._warned", set())  # as in a fresh process
    out = proc(Image.fromarray(rgb))["pixel_values"][0, 0].numpy()
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(rgb).convert("L")))  # uint8: exactly PIL's "L"
    as_float = proc(rgb.astype(np.float32) / 255)["pixel_values"][0, 0].numpy()
    np.testing.assert_allclose(as_float, rgb @ np.array([0.299, 0.587, 0.114]) / 255, rtol=1e-5)
    warnings = [r for r in caplog.records if "luminance" in r.getMessage()]
    assert len(warnings) == 1  # once, not per image


def test_grey_image_for_an_rgb_model_is_repeated():
    grey = np.random.default_rng(2).integers(0, 4000, (9, 7)).astype(np.uint16)
    out = UNetImageProcessor(normalization="none", num_channels=3)(Image.fromarray(grey))["pixel_values"]
    assert out.shape == (1, 3, 9, 7)
    for c in range(3):
        np.testing.assert_array_equal(out[0, c].numpy(), grey.astype(np.float32))


def test_resize_images_bilinear_and_labels_nearest():
    image = np.random.rand(4, 40, 30).astype(np.float32)
    label = np.zeros((40, 30), dtype=np.uint8)
    label[:20] = 2
    label[20:, 15:] = 7
    proc = UNetImageProcessor(do_resize=True, size={"height": 16, "width": 16}, num_channels=4)
    batch = proc([image, image], segmentation_maps=[label, label])
    assert batch["pixel_values"].shape == (2, 4, 16, 16)
    assert batch["labels"].shape == (2, 16, 16) and batch["labels"].dtype == torch.int64
    assert set(batch["labels"].unique().tolist()) == {0, 2, 7}


def test_bad_inputs_are_clear_errors():
    proc = UNetImageProcessor(num_channels=1)
    with pytest.raises(ValueError, match=r"has 3 channels but 4 are expected: give 4-channel images"):
        UNetImageProcessor(num_channels=4)(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="has 2 channels but 1 are expected"):
        proc(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match=r"does not match its image"):
        proc(np.zeros((8, 8)), segmentation_maps=np.zeros((8, 9)))
    with pytest.raises(ValueError, match="different sizes"):
        proc([np.zeros((8, 8)), np.zeros((9, 8))])
    with pytest.raises(ValueError, match="integer class indices"):
        proc(np.zeros((4, 4)), segmentation_maps=np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="allowed values"):
        UNetImageProcessor(normalization="histogram")
    with pytest.raises(ValueError, match="window_center"):
        UNetImageProcessor(normalization="window")
    with pytest.raises(ValueError, match="channel axis"):
        UNetImageProcessor()(np.zeros((3, 8, 3)))


def test_post_process_multiclass_and_binary():
    proc = UNetImageProcessor()
    logits = torch.zeros(2, 3, 4, 4)
    logits[0, 2] = 5
    logits[1, 1, :2] = 5
    maps = proc.post_process_semantic_segmentation(SemanticSegmenterOutput(logits=logits), target_sizes=[(8, 8), (4, 6)])
    assert maps[0].shape == (8, 8) and (maps[0] == 2).all()
    assert maps[1].shape == (4, 6) and (maps[1][:2] == 1).all() and (maps[1][2:] == 0).all()
    binary = torch.full((1, 1, 4, 4), -3.0)
    binary[0, 0, 0, 0] = 3.0
    assert proc.post_process_semantic_segmentation(SemanticSegmenterOutput(logits=binary))[0].sum() == 1


def test_save_and_load_with_auto_image_processor(tmp_path):
    proc = UNetImageProcessor(normalization="window", window_center=50, window_width=350, num_channels=1)
    hfseg.create_model("unet", base_channels=4, depth=2, num_channels=1).save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is UNetImageProcessor
    image = np.random.randint(-1000, 1000, (9, 9)).astype(np.int16)
    torch.testing.assert_close(loaded(image)["pixel_values"], proc(image)["pixel_values"])


# -- byte order, non-finite voxels, what the model was trained on -----------------------------------------------
def test_big_endian_arrays_give_the_native_order_result():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 3000, (9, 11))
    proc, raw = UNetImageProcessor(num_channels=1), UNetImageProcessor(normalization="none", num_channels=1)
    for dtype in (">i2", ">u2", ">i4", ">f4", ">f8"):
        big = values.astype(dtype)
        native = values.astype(np.dtype(dtype).newbyteorder("="))
        assert not big.dtype.isnative and native.dtype.isnative
        np.testing.assert_array_equal(raw.to_channels_first(big)[0].numpy(), values.astype(np.float32), err_msg=dtype)
        torch.testing.assert_close(proc.to_channels_first(big), proc.to_channels_first(native), rtol=0, atol=0)
        torch.testing.assert_close(proc.preprocess(big)["pixel_values"], proc(native)["pixel_values"], rtol=0, atol=0)
        colour = np.stack([big, big // 2, big // 3], axis=-1)  # (H, W, 3) big-endian, to a grey model: luminance
        torch.testing.assert_close(proc(colour)["pixel_values"], proc(colour.astype(native.dtype))["pixel_values"],
                                   rtol=0, atol=0)
    labels = (values % 3).astype(">i2")
    batch = proc(values.astype(">f4"), segmentation_maps=labels)
    torch.testing.assert_close(batch["labels"][0], torch.from_numpy((values % 3).astype(np.int64)))


def test_nibabel_big_endian_nifti_slice_gives_the_native_order_result():
    nibabel = pytest.importorskip("nibabel")
    from nibabel.testing import data_path

    volume = nibabel.load(f"{data_path}/anatomical.nii")
    assert volume.get_data_dtype().byteorder == ">"  # the point of this file: a big-endian NIfTI
    big = np.asanyarray(volume.dataobj)[:, :, 12]  # a non-contiguous big-endian int16 memmap slice
    assert not big.dtype.isnative
    native = np.ascontiguousarray(big.astype("=i2"))
    proc = UNetImageProcessor(num_channels=1)
    raw = UNetImageProcessor(normalization="none", num_channels=1)
    np.testing.assert_array_equal(raw.to_channels_first(big)[0].numpy(), native.astype(np.float32))
    for call in (proc, proc.preprocess):
        torch.testing.assert_close(call(big)["pixel_values"], call(native)["pixel_values"], rtol=0, atol=0)
    torch.testing.assert_close(proc.normalize_intensity(proc.to_channels_first(big)),
                               proc.normalize_intensity(proc.to_channels_first(native)), rtol=0, atol=0)


NORMALIZATION_CASES = {
    "zscore": {},
    "zscore_nonzero": {"zscore_nonzero": True},
    "percentile": {"normalization": "percentile", "percentiles": (5, 95)},
    "window": {"normalization": "window", "window_center": 15, "window_width": 8},
    "minmax": {"normalization": "minmax"},
    "mean_std": {"normalization": "mean_std", "image_mean": [0.05], "image_std": [0.01]},
    "none": {"normalization": "none"},
}


def _scan_with_holes() -> tuple[np.ndarray, np.ndarray, int]:
    """A 16x16 float scan in [10, 20] with 40 NaN, 3 +inf and 2 -inf pixels; the same scan filled as the rule says;
    the count of non-finite pixels."""
    rng = np.random.default_rng(4)
    scan = rng.uniform(10, 20, (16, 16)).astype(np.float32)
    flat = scan.ravel()  # a view
    holes = rng.choice(flat.size, 45, replace=False)
    filled = scan.copy()
    filled.ravel()[holes] = scan.ravel()[np.setdiff1d(np.arange(flat.size), holes)].min()
    flat[holes[:40]], flat[holes[40:43]], flat[holes[43:]] = np.nan, np.inf, -np.inf
    return scan, filled, 45


def _non_finite_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "non-finite" in str(w.message)]


@pytest.mark.parametrize("case", sorted(NORMALIZATION_CASES))
def test_non_finite_pixels_become_the_minimum_finite_value_in_every_mode(case):
    scan, filled, count = _scan_with_holes()
    proc = UNetImageProcessor(num_channels=1, **NORMALIZATION_CASES[case])
    expected = proc(filled)["pixel_values"]
    assert torch.isfinite(expected).all()
    for name, call in (("__call__", lambda: proc(scan)["pixel_values"]),
                       ("preprocess", lambda: proc.preprocess(scan)["pixel_values"]),
                       ("normalize_intensity", lambda: proc.normalize_intensity(torch.from_numpy(scan)[None])[None])):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            out = call()
        torch.testing.assert_close(out, expected, rtol=0, atol=0, msg=f"{case} {name}")
        messages = _non_finite_warnings(record)
        assert len(messages) == 1 and messages[0].startswith(f"{count} non-finite"), (case, name, messages)


def test_non_finite_rule_per_channel_one_warning_per_call_and_no_warning_without_any():
    scan, filled, count = _scan_with_holes()
    proc = UNetImageProcessor(normalization="none", num_channels=2)
    empty = np.full((16, 16), np.nan, np.float32)  # no finite value at all: 0
    two = np.stack([scan, empty], axis=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batch = proc([two, two])["pixel_values"]
    np.testing.assert_array_equal(batch[:, 0].numpy(), np.stack([filled, filled]))
    assert (batch[:, 1] == 0).all()
    messages = _non_finite_warnings(record)
    assert len(messages) == 1 and messages[0].startswith(f"{2 * (count + empty.size)} non-finite")  # the whole call
    shifted = np.stack([scan + 100, scan], axis=0)  # each channel gets its own minimum
    with pytest.warns(UserWarning, match=f"^{2 * count} non-finite"):
        out = proc(shifted)["pixel_values"][0]
    np.testing.assert_allclose(out.numpy(), np.stack([filled + 100, filled]), rtol=1e-6)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        proc(np.stack([filled, filled]))
        UNetImageProcessor()(np.arange(16, dtype=np.int16).reshape(4, 4))
    assert _non_finite_warnings(record) == []


def test_modality_and_intensity_range_are_saved_and_reloaded(tmp_path):
    proc = UNetImageProcessor(num_channels=1, modality="MR", intensity_range=(0, 229.5))
    assert proc.modality == "MR" and proc.intensity_range == [0.0, 229.5]
    proc.save_pretrained(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "preprocessor_config.json").read_text())
    assert saved["modality"] == "MR" and saved["intensity_range"] == [0.0, 229.5]
    for loaded in (UNetImageProcessor.from_pretrained(tmp_path / "p"),
                   AutoImageProcessor.from_pretrained(tmp_path / "p")):
        assert type(loaded) is UNetImageProcessor
        assert loaded.modality == "MR" and loaded.intensity_range == [0.0, 229.5]
    image = np.random.default_rng(5).uniform(0, 255, (8, 8))
    torch.testing.assert_close(proc(image)["pixel_values"], UNetImageProcessor(num_channels=1)(image)["pixel_values"],
                               rtol=0, atol=0)  # informational: preprocessing is unchanged
    UNetImageProcessor().save_pretrained(tmp_path / "unknown")
    unknown = UNetImageProcessor.from_pretrained(tmp_path / "unknown")
    assert unknown.modality is None and unknown.intensity_range is None
    with pytest.raises(ValueError, match="intensity_range"):
        UNetImageProcessor(intensity_range=[5, 1])
    with pytest.raises(ValueError, match="DICOM Modality"):
        UNetImageProcessor(modality="")


def test_flipped_views_give_the_result_of_their_copy():
    """A volume flipped to a display orientation hands out negative-stride views, which torch refuses."""
    volume = np.random.default_rng(6).integers(0, 900, (7, 9, 5)).astype(">i2")
    flipped = volume[::-1, :, ::-1][:, :, 2]
    assert any(stride < 0 for stride in flipped.strides)
    proc = UNetImageProcessor(num_channels=1)
    torch.testing.assert_close(proc(flipped, segmentation_maps=flipped % 2)["pixel_values"],
                               proc(flipped.copy())["pixel_values"], rtol=0, atol=0)
    colour = np.random.default_rng(7).integers(0, 255, (6, 8, 3)).astype(np.uint8)[::-1, ::-1]
    torch.testing.assert_close(UNetImageProcessor(num_channels=3)(colour)["pixel_values"],
                               UNetImageProcessor(num_channels=3)(colour.copy())["pixel_values"], rtol=0, atol=0)
