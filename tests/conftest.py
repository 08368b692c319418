"""Shared fixtures: tiny U-Net configs and batches. Tests never reach the network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# The recipe's default precision (`auto`) follows the CPU; the tests run in fp32 on every machine so that their
# numbers do not depend on the runner (tests/training/test_precision.py covers `auto`, clearing this variable).
os.environ.setdefault("HFSEG_MIXED_PRECISION", "no")

import pytest
import torch

import hfseg

# Small widths for every preset: the architecture switches stay, the cost goes.
TINY = {"base_channels": 4, "depth": 3}
TINY_PRESET_OVERRIDES = {
    "unet": TINY,
    "unet-bn": TINY,
    "vgg16-unet": {"hidden_sizes": [4, 8, 8, 16, 16]},
    "attention-unet": TINY,
    "improved-unet": TINY,
    "improved-attention-unet": TINY,
    "gct-unet": TINY,
    "srm-unet": TINY,
    "timm-unet": {"encoder": "resnet18"},
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    return hfseg.UNetConfig(num_channels=1, num_labels=3, norm="batchnorm", attention="gate", **TINY)


@pytest.fixture
def tiny_batch():
    pixel_values = torch.randn(2, 1, 32, 32)
    labels = torch.randint(0, 3, (2, 32, 32))
    return pixel_values, labels


@pytest.fixture
def shipped_code_checkpoint(tmp_path):
    """A folder whose config maps to code shipped with it (a class neither transformers nor hfseg has), and the file
    that code creates when it runs: `(folder, marker)`."""
    import json

    folder, marker = tmp_path / "custom", tmp_path / "ran"
    folder.mkdir()
    (folder / "configuration_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                                     "from transformers import PretrainedConfig\n"
                                                     "class CustomConfig(PretrainedConfig):\n"
                                                     "    model_type = 'hfseg_test_custom'\n")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "hfseg_test_custom", "architectures": ["CustomForSemanticSegmentation"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}))
    return folder, marker


def write_spheres_nnunet(root, cases: int = 5, shape=(20, 24, 16), spacing=(1.5, 1.5, 3.0), seed: int = 0):
    """A tiny nnU-Net raw dataset (CT-like, one channel, label 1 a ball of random centre and radius), written with
    nibabel: `dataset.json`, `imagesTr/<case>_0000.nii.gz`, `labelsTr/<case>.nii.gz`, one `imagesTs` case."""
    import json
    from pathlib import Path

    import nibabel as nib
    import numpy as np

    root = Path(root)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    for i in range(cases + 1):
        centre = np.array([n * s for n, s in zip(shape, spacing)]) * rng.uniform(0.35, 0.65, 3)
        radius = rng.uniform(6.0, 9.0)
        label = (np.linalg.norm(grid - centre, axis=-1) < radius).astype(np.uint8)
        image = (-800 + 850 * label.astype(np.float64) + rng.normal(0, 40, shape)).astype(np.int16)
        name = f"ball_{i:03d}"
        folder = "imagesTs" if i == cases else "imagesTr"
        nib.save(nib.Nifti1Image(image, affine), root / folder / f"{name}_0000.nii.gz")
        if i < cases:
            nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{name}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "ball": 1}, "numTraining": cases,
        "file_ending": ".nii.gz"}))
    return root


@pytest.fixture(scope="session")
def spheres_nnunet(tmp_path_factory):
    """A tiny nnU-Net raw dataset folder (see `write_spheres_nnunet`)."""
    return write_spheres_nnunet(tmp_path_factory.mktemp("Dataset001_Balls"))


@pytest.fixture(scope="session")
def tiny_3d_run(spheres_nnunet, tmp_path_factory):
    """A 3D Attention U-Net trained for a few steps through the bundled nnunet_3d config: `(run folder, summary)`."""
    from hfseg.training import load_config, train

    out = tmp_path_factory.mktemp("run3d")
    cfg = load_config("nnunet_3d", [
        "plan.base_width=4", "train.max_steps=3", "train.batch_size=2", "data.samples_per_epoch=4",
        "train.report_to=null", "train.panels=1", f"data.options.cache_dir={out / 'cache'}"],
        values={"data.data_dir": str(spheres_nnunet), "train.output_dir": str(out / "run")})
    return out / "run", train(cfg)
