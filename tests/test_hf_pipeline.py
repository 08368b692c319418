"""transformers' `image-segmentation` pipeline on hfseg models: every U-Net preset and zoo family with a
`UNetImageProcessor`, from a saved folder (hfseg imported), from objects and through remote code (hfseg not
importable), on grey, RGB and 16-bit images; the pipeline's masks equal the processor and model called directly."""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version
from PIL import Image
from transformers import pipeline
from transformers.image_utils import load_image

import hfseg
from hfseg import UNetImageProcessor

from .conftest import TINY_PRESET_OVERRIDES
from .models.test_zoo import TINY_FAMILIES

CLASSES = {0: "background", 1: "liver", 2: "tumor"}
MODELS = list(hfseg.UNET_PRESETS) + list(TINY_FAMILIES)
# timm's 0.3M-parameter test ResNet with a narrow decoder keeps the timm U-Net as cheap as the others.
TIMM_UNET = {"encoder": "test_resnet", "decoder_hidden_sizes": [16, 16, 8, 8, 8]}
TINY_KWARGS = {**TINY_PRESET_OVERRIDES, "timm-unet": TIMM_UNET, **TINY_FAMILIES}


def tiny_model(name: str, num_channels: int = 1) -> torch.nn.Module:
    """A tiny random model whose masks depend on the image: some random heads (BEiT's) give logits so close to
    constant that every pixel gets one class, so the class convolutions get unit-variance weights."""
    torch.manual_seed(0)
    model = hfseg.create_model(name, id2label=CLASSES, num_channels=num_channels, **TINY_KWARGS[name]).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.out_channels == len(CLASSES):
            torch.nn.init.normal_(module.weight)
    return model


def image_size(name: str) -> tuple[int, int]:
    """(H, W): the ViT families (DPT, BEiT) are built for 64 px; U-Nets get an odd, non-square size."""
    return (64, 64) if name in TINY_FAMILIES else (40, 52)


