"""Fixtures of the knowledge-base tests: the packaged-seed KB, and the public sources when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from armed.knowledge import KnowledgeBase
from tests.skips import found_or_skip

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_knowledge_dir() -> Path | None:
    """The public knowledge folder: $ARMED_SHARED_DATA/knowledge, else ../shared/data/knowledge of the repo."""
    env = os.environ.get("ARMED_SHARED_DATA")
    candidates = [Path(env) / "knowledge"] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "knowledge")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def knowledge_dir() -> Path:
    return found_or_skip(shared_knowledge_dir(), "public knowledge data not found (set ARMED_SHARED_DATA or "
                         "provide ../shared/data/knowledge)")


@pytest.fixture(scope="session")
def full_sources(knowledge_dir: Path) -> list[str]:
    return [
        f"drug-inserts:{knowledge_dir / 'drug-inserts'}",
        f"drug-dicts:{knowledge_dir / 'drug-dicts'}",
        f"originator-drugs:{knowledge_dir / 'originator-drugs'}",
    ]


@pytest.fixture(scope="session")
def full_kb(full_sources: list[str]) -> KnowledgeBase:
    return KnowledgeBase.load(sources=full_sources)
