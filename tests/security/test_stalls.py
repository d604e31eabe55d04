"""No stalls, without Ray: a blocking call that never returns fails its own request by its deadline, the event loop
keeps serving everything else, and the health checks say the replica is wedged.

The wedged engine is the zero-work engine with `wedge_on` (armed_testing/zero_work.py): a call whose input contains
the marker blocks the engine's worker thread on an Event, as a hung CUDA kernel would; the wedged image read is a
real FIFO opened for reading. Replacement by Serve and killed replicas: tests/security/test_stalls_serve.py.

No assert here bounds how long real work took (a busy machine would fail it): a deadline shows in the outcome it
reports (the exception naming the deadline), "the loop stayed free" in what was answered while a call was stuck,
and how long a call has been stuck in armed.blocking's clock, which the tests set (`blocking_clock`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armed.blocking import BlockingTimeout, BlockingWorker, run_with_deadline, stalled
from armed.engines.base import ChatMessage
from armed_testing.zero_work import ZeroWork, release_wedges
from deployments.clients import (
    UNAVAILABLE_ROLES,
    HandleClient,
    ModelTimeout,
    ModelUnavailable,
    ReplicaAvailability,
    Target,
)
from deployments.deadlines import EngineTimeout, ReplicaWedged

WEDGE = "WEDGE"


@pytest.fixture(autouse=True)
def _unwedge() -> Iterator[None]:
    """Every wedged thread of a test is let go at its end, so later tests see no stall of this one; and after 30 s
    in any case, so code that regressed to waiting for the wedge gets an answer where a deadline's error was
    expected and fails instead of hanging (30 s: far past every deadline here, even on a loaded machine)."""
    backstop = threading.Timer(30.0, release_wedges)
    backstop.start()
    yield
    backstop.cancel()
    release_wedges()


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def blocking_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """armed.blocking's clock (when calls started, how long they have run) under the test's control."""
    import armed.blocking

    clock = FakeClock()
    monkeypatch.setattr(armed.blocking, "clock", clock)
    return clock


async def _until(done: Any, what: str, guard_s: float = 20.0) -> None:
    """Poll `done()` (work on another thread) until it holds. The guard only turns a hang into a failure."""
    waited = 0.0
    while not done():
        assert waited < guard_s, f"still waiting for {what}"
        await asyncio.sleep(0.01)
        waited += 0.01


def _nothing_running() -> bool:
    return stalled(float("-inf")) == []


def _deployment(name: str, role: str, engine: ZeroWork | None = None, **args: Any) -> Any:
    """A model deployment's own class (the one behind Serve's ingress wrapper) with a zero-work engine."""
    import deployments.models as models

    wrapped = getattr(models, name).func_or_class
    cls = next(c for c in wrapped.__mro__[1:] if c.__module__ == "deployments.models" and c.__name__ == name)
    return cls({"role": role, "engine": {"kind": "vllm", "model": f"/models/{role}"}, **args},
               engine_cls=engine or ZeroWork())


async def _outcome(coro: Any) -> Any:
    """What `coro` returned, or the exception it raised."""
    try:
        return await coro
    except Exception as exc:
        return exc


# --- armed.blocking ----------------------------------------------------------------------------------------------


async def test_worker_drops_abandoned_calls_and_reports_the_stuck_one(blocking_clock: FakeClock) -> None:
    worker = BlockingWorker("test-worker")
    gate, ran = threading.Event(), []
    stuck = asyncio.ensure_future(worker.run(gate.wait, what="blocked call"))
    await _until(lambda: worker.running() != [], "the blocked call to start on its thread")
    with pytest.raises(BlockingTimeout, match=r"^queued call did not finish within 0\.1s$"):
        await run_with_deadline(worker, ran.append, "late", timeout_s=0.1, what="queued call")
    assert stalled(0.5) == [], "a call that has run 0 s of the worker's clock is not stalled"
    blocking_clock.now += 0.75
    found = stalled(0.5)
    assert [(s.worker, s.what, s.seconds) for s in found] == [("test-worker", "blocked call", 0.75)], found
    gate.set()
    await stuck
    await worker.run(ran.append, "next")
    assert ran == ["next"], "a call whose caller gave up while it queued must never run"
    assert stalled(0.0) == []
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-worker"))


# --- a model replica with a wedged engine -----------------------------------------------------------------------


async def test_wedged_engine_times_out_requests_while_the_loop_serves_and_health_fails(
    blocking_clock: FakeClock,
) -> None:
    dep = _deployment("LLMDeployment", "llm", ZeroWork(wedge_on=WEDGE), call_timeout_s=0.5,
                      wedged_after_s=1.5, health_timeout_s=1.0)
    yes_no = ["yes", "no"]
    assert (await dep.choose([ChatMessage("user", "fine")], yes_no)).label == "yes"  # the zero-work hash's pick
    wedged = asyncio.ensure_future(_outcome(dep.choose([ChatMessage("user", WEDGE)], yes_no)))
    await _until(lambda: [s.what for s in stalled(float("-inf"))] == ["wedged call"], "the wedged call to start")
    name = await dep.ping()  # the replica still answers what needs no engine...
    assert name == "vllm:/models/llm" and not wedged.done(), "answered while the engine is stuck: the loop is free"
    behind = await _outcome(dep.choose([ChatMessage("user", "queued behind it")], yes_no))
    err = await wedged
    assert isinstance(err, EngineTimeout) and err.status == 504, err
    assert err.message == "the llm model did not answer within 0.5s (call_timeout_s); the request was dropped"
    assert err.response().status_code == 504  # the model's own route: OpenAI-shaped 504 with the reason
    assert isinstance(behind, EngineTimeout) and behind.message == err.message, "a call behind a wedge must not hang"

    # missed deadlines: the probe runs, queues behind the stuck call and fails at 80% of the health timeout
    failed = await _outcome(dep.check_health())
    assert isinstance(failed, ReplicaWedged) and str(failed) == "llm: health probe took longer than 0.8s", failed
    blocking_clock.now += 1.6  # the wedged call has now run past wedged_after_s: the check fails without a probe
    failed = await _outcome(dep.check_health())
    assert isinstance(failed, ReplicaWedged), failed
    assert str(failed) == ("llm: wedged: zero-work-llm-engine: wedged call has run for 1.6s; past wedged_after_s=1.5,"
                           " only a new replica frees the thread")

    release_wedges()  # the thread returns (in a replica, Serve would have replaced the process by now)
    await _until(_nothing_running, "the released call to return")
    await dep.check_health()
    assert (await dep.choose([ChatMessage("user", "after")], yes_no)).label == "yes"


async def test_wedged_batch_fails_its_callers_and_frees_the_batcher() -> None:
    dep = _deployment("ClassifierDeployment", "consistency", ZeroWork(wedge_on=WEDGE), call_timeout_s=0.4,
                      wedged_after_s=5.0, max_batch_size=4, batch_wait_timeout_s=0.01)
    results = await asyncio.gather(
        _outcome(dep.classify([(WEDGE, "doc")])),
        *(_outcome(dep.classify([(f"q{i}", "doc")])) for i in range(6)),
    )
    # every request fails by its own deadline (none waits for the stuck batch: that would end at the backstop)
    assert [str(r) for r in results] == ["the consistency model did not answer within 0.4s (call_timeout_s); "
                                         "the request was dropped"] * 7, results
    release_wedges()
    await _until(_nothing_running, "the released batch to return")
    answer = await dep.classify([("q", "doc")])
    assert set(answer[0]) == {"consistent", "inconsistent"}


# --- the judge: a blocking image read, the probe judgment ----------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> Any:
    """The in-process pipeline (the CLI's, where local image paths are allowed) with no models and a 0.5 s read
    deadline."""
    from armed.engines.base import ModelClients
    from armed.knowledge.base import KnowledgeBase
    from armed.pipeline.dag import Pipeline
    from armed.settings import ArmedSettings

    settings = ArmedSettings()
    timeouts = settings.timeouts.model_copy(update={"image_read": 0.5})
    return Pipeline(settings.model_copy(update={"timeouts": timeouts}), KnowledgeBase.load(None, []), ModelClients())


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[str]:
    """A FIFO where an image should be: open() for reading blocks until a writer comes. A writer comes after 3 s
    (and at the end), so a read that regressed onto the event loop fails the timing asserts instead of hanging."""
    path = tmp_path / "image.png"
    os.mkfifo(path)

    def let_readers_through() -> None:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # the blocked reader gets EOF
        except OSError:
            pass  # no reader waiting

    backstop = threading.Timer(3.0, let_readers_through)
    backstop.start()
    yield str(path)
    backstop.cancel()
    let_readers_through()


async def test_a_fifo_named_as_an_image_is_refused_unopened_and_the_judge_stays_healthy(
    pipeline: Any, fifo: str
) -> None:
    """The FIFO that once hung a replica: the pipeline never opens a path (armed.images), so the judgment is
    refused with the one unreadable-image message (had it opened the FIFO, the read would wait for the fixture's
    writer and end in another error), a concurrent judgment is served, nothing is left running, and the judge's
    health probe still passes."""
    from armed.domain import RelevanceLevel
    from armed.errors import InputError
    from armed.serving.profiles import JudgeCaches, JudgeProfile
    from deployments.judge import JudgeService, judge_health, probe_pipeline

    err, other = await asyncio.gather(
        _outcome(pipeline.judge("布洛芬", {"name": "布洛芬片", "images": [{"uri": fifo}]})),
        pipeline.judge("维生素C", {"name": "维生素C片 100片"}),
    )
    assert isinstance(err, InputError) and err.field == "product.images.0.uri", err
    assert "never names a local file" in err.message, err.message
    assert other.level is RelevanceLevel.highly and other.degraded == [], "the judgment without the image is served"
    assert stalled(float("-inf")) == [], "no read of the FIFO is left on a thread"

    service = JudgeService(pipeline, JudgeCaches(), probe=probe_pipeline(pipeline))
    health = JudgeProfile(pool="cpu", replicas={"min": 1, "max": 1}, llm_weight=0.35, wedged_after_s=0.2,
                          health_check_timeout_s=60)
    assert await judge_health(service, health) is None


async def test_judge_probe_passes_when_healthy_and_fails_past_its_deadline(pipeline: Any) -> None:
    """Healthy: the probe judgment ran (on the probe pipeline, past the caches) within a deadline no busy machine
    misses; stuck: the check fails with its own deadline's error (a probe that never ends: the deadline decides)."""
    from armed.serving.profiles import JudgeCaches, JudgeProfile
    from deployments.judge import PROBE_PRODUCT, PROBE_QUERY, JudgeService, judge_health, probe_pipeline

    class Recorded:  # the real probe pipeline, recording what it was asked and what it answered
        def __init__(self, inner: Any) -> None:
            self.inner, self.judgments = inner, []

        async def judge(self, *args: Any, **kwargs: Any) -> Any:
            judgment = await self.inner.judge(*args, **kwargs)
            self.judgments.append((args, judgment))
            return judgment

    relaxed = JudgeProfile(pool="cpu", replicas={"min": 1, "max": 1}, llm_weight=0.35, health_check_timeout_s=60)
    probe = Recorded(probe_pipeline(pipeline))
    service = JudgeService(pipeline, JudgeCaches(), probe=probe)
    assert await _outcome(judge_health(service, relaxed)) is None
    assert [(args, j.degraded) for args, j in probe.judgments] == [((PROBE_QUERY, PROBE_PRODUCT), [])]
    assert service.stats()["judgment"] == {"size": 0, "hits": 0, "misses": 0}, "the probe bypasses the caches"

    class Stuck:  # a probe pipeline whose judgment never ends (a deadlock inside the DAG)
        async def judge(self, *args: object, **kwargs: object) -> None:
            await asyncio.Event().wait()

    strict = relaxed.model_copy(update={"health_check_timeout_s": 1})
    failed = await _outcome(judge_health(JudgeService(pipeline, JudgeCaches(), probe=Stuck()), strict))
    assert isinstance(failed, ReplicaWedged) and str(failed) == "judge: the probe judgment took longer than 0.8s"


# --- the judge's clients: every way a model fails to answer is unavailability, never a hang ----------------------


async def test_clients_turn_deadlines_and_lost_replicas_into_unavailability() -> None:
    from ray.exceptions import ActorDiedError

    client = HandleClient(Target("llm", "llm", "llm"), "m", ReplicaAvailability(), timeout_s=0.2, retry_after_s=7)

    async def raises(exc: BaseException) -> None:
        raise exc

    marks: set[str] = set()
    token = UNAVAILABLE_ROLES.set(marks)
    try:
        with pytest.raises(ModelTimeout, match=r"the llm model did not answer within 0\.5s") as replica_said:
            await client.guarded(raises(EngineTimeout("llm", 0.5)))
        own = await _outcome(client.guarded(asyncio.Event().wait()))  # a call that never answers
        with pytest.raises(ModelUnavailable, match="lost mid-call") as lost:
            await client.guarded(raises(ActorDiedError()))
    finally:
        UNAVAILABLE_ROLES.reset(token)
    assert isinstance(own, ModelTimeout) and "no answer within 0.2s" in str(own), own
    assert replica_said.value.retry_after_s == 7 and not isinstance(lost.value, ModelTimeout)
    assert marks == {"llm"}, "the judge learns the role failed (a required role then answers 503)"
