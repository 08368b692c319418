"""Pin every dependency of pyproject.toml to its lower bound: the constraints of CI's minimum-versions run.

    python .ci/lower_bounds.py             # print the constraints
    python .ci/lower_bounds.py --write     # rewrite .ci/constraints-min.txt
    python .ci/lower_bounds.py --check     # exit 1 when .ci/constraints-min.txt is stale

Every requirement of `[project] dependencies` and of the extras (but `bench`, whose peers are not hfseg's
dependencies) must have a `>=` bound; its version becomes `name==version`. Extras that name hfseg itself
(`hfseg[app]`) are followed, not pinned.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / ".ci" / "constraints-min.txt"
SKIPPED_EXTRAS = {"bench"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def lower_bounds(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Distribution name (lower case) -> its `>=` version, over the dependencies and extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        if extra not in SKIPPED_EXTRAS:
            requirements += items
    bounds: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if not match:
            raise ValueError(f"pyproject.toml: cannot parse the requirement {requirement!r}.")
        name, _, spec, marker = match.groups()
        if name.lower() == project["name"]:
            continue
        if marker and "python_version" in marker:
            continue  # a backport for older Pythons (tomli): not part of the tested set
        found = re.search(r">=\s*([0-9][^,\s]*)", spec)
        if not found:
            raise ValueError(f"pyproject.toml: {requirement!r} has no '>=' lower bound.")
        bounds[name.lower()] = found.group(1)
    return bounds


def render(bounds: dict[str, str]) -> str:
    lines = ["# Generated from pyproject.toml by .ci/lower_bounds.py --write: every lower bound, pinned.",
             "# CI installs the package with these constraints and runs the test suite (the minimum-versions run)."]
    return "\n".join(lines + [f"{name}=={version}" for name, version in sorted(bounds.items())]) + "\n"


def main(argv: list[str]) -> int:
    text = render(lower_bounds())
    if "--write" in argv:
        CONSTRAINTS.write_text(text)
    elif "--check" in argv:
        if not CONSTRAINTS.is_file() or CONSTRAINTS.read_text() != text:
            print(f"{CONSTRAINTS} disagrees with pyproject.toml: run python .ci/lower_bounds.py --write")
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
