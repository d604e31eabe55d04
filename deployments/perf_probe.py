"""Deployments `armed-ops perf` adds for measuring (a new module: judge.py itself is not changed).

* `JudgeProbe`: the Judge deployment plus a timer around each judgment *inside* the replica (so a cache hit's
  cost is seen without the handle hop or HTTP around it) and a switch that turns its caches off for cold runs.
  It is deployed under the Judge's own name, so the Gateway and every route behave exactly as in production.
* `PerfLeaf` / `PerfRelay`: the handle-hop baseline. The relay makes `hops` sequential handle calls to the leaf,
  each sleeping `delay_s`: the same chain of hops as the judge's critical path, with nothing else in it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from ray import serve

from armed.serving.config import deployment_options
from armed.serving.profiles import resolve_profile
from deployments.judge import Gateway, JudgeArgs, JudgeDeployment


@serve.deployment(name="Judge")
class JudgeProbe(JudgeDeployment.func_or_class):  # type: ignore[name-defined,misc]
    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args)
        self._inside: deque[tuple[float, bool]] = deque(maxlen=100_000)
        self._sizes = {c: getattr(self.service, f"{c}_cache").size for c in ("query", "product", "judgment")}

    async def judge(self, payload: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        result = await self.service.judge(payload)
        cached = result["status"] == 200 and result["body"].get("seconds") == 0.0
        self._inside.append((time.perf_counter() - start, cached))
        return result

    async def perf_samples(self, reset: bool = True) -> list[tuple[float, bool]]:
        """(seconds inside the judge, was a judgment-cache hit) of every judgment since the last reset."""
        out = list(self._inside)
        if reset:
            self._inside.clear()
        return out

    async def set_caches(self, on: bool) -> dict[str, Any]:
        """Off: every cache emptied and sized 0 (cold judgments); on: the profile's sizes, empty."""
        for name, size in self._sizes.items():
            cache = getattr(self.service, f"{name}_cache")
            cache._data.clear()
            cache.size = size if on else 0
            cache.hits = cache.misses = 0
        return self.service.stats()


@serve.deployment(name="PerfLeaf", ray_actor_options={"num_cpus": 0.1})
class PerfLeaf:
    async def work(self, delay_s: float) -> float:
        if delay_s:
            await asyncio.sleep(delay_s)
        return delay_s


@serve.deployment(name="PerfRelay", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class PerfRelay:
    def __init__(self, leaf: Any) -> None:
        self.leaf = leaf

    async def chain(self, hops: int, delay_s: float) -> int:
        for _ in range(hops):
            await self.leaf.work.remote(delay_s)
        return hops


def build_probe_judge_app(args: dict[str, Any]) -> Any:
    """serve_apps.judge.build_judge_app with JudgeProbe in the Judge's place."""
    a = JudgeArgs.model_validate(args)
    profile = resolve_profile(a.profile)
    judge = JudgeProbe.options(**deployment_options(profile, "judge")).bind(a.model_dump())
    return Gateway.options(**deployment_options(profile, "gateway")).bind(a.model_dump(), judge)


def build_relay_app() -> Any:
    return PerfRelay.bind(PerfLeaf.bind())
