"""No stalls, without Ray: a blocking call that never returns fails its own request in bounded time, the event loop
keeps serving everything else, and the health checks say the replica is wedged.

The wedged engine is the zero-work engine with `wedge_on` (armed_testing/zero_work.py): a call whose input contains
the marker blocks the engine's worker thread on an Event, as a hung CUDA kernel would; the wedged image read is a
real FIFO opened for reading. Replacement by Serve and killed replicas: tests/security/test_stalls_serve.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
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
    """Every wedged thread of a test is let go at its end, so later tests see no stall of this one; and after 5 s
    in any case, so code that regressed to waiting for the wedge fails its timing asserts instead of hanging."""
    backstop = threading.Timer(5.0, release_wedges)
    backstop.start()
    yield
    backstop.cancel()
    release_wedges()


def _deployment(name: str, role: str, engine: ZeroWork | None = None, **args: Any) -> Any:
    """A model deployment's own class (the one behind Serve's ingress wrapper) with a zero-work engine."""
    import deployments.models as models

    wrapped = getattr(models, name).func_or_class
    cls = next(c for c in wrapped.__mro__[1:] if c.__module__ == "deployments.models" and c.__name__ == name)
    return cls({"role": role, "engine": {"kind": "vllm", "model": f"/models/{role}"}, **args},
               engine_cls=engine or ZeroWork())


class LoopLag:
    """The worst delay of a 10 ms ticker on the running loop: how long the loop was kept from other work."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - t - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def _timed(coro: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    try:
        result: Any = await coro
    except Exception as exc:
        result = exc
    return time.perf_counter() - t, result


# --- armed.blocking ----------------------------------------------------------------------------------------------


async def test_worker_drops_abandoned_calls_and_reports_the_stuck_one() -> None:
    worker = BlockingWorker("test-worker")
    gate, ran = threading.Event(), []
    stuck = asyncio.ensure_future(worker.run(gate.wait, what="blocked call"))
    await asyncio.sleep(0.05)
    with pytest.raises(BlockingTimeout, match=r"queued call did not finish within 0\.1s"):
        await run_with_deadline(worker, ran.append, "late", timeout_s=0.1, what="queued call")
    found = stalled(0.05)
    assert [(s.worker, s.what) for s in found] == [("test-worker", "blocked call")], found
    gate.set()
    await stuck
    await worker.run(ran.append, "next")
    assert ran == ["next"], "a call whose caller gave up while it queued must never run"
    assert stalled(0.0) == []
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-worker"))


# --- a model replica with a wedged engine -----------------------------------------------------------------------


async def test_wedged_engine_times_out_requests_while_the_loop_serves_and_health_fails() -> None:
    dep = _deployment("LLMDeployment", "llm", ZeroWork(wedge_on=WEDGE), call_timeout_s=0.5,
                      wedged_after_s=1.5, health_timeout_s=1.0)
    yes_no = ["yes", "no"]
    assert (await dep.choose([ChatMessage("user", "fine")], yes_no)).label in yes_no
    with LoopLag() as lag:
        wedged_at = time.perf_counter()
        wedged = asyncio.ensure_future(_timed(dep.choose([ChatMessage("user", WEDGE)], yes_no)))
        await asyncio.sleep(0.05)
        ping_s, name = await _timed(dep.ping())  # the replica still answers what needs no engine
        behind_s, behind = await _timed(dep.choose([ChatMessage("user", "queued behind it")], yes_no))
        wedged_s, err = await wedged
    print(f"\nwedged call: {type(err).__name__} after {wedged_s:.2f}s; queued call: {type(behind).__name__} after "
          f"{behind_s:.2f}s; ping {ping_s * 1000:.1f} ms; worst loop lag {lag.worst * 1000:.1f} ms")
    assert isinstance(err, EngineTimeout) and 0.5 <= wedged_s < 1.0
    assert err.status == 504 and "did not answer within 0.5s" in err.message
    assert err.response().status_code == 504  # the model's own route: OpenAI-shaped 504 with the reason
    assert isinstance(behind, EngineTimeout) and behind_s < 1.0, "a request behind a wedged call must not hang"
    assert name == "vllm:/models/llm" and ping_s < 0.1
    assert lag.worst < 0.2, "the event loop must stay free while the engine is stuck"

    # missed deadlines: the probe runs, queues behind the stuck call and fails at 80% of the health timeout
    probe_s, failed = await _timed(dep.check_health())
    assert isinstance(failed, ReplicaWedged) and "health probe took longer than 0.8s" in str(failed), failed
    assert probe_s < 1.0
    await asyncio.sleep(max(0.0, wedged_at + 1.6 - time.perf_counter()))
    check_s, failed = await _timed(dep.check_health())  # past wedged_after_s: fails at once, naming the call
    assert isinstance(failed, ReplicaWedged) and "wedged: zero-work-llm-engine: wedged call has run for" in str(failed)
    assert check_s < 0.1

    release_wedges()  # the thread returns (in a replica, Serve would have replaced the process by now)
    await asyncio.sleep(0.05)
    await dep.check_health()
    assert (await dep.choose([ChatMessage("user", "after")], yes_no)).label in yes_no


