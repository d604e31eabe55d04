"""Model fixtures shared by the engine tests (other areas keep their fixtures in their own conftest)."""

from __future__ import annotations

import pytest

from armed.engines.tiny import TinyCheckpoints
from tests import tiny_models


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    """Tiny random Qwen3 / Qwen3-classifier / Qwen2.5-VL checkpoints with the real Qwen tokenizer (~15 s)."""
    return tiny_models.generate(tmp_path_factory.mktemp("tiny-models"))
