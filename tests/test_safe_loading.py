"""Nothing is unpickled from user files and no code ships in by default: every `torch.load` in the source tree passes
`weights_only=True`, no `pickle.load` / `np.load(allow_pickle=True)`, and `trust_remote_code` is never on by
default (read from the syntax tree, so docstrings and comments do not count)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("hfseg", "recipes", "spaces", "benchmarks", "tools")


def sources() -> list[Path]:
    return sorted(p for tree in TREES if (ROOT / tree).is_dir() for p in (ROOT / tree).rglob("*.py"))


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_lines(source: str) -> list[tuple[int, str]]:
    """(line, what) for each unsafe load or `trust_remote_code` turned on by default in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name, keywords = _name(node.func), {k.arg: k.value for k in node.keywords}
            if name.endswith("torch.load"):
                if not _is_true(keywords.get("weights_only")):
                    found.append((node.lineno, "torch.load without weights_only=True"))
            if name in ("pickle.load", "pickle.loads", "cloudpickle.load", "dill.load", "joblib.load"):
                found.append((node.lineno, name))
            if name.endswith("np.load") or name.endswith("numpy.load"):
                if _is_true(keywords.get("allow_pickle")):
                    found.append((node.lineno, "np.load(allow_pickle=True)"))
            if _is_true(keywords.get("trust_remote_code")):
                found.append((node.lineno, "trust_remote_code=True"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            found += [(node.lineno, f"{node.name}(trust_remote_code=True)") for a, d in pairs
                      if a.arg == "trust_remote_code" and _is_true(d)]
        elif isinstance(node, ast.AnnAssign) and _name(node.target).endswith("trust_remote_code"):
            if _is_true(node.value):
                found.append((node.lineno, "trust_remote_code: ... = True"))
    return sorted(found)


def test_the_checker_finds_what_it_looks_for():
    bad = ("import torch, pickle, numpy as np\n"
           "torch.load('x')\n"
           "torch.load('x', weights_only=False)\n"
           "pickle.load(open('x', 'rb'))\n"
           "np.load('x', allow_pickle=True)\n"
           "def f(name, trust_remote_code=True): ...\n"
           "def g(*, trust_remote_code=True): ...\n"
           "class C:\n    trust_remote_code: bool = True\n"
           "m = f('x', trust_remote_code=True)\n")
    assert [line for line, _ in unsafe_lines(bad)] == [2, 3, 4, 5, 6, 7, 9, 10]
    good = ("import torch, numpy as np\n"
            "torch.load('x', weights_only=True)\n"
            "np.load('x')\n"
            "def f(name, trust_remote_code=False): ...\n"
            "'''torch.load(x) and trust_remote_code=True in a docstring'''\n")
    assert unsafe_lines(good) == []


def test_no_unsafe_loading_in_the_source_tree():
    files = sources()
    assert len(files) > 50  # the trees are there
    offenders = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in files
                 for line, what in unsafe_lines(path.read_text())]
    assert offenders == []