async def test_wedged_batch_fails_its_callers_and_frees_the_batcher() -> None:
    dep = _deployment("ClassifierDeployment", "consistency", ZeroWork(wedge_on=WEDGE), call_timeout_s=0.4,
                      wedged_after_s=5.0, max_batch_size=4, batch_wait_timeout_s=0.01)
    results = await asyncio.gather(
        _timed(dep.classify([(WEDGE, "doc")])),
        *(_timed(dep.classify([(f"q{i}", "doc")])) for i in range(6)),
    )
    kinds = [type(r).__name__ for _, r in results]
    print(f"\nbatched requests behind a wedged engine: {kinds}, slowest {max(s for s, _ in results):.2f}s")
    assert all(isinstance(r, EngineTimeout) for _, r in results), kinds
    assert max(s for s, _ in results) < 0.9, "every request fails by its deadline, none waits for a free slot"
    release_wedges()
    await asyncio.sleep(0.05)
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
    refused at once with the one unreadable-image message, a concurrent judgment is served, the loop never lags,
    and the judge's health probe still passes."""
    from armed.errors import InputError
    from armed.serving.profiles import JudgeCaches, JudgeProfile
    from deployments.judge import JudgeService, judge_health, probe_pipeline

    with LoopLag() as lag:
        stuck = asyncio.ensure_future(_timed(pipeline.judge("布洛芬", {"name": "布洛芬片", "images": [{"uri": fifo}]})))
        await asyncio.sleep(0.05)
        other_s, other = await _timed(pipeline.judge("维生素C", {"name": "维生素C片 100片"}))
        stuck_s, err = await stuck
    print(f"\nFIFO image: {type(err).__name__} after {stuck_s:.2f}s; a concurrent judgment took {other_s:.2f}s; "
          f"worst loop lag {lag.worst * 1000:.1f} ms")
    assert isinstance(err, InputError) and err.field.startswith("product.images"), err
    assert "never names a local file" in err.message and stuck_s < 0.5
    assert other.level is not None and other_s < 1.5, "a judgment without the image must be served meanwhile"
    assert lag.worst < 0.3

    service = JudgeService(pipeline, JudgeCaches(), probe=probe_pipeline(pipeline))
    health = JudgeProfile(pool="cpu", replicas={"min": 1, "max": 1}, llm_weight=0.35, wedged_after_s=0.2,
                          health_check_timeout_s=5)
    assert await judge_health(service, health) is None


async def test_judge_probe_passes_when_healthy_and_fails_past_its_deadline(pipeline: Any) -> None:
    from armed.serving.profiles import JudgeCaches, JudgeProfile
    from deployments.judge import JudgeService, judge_health, probe_pipeline

    health = JudgeProfile(pool="cpu", replicas={"min": 1, "max": 1}, llm_weight=0.35, health_check_timeout_s=1)
    service = JudgeService(pipeline, JudgeCaches(), probe=probe_pipeline(pipeline))
    took, ok = await _timed(judge_health(service, health))
    print(f"\nprobe judgment: {took * 1000:.1f} ms")
    assert ok is None and took < 0.8
    assert service.stats()["judgment"] == {"size": 0, "hits": 0, "misses": 0}, "the probe bypasses the caches"

    class Stuck:  # a probe pipeline whose judgment never ends (a deadlock inside the DAG)
        async def judge(self, *args: object, **kwargs: object) -> None:
            await asyncio.Event().wait()

    took, failed = await _timed(judge_health(JudgeService(pipeline, JudgeCaches(), probe=Stuck()), health))
    assert isinstance(failed, ReplicaWedged) and "probe judgment took longer than 0.8s" in str(failed)
    assert took < 1.0


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
        took, own = await _timed(client.guarded(asyncio.sleep(5)))
        with pytest.raises(ModelUnavailable, match="lost mid-call") as lost:
            await client.guarded(raises(ActorDiedError()))
    finally:
        UNAVAILABLE_ROLES.reset(token)
    assert isinstance(own, ModelTimeout) and "no answer within 0.2s" in str(own) and took < 0.5
    assert replica_said.value.retry_after_s == 7 and not isinstance(lost.value, ModelTimeout)
    assert marks == {"llm"}, "the judge learns the role failed (a required role then answers 503)"
