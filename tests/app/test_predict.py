"""The demo's computations on tiny saved models: masks and areas against independent counts, channels, GradCAM,
attention maps, classifier scores, and a message (never an exception) for every bad input."""

import functools

import numpy as np
import pytest
from PIL import Image

from hfseg.app.models import ModelPolicy
from hfseg.app.predict import AUTO_CLASS, analyze, color_map, match_channels, segment, to_grey
from hfseg.app.uploads import Upload, UploadError, read_upload
from hfseg.inference import classify_logits, load_model, predict_mask
from hfseg.viz import PALETTE

from .conftest import EXAMPLES, ID2LABEL
from .test_uploads import _bad_files, ras_volume, write_dicom, write_nifti

RNG = np.random.default_rng(0)


def brain(name: str = "brain_16.png") -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / name))


@functools.lru_cache
def reference_model(model_dir: str):
    return load_model(model_dir, device="cpu")


def reference_mask(model_dir: str, image: np.ndarray) -> np.ndarray:
    """The mask predicted by the evaluation code itself, outside the app."""
    model, processor = reference_model(model_dir)
    return predict_mask(model, processor, image).numpy()


def test_segment_png_areas_equal_a_hand_count(gated_model, tmp_path):
    Image.fromarray(brain()).save(tmp_path / "b.png")
    annotated, (shown, overlay), areas, cam, attentions, scores, status = segment(gated_model, str(tmp_path / "b.png"))
    mask = reference_mask(gated_model, brain())
    assert len(np.unique(mask)) > 1
    counts = {ID2LABEL[k]: int((mask == k).sum()) for k in ID2LABEL}
    assert {row[0]: row[1] for row in areas} == counts
    assert all(row[3] == "—" for row in areas) and "spacing unknown" in status
    base, masks = annotated
    np.testing.assert_array_equal(base, shown)
    assert base.shape == (128, 128, 3) and overlay.shape == (128, 128, 3)
    assert {label: int(m.sum()) for m, label in masks} == {k: v for k, v in counts.items() if v and k != "background"}
    assert scores is None and "b.png" in status


def test_overlay_uses_the_palette(gated_model):
    result = analyze(gated_model, read_upload(EXAMPLES / "brain_25.png"), explain=False)
    k = int(np.bincount(result.mask.ravel()).argmax())
    expected = np.round(0.55 * result.display[result.mask == k] + 0.45 * PALETTE[k]).astype(int)
    assert np.abs(result.overlay[result.mask == k].astype(int) - expected).max() <= 1
    assert color_map(ID2LABEL) == {"background": "#000000", "tissue": "#e6194b", "lesion": "#3cb44b"}


def test_dicom_areas_in_mm2(gated_model, tmp_path):
    pixels = (brain().astype(np.uint16) * 16)
    path = write_dicom(tmp_path / "s.dcm", pixels, spacing=(0.6, 1.25))
    areas = segment(gated_model, str(path))[2]
    mask = reference_mask(gated_model, pixels)
    for k, row in enumerate(areas):
        assert row[1] == int((mask == k).sum())
        assert row[3] == pytest.approx(row[1] * 0.6 * 1.25, abs=0.01)


def test_nifti_slice_index(gated_model, tmp_path):
    slices = [brain(f"brain_{i:02d}.png") for i in (6, 16, 25)]
    path = write_nifti(tmp_path / "v.nii.gz", ras_volume(np.stack(slices)), np.diag([2, 2, 4, 1]))  # radiological
    for index, pixels in enumerate(slices):
        annotated, _, areas, _, _, _, status = segment(gated_model, str(path), slice_index=index)
        np.testing.assert_array_equal(annotated[0][..., 0], pixels)
        mask = reference_mask(gated_model, pixels)
        assert [row[3] for row in areas] == [pytest.approx(4.0 * (mask == k).sum()) for k in ID2LABEL]
        assert f"slice {index} of 0-2" in status
    assert "does not exist" in segment(gated_model, str(path), slice_index=3)[-1]


