"""The source tree as the structure tests read it (tests/test_roles.py, test_stages.py, test_kb_private_fields.py):
where the repository is, which folders hold the product's code, and each module parsed once per session."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The product's code: the library, the deployments and Serve apps built on it, and the operator tools.
SOURCE_DIRS: tuple[str, ...] = ("armed", "deployments", "serve_apps", "ops")


@functools.cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def source_trees(dirs: tuple[str, ...] = SOURCE_DIRS, skip: Path | None = None) -> list[tuple[Path, ast.Module]]:
    """(path, parsed module) of every .py file under `dirs` of the repository, in path order, `skip` left out (the
    file a check is about, which may name what it forbids elsewhere)."""
    return [(path, _parsed(path)) for top in dirs for path in sorted((REPO / top).rglob("*.py")) if path != skip]
