"""The package declares what it imports, the README opens with its two commands, and CI runs the test one."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "huggingface_hub": "huggingface-hub", "pytorch_grad_cam": "grad-cam"}


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


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"])
    missing = {name for name in _imports(ROOT / "hfseg") if DISTRIBUTION.get(name, name).lower() not in declared}
    assert not missing, f"imported but not in pyproject dependencies: {sorted(missing)}"
    assert project["requires-python"] == ">=3.10"
    assert "pytest" in _requirement_names(project["optional-dependencies"]["dev"])


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert readme.lstrip().startswith("# hfseg") and len(blocks) >= 2
    assert readme.index("```bash") < readme.index("\n## ")
    setup_and_run, setup_and_test = blocks[0].strip(), blocks[1].strip()
    assert "pip install" in setup_and_run and "pytest" in setup_and_test
    assert setup_and_test in (ROOT / ".ci" / "run").read_text()
