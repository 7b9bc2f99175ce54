"""The packages import one way: common → domains → syconet → harmonizers → router → eval, with the
command entry modules on top; and no package uses another package's ``_private`` names."""
import ast
from pathlib import Path

import pytest

from .conftest import ROOT

LAYERS = ["common", "domains", "syconet", "harmonizers", "router", "eval"]
# entry modules of commands: they orchestrate the layers below them (python -m domains.finetune
# trains with harmonizers and scores with eval), so they may import anything
ENTRY_MODULES = {"domains.finetune"}


def _modules():
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).glob("*.py")):
            yield f"{pkg}.{path.stem}" if path.stem != "__init__" else pkg, path


def _imports(path: Path):
    """(line, imported module, imported names) for every import, at any depth (function-level too)."""
    tree = ast.parse(path.read_text())
    pkg = path.parent.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative: inside the package
                mod = pkg + ("." + mod if mod else "")
            yield node.lineno, mod, [a.name for a in node.names]


def _violations():
    rank = {p: i for i, p in enumerate(LAYERS)}
    upward, private = [], []
    for name, path in _modules():
        pkg = name.split(".")[0]
        aliases = {}  # local name → module of another package
        for line, mod, names in _imports(path):
            top = mod.split(".")[0]
            if top not in rank:
                continue
            if rank[top] > rank[pkg] and name not in ENTRY_MODULES:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {mod} ({pkg} sits below {top})")
            if top != pkg:
                private += [f"{path.relative_to(ROOT)}:{line} imports {mod}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
                for n in names:
                    aliases[n] = f"{mod}.{n}"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                private.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return upward, private


def _private_attributes():
    """``obj._name`` used in one package where ``_name`` is a private function, class, method or
    instance attribute of another package only (``self``/``cls`` aside): a reach into its insides."""
    def private(name):
        return name.startswith("_") and not name.startswith("__")
    defined = {}
    trees = {(pkg, path): ast.parse(path.read_text()) for pkg in LAYERS for path in sorted((ROOT / pkg).glob("*.py"))}
    for (pkg, _), tree in trees.items():
        for n in ast.walk(tree):
            names = [n.name] if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else \
                [t.attr for t in getattr(n, "targets", []) if isinstance(t, ast.Attribute)]
            for name in filter(private, names):
                defined.setdefault(name, set()).add(pkg)
    return [f"{path.relative_to(ROOT)}:{n.lineno} uses .{n.attr} of {'/'.join(sorted(defined[n.attr]))}"
            for (pkg, path), tree in trees.items() for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and private(n.attr) and n.attr in defined and pkg not in defined[n.attr]
            and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))]


def test_packages_import_one_way():
    upward, _ = _violations()
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_private_names_across_packages():
    _, private = _violations()
    assert not private, "private names used across packages:\n" + "\n".join(private)


def test_no_private_attributes_across_packages():
    found = _private_attributes()
    assert not found, "private attributes of other packages used:\n" + "\n".join(found)


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    """The walker itself: an upward import and a private name in a throwaway package are found."""
    import tests.test_layers as T
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir()
    (tmp_path / "domains" / "bad.py").write_text("def f():\n    from eval.score import score\n"
                                                 "from common.io import _open\n")
    (tmp_path / "router" / "worse.py").write_text("from harmonizers import models\nmodels._resize(1, 2)\n")
    monkeypatch.setattr(T, "ROOT", tmp_path)
    upward, private = T._violations()
    assert upward == ["domains/bad.py:2 imports eval.score (domains sits below eval)"]
    assert private == ["domains/bad.py:3 imports common.io._open", "router/worse.py:2 uses harmonizers.models._resize"]
    (tmp_path / "router" / "classifier.py").write_text("class C:\n    def _resized(self):\n        return self._resized\n")
    (tmp_path / "eval" / "probe.py").write_text("def f(clf):\n    return clf._resized()\n")
    assert T._private_attributes() == ["eval/probe.py:2 uses ._resized of router"]


@pytest.mark.parametrize("shim,home", [("eval.metrics", "common.metrics"), ("syconet.lut", "common.lut")])
def test_moved_modules_keep_their_names(shim, home):
    """Metrics and the LUT engine live below every package; their documented names still work."""
    import importlib
    a, b = importlib.import_module(shim), importlib.import_module(home)
    assert all(getattr(a, n) is getattr(b, n) for n in b.__all__)


def test_one_colour_module():
    """sRGB's transfer curve and the CIELAB matrix are written once, in common/colour.py."""
    marks = ("0.04045", "0.0031308", "0.4124564", "0.95047")
    found = [f"{p.relative_to(ROOT)}: {m}" for pkg in [*LAYERS, "scripts", "bench"] for p in sorted((ROOT / pkg).rglob("*.py"))
             if p != ROOT / "common" / "colour.py" for m in marks if m in p.read_text()]
    assert not found, "colour-space constants outside common/colour.py:\n" + "\n".join(found)


def test_no_function_over_60_lines():
    """Functions read in one screen: none over 60 lines outside bench/ (whose scripts are measurements)."""
    long = []
    for pkg in [*LAYERS, "scripts", "tests"]:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                    if node.end_lineno - start + 1 > 60:
                        long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - start + 1} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


# the modules where each kind's models are built and loaded; production code reaches them through
# common.registry (create, load)
MODEL_HOMES = {"harmonizers.models", "harmonizers.net", "syconet.model", "router.classifier"}


def _doors(roots):
    """Imports of ``create`` / ``load`` / ``from_meta`` from a model home, except by another home."""
    found = []
    for root in roots:
        for p in sorted((ROOT / root).rglob("*.py")):
            if ".".join(p.relative_to(ROOT).with_suffix("").parts) in MODEL_HOMES:
                continue
            for line, mod, names in _imports(p):
                bad = {"create", "load", "from_meta"} & set(names)
                if mod in MODEL_HOMES and bad:
                    found.append(f"{p.relative_to(ROOT)}:{line} imports {sorted(bad)} from {mod}")
    return found


def test_one_door_for_models():
    """Production code builds and loads every model through common.registry; the test-only variants
    live under tests/ (tests/variants.py), none beside the shipped ones."""
    assert not _doors([*LAYERS, "scripts", "bench"])
    from common import registry
    tiny = {n for n in registry.variants() if n.endswith("_test")}
    shipped = set(registry.variants()) - tiny
    for pkg in LAYERS:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            text = p.read_text()
            assert not [n for n in tiny if f'"{n}"' in text], f"{p.relative_to(ROOT)} names a test variant"
    assert {"gct64", "issam256", "syconet_r18", "domain_classifier"} <= shipped
    assert {"gct_test", "syconet_test"} <= set(registry.variants())  # registered from tests/variants.py
