"""The load generator's statistics against hand-computed values, closed-loop accounting and open-loop pacing."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from ops.perf.loadgen import (
    LatencyRecorder,
    arrival_times,
    closed_loop,
    open_loop,
    over_runs,
    percentile,
)
from ops.perf.workload import all_pairs, zipf_mix, zipf_weights


def test_percentile_hand_computed() -> None:
    v = [10, 20, 30, 40]  # h = 3q/100
    assert percentile(v, 50) == 25  # h=1.5: 20 + 0.5*10
    assert percentile(v, 0) == 10 and percentile(v, 100) == 40
    assert percentile(v, 99) == pytest.approx(39.7)  # h=2.97: 30 + 0.97*10
    assert percentile([5], 99) == 5
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2  # sorts first
    with pytest.raises(ValueError):
        percentile(v, 101)


def test_recorder_summary() -> None:
    rec = LatencyRecorder()
    rec.started, rec.ended = 100.0, 102.0
    for s in (0.010, 0.020, 0.030, 0.040):
        rec.record(s)
    rec.record(9.9, ok=False, error="Boom")
    s = rec.summary()
    assert s["requests"] == 5 and s["ok"] == 4 and s["failed"] == 1 and s["errors"] == {"Boom": 1}
    assert s["throughput_rps"] == 2.0  # 4 successes in 2 s
    assert s["p50_ms"] == 25.0 and s["p99_ms"] == pytest.approx(39.7) and s["mean_ms"] == 25.0
    assert s["max_ms"] == 40.0


def test_over_runs_takes_medians() -> None:
    runs = [{"throughput_rps": 10, "p50_ms": 5, "p99_ms": 50, "failed": 0},
            {"throughput_rps": 30, "p50_ms": 7, "p99_ms": 90, "failed": 1},
            {"throughput_rps": 20, "p50_ms": 6, "p99_ms": 70, "failed": 0}]
    o = over_runs(runs)
    assert (o["throughput_rps"], o["p50_ms"], o["p99_ms"]) == (20, 6, 70)
    assert o["throughput_rps_range"] == [10, 30] and o["failed"] == 1 and o["repeats"] == 3


def test_closed_loop_concurrency_warmup_and_failures() -> None:
    seen: list[int] = []
    in_flight = {"now": 0, "max": 0}

    async def call(i: int) -> bool:
        seen.append(i)
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.01)
        in_flight["now"] -= 1
        if i % 10 == 9:
            raise RuntimeError("x")
        return i != 5  # False counts as failed too

    res = asyncio.run(closed_loop(call, concurrency=4, requests=20, warmup=3))
    assert sorted(seen) == list(range(23))  # warm-up indices 0..2 first, then 3..22, each once
    assert res["requests"] == 20 and res["warmup"] == 3
    assert res["failed"] == 3  # 9 and 19 raise (in the measured range), 5 returns False
    assert res["errors"] == {"RuntimeError": 2, "returned False": 1}
    assert in_flight["max"] == 4


def test_arrival_times_seeded() -> None:
    a = arrival_times(50, 200, seed=3)
    assert a == arrival_times(50, 200, seed=3) and a != arrival_times(50, 200, seed=4)
    assert a[0] == 0 and all(x < y for x, y in itertools.pairwise(a))
    assert 200 / a[-1] == pytest.approx(50, rel=0.25)  # Poisson: the offered rate is near the asked rate
    assert arrival_times(10, 4, seed=0, poisson=False) == pytest.approx([0, 0.1, 0.2, 0.3])


def test_open_loop_paces_and_does_not_wait_for_slow_calls() -> None:
    """No call answers before all 20 are sent (the last one releases them): an open loop sends each while every
    earlier one is still in flight, whatever the machine's speed; a loop that waited for answers would never send
    the second (the guard turns that hang into a failure)."""
    sent: list[float] = []
    in_flight_at_send: list[int] = []
    began: list[float] = []

    async def run() -> dict:
        release, in_flight = asyncio.Event(), [0]

        async def held(i: int) -> None:
            sent.append(time.perf_counter())
            in_flight_at_send.append(in_flight[0])
            in_flight[0] += 1
            if len(sent) == 20:
                release.set()
            await release.wait()
            await asyncio.sleep(0.3)

        began.append(time.perf_counter())  # before open_loop's own start: call i is due no earlier than this + i/40
        return await asyncio.wait_for(open_loop(held, rate=40, requests=20, poisson=False), 60)

    res = asyncio.run(run())
    assert res["ok"] == 20 and res["failed"] == 0
    assert in_flight_at_send == list(range(20))
    # paced: none is sent before its due time, 1/40 s apart (a busy machine can only make them late; how late is
    # reported as send_lag_p99_ms, not asserted)
    early = [i for i, t in enumerate(sent) if t - began[0] < i / 40 - 1e-3]
    assert early == []
    assert res["p50_ms"] >= 300  # latency counted from the scheduled time: each call took at least its 0.3 s


def test_open_loop_latency_includes_queueing_behind_a_stall() -> None:
    lock = asyncio.Lock()

    async def serial(i: int) -> None:
        async with lock:  # one at a time: requests queue
            await asyncio.sleep(0.05)

    res = asyncio.run(open_loop(serial, rate=100, requests=10, poisson=False))
    # the 10th is due at 0.09 s but served last at ~0.5 s: its latency (~0.41 s) shows the queue
    assert res["max_ms"] >= 350


def test_zipf_mix_is_seeded_and_skewed() -> None:
    w = zipf_weights(4, s=1.0)
    assert w == pytest.approx([12 / 25, 6 / 25, 4 / 25, 3 / 25])
    a = zipf_mix(300, seed=1)
    assert [p.product["id"] for p in a] == [p.product["id"] for p in zipf_mix(300, seed=1)]
    counts: dict[str, int] = {}
    for p in a:
        counts[p.query] = counts.get(p.query, 0) + 1
    top = sorted(counts.values(), reverse=True)
    assert top[0] > 5 * top[-1]  # the head query is asked far more than the tail
    assert len({p.product["id"] for p in all_pairs()}) == len(all_pairs())
