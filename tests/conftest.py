"""Session fixtures shared across areas: tiny model checkpoints, and helm / CRD schemas (tests/cluster_fixtures)."""

from __future__ import annotations

# Ray re-initialises itself from any API call when it is not initialised (`auto_init_hook`). After a test module
# shuts its Ray down, a Serve handle's router thread still pushes metrics with `ray.wait`; auto-connecting from
# that thread while the interpreter exits crashed pytest with a segfault after every test had passed (a clean-clone
# CI run, 2026-11-28). Switched off in this process only: not through RAY_ENABLE_AUTO_CONNECT, which the test
# clusters' workers would inherit (Serve replicas behave differently without it).
from armed.serving.ray_compat import disable_auto_connect

disable_auto_connect()

import os  # noqa: E402

# The tests judge with the packaged seed, whatever knowledge-base artefact this machine has installed
# ($ARMED_CACHE_DIR/kb/current, `make kb`): a test that wants an artefact builds one in tmp_path.
os.environ.setdefault("ARMED_KNOWLEDGE__ARTEFACT", "none")

import pytest  # noqa: E402  (after the Ray switch above)

from armed.engines.tiny import TinyCheckpoints  # noqa: E402
from armed.knowledge import KnowledgeBase  # noqa: E402
from tests import tiny_models  # noqa: E402
from tests.cluster_fixtures import crds, helm  # noqa: F401,E402  (fixtures for tests/k8s and tests/ops)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    """The packaged seed's knowledge base, built once for the session: every method of it is read-only."""
    return KnowledgeBase.load()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    """Tiny random Qwen3 / Qwen3-classifier / Qwen2.5-VL checkpoints with the real Qwen tokenizer (~15 s)."""
    return tiny_models.generate(tmp_path_factory.mktemp("tiny-models"))
