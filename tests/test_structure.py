"""The import structure of the source tree: no import circle among armed's, the deployments', the Serve apps' and
the operator tools' modules and the test doubles (armed_testing/), and no arrow back from the library (armed/) to the
layers built on it (deployments/, serve_apps/, ops/, armed_testing/).

The graph is read from the source (every `import` and `from ... import`, at module level, inside functions and
under TYPE_CHECKING alike, plus `importlib.import_module("literal")`), never from a list of files: a new module or
a new import is checked the day it lands. A circle is a strongly connected component of more than one module; the
failure names its modules and one import that closes it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("armed", "deployments", "serve_apps", "ops", "armed_testing")
LIBRARY = "armed"
ABOVE_LIBRARY = ("deployments", "serve_apps", "ops", "armed_testing")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the import


def modules(root: Path, packages: Iterable[str]) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package's __init__) for every .py file under the packages."""
    out: dict[str, tuple[Path, bool]] = {}
    for top in packages:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _known(name: str, mods: dict[str, tuple[Path, bool]]) -> str | None:
    """The longest in-project module that `name` names or lies inside (an attribute path `pkg.mod.Class` → pkg.mod)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in mods:
            return ".".join(parts)
        parts.pop()
    return None


def _targets(node: ast.AST, module: str, is_pkg: bool, mods: dict[str, tuple[Path, bool]]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the module's package, one level up per extra dot
            package = module.split(".") if is_pkg else module.split(".")[:-1]
            base_parts = package[: len(package) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"  # `from pkg import mod` imports the submodule pkg.mod
            yield sub if sub in mods else base
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
          and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        yield node.args[0].value


def import_graph(root: Path, packages: Iterable[str]) -> tuple[set[str], list[Edge]]:
    """Every in-project module and every import between two of them (self-imports left out)."""
    mods = modules(root, packages)
    edges = []
    for module, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for name in _targets(node, module, is_pkg, mods):
                target = _known(name, mods)
                if target is not None and target != module:
                    edges.append(Edge(module, target, f"{path.relative_to(root)}:{node.lineno}"))  # type: ignore[attr-defined]
    return set(mods), edges


def circles(nodes: set[str], edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        succ[e.source].append(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return sorted(found)


def describe(component: list[str], edges: list[Edge]) -> str:
    inside = set(component)
    arrows = sorted({f"{e.source} → {e.target} ({e.where})" for e in edges
                     if e.source in inside and e.target in inside})
    return f"{len(component)} modules {component}:\n    " + "\n    ".join(arrows)


def back_arrows(edges: list[Edge]) -> list[Edge]:
    """Imports from the library into a layer above it."""
    def top(m: str) -> str:
        return m.split(".")[0]

    return [e for e in edges if top(e.source) == LIBRARY and top(e.target) in ABOVE_LIBRARY]


# ------------------------------------------------------------------------------------------------------ the tree


def test_no_import_circle() -> None:
    nodes, edges = import_graph(REPO, PACKAGES)
    assert len(nodes) > 100  # the walk found the tree (not an empty folder)
    found = circles(nodes, edges)
    assert not found, "import circles (break them; a function-level import does not):\n" + "\n".join(
        describe(c, edges) for c in found)


def test_the_library_imports_no_layer_above_it() -> None:
    _, edges = import_graph(REPO, PACKAGES)
    found = sorted(f"{e.source} → {e.target} ({e.where})" for e in back_arrows(edges))
    assert not found, "armed/ imports deployments/, serve_apps/, ops/ or armed_testing/:\n" + "\n".join(found)


# ------------------------------------------------------------------------------------- the check can fail


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_check_finds_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "lib/__init__.py": "",
        "lib/a.py": "from lib import b\n",                                   # a → b (a submodule via from-import)
        "lib/b.py": "def f():\n    from .sub.c import X\n    return X\n",    # b → c, relative, in a function
        "lib/sub/__init__.py": "",
        "lib/sub/c.py": "import importlib\nimport lib.a as a\nX = importlib.import_module('lib.d')\n",  # c → a, d
        "lib/d.py": "from lib.sub import c\n",                               # d → c
        "lib/e.py": "from lib.a import something\nimport json\n",            # e → a only: outside every circle
        "top/__init__.py": "",
        "top/app.py": "from lib import e\n",
    })
    nodes, edges = import_graph(root, ("lib", "top"))
    assert nodes == {"lib", "lib.a", "lib.b", "lib.sub", "lib.sub.c", "lib.d", "lib.e", "top", "top.app"}
    assert circles(nodes, edges) == [["lib.a", "lib.b", "lib.d", "lib.sub.c"]]
    assert "lib.b → lib.sub.c (lib/b.py:2)" in describe(["lib.a", "lib.b", "lib.d", "lib.sub.c"], edges)


def test_the_check_finds_no_circle_in_a_layered_package(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "lib/__init__.py": "from lib.a import A\n",
        "lib/a.py": "A = 1\n",
        "lib/b.py": "from lib import a\nfrom . import a as again\n",
    })
    nodes, edges = import_graph(root, ("lib",))
    assert {(e.source, e.target) for e in edges} == {("lib", "lib.a"), ("lib.b", "lib.a")}
    assert circles(nodes, edges) == []


def test_the_check_finds_a_back_arrow(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "armed/__init__.py": "",
        "armed/tool.py": "def run():\n    from deployments.judge import J\n    return J\n",
        "deployments/__init__.py": "",
        "deployments/judge.py": "from armed import tool\nJ = 1\n",
    })
    nodes, edges = import_graph(root, ("armed", "deployments"))
    assert [(e.source, e.target, e.where) for e in back_arrows(edges)] == [
        ("armed.tool", "deployments.judge", "armed/tool.py:2")]
    assert circles(nodes, edges) == [["armed.tool", "deployments.judge"]]
