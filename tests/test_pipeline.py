"""Segment-then-classify: the emphasis arithmetic on hand-made cases, and the pipeline against its parts."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

import hfseg
from hfseg.inference import classify_logits, load_model, predict_mask
from hfseg.pipeline import emphasize, region_mask, segment_then_classify

SEG_LABELS = {0: "background", 1: "epithelium", 2: "stroma"}
GRADES = {0: "healthy", 1: "mild", 2: "moderate"}


def test_dim_keeps_the_region_and_scales_the_rest_towards_the_minimum():
    image = np.array([[10, 20], [30, 110]], dtype=np.uint8)
    region = np.array([[False, True], [False, False]])
    out = emphasize(image, region, mode="dim", background=0.5)
    # low = 10: 10 -> 10, 30 -> 10 + 20 * 0.5, 110 -> 10 + 100 * 0.5; the region keeps 20.
    np.testing.assert_allclose(out, [[10, 20], [20, 60]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(emphasize(image, region, mode="mask"), [[10, 20], [10, 10]])


def test_dim_works_per_channel_on_rgb():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[..., 0], image[..., 1] = [[100, 200], [50, 0]], 40
    region = np.array([[True, False], [False, False]])
    out = emphasize(image, region, background=0.0)
    np.testing.assert_allclose(out[..., 0], [[100, 0], [0, 0]])
    np.testing.assert_allclose(out[..., 1], 40)  # a flat channel stays flat


def test_crop_keeps_the_bounding_box_plus_margin_and_empty_region_changes_nothing():
    image = np.arange(100, dtype=np.int32).reshape(10, 10)
    region = np.zeros((10, 10), dtype=bool)
    region[4:6, 3:5] = True
    np.testing.assert_array_equal(emphasize(image, region, mode="crop", margin=1), image[3:7, 2:6])
    np.testing.assert_array_equal(emphasize(image, np.zeros_like(region), mode="crop"), image)
    np.testing.assert_array_equal(emphasize(image, np.zeros_like(region)), image.astype(np.float32))


def test_emphasize_rejects_bad_arguments():
    image = np.zeros((4, 4))
    with pytest.raises(ValueError, match="native size"):
        emphasize(image, np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match="dim, mask, crop"):
        emphasize(image, np.ones((4, 4), dtype=bool), mode="blur")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        emphasize(image, np.ones((4, 4), dtype=bool), background=2)


def test_region_mask_picks_classes():
    mask = np.array([[0, 1, 2]])
    np.testing.assert_array_equal(region_mask(mask), [[False, True, True]])
    np.testing.assert_array_equal(region_mask(mask, [2]), [[False, False, True]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pipeline")
    segmenter = hfseg.create_model("attention-unet", id2label=SEG_LABELS, num_channels=3, base_channels=4, depth=3)
    segmenter.save_pretrained(root / "seg")
    processor = hfseg.UNetImageProcessor(normalization="zscore", num_channels=3)
    processor.save_pretrained(root / "seg")
    classifier = TimmWrapperForImageClassification(TimmWrapperConfig(
        architecture="resnet18", num_labels=3, id2label=GRADES, label2id={v: k for k, v in GRADES.items()}))
    classifier.save_pretrained(root / "cls")
    hfseg.UNetImageProcessor(normalization="zscore", num_channels=3, do_resize=True,
                             size={"height": 32, "width": 32}).save_pretrained(root / "cls")
    return root / "seg", root / "cls"


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))


def test_pipeline_is_its_parts(models, image):
    seg_path, cls_path = models
    result = segment_then_classify(image, str(seg_path), str(cls_path), mode="dim", background=0.2)
    seg_model, seg_processor = load_model(seg_path)
    cls_model, cls_processor = load_model(cls_path)
    array = np.asarray(image)
    mask = predict_mask(seg_model, seg_processor, array).numpy()
    np.testing.assert_array_equal(result.mask, mask)
    np.testing.assert_array_equal(result.region, mask > 0)
    np.testing.assert_allclose(result.emphasized, emphasize(array, mask > 0, background=0.2))
    probs = classify_logits(cls_model, cls_processor, result.emphasized).softmax(-1).numpy()
    np.testing.assert_allclose(result.probabilities, probs, rtol=1e-5, atol=1e-6)
    assert result.label == int(probs.argmax()) and result.label_name == GRADES[result.label]
    assert result.explanations == {}


def test_pipeline_explains_both_and_saves(models, image, tmp_path):
    seg_path, cls_path = models
    pairs = load_model(seg_path), load_model(cls_path)
    result = segment_then_classify(image, *pairs, classes=["stroma"], explain=True, output_dir=tmp_path)
    np.testing.assert_array_equal(result.region, result.mask == 2)
    assert set(result.explanations) == {"segmenter", "classifier"}
    assert result.explanations["classifier"].target == result.label
    cam = result.explanations["segmenter"].cam
    assert cam.shape == (40, 48) and np.isfinite(cam).all()
    for name in ("mask.png", "emphasized.png", "result.npz"):
        assert (tmp_path / name).is_file()
    assert Image.open(tmp_path / "mask.png").mode == "RGB"
    assert any((tmp_path / "classifier").glob("*.png")) and any((tmp_path / "segmenter").glob("*.png"))
    saved = np.load(tmp_path / "result.npz")
    np.testing.assert_array_equal(saved["mask"], result.mask)


def test_pipeline_errors(models, image):
    seg_path, cls_path = models
    with pytest.raises(ValueError, match="Unknown segmenter class"):
        segment_then_classify(image, str(seg_path), str(cls_path), classes=["tumour"])
    with pytest.raises(TypeError, match="model, processor"):
        segment_then_classify(image, 42, str(cls_path))


def test_segmenter_emphasis_is_the_pipeline_emphasis_and_pickles(models, image):
    import pickle

    from hfseg.pipeline import SegmenterEmphasis

    seg_path, cls_path = models
    emphasis = SegmenterEmphasis(str(seg_path), mode="dim", background=0.1, classes=["epithelium"])
    array = np.asarray(image)
    expected = segment_then_classify(image, str(seg_path), str(cls_path), classes=["epithelium"], background=0.1)
    np.testing.assert_array_equal(emphasis(array), expected.emphasized)
    clone = pickle.loads(pickle.dumps(emphasis))  # what a DataLoader worker receives: the path, not the weights
    assert clone._loaded is None
    np.testing.assert_array_equal(clone(array), expected.emphasized)
    with pytest.raises(ValueError, match="image classifier"):
        SegmenterEmphasis(str(cls_path))
    with pytest.raises(ValueError, match="Unknown segmenter class"):
        SegmenterEmphasis(str(seg_path), classes=[7])