def test_ct_through_an_mr_model_is_flagged(mr_model):
    """check_input's warnings reach the status: pydicom's CT_small.dcm through a model trained on MR images."""
    from pydicom.data import get_testdata_file

    outputs = segment(mr_model, get_testdata_file("CT_small.dcm"), name="chest.dcm")
    assert outputs[0] is not None  # a warning, not a refusal: the prediction is still shown
    assert "- ⚠️ chest.dcm is CT but the model was trained on MR images" in outputs[-1]
    assert "trained on" not in segment(mr_model, get_testdata_file("MR_small.dcm"))[-1]
    assert "trained on" not in segment(mr_model, str(EXAMPLES / "brain_16.png"))[-1]  # a picture has no modality
    upload = Upload(brain(), None, "dicom", "x.dcm", modality="CT")
    assert analyze(mr_model, upload, explain=False).notes[0].startswith("⚠️ x.dcm is CT but the model was trained")
    assert not any("trained on" in n for n in analyze(mr_model, Upload(brain(), None, "image", "x.png"),
                                                     explain=False).notes)


def test_rgb_upload_to_grey_model(gated_model, tmp_path):
    rgb = RNG.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    result = analyze(gated_model, read_upload(tmp_path / "rgb.png"), explain=False)
    luma = rgb.astype(float) @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(to_grey(rgb), luma, atol=1)
    np.testing.assert_array_equal(result.mask, reference_mask(gated_model, to_grey(rgb)))
    assert "converted RGB to grey" in " ".join(result.notes)


def test_match_channels():
    grey = RNG.integers(0, 255, (4, 5), dtype=np.uint8)
    repeated, notes = match_channels(grey, 3)
    assert repeated.shape == (4, 5, 3) and (repeated == grey[..., None]).all() and notes
    rgba = np.dstack([np.dstack([grey] * 3), np.full((4, 5), 255, np.uint8)])
    assert match_channels(rgba, 3)[0].shape == (4, 5, 3)
    assert match_channels(rgba, 1)[0].shape == (4, 5)
    with pytest.raises(UploadError, match="4 channels but this model takes 1 channel"):
        match_channels(np.dstack([grey] * 4), 1)
    with pytest.raises(UploadError, match="2 channels"):
        match_channels(np.dstack([grey] * 2), 3)


def test_grey_upload_to_rgb_model(rgb_model):
    result = analyze(rgb_model, read_upload(EXAMPLES / "brain_06.png"), explain=False)
    np.testing.assert_array_equal(result.mask, reference_mask(rgb_model, np.repeat(brain("brain_06.png")[..., None],
                                                                                    3, axis=2)))


def test_gradcam_for_the_chosen_class(gated_model):
    upload = read_upload(EXAMPLES / "brain_16.png")
    lesion = analyze(gated_model, upload, cam_class="lesion")
    tissue = analyze(gated_model, upload, cam_class="tissue")
    assert lesion.cam_label == "lesion" and tissue.cam_label == "tissue"
    assert lesion.cam.shape == (128, 128, 3) and lesion.cam.dtype == np.uint8
    assert not np.array_equal(lesion.cam, tissue.cam)
    auto = analyze(gated_model, upload, cam_class=AUTO_CLASS)
    largest = max((k for k in ID2LABEL if k), key=lambda k: (auto.mask == k).sum())
    assert auto.cam_label == ID2LABEL[largest]
    assert "GradCAM class: **tissue**" in segment(gated_model, str(EXAMPLES / "brain_16.png"), 0, "tissue")[-1]


def test_attention_maps_only_for_gated_models(gated_model, plain_model):
    gated = segment(gated_model, str(EXAMPLES / "brain_06.png"))[4]
    model, _ = reference_model(gated_model)
    assert len(gated) == sum(type(m).__name__ == "AttentionGate" for m in model.modules()) == 3  # one per skip
    assert all(image.shape == (128, 128, 3) for image, _ in gated)
    assert segment(plain_model, str(EXAMPLES / "brain_06.png"))[4] == []


def test_classifier_scores(gated_model, classifier_model):
    scores = segment(gated_model, str(EXAMPLES / "brain_16.png"), classifier=classifier_model)[5]
    model, processor = reference_model(classifier_model)
    expected = classify_logits(model, processor, brain()).softmax(-1)
    assert list(scores) == ["glioma", "meningioma", "no_tumor"]
    assert list(scores.values()) == pytest.approx(expected.tolist(), abs=1e-6)
    assert sum(scores.values()) == pytest.approx(1.0)


