"""JudgeService (the judge deployment's core) in-process: caches, versions in keys, 503 / 400 / degraded paths.

The real Pipeline judges (zero-work engines at the model boundary, tests/serve/judging.py); the service gives it
its hooks, and these tests check what the hooks do: which sides and judgments are reused, what is never kept, and
when the answer is a 503.
"""

from __future__ import annotations

from tests.serve.judging import Required, Vanishing, counting_pipeline, judge_service, zero_work_clients


async def test_sides_and_judgments_are_cached_by_normalised_query_and_content() -> None:
    pipe = counting_pipeline()
    svc = judge_service(pipe)
    r1 = await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}, "request_id": "a"})
    assert r1["status"] == 200 and r1["body"]["request_id"] == "a"
    r2 = await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}, "request_id": "b"})
    assert r2["status"] == 200 and r2["body"]["request_id"] == "b" and r2["body"]["seconds"] == 0.0
    assert pipe.calls == {"query": 1, "product": 1, "conclude": 1}  # the whole judgment came from the cache
    # same query (once normalised), other product: the query side is reused and says so, the product side runs
    r3 = await svc.judge({"query": "布洛芬 ", "product": {"name": "对乙酰氨基酚片", "id": "p2"}})
    assert pipe.calls == {"query": 1, "product": 2, "conclude": 2}
    assert r3["body"]["stages"][0] == {"name": "query_side", "status": "skipped", "seconds": 0.0,
                                       "detail": "cache hit"}
    # same product id, changed content: a new content hash, so the product side runs again
    await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊 新包装", "id": "p1"}})
    assert pipe.calls["product"] == 3
    # a new model id changes the versions key: nothing cached under the old versions is served
    svc._versions_key, pipe.clients.llm.model_id = None, "zero-work-llm-2"
    await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}})
    assert pipe.calls == {"query": 2, "product": 4, "conclude": 4}


async def test_degraded_results_are_returned_but_not_cached() -> None:
    pipe = counting_pipeline(zero_work_clients(embedder={"fail": True}))  # the query side's filter fails
    svc = judge_service(pipe)
    for _ in range(2):
        r = await svc.judge({"query": "感冒", "product": "感冒灵颗粒"})
        assert r["status"] == 200 and r["body"]["degraded"] == ["two_stage_filter"]
    # the degraded query side ran twice, the clean product side once (kept), and each judgment was made
    assert pipe.calls == {"query": 2, "product": 1, "conclude": 2}
    assert svc.stats()["judgment"]["size"] == 0


async def test_concurrent_judgments_sharing_a_degraded_side_are_all_degraded() -> None:
    """Concurrent misses on one query share the query side in flight (single-flight): each judgment that used a
    degraded side says so, and none is kept."""
    import asyncio

    pipe = counting_pipeline(zero_work_clients(embedder={"fail": True, "delay_s": 0.05}))
    svc = judge_service(pipe)
    rs = await asyncio.gather(*(svc.judge({"query": "感冒", "product": name}) for name in ("感冒灵颗粒", "板蓝根颗粒")))
    assert [r["body"]["degraded"] for r in rs] == [["two_stage_filter"]] * 2
    assert pipe.calls["query"] == 1 and svc.stats()["judgment"]["size"] == 0


async def test_required_model_down_is_503_with_retry_after() -> None:
    pipe = counting_pipeline()
    r = await judge_service(pipe, [Required(up=False)]).judge({"query": "感冒", "product": "感冒灵颗粒"})
    assert r["status"] == 503 and r["headers"] == {"Retry-After": "9"}
    assert pipe.calls == {"query": 0, "product": 0, "conclude": 0}  # decided before any model work
    # a required model that vanished during the run is a 503 too, not a silently worse fallback answer, and the
    # judgment made without it is not kept
    clients = zero_work_clients()
    clients.embedder = Vanishing(clients.embedder, "embedder")
    svc = judge_service(counting_pipeline(clients), [Required("embedder")])
    r = await svc.judge({"query": "感冒", "product": "感冒灵颗粒"})
    assert r["status"] == 503 and svc.stats()["judgment"]["size"] == 0
    # an optional one only degrades
    r = await judge_service(counting_pipeline(clients), [Required("llm")]).judge({"query": "感冒",
                                                                               "product": "感冒灵颗粒"})
    assert r["status"] == 200 and r["body"]["degraded"] == ["two_stage_filter"]


async def test_bad_input_is_400_naming_the_field_and_batch_reports_per_item() -> None:
    svc = judge_service(counting_pipeline())
    r = await svc.judge({"query": "x" * 300, "product": "p"})
    assert r["status"] == 400 and r["body"]["error"]["field"].startswith("query")
    r = await svc.judge({"query": "q", "product": {"name": "p", "images": [{"data": "bm90IGFuIGltYWdl"}]}})
    assert r["status"] == 400 and r["body"]["error"]["field"] == "product.images[0]"
    r = await svc.judge_batch({"pairs": [{"query": "感冒", "product": "感冒灵"}, {"query": "", "product": "p"}]})
    assert r["status"] == 200
    assert [i["status"] for i in r["body"]["results"]] == [200, 400]
    r = await svc.judge_batch({"pairs": [{"query": "q", "product": "p"}] * 65})
    assert r["status"] == 413


async def test_a_bad_pair_is_400_even_while_a_required_model_is_down() -> None:
    """The input is checked before the required models: a client's mistake is not hidden behind a 503."""
    r = await judge_service(counting_pipeline(), [Required(up=False)]).judge({"query": "", "product": "p"})
    assert r["status"] == 400


async def test_ttl_cache_single_flight_and_bounds() -> None:
    import asyncio

    from deployments.cache import TTLCache

    now = [0.0]
    cache: TTLCache[int] = TTLCache(2, 10, clock=lambda: now[0])
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return 42

    results = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(5)))
    assert loads == 1 and [v for v, _ in results] == [42] * 5
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("k") is None and len(cache) == 2  # LRU bound
    now[0] = 11
    assert cache.get("a") is None  # TTL
