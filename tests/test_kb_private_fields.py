"""Nothing outside armed/knowledge/base.py reads a KnowledgeBase's private fields.

The fields change shape (a dict when built in memory, a memory-mapped index in an artefact) and name as the class
changes; a tool that read them (the artefact's counts, `armed kb diff`, the bench, the document embedder once did)
broke or silently read the wrong thing when they did. What the tools need is KnowledgeBase's read API (`records()`,
`docs()`, `lexicon_entries()`, `lexicon_lookup()`, `brand_names()`, `common_names()`, `counts()`), and the artefact's
(de)serialiser goes through `state()` / `from_state()`.

Which expressions are a knowledge base is a heuristic read from the source (no type checker runs here): a name `kb`,
`knowledge` or ending in `_kb`; an attribute `.kb`, `._kb` or `.knowledge` (`self.kb`, `pipeline.knowledge`); a
name annotated with KnowledgeBase (a parameter, `x: KnowledgeBase = ...`); a name assigned from a call that makes
one (KnowledgeBase(...), KnowledgeBase.load / from_sources / from_state, load_artefact, load_knowledge, open_kb).
A read of an attribute starting with `_` on one of them, outside the class's own module, fails the test; writes
(a test planting a field the artefact cannot store) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.source_tree import REPO, SOURCE_DIRS, source_trees

# The class's own module. Nothing else: the artefact's (de)serialiser reads and sets the fields through
# KnowledgeBase.state() / from_state(), which say in one place that the state is every field.
ALLOWED = {REPO / "armed" / "knowledge" / "base.py"}
SCANNED = (*SOURCE_DIRS, "armed_testing", "tests")
KB_NAMES = frozenset({"kb", "knowledge"})
KB_ATTRS = frozenset({"kb", "_kb", "knowledge"})
KB_FACTORIES = frozenset({"KnowledgeBase", "load_artefact", "load_knowledge", "open_kb"})
PUBLIC_DUNDERS = frozenset({"__class__", "__doc__", "__module__"})


def _makes_kb(value: ast.AST | None) -> bool:
    """A call that returns a KnowledgeBase: a factory by name, or any classmethod of KnowledgeBase."""
    if not isinstance(value, ast.Call):
        return False
    f = value.func
    return ((isinstance(f, ast.Name) and f.id in KB_FACTORIES)
            or (isinstance(f, ast.Attribute) and f.attr in KB_FACTORIES)
            or (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "KnowledgeBase"))


def _is_kb_annotation(annotation: ast.AST | None) -> bool:
    return annotation is not None and "KnowledgeBase" in ast.unparse(annotation)


def _kb_names_in(node: ast.AST) -> set[str]:
    """Names a scope (module or function, nested ones included: an over-approximation) binds to a KnowledgeBase."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.arg) and _is_kb_annotation(n.annotation):
            names.add(n.arg)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and (
                _is_kb_annotation(n.annotation) or _makes_kb(n.value)):
            names.add(n.target.id)
        elif isinstance(n, ast.Assign) and _makes_kb(n.value):
            names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    return names


def _is_kb(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in KB_NAMES or node.id.endswith("_kb") or node.id in names
    return isinstance(node, ast.Attribute) and node.attr in KB_ATTRS


def private_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, source) of every read of a `_private` attribute of an expression that is a KnowledgeBase."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, names: set[str]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            names = names | _kb_names_in(node)
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr.startswith("_")
                and node.attr not in PUBLIC_DUNDERS and _is_kb(node.value, names)):
            found.append((node.lineno, ast.unparse(node)))
        for child in ast.iter_child_nodes(node):
            visit(child, names)

    module_names = {t.id for n in getattr(tree, "body", []) if isinstance(n, ast.Assign) and _makes_kb(n.value)
                    for t in n.targets if isinstance(t, ast.Name)}
    visit(tree, module_names)
    return found


def test_no_module_reads_a_knowledge_bases_private_fields() -> None:
    found = [f"{path.relative_to(REPO)}:{line}: {text}"
             for path, tree in source_trees(SCANNED) if path not in ALLOWED for line, text in private_reads(tree)]
    assert not found, ("private fields of a KnowledgeBase read outside armed/knowledge/base.py (use its read API: "
                       "records(), docs(), lexicon_entries(), counts(), ...):\n" + "\n".join(found))


def test_the_check_catches_each_way_of_naming_a_knowledge_base() -> None:
    source = '''
kb._records
def f(a: KnowledgeBase, b: "KnowledgeBase | None", other) -> None:
    a._docs
    b._matcher.entries()
    other._private                       # not a knowledge base
    a.records()                          # the read API
def g(self):
    self.kb._brand
    seed_kb._cn
    built = load_artefact(path)
    built._docs
    fresh = KnowledgeBase.load()
    fresh._bm25
    kb._callback = print                 # a write, not a read
'''
    assert [text for _, text in private_reads(ast.parse(source))] == [
        "kb._records", "a._docs", "b._matcher", "self.kb._brand", "seed_kb._cn", "built._docs", "fresh._bm25"]


def test_the_scan_reads_the_tools_that_use_the_read_api() -> None:
    """The scan covers the modules that once read the fields (a scan that found no files would pass vacuously)."""
    scanned = {path for path, _ in source_trees(SCANNED)}
    for rel in ("armed/knowledge/artefact.py", "armed/knowledge/cli.py", "armed/knowledge/bench.py",
                "armed/knowledge/doc_vectors.py", "tests/knowledge/test_artefact.py"):
        assert Path(REPO / rel) in scanned, rel
