"""Deadlines and wedge checks of the replicas: a request never waits forever, a stuck replica gets replaced.

Two failure shapes, two answers:

- A slow or stuck call: every request a model replica serves runs under its role's `call_timeout_s`
  (`within_deadline`), its wait for the engine included. Past it the caller gets `EngineTimeout`: HTTP 504 with
  the reason on the replica's own route; through a handle the judge's client turns it into ModelTimeout (503
  with Retry-After for a required role, a degraded judgment for an optional one). The event loop stays free
  because blocking work runs on worker threads (armed/blocking.py).
- A stuck thread: a call that ignores its deadline (torch, CUDA, a FIFO opened for reading) keeps its thread,
  and nothing in Python can end it. `engine_health` (the model replicas' check_health) and the judge's check
  fail while any blocking call of the replica has run past `wedged_after_s`, so after three failed checks in a
  row Serve replaces the replica and the new process starts clean.

When nothing is stuck, a model replica that answered lately is healthy without a probe (under load a probe
would queue behind live calls, time out and get a working replica replaced); one that has not answered gets a
tiny real engine call under PROBE_SHARE of Serve's health_check_timeout_s, so a failed probe reports the
replica's reason before Serve's own timeout cuts it off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from armed.blocking import stalled
from deployments.api import ApiError

PROBE_SHARE = 0.8  # of Serve's health_check_timeout_s: the probe's own deadline


class EngineTimeout(ApiError):
    """A request to a model replica ran past the role's call deadline (HTTP 504 with the reason)."""

    def __init__(self, role: str, timeout_s: float) -> None:
        super().__init__(504, f"the {role} model did not answer within {timeout_s:g}s (call_timeout_s); "
                              "the request was dropped", kind="timeout_error")
        self.role = role
        self.timeout_s = timeout_s

    def __reduce__(self) -> tuple[Any, ...]:  # the fields survive Ray's pickling across the handle
        return (EngineTimeout, (self.role, self.timeout_s))


class ReplicaWedged(RuntimeError):
    """check_health's failure: the replica cannot serve and will not recover by itself."""


async def within_deadline(work: Awaitable[Any], role: str, timeout_s: float) -> Any:
    """`await work` for at most `timeout_s`; EngineTimeout after that (the work is cancelled: a call still queued
    for the engine's thread is dropped, one already running finishes unobserved)."""
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:  # also armed.blocking.BlockingTimeout from a batch's own engine-call deadline
        raise EngineTimeout(role, timeout_s) from None


def raise_if_wedged(who: str, wedged_after_s: float) -> None:
    """ReplicaWedged when a blocking call of this process has run past `wedged_after_s`."""
    stuck = stalled(wedged_after_s)
    if stuck:
        more = f" (and {len(stuck) - 1} more)" if len(stuck) > 1 else ""
        raise ReplicaWedged(f"{who}: wedged: {stuck[0]}{more}; past wedged_after_s={wedged_after_s:g}, only a "
                            "new replica frees the thread")


async def engine_health(
    role: str,
    seconds_since_answer: float,
    probe: Callable[[], Awaitable[None]],
    *,
    wedged_after_s: float,
    health_timeout_s: float,
) -> None:
    """A model replica's health check: no stuck engine call, and an engine that answered lately or answers a
    probe within PROBE_SHARE of Serve's timeout."""
    raise_if_wedged(role, wedged_after_s)
    deadline = health_timeout_s * PROBE_SHARE
    if seconds_since_answer < deadline:
        return
    try:
        await asyncio.wait_for(probe(), deadline)
    except TimeoutError:
        raise ReplicaWedged(f"{role}: health probe took longer than {deadline:g}s") from None