def test_every_bad_upload_gives_a_message(gated_model, tmp_path):
    files = _bad_files(tmp_path)
    four = tmp_path / "four.tif"
    Image.fromarray(RNG.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA").save(four)
    files["wrong channel count"] = four
    for what, path in files.items():
        outputs = segment(gated_model, str(path))
        assert outputs[:6] == (None, None, [], None, [], None), what
        assert outputs[6].startswith("⚠️") and path.name in outputs[6], (what, outputs[6])
    assert "4 channels" in segment(gated_model, str(four))[6]


def test_bad_models_and_classes_give_a_message(gated_model, classifier_model, tmp_path):
    image = str(EXAMPLES / "brain_16.png")
    assert "Upload an image" in segment(gated_model, None)[-1]
    assert "not found" in segment(str(tmp_path / "missing"), image)[-1]
    assert "Cannot load model 'hfseg/no-such-model'" in segment("hfseg/no-such-model", image)[-1]
    assert "is an image classifier" in segment(classifier_model, image)[-1]
    assert "not an image classifier" in segment(gated_model, image, classifier=gated_model)[-1]
    assert "Unknown class 'tumor'" in segment(gated_model, image, cam_class="tumor")[-1]


def test_models_off_the_allowlist_give_a_message(gated_model, classifier_model):
    image = str(EXAMPLES / "brain_16.png")
    policy = ModelPolicy(models=(gated_model,), labels={gated_model: "the test model"})
    refused = segment("someone/model", image, policy=policy)
    assert refused[:6] == (None, None, [], None, [], None)
    assert refused[-1].startswith("⚠️ 'someone/model' is not one of this demo's models: choose one of "
                                  "'the test model'")
    assert "not one of this demo's models" in segment(gated_model, image, classifier=classifier_model,
                                                      policy=policy)[-1]
    assert "model `the test model`" in segment(gated_model, image, policy=policy)[-1]
    scores = segment(gated_model, image, classifier=classifier_model,
                     policy=ModelPolicy(models=(gated_model,), classifiers=(classifier_model,)))[5]
    assert set(scores) == {"glioma", "meningioma", "no_tumor"}


def test_unexpected_failure_is_a_message(gated_model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("hfseg.app.predict.explain_image", broken)
    status = segment(gated_model, str(EXAMPLES / "brain_16.png"))[-1]
    assert status == "⚠️ Segmentation failed: RuntimeError: out of memory"


def test_upload_dataclass_spacing_reaches_the_table(gated_model):
    upload = Upload(brain(), (2.0, 3.0), "image", "x.png")
    result = analyze(gated_model, upload, explain=False)
    assert [row[3] for row in result.areas] == [6.0 * row[1] for row in result.areas]
    assert isinstance(result.mask, np.ndarray) and result.mask.dtype == np.int64


def test_warm_up(gated_model, tmp_path):
    from hfseg.app.predict import warm_up

    assert warm_up(gated_model) is True
    assert warm_up(str(tmp_path / "missing")) is False


def test_a_3d_model_segments_the_whole_volume_once_and_shows_each_slice(tiny_3d_run, spheres_nnunet, monkeypatch):
    import hfseg.app.predict as app_predict
    from hfseg.inference import predict_planned
    from hfseg.io import read, to_slices

    run, _ = tiny_3d_run
    path = spheres_nnunet / "imagesTs" / "ball_005_0000.nii.gz"
    calls = []
    monkeypatch.setattr(app_predict, "predict_planned", lambda *a, **k: calls.append(1) or predict_planned(*a, **k))
    monkeypatch.setattr(app_predict, "_volume_masks", type(app_predict._volume_masks)())
    model = str(run / "best")
    first = analyze(model, read_upload(path, slice_index=3))
    second = analyze(model, read_upload(path, slice_index=9))
    assert len(calls) == 1  # the slider reuses the volume's mask
    loaded, processor = load_model(run / "best", device="cpu")
    image = read(path)
    expected = to_slices(predict_planned(loaded, processor, image), image.affine, "axial", image.name)
    np.testing.assert_array_equal(first.mask, expected[3])
    np.testing.assert_array_equal(second.mask, expected[9])
    assert any("whole volume was segmented" in note and "mL" in note for note in first.notes)
    status = segment(model, str(path), 5)[-1]
    assert not status.startswith("⚠️"), status
    png = Image.new("L", (32, 32))
    with pytest.raises(UploadError, match="segments whole volumes"):
        analyze(model, Upload(np.asarray(png), None, "image", "flat.png"))