def images(size: tuple[int, int]) -> dict[str, Image.Image]:
    """A grey scan-like image (a bright disc with noise), a colour image (the disc in red, a ramp in green, noise in
    blue) and a 16-bit image of the same size."""
    h, w = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 3) ** 2) * 150.0
    grey = np.clip(disc + 40 + rng.normal(0, 20, size), 0, 255).astype(np.uint8)
    rgb = np.stack([grey, np.broadcast_to(xx * 255 // w, size), rng.integers(0, 256, size)], axis=-1).astype(np.uint8)
    sixteen = (disc * 20 + rng.integers(0, 200, size)).astype(np.uint16)  # 0-199 around a 3000-3199 disc
    return {"grey": Image.fromarray(grey), "rgb": Image.fromarray(rgb), "16-bit": Image.fromarray(sixteen)}


def direct_mask(model: torch.nn.Module, processor: UNetImageProcessor, image) -> np.ndarray:
    """The class map of `model` on `image` through the processor, as the pipeline should compute it."""
    h, w = np.asarray(image).shape[:2]
    with torch.no_grad():
        outputs = model(**processor(image))
    return processor.post_process_semantic_segmentation(outputs, target_sizes=[(h, w)])[0].numpy()


def pipeline_mask(segments: list[dict]) -> np.ndarray:
    """The class map the pipeline's per-class binary masks describe."""
    label2id = {v: k for k, v in CLASSES.items()}
    width, height = segments[0]["mask"].size
    mask = np.full((height, width), -1)
    for segment in segments:
        mask[np.asarray(segment["mask"]) > 0] = label2id[segment["label"]]
    assert (mask >= 0).all(), "the pipeline's masks do not cover the image"
    return mask


def assert_pipeline_matches(segmenter, model, processor, name: str) -> None:
    """Grey and RGB images give the direct masks; a 16-bit image gives the direct mask of the 8-bit RGB image
    transformers' `load_image` makes of it (the pipeline clips it: call the processor directly for 16-bit data)."""
    for kind, image in images(image_size(name)).items():
        fed = load_image(image) if kind == "16-bit" else image
        expected = direct_mask(model, processor, fed)
        assert len(np.unique(expected)) > 1, f"{name}: a constant mask would make the comparison weak"
        np.testing.assert_array_equal(pipeline_mask(segmenter(image)), expected, err_msg=f"{name}, {kind} image")


@pytest.fixture
def no_prompt(monkeypatch):
    """Fail at once if transformers asks whether to run the checkpoint's code (`pytest.fail` is not an
    `Exception`, so transformers cannot swallow it)."""
    def ask(prompt: str = "") -> str:
        pytest.fail(f"transformers asked for trust_remote_code: {prompt}")
    monkeypatch.setattr("builtins.input", ask)


@pytest.fixture
def transformers_log(caplog):
    """Records of transformers' loggers (they do not propagate to the root logger, so caplog is attached)."""
    library = logging.getLogger("transformers")
    library.addHandler(caplog.handler)
    yield caplog
    library.removeHandler(caplog.handler)


def not_supported(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is not supported for image-segmentation" in r.getMessage()]


def save(name: str, folder, num_channels: int = 1) -> tuple[torch.nn.Module, UNetImageProcessor]:
    model = tiny_model(name, num_channels)
    processor = UNetImageProcessor(num_channels=num_channels)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def test_every_preset_and_family_is_covered():
    assert set(TINY_PRESET_OVERRIDES) == set(hfseg.UNET_PRESETS)
    assert {f.model_class for f in hfseg.FAMILIES.values()} == {hfseg.FAMILIES[n].model_class for n in TINY_FAMILIES}


# transformers 5.13 to 5.18 ignore `AutoVideoProcessor.register` for their own configs (Segformer, ...), so hfseg
# cannot tell them these models have no video processor: their pipelines ask about the processor's remote code
# (pass `trust_remote_code=False` there).
NATIVE_VIDEO_REGISTRATION_IGNORED = Version("5.13") <= Version(transformers.__version__) < Version("5.19")


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(NATIVE_VIDEO_REGISTRATION_IGNORED and n in TINY_FAMILIES, strict=True,
                                            reason="transformers 5.13-5.18 ignore AutoVideoProcessor.register"))
    for n in MODELS
])
def test_pipeline_from_a_saved_folder(name, tmp_path, no_prompt, transformers_log):
    model, processor = save(name, tmp_path)
    segmenter = pipeline("image-segmentation", model=str(tmp_path))
    assert type(segmenter.image_processor) is UNetImageProcessor
    assert type(segmenter.model) is type(model)  # hfseg's own classes, not the checkpoint's copy of the code
    assert not_supported(transformers_log) == []
    assert_pipeline_matches(segmenter, model, processor, name)


@pytest.mark.parametrize("name", MODELS)
def test_pipeline_from_objects(name, no_prompt, transformers_log):
    model, processor = tiny_model(name), UNetImageProcessor(num_channels=1)
    segmenter = pipeline("image-segmentation", model=model, image_processor=processor)
    assert not_supported(transformers_log) == []
    assert_pipeline_matches(segmenter, model, processor, name)


def test_not_supported_log_is_captured(transformers_log):
    """The check above can fail: a model class transformers does not list is reported."""
    class UnlistedSegmenter(hfseg.UNetForSemanticSegmentation):
        pass

    model = UnlistedSegmenter(tiny_model("unet").config)
    pipeline("image-segmentation", model=model, image_processor=UNetImageProcessor(num_channels=1))
    assert not_supported(transformers_log)


def test_three_channel_model_takes_grey_and_rgb(tmp_path, no_prompt):
    model, processor = save("unet", tmp_path, num_channels=3)
    segmenter = pipeline("image-segmentation", model=str(tmp_path))
    assert_pipeline_matches(segmenter, model, processor, "unet")


def test_four_channel_model_through_the_processor():
    """Multi-sequence MRI (e.g. BraTS T1, T1ce, T2, FLAIR) is not RGB, so it skips the pipeline."""
    model = tiny_model("unet", num_channels=4)
    processor = UNetImageProcessor(num_channels=4)
    scan = np.random.default_rng(1).integers(0, 4000, (36, 44, 4)).astype(np.uint16)
    inputs = processor(scan)
    assert inputs["pixel_values"].shape == (1, 4, 36, 44)
    channels = torch.tensor(np.moveaxis(scan, -1, 0), dtype=torch.float32)
    flat = channels.flatten(1)
    zscored = (channels - flat.mean(1)[:, None, None]) / (flat.std(1, unbiased=False)[:, None, None] + 1e-8)
    with torch.no_grad():
        mask = processor.post_process_semantic_segmentation(model(**inputs))[0]
        expected = model(pixel_values=zscored[None]).logits[0].argmax(0)
    torch.testing.assert_close(mask, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="has 3 channels but 4 are expected.*processor and the model directly"):
        processor(np.zeros((36, 44, 3), dtype=np.uint8))


REMOTE = textwrap.dedent(
    """
    import sys
    sys.modules["hfseg"] = None  # any `import hfseg` now fails: the code must come from the checkpoint folders
    import numpy as np
    from PIL import Image
    from transformers import pipeline
    label2id = {"background": 0, "liver": 1, "tumor": 2}
    for folder in sys.argv[1:]:
        segmenter = pipeline("image-segmentation", model=folder, trust_remote_code=True)
        assert "transformers_modules" in type(segmenter.image_processor).__module__
        print(type(segmenter.model).__module__)
        for kind in ("grey", "rgb"):
            segments = segmenter(Image.open(f"{folder}/{kind}.png"))
            width, height = segments[0]["mask"].size
            mask = np.full((height, width), -1)
            for segment in segments:
                mask[np.asarray(segment["mask"]) > 0] = label2id[segment["label"]]
            np.save(f"{folder}/{kind}.npy", mask)
    """
)


def test_remote_code_pipeline_without_hfseg(tmp_path):
    expected = {}
    for name in MODELS:
        folder = tmp_path / name
        model, processor = save(name, folder)
        for kind in ("grey", "rgb"):
            image = images(image_size(name))[kind]
            image.save(folder / f"{kind}.png")
            expected[name, kind] = direct_mask(model, processor, image)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    folders = [str(tmp_path / name) for name in MODELS]
    result = subprocess.run([sys.executable, "-c", REMOTE, *folders], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    modules = result.stdout.split()
    assert len(modules) == len(MODELS)
    for name, module in zip(MODELS, modules):
        own_code = name in hfseg.UNET_PRESETS
        assert module.startswith("transformers_modules" if own_code else "transformers.models"), (name, module)
    for (name, kind), mask in expected.items():
        np.testing.assert_array_equal(np.load(tmp_path / name / f"{kind}.npy"), mask, err_msg=f"{name}, {kind}")
