"""Session fixtures shared across areas: tiny model checkpoints, and helm / CRD schemas (tests/cluster_fixtures)."""

from __future__ import annotations

import pytest

from armed.engines.tiny import TinyCheckpoints
from tests import tiny_models
from tests.cluster_fixtures import crds, helm  # noqa: F401  (fixtures for tests/k8s and tests/ops)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    """Tiny random Qwen3 / Qwen3-classifier / Qwen2.5-VL checkpoints with the real Qwen tokenizer (~15 s)."""
    return tiny_models.generate(tmp_path_factory.mktemp("tiny-models"))
