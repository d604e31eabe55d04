"""DynamicBatcher: batches form when the engine can take them, failures stay with their callers, nobody hangs."""

from __future__ import annotations

import asyncio

import pytest

from armed.engines.batching import DynamicBatcher


class SlowEngine:
    """One call at a time (like armed's engines behind their worker thread), a fixed time per call."""

    def __init__(self, seconds: float = 0.05, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.calls: list[list[str]] = []
        self.busy = 0
        self.most_busy = 0

    async def __call__(self, items: list[str]) -> list[str | BaseException]:
        self.calls.append(list(items))
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.busy -= 1
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError("engine failed")
        return [ValueError(f"bad item {i}") if i.startswith("bad") else i.upper() for i in items]


def test_requests_queued_while_the_engine_is_busy_go_in_one_batch() -> None:
    engine = SlowEngine(0.05)
    batcher = DynamicBatcher(engine, max_batch_size=32, max_wait_s=0.0)

    async def run() -> list[str]:
        first = asyncio.ensure_future(batcher.submit("a"))
        await asyncio.sleep(0.01)  # the engine is now busy with ["a"]
        rest = [batcher.submit(f"x{i}") for i in range(20)]
        return [await first, *await asyncio.gather(*rest)]

    out = asyncio.run(run())
    assert out == ["A", *(f"X{i}" for i in range(20))]
    assert [len(c) for c in engine.calls] == [1, 20]  # @serve.batch in Ray 2.60 would cut the backlog by timeout
    assert engine.most_busy == 1
    assert list(batcher.batch_sizes) == [1, 20]


def test_max_batch_size_is_respected_and_order_kept() -> None:
    engine = SlowEngine(0.01)
    batcher = DynamicBatcher(engine, max_batch_size=4, max_wait_s=0.0)

    async def run() -> list[str]:
        return list(await asyncio.gather(*(batcher.submit(f"t{i}") for i in range(10))))

    assert asyncio.run(run()) == [f"T{i}" for i in range(10)]
    assert max(len(c) for c in engine.calls) <= 4
    assert [x for c in engine.calls for x in c] == [f"t{i}" for i in range(10)]


def test_an_idle_engine_waits_at_most_max_wait_for_company() -> None:
    engine = SlowEngine(0.0)
    batcher = DynamicBatcher(engine, max_batch_size=8, max_wait_s=0.2)

    async def run() -> list[str]:
        a = asyncio.ensure_future(batcher.submit("a"))
        await asyncio.sleep(0.02)
        b = asyncio.ensure_future(batcher.submit("b"))  # arrives inside a's wait: rides along
        # 6 more would fill the batch; none come, so only max_wait_s ends the wait (the guard, 150 times that,
        # turns a batcher that waited for a full batch into a failure instead of a hang)
        return list(await asyncio.wait_for(asyncio.gather(a, b), 30))

    assert asyncio.run(run()) == ["A", "B"]
    assert engine.calls == [["a", "b"]]  # a waited for company: b, sent 0.02 s later, went in its call


def test_a_full_batch_does_not_wait() -> None:
    engine = SlowEngine(0.0)
    batcher = DynamicBatcher(engine, max_batch_size=3, max_wait_s=30.0)

    async def run() -> list[str]:
        return list(await asyncio.wait_for(asyncio.gather(*(batcher.submit(c) for c in "abc")), 5))

    assert asyncio.run(run()) == ["A", "B", "C"]


def test_engine_failure_fails_only_that_batch() -> None:
    engine = SlowEngine(0.02, fail_on="boom")
    batcher = DynamicBatcher(engine, max_batch_size=8, max_wait_s=0.0)

    async def run() -> tuple[list, str]:
        first = asyncio.ensure_future(batcher.submit("ok"))
        await asyncio.sleep(0.005)
        doomed = await asyncio.gather(batcher.submit("boom"), batcher.submit("other"), return_exceptions=True)
        return [await first, *doomed], await batcher.submit("after")

    results, after = asyncio.run(run())
    assert results[0] == "OK"
    assert all(isinstance(r, RuntimeError) for r in results[1:])
    assert after == "AFTER"  # the batcher keeps working


def test_an_item_the_engine_rejects_fails_only_its_caller() -> None:
    batcher = DynamicBatcher(SlowEngine(0.0), max_batch_size=8, max_wait_s=0.05)

    async def run() -> list:
        return list(await asyncio.gather(batcher.submit("good"), batcher.submit("bad1"), return_exceptions=True))

    good, bad = asyncio.run(run())
    assert good == "GOOD"
    assert isinstance(bad, ValueError) and "bad1" in str(bad)


def test_a_caller_that_gives_up_is_skipped() -> None:
    engine = SlowEngine(0.05)
    batcher = DynamicBatcher(engine, max_batch_size=8, max_wait_s=0.0)

    async def run() -> str:
        busy = asyncio.ensure_future(batcher.submit("first"))
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit("impatient"), 0.01)
        kept = await batcher.submit("kept")
        await busy
        return kept

    assert asyncio.run(run()) == "KEPT"
    assert ["impatient"] not in engine.calls and all("impatient" not in c for c in engine.calls)


def test_wrong_result_count_is_an_error_not_a_hang() -> None:
    async def short(items: list[str]) -> list[str]:
        return items[:-1]

    batcher = DynamicBatcher(short, max_batch_size=8, max_wait_s=0.05)

    async def run() -> list:
        return list(await asyncio.wait_for(asyncio.gather(batcher.submit("a"), batcher.submit("b"),
                                                          return_exceptions=True), 5))

    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in asyncio.run(run()))


def test_concurrent_batches_overlap_when_allowed() -> None:
    engine = SlowEngine(0.05)
    batcher = DynamicBatcher(engine, max_batch_size=1, max_wait_s=0.0, max_concurrent_batches=3)

    async def run() -> None:
        await asyncio.gather(*(batcher.submit(f"t{i}") for i in range(6)))

    asyncio.run(run())
    assert engine.most_busy == 3


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(SlowEngine(), max_batch_size=0)
    with pytest.raises(ValueError):
        DynamicBatcher(SlowEngine(), max_wait_s=-1)


def test_a_stuck_engine_call_fails_its_batch_at_the_deadline_and_frees_the_slot() -> None:
    from armed.blocking import BlockingTimeout

    stuck = asyncio.Event()

    async def engine(items: list[str]) -> list[str]:
        if "stuck" in items:
            await stuck.wait()  # never set: an engine call that does not come back
        return [i.upper() for i in items]

    batcher = DynamicBatcher(engine, max_batch_size=1, max_wait_s=0.0, call_timeout_s=0.2)

    async def run() -> tuple[BaseException | str, ...]:
        return tuple(await asyncio.gather(batcher.submit("stuck"), batcher.submit("next"), return_exceptions=True))

    first, second = asyncio.run(asyncio.wait_for(run(), 5))
    assert isinstance(first, BlockingTimeout) and "within 0.2s" in str(first)
    assert second == "NEXT", "the batch after a stuck one must get the engine"
