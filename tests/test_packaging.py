"""The package declares what it imports, optional extras stay optional, the minimum-versions constraints match
pyproject.toml, the README opens with its two commands, and CI runs the test one."""

import ast
import importlib.metadata
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "huggingface_hub": "huggingface-hub", "pytorch_grad_cam": "grad-cam",
                "skimage": "scikit-image"}
# Modules of the optional extras: importing the library's core must not need them.
OPTIONAL = ("gradio", "tensorboard", "h5py", "highdicom", "pylibjpeg", "openjpeg", "libjpeg", "jpeg_ls")


def _imports(package: Path) -> set[str]:
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"hfseg"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_third_party_import_is_a_declared_dependency():
    project = _project()
    extras = project["optional-dependencies"]
    declared = _requirement_names(project["dependencies"])
    optional = _requirement_names([r for name, items in extras.items() if name != "bench" for r in items])
    missing = {name for name in _imports(ROOT / "hfseg")
               if DISTRIBUTION.get(name, name).lower() not in declared | optional}
    assert not missing, f"imported but not in pyproject dependencies or extras: {sorted(missing)}"
    assert project["requires-python"] == ">=3.10"
    assert "pytest" in _requirement_names(extras["dev"])
    assert {"gradio", "tensorboard", "h5py"} & declared == set(), "the demo, the tracker and HDF5 are extras"


def test_every_requirement_has_a_lower_bound_and_extras_compose():
    project = _project()
    for requirement in project["dependencies"]:
        assert ">=" in requirement, f"{requirement!r} needs a lower bound (the oldest tested release)"
    extras = project["optional-dependencies"]
    assert {"app", "tensorboard", "hdf5", "dicom", "bench", "dev", "all"} <= set(extras)
    assert "hfseg[all]" in extras["dev"] and Requirement(extras["all"][0]).extras == {"app", "tensorboard", "hdf5",
                                                                                       "dicom"}
    assert project["scripts"]["hfseg"] == "hfseg.cli:main"
    assert project["license"] == {"text": "Apache-2.0"} and "Apache License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CITATION.cff").is_file() and project["urls"]


def test_the_core_imports_without_the_optional_extras():
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in OPTIONAL)
    code = (f"import sys; {blocked}\n"
            "import hfseg, hfseg.data, hfseg.training, hfseg.evaluation, hfseg.explain, hfseg.hub, hfseg.metrics\n"
            "import hfseg.app\n"  # the package itself; its UI needs gradio only when built
            "hfseg.create_model('unet', base_channels=4, depth=1, num_labels=2)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _lower_bounds_module() -> dict:
    return runpy.run_path(str(ROOT / ".ci" / "lower_bounds.py"), run_name="lower_bounds")


def test_minimum_versions_constraints_match_pyproject():
    module = _lower_bounds_module()
    bounds = module["lower_bounds"]()
    assert module["render"](bounds) == (ROOT / ".ci" / "constraints-min.txt").read_text(), (
        "pyproject.toml and .ci/constraints-min.txt disagree: run python .ci/lower_bounds.py --write")
    assert bounds["torch"] and bounds["transformers"]
    assert bounds["monai"] == "1.5.1"  # the core bound (3D augmentation), not the bench extra's 1.6.1
    assert "segmentation-models-pytorch" not in bounds  # bench peers are not pinned


def test_lower_bounds_refuses_a_requirement_without_a_bound(tmp_path):
    module = _lower_bounds_module()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "hfseg"\ndependencies = ["torch>=2.6", "numpy"]\n')
    with pytest.raises(ValueError, match="'numpy' has no '>=' lower bound"):
        module["lower_bounds"](tmp_path / "pyproject.toml")


@pytest.mark.skipif(os.environ.get("HFSEG_MIN_VERSIONS") != "1", reason="only in CI's minimum-versions run")
def test_the_minimum_versions_run_has_exactly_the_lower_bounds_installed():
    bounds = _lower_bounds_module()["lower_bounds"]()
    wrong = {name: importlib.metadata.version(name) for name, version in bounds.items()
             if Version(importlib.metadata.version(name)) != Version(version)}
    assert not wrong, f"installed versions differ from the lower bounds: {wrong}"


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert readme.lstrip().startswith("# hfseg") and len(blocks) >= 2
    assert readme.index("```bash") < readme.index("\n## ")
    setup_and_run, setup_and_test = blocks[0].strip(), blocks[1].strip()
    assert "pip install" in setup_and_run and "pytest" in setup_and_test
    assert setup_and_test in (ROOT / ".ci" / "run").read_text()
