"""The Space's files: metadata header, requirements agreeing with pyproject.toml, the bundled model, and the
launcher."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from hfseg.app.models import ModelPolicy
from hfseg.app.predict import segment

from .conftest import EXAMPLES, SPACE_MODEL, SPACES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = SPACES.parent
RELEASE = re.compile(r"\d+\.\d+\.\d+")  # what gradio publishes: no pre-, post- or dev releases, no local part


def space_metadata() -> dict:
    text = (SPACES / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "spaces/README.md must start with a YAML metadata block between --- lines"
    return yaml.safe_load(match.group(1))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def app_extra(name: str) -> Requirement:
    return next(r for r in map(Requirement, pyproject()["optional-dependencies"]["app"]) if r.name == name)


def test_readme_metadata_header():
    meta = space_metadata()
    version = str(meta["sdk_version"])
    gradio = app_extra("gradio")
    assert meta["sdk"] == "gradio"
    assert RELEASE.fullmatch(version), f"sdk_version {version!r} is not a gradio release number (like 6.31.0)"
    assert gradio.specifier.contains(version), f"sdk_version {version} does not satisfy the app extra's {gradio}"
    assert (SPACES / meta["app_file"]).is_file()
    assert meta["license"] == "apache-2.0" and meta["title"] and meta["emoji"]
    assert meta["colorFrom"] and meta["colorTo"] and "medical-imaging" in meta["tags"]
    assert "models" not in meta, "the Space's model is bundled in spaces/model, not on the Hub"


def test_the_ui_asks_for_the_gradio_of_the_app_extra():
    from hfseg.app.ui import GRADIO_MIN

    assert str(app_extra("gradio").specifier) == f">={GRADIO_MIN}"


def test_requirements_carry_pyproject_specifiers():
    lines = [line.strip() for line in (SPACES / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    listed = {r.name.lower(): r for r in map(Requirement, lines)}
    project = {r.name.lower(): r for r in map(Requirement, pyproject()["dependencies"])}
    expected = "\n".join(pyproject()["dependencies"])
    assert len(listed) == len(lines), "spaces/requirements.txt lists a package twice"
    assert listed.keys() == project.keys(), f"spaces/requirements.txt must list hfseg's dependencies:\n{expected}"
    for name, requirement in listed.items():
        assert requirement.specifier == project[name].specifier and requirement.marker == project[name].marker, (
            f"{requirement} in spaces/requirements.txt, {project[name]} in pyproject.toml: write\n{expected}")
    assert "gradio" not in listed  # the Space's sdk_version installs it


# Modules of the optional extras other than `app` (the Space installs hfseg's dependencies and gradio only).
EXTRAS_MODULES = ("tensorboard", "h5py", "highdicom", "pylibjpeg", "openjpeg", "libjpeg", "jpeg_ls", "monai",
                  "segmentation_models_pytorch")


def test_the_app_works_without_the_other_extras(gated_model):
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in EXTRAS_MODULES)
    code = (f"import sys; {blocked}\n"
            "from hfseg.app.predict import segment\n"
            "from hfseg.app.ui import build_demo\n"
            f"for name in ('brain_mr.dcm', 'brain_volume.nii.gz', 'brain_06.png'):\n"
            f"    status = segment({gated_model!r}, {str(EXAMPLES)!r} + '/' + name)[-1]\n"
            "    assert not status.startswith('⚠️'), status\n"
            f"build_demo({gated_model!r}, {str(EXAMPLES)!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_bundled_model_files():
    names = {p.name for p in SPACE_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "metrics.json",
            "configuration_unet.py", "modeling_unet.py", "image_processing_unet.py"} <= names
    assert (SPACE_MODEL / "model.safetensors").stat().st_size < 5 * 1024 ** 2  # a few MB, fine for a Space repo
    metrics = json.loads((SPACE_MODEL / "metrics.json").read_text())
    assert metrics["mean_foreground_dice"] >= 0.8
    assert (SPACES / "make_model.py").is_file()
    for code in SPACE_MODEL.glob("*.py"):  # the model code saved with the checkpoint is the package's, unchanged
        source = ROOT / "hfseg" / "models" / "unet" / code.name
        assert code.read_bytes() == source.read_bytes(), f"{code} is stale: copy {source} over it"
    tracked = subprocess.run(["git", "check-ignore", "--no-index", *sorted(str(SPACE_MODEL / n) for n in names)],
                             cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 128:
        pytest.skip("not a git checkout")
    assert tracked.stdout == "", f"ignored by .gitignore: {tracked.stdout}"


def test_bundled_model_segments_the_demo_validation_split():
    """Mean foreground Dice of the bundled model on the demo dataset's validation split, counted here."""
    import numpy as np

    import hfseg.data
    from hfseg.inference import load_model, predict_mask

    model, processor = load_model(SPACE_MODEL, device="cpu")
    dice = {k: [0, 0] for k in (1, 2, 3)}  # overlap x 2, sizes
    for row in hfseg.data.load("demo")["validation"]:
        pred = predict_mask(model, processor, np.asarray(row["image"])).numpy()
        label = np.asarray(row["label"])
        for k in dice:
            dice[k][0] += 2 * int(((pred == k) & (label == k)).sum())
            dice[k][1] += int((pred == k).sum() + (label == k).sum())
    per_class = [overlap / size for overlap, size in dice.values()]
    assert min(per_class) > 0.6 and np.mean(per_class) >= 0.8, per_class


def test_app_file_offers_the_bundled_model(monkeypatch):
    for name in ("HFSEG_MODEL", "HFSEG_MODELS", "HFSEG_ALLOW_ANY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # restored (unset) after the test
    monkeypatch.delenv("OMP_WAIT_POLICY")
    namespace = runpy.run_path(str(SPACES / "app.py"), run_name="space_app")  # not __main__: nothing is launched
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert namespace["EXAMPLES"] == EXAMPLES and callable(namespace["launch"])
    assert namespace["MODEL"] == SPACE_MODEL
    assert ModelPolicy.from_environment(bundled=namespace["MODEL"]).default == str(SPACE_MODEL)


def test_the_operator_sets_the_queue_size(monkeypatch):
    from hfseg.app.ui import MAX_QUEUE

    max_queue = runpy.run_path(str(SPACES / "app.py"), run_name="space_app")["max_queue"]
    monkeypatch.delenv("HFSEG_MAX_QUEUE", raising=False)
    assert max_queue() == MAX_QUEUE
    monkeypatch.setenv("HFSEG_MAX_QUEUE", " 40 ")
    assert max_queue() == 40
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("HFSEG_MAX_QUEUE", bad)
        with pytest.raises(SystemExit, match="HFSEG_MAX_QUEUE"):
            max_queue()
