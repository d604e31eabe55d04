"""The build (armed/knowledge/build.py) alone makes a knowledge base's content: `KnowledgeBase.__init__` only adds
where it was loaded from and the version, so the state an artefact stores and the version it carries are the
builder's fields, whichever way a KB is made."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from armed.knowledge import KnowledgeBase
from armed.knowledge.build import KnowledgeBuilder, build_state
from armed.knowledge.content import content_version
from armed.knowledge.sources import LoadedSource, read_source


def _dicts_source(tmp_path: Path) -> LoadedSource:
    dicts = tmp_path / "dicts"
    dicts.mkdir()
    (dicts / "drug.txt").write_text("测试宁片\n", encoding="utf-8")
    return read_source(f"drug-dicts:{dicts}")


def test_a_kb_holds_the_builders_fields_and_versions_them(tmp_path: Path, kb: KnowledgeBase) -> None:
    src = _dicts_source(tmp_path)
    built = KnowledgeBase.from_sources([src])
    state = build_state(kb.seed, [src])
    assert list(built.state()) == [*state, "artefact_path", "version"]
    assert state["source_names"] == ["seed", src.spec]
    assert built.common_name_of("测试宁片") == "测试宁"
    # The version is the builder's fields hashed: nothing __init__ adds is content.
    assert content_version(SimpleNamespace(**state)) == built.version != kb.version


def test_a_builder_builds_one_knowledge_base(tmp_path: Path, kb: KnowledgeBase) -> None:
    """build() hands over its tables, not copies: a later ingest would change a KB already made from them."""
    builder = KnowledgeBuilder(kb.seed)
    builder.build()
    with pytest.raises(RuntimeError, match="after build"):
        builder.ingest(_dicts_source(tmp_path))
    with pytest.raises(RuntimeError, match="twice"):
        builder.build()
