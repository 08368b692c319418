"""The Space's files: metadata header, requirements covering what the app imports, and the launcher."""

import importlib.metadata
import re
import runpy
import sys
import tomllib
from pathlib import Path

import gradio
import yaml
from packaging.requirements import Requirement

from hfseg.app.predict import segment

from .conftest import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "spaces"


def space_metadata() -> dict:
    text = (SPACE / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "spaces/README.md must start with a YAML metadata block between --- lines"
    return yaml.safe_load(match.group(1))


def test_readme_metadata_header():
    meta = space_metadata()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (SPACE / meta["app_file"]).is_file()
    assert meta["license"] == "apache-2.0" and meta["title"] and meta["emoji"]
    assert meta["colorFrom"] and meta["colorTo"] and "medical-imaging" in meta["tags"]


def test_requirements_cover_what_the_app_imports(gated_model):
    segment(gated_model, str(EXAMPLES / "brain_mr.dcm"))
    segment(gated_model, str(EXAMPLES / "brain_volume.nii.gz"))
    listed = {Requirement(line).name.lower() for line in (SPACE / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    modules = importlib.metadata.packages_distributions()
    loaded = {dist.lower() for name in sys.modules for dist in modules.get(name.split(".")[0], [])}
    needed = {Requirement(dep).name.lower() for dep in project} & loaded
    assert needed - {"gradio"} <= listed, f"add to spaces/requirements.txt: {sorted(needed - {'gradio'} - listed)}"
    assert listed <= {Requirement(dep).name.lower() for dep in project}


def test_app_file_points_at_the_examples():
    namespace = runpy.run_path(str(SPACE / "app.py"), run_name="space_app")  # not __main__: nothing is launched
    assert namespace["EXAMPLES"] == EXAMPLES and callable(namespace["launch"])
