"""`build_hub_folder`: the exact upload folder loads back with `from_pretrained` (also as remote code without
hfseg) and gives the run's logits; it holds the records and images and nothing private to the run."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
)

from hfseg.hub import build_hub_folder
from hfseg.hub.run import redact_paths

from .conftest import CLASSES

UNET_CODE = {"blocks_unet.py", "configuration_unet.py", "encoder_unet.py", "image_processing_unet.py", "loss_unet.py",
             "modeling_unet.py"}


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def snippets(readme):
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)


def test_folder_holds_the_model_records_and_images_only(hub_folder, seg_run):
    assert (seg_run / "logs").is_dir() and (seg_run / "checkpoints").is_dir()  # present in the run, not uploaded
    assert set(listing(hub_folder)) == UNET_CODE | {
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json", "training_config.yaml",
        "metrics.json", "eval_results.json", "history.csv", "images/curves.png", "images/predictions.png",
        "images/predictions.gif"}
    assert (hub_folder / "history.csv").read_bytes() == (seg_run / "history.csv").read_bytes()
    # The records as in the run, absolute local paths (data cache, output folder) redacted.
    config, published = yaml.safe_load((seg_run / "config.yaml").read_text()), (hub_folder / "training_config.yaml")
    assert yaml.safe_load(published.read_text()) == redact_paths(config) != config
    assert str(seg_run) not in published.read_text() and str(seg_run) not in (hub_folder / "README.md").read_text()
    summary = json.loads((seg_run / "metrics.json").read_text())
    assert json.loads((hub_folder / "metrics.json").read_text()) == redact_paths(summary)
    assert json.loads((hub_folder / "eval_results.json").read_text()) == json.loads(
        (seg_run / "best" / "metrics.json").read_text())
    config = json.loads((hub_folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_unet.UNetConfig",
                                  "AutoModelForSemanticSegmentation": "modeling_unet.UNetForSemanticSegmentation"}
    processor = json.loads((hub_folder / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_unet.UNetImageProcessor"}


def test_images_open_and_the_panel_is_the_packaged_epoch(hub_folder, seg_run):
    for path in (hub_folder / "images").iterdir():
        with Image.open(path) as image:
            image.verify()
    best_epoch = json.loads((seg_run / "metrics.json").read_text())["best_epoch"]
    panel = seg_run / "panels" / f"epoch_{best_epoch:03d}.png"
    assert (hub_folder / "images" / "predictions.png").read_bytes() == panel.read_bytes()
    assert (hub_folder / "images" / "predictions.gif").read_bytes() == (seg_run / "panels.gif").read_bytes()


def test_model_and_processor_load_back_with_the_runs_logits(hub_folder, seg_run):
    loaded = AutoModelForSemanticSegmentation.from_pretrained(hub_folder).eval()
    reference = AutoModelForSemanticSegmentation.from_pretrained(seg_run / "best").eval()
    processor = AutoImageProcessor.from_pretrained(hub_folder)
    assert processor.to_dict() == AutoImageProcessor.from_pretrained(seg_run / "best").to_dict()
    image = np.random.default_rng(0).integers(0, 255, (45, 37), dtype=np.uint8)
    pixels = processor(image)["pixel_values"]
    assert pixels.shape == (1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).logits, reference(pixel_values=pixels).logits,
                                   rtol=0, atol=0)


REMOTE = textwrap.dedent(
    """
    import sys
    sys.modules["hfseg"] = None  # any `import hfseg` fails: the code must come from the folder
    import torch
    snippet = open("snippet.py").read()
    scope = {}
    exec(snippet, scope)
    assert not type(scope["model"]).__module__.startswith("hfseg"), type(scope["model"]).__module__
    assert "transformers_modules" in type(scope["processor"]).__module__
    torch.save({"logits": scope["outputs"].logits, "mask": scope["mask"]}, "out.pt")
    """
)


def test_the_cards_transformers_snippet_loads_remote_code_without_hfseg(hub_folder, seg_run, tmp_path):
    plain = snippets(hub_folder / "README.md")[0]
    assert "trust_remote_code=True" in plain and '"me/tiny-attention-unet"' in plain
    (tmp_path / "snippet.py").write_text(plain.replace('"me/tiny-attention-unet"', repr(str(hub_folder))))
    image = np.random.default_rng(1).integers(0, 255, (40, 52), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", REMOTE], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    model = AutoModelForSemanticSegmentation.from_pretrained(seg_run / "best").eval()
    processor = AutoImageProcessor.from_pretrained(seg_run / "best")
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    torch.testing.assert_close(out["logits"], outputs.logits, rtol=0, atol=0)
    mask = processor.post_process_semantic_segmentation(outputs, target_sizes=[(40, 52)])[0]
    assert torch.equal(out["mask"], mask) and mask.shape == (40, 52)


def test_classification_run_packages_a_native_classifier(cls_run, tmp_path):
    folder = build_hub_folder(cls_run, tmp_path / "hub")
    assert "images/confusion.png" in listing(folder) and not any(n.startswith("modeling") for n in listing(folder))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "timm_wrapper" and "auto_map" not in config  # native transformers: no code
    loaded = AutoModelForImageClassification.from_pretrained(folder).eval()
    reference = AutoModelForImageClassification.from_pretrained(cls_run / "best").eval()
    pixels = AutoImageProcessor.from_pretrained(folder)(np.full((20, 24), 90, np.uint8))["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).logits, reference(pixel_values=pixels).logits,
                                   rtol=0, atol=0)
    assert loaded.config.id2label == {0: "glioma", 1: "meningioma", 2: "notumor"}


def test_out_dir_rules(seg_run, cls_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        build_hub_folder(cls_run, tmp_path / "taken")
    folder = build_hub_folder(cls_run, tmp_path / "taken", overwrite=True)
    assert not (folder / "keep.txt").exists() and (folder / "README.md").is_file()
    for inside in (seg_run, seg_run / "best", seg_run / "checkpoints" / "x", seg_run.parent):
        with pytest.raises(ValueError, match="would overwrite the run's own files"):
            build_hub_folder(seg_run, inside, overwrite=True)
    copy = tmp_path / "run"
    shutil.copytree(cls_run, copy)
    assert build_hub_folder(copy) == copy / "hub" and (copy / "hub" / "model.safetensors").is_file()


def test_missing_image_processor_is_a_clear_error(cls_run, tmp_path):
    shutil.copytree(cls_run, tmp_path / "run")
    (tmp_path / "run" / "best" / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no usable image processor"):
        build_hub_folder(tmp_path / "run", tmp_path / "hub")
    assert not (tmp_path / "hub").exists()  # nothing written before the checks pass


def test_a_timm_classifier_with_its_own_processor_needs_no_remote_code(cls_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(cls_run, run, ignore=shutil.ignore_patterns("best"))
    config = TimmWrapperConfig(architecture="test_resnet", num_labels=3, id2label=CLASSES,
                               label2id={v: k for k, v in CLASSES.items()},
                               pretrained_cfg={"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3,
                                               "interpolation": "bilinear", "crop_pct": 1.0})
    TimmWrapperForImageClassification(config).save_pretrained(run / "best")  # the processor lives in config.json
    shutil.copy(cls_run / "best" / "metrics.json", run / "best")
    folder = build_hub_folder(run, tmp_path / "hub", repo_id="me/timm")
    assert not any(name.endswith(".py") for name in listing(folder))
    assert type(AutoImageProcessor.from_pretrained(folder)).__name__ == "TimmWrapperImageProcessor"
    plain = snippets(folder / "README.md")[0]
    assert "trust_remote_code" not in plain and 'convert("RGB")' in plain
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(plain.replace('"me/timm"', repr(str(folder))), scope)
    reference = AutoModelForImageClassification.from_pretrained(run / "best").eval()
    processor = AutoImageProcessor.from_pretrained(run / "best")
    with torch.no_grad():
        expected = reference(**processor(Image.open(tmp_path / "image.png").convert("RGB"), return_tensors="pt"))
    torch.testing.assert_close(scope["logits"], expected.logits, rtol=0, atol=0)
