"""The model deployments' health check, without Ray: the LLM deployment's own class (the one Serve's ingress wrapper
instantiates in a replica) with its real probe, over a zero-work engine, and a fake clock for "answered lately"."""

from __future__ import annotations

import pytest

from armed.engines.base import ChatMessage
from armed_testing.zero_work import ZeroWork
from deployments.deadlines import ReplicaWedged
from deployments.models import LLMDeployment
from tests.security.serve_inprocess import user_class


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _llm(clock: FakeClock, health_timeout_s: float = 1.0, delay_s: float = 0.0) -> object:
    """An LLM replica's object; the probe's own deadline is health_timeout_s * PROBE_SHARE (0.8)."""
    return user_class(LLMDeployment)(
        {
            "role": "llm",
            "engine": {"kind": "smollm2"},
            "health_timeout_s": health_timeout_s,
        },
        engine_cls=ZeroWork(delay_s=delay_s),
        clock=clock,
    )


async def test_an_idle_engine_is_probed_with_a_real_call():
    dep = _llm(FakeClock())
    assert dep.engine.seconds_since_answer() == float("inf")  # never answered: nothing vouches for it
    await dep.check_health()
    assert dep.engine.calls == 1  # the probe reached the engine


async def test_a_probe_that_does_not_answer_fails_the_check_naming_its_deadline():
    """An engine that never answers within the probe's deadline (a one-hour call: the timeout decides, not the
    machine's speed); the check reports the probe's own deadline, 80% of Serve's health timeout."""
    dep = _llm(FakeClock(), health_timeout_s=0.1, delay_s=3600.0)
    with pytest.raises(ReplicaWedged, match=r"^llm: health probe took longer than 0\.08s$"):
        await dep.check_health()
    assert dep.engine.calls == 1


async def test_a_recent_real_answer_counts_as_healthy_without_queueing_a_probe():
    """Under load the probe would wait behind live calls and time out; a fresh answer proves the engine works,
    for as long as the probe's deadline (8 s of a 10 s health timeout), after which the check probes again."""
    clock = FakeClock()
    dep = _llm(clock, health_timeout_s=10.0)
    await dep.choose([ChatMessage(role="user", content="q")], ["yes", "no"])  # a live request, answered
    assert dep.engine.calls == 1
    clock.now += 4.0
    assert dep.engine.seconds_since_answer() == 4.0
    await dep.check_health()
    assert dep.engine.calls == 1, "an answer 4 s old vouches for the engine: no probe"
    clock.now += 4.0  # 8 s since the answer: as old as the probe's deadline
    await dep.check_health()
    assert dep.engine.calls == 2, "an answer as old as the probe's deadline no longer vouches: probed"


async def test_a_missed_deadline_after_an_answer_makes_the_check_probe():
    clock = FakeClock()
    dep = _llm(clock, health_timeout_s=10.0)
    await dep.choose([ChatMessage(role="user", content="q")], ["yes", "no"])
    clock.now += 1.0
    dep.engine.missed_deadline()  # a later request ran past call_timeout_s
    assert dep.engine.seconds_since_answer() == float("inf")
    await dep.check_health()
    assert dep.engine.calls == 2
