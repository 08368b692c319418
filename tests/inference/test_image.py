"""`predict_logits`: native resolution, flip TTA, sliding window; `load_model` round trip and its errors."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg.inference import (
    as_unet_processor,
    importance_map,
    load_model,
    predict_logits,
    predict_mask,
    window_starts,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread: on a busy 2-core machine two threads are up to 30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Pointwise(nn.Module):
    """A 1x1 convolution: every pixel predicted from itself alone, so translation- and flip-equivariant."""

    def __init__(self, channels: int = 1, labels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, labels, 1)
        self.config = SimpleNamespace(num_labels=labels)

    def forward(self, pixel_values):
        return SemanticSegmenterOutput(logits=self.conv(pixel_values))


def _unet(labels: int = 3) -> hfseg.UNetForSemanticSegmentation:
    torch.manual_seed(0)
    config = hfseg.UNetConfig(num_channels=1, num_labels=labels, base_channels=4, depth=3)
    return hfseg.UNetForSemanticSegmentation(config).eval()


def _processor(size: int | None = 32) -> hfseg.UNetImageProcessor:
    resize = {"do_resize": True, "size": {"height": size, "width": size}} if size else {}
    return hfseg.UNetImageProcessor(normalization="zscore", num_channels=1, **resize)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width)).astype(np.uint8)


@pytest.fixture(scope="module")
def unet():
    return _unet()


def test_native_resolution_through_the_processor_size(unet):
    processor, image = _processor(32), _image(48, 40)
    logits = predict_logits(unet, processor, image)
    assert logits.shape == (3, 48, 40) and logits.dtype == torch.float32
    # By hand: normalize at native size, resize to 32x32 as the training transform does, run, upsample back.
    x = processor.normalize_intensity(processor.to_channels_first(image))[None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = F.interpolate(unet(pixel_values=x).logits, size=(48, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected[0], atol=1e-5, rtol=1e-5)
    mask = predict_mask(unet, processor, image)
    assert mask.shape == (48, 40) and torch.equal(mask, logits.argmax(0))


def test_smaller_logits_are_upsampled_to_the_image():
    config = SegformerConfig(num_channels=1, num_labels=2, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=8)
    model = SegformerForSemanticSegmentation(config).eval()
    logits = predict_logits(model, _processor(None), _image(40, 36))
    assert logits.shape == (2, 40, 36)


def test_binary_model_one_channel():
    model, image = _unet(labels=1), _image(30, 34)
    for tta in (False, True):
        logits = predict_logits(model, _processor(32), image, tta_flip=tta)
        assert logits.shape == (1, 30, 34) and torch.isfinite(logits).all()
        mask = predict_mask(model, _processor(32), image, tta_flip=tta)
        assert torch.equal(mask, (logits[0] > 0).long())


def test_tta_on_a_flip_equivariant_model_changes_nothing():
    torch.manual_seed(0)
    model, image = Pointwise(), _image(24, 20)
    plain = predict_logits(model, _processor(None), image)
    tta = predict_logits(model, _processor(None), image, tta_flip=True)
    torch.testing.assert_close(tta.softmax(0), plain.softmax(0), atol=1e-5, rtol=1e-5)
    assert torch.equal(tta.argmax(0), plain.argmax(0))


def test_tta_is_the_mean_of_the_four_flipped_passes(unet):
    processor, image = _processor(32), _image(40, 44)
    probs = []
    for axes in ((), (1,), (0,), (0, 1)):
        flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        logits = predict_logits(unet, processor, flipped)
        probs.append(logits.flip([a + 1 for a in axes]).softmax(0) if axes else logits.softmax(0))
    expected = torch.stack(probs).mean(0)
    tta = predict_logits(unet, processor, image, tta_flip=True)
    torch.testing.assert_close(tta.softmax(0), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tta, expected.log(), atol=1e-4, rtol=1e-4)  # documented: log of the mean


def test_sliding_window_covering_the_image_equals_the_forward_pass(unet):
    image = _image(32, 32)
    plain = predict_logits(unet, _processor(None), image)
    for weighting in ("gaussian", "constant"):
        window = predict_logits(unet, _processor(None), image, sliding_window=(32, 32), weighting=weighting)
        torch.testing.assert_close(window, plain, atol=1e-5, rtol=1e-5)


def test_sliding_window_on_a_larger_image(unet):
    image = _image(48, 48)  # 1.5x the processor's 32x32
    logits = predict_logits(unet, _processor(32), image, sliding_window="auto", batch_size=3)
    assert logits.shape == (3, 48, 48) and torch.isfinite(logits).all()
    tta = predict_logits(unet, _processor(32), image, sliding_window="auto", tta_flip=True)
    assert tta.shape == (3, 48, 48) and torch.isfinite(tta).all()


@pytest.mark.parametrize("shape", [(48, 48), (50, 37), (20, 45)])  # 20 < 32: padded
def test_sliding_window_equals_the_full_pass_for_a_pointwise_model(shape):
    torch.manual_seed(0)
    model, image = Pointwise(), _image(*shape)
    full = predict_logits(model, _processor(None), image)
    for overlap in (0.0, 0.5):
        window = predict_logits(model, _processor(32), image, sliding_window="auto", overlap=overlap)
        torch.testing.assert_close(window, full, atol=1e-5, rtol=1e-5)


def test_sliding_window_needs_a_size(unet):
    with pytest.raises(ValueError, match="window size"):
        predict_logits(unet, _processor(None), _image(40, 40), sliding_window="auto")
    with pytest.raises(ValueError, match="overlap"):
        predict_logits(unet, _processor(32), _image(40, 40), sliding_window="auto", overlap=1.0)


def test_window_placement_and_weights():
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(48, 32, 0.5) == [0, 16]
    starts = window_starts(100, 32, 0.5)
    assert starts[0] == 0 and starts[-1] == 68 and max(np.diff(starts)) <= 16
    weights = importance_map((16, 12))
    assert weights.shape == (16, 12) and weights.max() == pytest.approx(1.0) and weights.min() >= 1e-3
    torch.testing.assert_close(weights, weights.flip(0).flip(1))
    assert torch.equal(importance_map((4, 4), "constant"), torch.ones(4, 4))
    with pytest.raises(ValueError, match="gaussian"):
        importance_map((4, 4), "triangle")


def test_load_model_round_trip(unet, tmp_path):
    unet.save_pretrained(tmp_path / "run")
    _processor(32).save_pretrained(tmp_path / "run")
    model, processor = load_model(tmp_path / "run", device="cpu")
    assert not model.training and isinstance(processor, hfseg.UNetImageProcessor) and processor.size["height"] == 32
    image = _image(40, 40)
    torch.testing.assert_close(predict_logits(model, processor, image), predict_logits(unet, _processor(32), image))


def test_load_model_without_a_processor_warns(unet, tmp_path):
    unet.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="preprocessor_config.json"):
        _, processor = load_model(tmp_path, device="cpu")
    assert processor.normalization == "zscore" and not processor.do_resize


def test_load_model_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")


def test_transformers_processor_is_converted():
    processor = as_unet_processor(SegformerImageProcessor())
    assert processor.normalization == "mean_std" and processor.size == {"height": 512, "width": 512}
    assert as_unet_processor(_processor(32)) is not None


def test_load_model_runs_shipped_code_only_when_asked(shipped_code_checkpoint):
    """A checkpoint whose config maps to code shipped with it: an error without a prompt, unless trusted."""
    folder, marker = shipped_code_checkpoint
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(folder)
    assert not marker.exists()
    with pytest.raises((ValueError, OSError)):  # the code runs, but ships no model class
        load_model(folder, trust_remote_code=True)
    assert marker.exists()
