"""An async load generator: closed loop at a concurrency, open loop at a rate; latencies with median and p99.

* Closed loop: `concurrency` workers each send the next request as soon as their previous one returns, until
  `requests` have been sent. Throughput is what the system sustains at that concurrency.
* Open loop: requests are *scheduled* at a rate (Poisson arrivals from a seeded RNG, or evenly spaced) and sent
  at their scheduled time whether or not earlier ones have returned. Latency is measured from the scheduled time,
  so a stalled system cannot hide its queueing (no coordinated omission).

Both run `warmup` unrecorded requests first. A request fails when its call raises or returns False; failures are
counted (with the error's type) and excluded from the latency percentiles.

Percentiles are numpy's, method "linear" (its default: interpolation between closest ranks): for sorted values
v[0..n-1], the q-th percentile is v[lo] + (v[hi] - v[lo]) * (h - lo) where h = (n - 1) * q / 100.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Call = Callable[[int], Awaitable[Any]]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation (np.percentile); None for no values, ValueError for
    q outside [0, 100]."""
    if not values:
        return None
    return float(np.percentile(values, q, method="linear"))


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


@dataclass
class LatencyRecorder:
    """Latencies (seconds) of successful requests, failures by error type, and the wall time of the run."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    started: float | None = None
    ended: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.ended = time.perf_counter()

    def record(self, latency_s: float, ok: bool = True, error: str | None = None) -> None:
        if ok:
            self.latencies.append(latency_s)
        else:
            self.failures[error or "failed"] += 1

    @property
    def wall_s(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return self.ended - self.started

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies)
        failed = sum(self.failures.values())
        wall = self.wall_s
        return {
            "requests": ok + failed,
            "ok": ok,
            "failed": failed,
            "errors": dict(self.failures),
            "wall_s": round(wall, 4),
            "throughput_rps": round(ok / wall, 3) if wall > 0 else None,
            "p50_ms": _ms(percentile(self.latencies, 50)),
            "p95_ms": _ms(percentile(self.latencies, 95)),
            "p99_ms": _ms(percentile(self.latencies, 99)),
            "mean_ms": _ms(statistics.fmean(self.latencies)) if ok else None,
            "max_ms": _ms(max(self.latencies)) if ok else None,
        }


async def _timed(call: Call, i: int, rec: LatencyRecorder | None, t0: float | None = None) -> None:
    start = time.perf_counter() if t0 is None else t0
    try:
        result = await call(i)
        ok, err = result is not False, None if result is not False else "returned False"
    except Exception as exc:  # every failure is a data point, never a crash of the generator
        ok, err = False, type(exc).__name__
    if rec is not None:
        rec.record(time.perf_counter() - start, ok, err)


def _bar(total: int, desc: str, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False, dynamic_ncols=True)


async def closed_loop(
    call: Call, *, concurrency: int, requests: int, warmup: int = 0, progress: bool = False, desc: str = "closed"
) -> dict[str, Any]:
    """`requests` calls (indices warmup..warmup+requests-1) from `concurrency` workers; warm-up first."""
    if concurrency < 1 or requests < 1:
        raise ValueError("concurrency and requests must be >= 1")
    if warmup:
        await _drive(call, range(warmup), concurrency, None, None)
    rec = LatencyRecorder()
    bar = _bar(requests, desc, progress)
    rec.start()
    await _drive(call, range(warmup, warmup + requests), concurrency, rec, bar)
    rec.stop()
    if bar is not None:
        bar.close()
    return {"mode": "closed", "concurrency": concurrency, "warmup": warmup, **rec.summary()}


async def _drive(call: Call, indices: range, concurrency: int, rec: LatencyRecorder | None, bar: Any) -> None:
    it = iter(indices)

    async def worker() -> None:
        for i in it:  # shared iterator: each index is taken by exactly one worker
            await _timed(call, i, rec)
            if bar is not None:
                bar.update(1)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(indices)))))


def arrival_times(rate: float, requests: int, seed: int, poisson: bool = True) -> list[float]:
    """Offsets (s) from the start at which each request is due: exponential gaps (Poisson) or 1/rate apart."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(requests):
        out.append(t)
        t += rng.expovariate(rate) if poisson else 1.0 / rate
    return out


async def open_loop(
    call: Call, *, rate: float, requests: int, seed: int = 0, warmup: int = 0, poisson: bool = True,
    progress: bool = False, desc: str = "open",
) -> dict[str, Any]:
    """Send `requests` calls at `rate` per second regardless of completions; latency from the scheduled time."""
    if warmup:
        await closed_loop(call, concurrency=1, requests=warmup)
    offsets = arrival_times(rate, requests, seed, poisson)
    rec = LatencyRecorder()
    bar = _bar(requests, desc, progress)
    lags: list[float] = []
    tasks = []
    rec.start()
    base = rec.started
    assert base is not None
    for n, off in enumerate(offsets):
        due = base + off
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.perf_counter() - due))
        task = asyncio.ensure_future(_timed(call, warmup + n, rec, t0=due))
        if bar is not None:
            task.add_done_callback(lambda _: bar.update(1))
        tasks.append(task)
    await asyncio.gather(*tasks)
    rec.stop()
    if bar is not None:
        bar.close()
    summary = rec.summary()
    return {
        "mode": "open", "rate_rps": rate, "poisson": poisson, "seed": seed, "warmup": warmup,
        "offered_rps": round(requests / offsets[-1], 3) if len(offsets) > 1 and offsets[-1] > 0 else None,
        "send_lag_p99_ms": _ms(percentile(lags, 99)),
        **summary,
    }


def over_runs(runs: Sequence[dict[str, Any]], keys: Sequence[str] = ("throughput_rps", "p50_ms", "p99_ms")) -> dict:
    """Median (and min/max) of each key over repeated runs, plus the total failures; the runs are kept."""
    out: dict[str, Any] = {"repeats": len(runs)}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = round(statistics.median(vals), 3) if vals else None
        out[f"{k}_range"] = [round(min(vals), 3), round(max(vals), 3)] if vals else None
    out["failed"] = sum(r.get("failed", 0) for r in runs)
    out["runs"] = list(runs)
    return out


def median_of(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 4) if vals else None
