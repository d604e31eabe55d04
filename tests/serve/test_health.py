"""The model deployments' health check, without Ray (the check lives in their shared base class)."""

from __future__ import annotations

import pytest

from armed.engines.base import ChatMessage
from armed_testing.zero_work import ZeroWork
from deployments.models import _ModelBase


class _Probed(_ModelBase):
    """The shared base of every model deployment, with the LLM deployment's probe (a real engine call)."""

    async def _probe(self) -> None:
        await self.engine.choose([ChatMessage(role="user", content="health: yes or no?")], ["yes", "no"])


def _llm(delay_s: float, health_timeout_s: float) -> _Probed:
    return _Probed(
        {
            "role": "llm",
            "engine": {"kind": "smollm2"},
            "health_timeout_s": health_timeout_s,
        },
        engine_cls=ZeroWork(delay_s=delay_s),
    )


async def test_idle_engine_is_probed_and_a_stuck_one_fails():
    dep = _llm(delay_s=0.5, health_timeout_s=0.1)
    with pytest.raises(RuntimeError, match="health probe took longer"):
        await dep.check_health()


async def test_a_recent_real_answer_counts_as_healthy_without_queueing_a_probe():
    """Under load the probe would wait behind live calls and time out; a fresh answer proves the engine works."""
    dep = _llm(delay_s=0.3, health_timeout_s=0.25)
    await dep.engine.choose([ChatMessage(role="user", content="q")], ["yes", "no"])  # a live request, answered
    await dep.check_health()  # returns at once: no probe queued
    assert dep.engine.seconds_since_answer() < 0.25
