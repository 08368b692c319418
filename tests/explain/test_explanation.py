"""`explain`: one call from a saved model and an image to the prediction, CAM, gate maps, overlays and files."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import hfseg
from hfseg.inference import load_model, normalize, predict_mask
from hfseg.explain import (
    Explanation,
    attention_maps,
    compute_cam,
    explain,
    overlay_errors,
    overlay_heatmap,
    overlay_mask,
    to_display,
)
from hfseg.explain.explanation import class_names, resolve_target
from hfseg.models.classifiers import create_classifier
from hfseg.models.unet.image_processing_unet import UNetImageProcessor

NAMES = {0: "background", 1: "CSF", 2: "grey_matter", 3: "white_matter"}
HEIGHT, WIDTH = 40, 48  # native size; the processor resizes to 32x32


def native_to(values, size=(HEIGHT, WIDTH)):
    tensor = torch.as_tensor(values, dtype=torch.float32)[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    values = 120 + 80 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 10, (HEIGHT, WIDTH))
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, image):
    """A tiny Attention U-Net (untrained, its grey-matter bias set so that the class covers about half of `image`)
    and its processor, saved."""
    path = tmp_path_factory.mktemp("tiny_attention_unet")
    torch.manual_seed(0)
    model = hfseg.create_model("attention-unet", id2label=NAMES, num_channels=1, base_channels=4, depth=3).eval()
    processor = UNetImageProcessor(normalization="zscore", do_resize=True, size={"height": 32, "width": 32},
                                   num_channels=1)
    with torch.no_grad():
        logits = model(pixel_values=F.interpolate(normalize(processor, image), size=(32, 32))).logits[0]
        margin = torch.cat([logits[:2], logits[3:]]).amax(0) - logits[2]
        model.head.bias[2] += margin.median()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def label():
    truth = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    truth[5:30, 4:24] = 2
    truth[10:35, 24:44] = 3
    truth[0, :] = 255
    return truth


def test_explain_a_saved_model_in_one_call(saved_model, image, label, tmp_path):
    result = explain(str(saved_model), image, target="Grey Matter", label=label, output_dir=tmp_path / "out")
    assert isinstance(result, Explanation)
    assert result.target == 2 and result.target_name == "grey_matter" and result.id2label == NAMES
    model, processor = load_model(saved_model)
    # The prediction is the evaluation's; the maps are computed at the processor's size and resized back.
    np.testing.assert_array_equal(result.pred, predict_mask(model, processor, image).numpy())
    assert 0.1 < (result.pred == 2).mean() < 0.9
    x = F.interpolate(normalize(processor, image), size=(32, 32), mode="bilinear", antialias=True,
                      align_corners=False)
    np.testing.assert_allclose(result.cam, native_to(compute_cam(model, x, target=2)), atol=1e-5)
    gates = attention_maps(model, x)
    assert len(result.attentions) == len(gates) >= 2
    for got, gate in zip(result.attentions, gates, strict=True):
        np.testing.assert_allclose(got, native_to(gate), atol=1e-5)
    display = to_display(image)
    np.testing.assert_array_equal(result.image, display)
    assert set(result.overlays) == {"mask", "cam", "errors", *(f"attention_{i}" for i in range(len(gates)))}
    np.testing.assert_array_equal(result.overlays["mask"], overlay_mask(display, result.pred, NAMES))
    np.testing.assert_array_equal(result.overlays["cam"], overlay_heatmap(display, result.cam))
    np.testing.assert_array_equal(result.overlays["errors"], overlay_errors(display, result.pred, label))
    np.testing.assert_array_equal(result.overlays["attention_1"], overlay_heatmap(display, result.attentions[1]))
    np.testing.assert_array_equal(result.label, label)
    # Saved: one PNG per overlay (read back identical) and the raw arrays.
    out = tmp_path / "out"
    for name, overlay in result.overlays.items():
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}.png").convert("RGB")), overlay)
    with np.load(out / "explanation.npz") as saved:
        np.testing.assert_array_equal(saved["pred"], result.pred)
        np.testing.assert_array_equal(saved["cam"], result.cam)
        np.testing.assert_array_equal(saved["image"], display)
        np.testing.assert_array_equal(saved["label"], label)
        np.testing.assert_array_equal(saved["attentions"], np.stack(result.attentions))
        assert int(saved["target"]) == 2
        meta = json.loads(str(saved["meta"]))
    assert meta["target_name"] == "grey_matter" and meta["method"] == "gradcam"
    assert meta["target_layers"] == ["unet.decoder.blocks.2"] and meta["id2label"]["3"] == "white_matter"


def test_default_target_method_and_layers(saved_model, image):
    model, processor = load_model(saved_model)
    result = explain(model, image, processor, method="eigencam", target_layers=["unet.decoder.blocks.1"])
    counts = np.bincount(result.pred.ravel(), minlength=4)
    counts[0] = 0
    assert result.target == int(counts.argmax()) and result.target_name == NAMES[result.target]
    assert result.method == "eigencam" and result.target_layers == ["unet.decoder.blocks.1"]
    assert "errors" not in result.overlays and result.label is None
    assert result.cam.shape == (HEIGHT, WIDTH) and 0 <= result.cam.min() and result.cam.max() <= 1
    paths = result.save(saved_model.parent / "again")
    assert sorted(p.name for p in paths) == sorted([f"{n}.png" for n in result.overlays] + ["explanation.npz"])
    with pytest.raises(ValueError, match="'background', 'CSF', 'grey_matter', 'white_matter'"):
        explain(model, image, processor, target="tumour")
    with pytest.raises(ValueError, match="has no module"):
        explain(model, image, processor, target_layers=["unet.decoder.blocks.7"])
    with pytest.raises(ValueError, match="at the image's size"):
        explain(model, image, processor, label=np.zeros((8, 8), dtype=np.int64))


def test_explain_without_processor_warns(saved_model, image):
    model, _ = load_model(saved_model)
    with pytest.warns(UserWarning, match="without a processor"):
        result = explain(model, np.asarray(image), target=3)
    assert result.target == 3 and result.cam.shape == (HEIGHT, WIDTH)


def test_explain_a_classifier(image):
    torch.manual_seed(0)
    model = create_classifier("small-cnn", id2label={0: "low grade", 1: "high grade"}, num_channels=1,
                              hidden_sizes=[4, 8]).eval()
    processor = UNetImageProcessor(normalization="zscore", num_channels=1)
    result = explain(model, image, processor)
    with torch.no_grad():
        probs = model(pixel_values=normalize(processor, image)).logits.softmax(-1)[0].numpy()
    np.testing.assert_allclose(result.pred, probs, atol=1e-6)
    assert result.target == int(probs.argmax()) and result.target_name == result.id2label[result.target]
    assert set(result.overlays) == {"cam"} and result.attentions == []
    assert result.cam.shape == (HEIGHT, WIDTH)
    other = explain(model, image, processor, target="High-Grade")
    assert other.target == 1
    with pytest.raises(ValueError, match="classifier"):
        explain(model, image, processor, label=np.zeros((HEIGHT, WIDTH), dtype=np.int64))


def test_class_names_and_target_resolution():
    config = type("Model", (), {"config": type("Config", (), {"id2label": {"0": "tumour"}})()})()
    assert class_names(config, 1, classification=False) == {0: "background", 1: "tumour"}
    assert class_names(config, 1, classification=True) == {0: "not tumour", 1: "tumour"}
    assert resolve_target("grey matter", NAMES) == 2
    assert resolve_target("WHITE-matter", NAMES) == 3
    assert resolve_target("1", NAMES) == 1 and resolve_target(np.int64(0), NAMES) == 0
    assert resolve_target(None, NAMES) is None
    with pytest.raises(ValueError, match="not a class"):
        resolve_target(9, NAMES)
