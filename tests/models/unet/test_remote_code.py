"""A saved U-Net loads with `trust_remote_code=True` in a process where hfseg cannot be imported."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hfseg

LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["hfseg"] = None  # any `import hfseg` now fails: the code must come from the checkpoint folder
    import torch
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
    folder = sys.argv[1]
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert not type(model).__module__.startswith("hfseg"), type(model).__module__
    x = torch.load(folder + "/x.pt")
    with torch.no_grad():
        logits = model(x).logits
    pixels = processor(x[0].numpy())["pixel_values"]
    torch.save({"logits": logits, "pixels": pixels}, folder + "/out.pt")
    print(type(model).__module__, type(processor).__name__)
    """
)


@pytest.mark.parametrize(
    ("preset", "kwargs"),
    [
        ("improved-attention-unet", {"base_channels": 4, "depth": 2, "channel_attention": "gct", "num_channels": 4}),
        ("srm-unet", {"base_channels": 4, "depth": 2, "num_channels": 1}),
        ("timm-unet", {"encoder": "resnet18", "num_channels": 3}),
    ],
)
def test_remote_code_loading_without_hfseg(preset, kwargs, tmp_path):
    model = hfseg.create_model(preset, num_labels=3, **kwargs).eval()
    processor = hfseg.UNetImageProcessor(normalization="percentile", num_channels=kwargs["num_channels"])
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert {"configuration_unet.py", "modeling_unet.py", "image_processing_unet.py"} <= set(os.listdir(tmp_path))
    x = torch.randn(1, kwargs["num_channels"], 37, 45)
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    out = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(out["logits"], model(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(out["pixels"], processor(x[0].numpy())["pixel_values"])
