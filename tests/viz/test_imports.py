"""The floors of hfseg: library code never imports the recipe (`hfseg.training`), the app or the CLI, and `hfseg.viz`
stands on numpy, PIL, matplotlib and torch alone. Checked on the source with `ast`, relative imports resolved."""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import hfseg

PACKAGE = Path(hfseg.__file__).resolve().parent
LIBRARY = ("hub", "explain", "evaluation", "viz", "io", "inference", "metrics", "models", "data")
FORBIDDEN = ("hfseg.training", "hfseg.app", "hfseg.cli")
VIZ_DEPENDENCIES = {"numpy", "PIL", "matplotlib", "torch"}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> Iterator[tuple[int, str]]:
    """`(line, absolute module name)` of every import in `path` (a module under `root`), at any depth (lazy imports
    in functions too).

    `from a import b` yields `a` and `a.b` (b may be a submodule); relative imports are resolved against `path`.
    """
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders if (PACKAGE / folder).is_dir() for p in (PACKAGE / folder).rglob("*.py"))


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_imports_are_found_and_resolved(tmp_path):
    assert "hfseg.viz" in {name for _, name in imported_modules(PACKAGE / "explain" / "explanation.py")}  # from ..viz
    bad = tmp_path / "hfseg" / "explain" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from ..training import report\n    from .. import app\n    import hfseg.cli\n")
    init = tmp_path / "hfseg" / "explain" / "__init__.py"
    init.write_text("from .cam import compute_cam\nfrom ..viz.overlay import blend\n")
    assert {"hfseg.training", "hfseg.training.report", "hfseg.app", "hfseg.cli"} <= {
        name for _, name in imported_modules(bad, tmp_path)}
    assert {"hfseg.explain.cam", "hfseg.viz.overlay"} <= {name for _, name in imported_modules(init, tmp_path)}


def test_library_code_does_not_import_training_app_or_cli():
    sources = _sources(*LIBRARY)
    assert len(sources) > 20 and (PACKAGE / "viz" / "overlay.py") in sources
    bad = [f"{path.relative_to(PACKAGE)} line {line}: {name}" for path in sources
           for line, name in imported_modules(path) if any(_is_within(name, prefix) for prefix in FORBIDDEN)]
    assert not bad, "Library code imports the recipe, the app or the CLI (move what it needs down): " + "; ".join(bad)


def test_viz_uses_only_numpy_pil_matplotlib_torch():
    bad = []
    for path in _sources("viz"):
        for line, name in imported_modules(path):
            top = name.split(".")[0]
            if top == "hfseg":
                ok = _is_within(name, "hfseg.viz")
            else:
                ok = top in VIZ_DEPENDENCIES or top in sys.stdlib_module_names or top == "__future__"
            if not ok:
                bad.append(f"{path.relative_to(PACKAGE)} line {line}: {name}")
    assert not bad, "hfseg.viz imports more than numpy, PIL, matplotlib, torch and itself: " + "; ".join(bad)
