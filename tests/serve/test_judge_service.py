"""JudgeService (the judge deployment's core) in-process: caches, versions in keys, 503 / 400 / degraded paths.

A recording fake stands in for the Pipeline's split API, so these tests check the service's own logic. Until the
knowledge-base branch is merged, `armed.pipeline.dag` cannot import its KB modules; placeholder modules are put in
sys.modules for these tests only (the service uses parse_pair / load_image_bytes / StageRecorder from there,
none of which touch the KB), and removed afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from armed.domain import (
    Branch,
    Evidence,
    Judgment,
    RelevanceLevel,
    SideUnderstanding,
    Versions,
)
from armed.serving.profiles import JudgeCaches
from armed.settings import ArmedSettings
from deployments.clients import UNAVAILABLE_ROLES, ModelUnavailable, Target


@pytest.fixture
def pipeline_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if importlib.util.find_spec("armed.knowledge.base") is not None:
        yield
        return
    before = set(sys.modules)
    base = types.ModuleType("armed.knowledge.base")
    base.KnowledgeBase = type("KnowledgeBase", (), {})  # type: ignore[attr-defined]
    rules = types.ModuleType("armed.knowledge.rules")
    rules.recall = lambda *a, **k: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "armed.knowledge.base", base)
    monkeypatch.setitem(sys.modules, "armed.knowledge.rules", rules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("armed.pipeline"):
            del sys.modules[name]


class FakePipeline:
    def __init__(self, degrade_query: bool = False, mark_unavailable: str | None = None) -> None:
        self.settings = ArmedSettings()
        self.calls = {"query": 0, "product": 0, "conclude": 0}
        self.degrade_query = degrade_query
        self.mark_unavailable = mark_unavailable
        self.model = "m1"

    def versions(self) -> Versions:
        return Versions(knowledge_base="kb1", rules="r1", models={"llm": self.model}, armed="0")

    async def understand_query(self, text: str, rec: Any) -> str:
        self.calls["query"] += 1
        if self.degrade_query:
            rec.degraded.append("two_stage_filter")
        if self.mark_unavailable:
            UNAVAILABLE_ROLES.get().add(self.mark_unavailable)
        return text

    async def understand_product(self, product: Any, rec: Any) -> str:
        self.calls["product"] += 1
        return product.name

    async def conclude(self, request_id: str, query: Any, product: Any, q: str, p: str, rec: Any,
                       started: float) -> Judgment:
        self.calls["conclude"] += 1
        side = SideUnderstanding(original=q)
        return Judgment(
            request_id=request_id, query=query.text, product_name=product.name, level=RelevanceLevel.highly,
            benchmark_level=RelevanceLevel.highly.to_benchmark(), probabilities={RelevanceLevel.highly: 1.0},
            branch=Branch.name_containment, reason="fake", degraded=list(rec.degraded),
            evidence=Evidence(query=side, product=SideUnderstanding(original=p)), stages=rec.reports,
            versions=self.versions(),
        )


class Required:
    def __init__(self, up: bool = True) -> None:
        self.target = Target("llm", "llm", "llm")
        self.up = up

    async def ensure_available(self) -> None:
        if not self.up:
            raise ModelUnavailable("llm", "no running replica", 9)


def _service(pipeline: FakePipeline, required: Required | None = None) -> Any:
    from deployments.judge import JudgeService

    return JudgeService(pipeline, JudgeCaches(), required=[required or Required()], retry_after_s=9)


async def test_sides_and_judgments_are_cached_by_normalised_query_and_content(pipeline_modules: None) -> None:
    fake = FakePipeline()
    svc = _service(fake)
    r1 = await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}, "request_id": "a"})
    assert r1["status"] == 200 and r1["body"]["request_id"] == "a"
    r2 = await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}, "request_id": "b"})
    assert r2["status"] == 200 and r2["body"]["request_id"] == "b"
    assert fake.calls == {"query": 1, "product": 1, "conclude": 1}  # the whole judgment came from the cache
    # same query, other product: the query side is reused, the product side is computed
    await svc.judge({"query": "布洛芬 ", "product": {"name": "对乙酰氨基酚片", "id": "p2"}})
    assert fake.calls == {"query": 1, "product": 2, "conclude": 2}
    # same product id, changed content: a new content hash, so the product side runs again
    await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊 新包装", "id": "p1"}})
    assert fake.calls["product"] == 3
    # a new model id changes the versions key: nothing cached under the old versions is served
    svc._versions_key, fake.model = None, "m2"
    await svc.judge({"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}})
    assert fake.calls == {"query": 2, "product": 4, "conclude": 4}


async def test_degraded_results_are_returned_but_not_cached(pipeline_modules: None) -> None:
    fake = FakePipeline(degrade_query=True)
    svc = _service(fake)
    for _ in range(2):
        r = await svc.judge({"query": "感冒", "product": "感冒灵颗粒"})
        assert r["status"] == 200 and r["body"]["degraded"] == ["two_stage_filter"]
    assert fake.calls["query"] == 2 and fake.calls["conclude"] == 2


async def test_required_model_down_is_503_with_retry_after(pipeline_modules: None) -> None:
    fake = FakePipeline()
    r = await _service(fake, Required(up=False)).judge({"query": "感冒", "product": "感冒灵颗粒"})
    assert r["status"] == 503 and r["headers"] == {"Retry-After": "9"}
    assert fake.calls["query"] == 0  # decided before any model work
    # a required model that vanished during the run is a 503 too, not a silently worse fallback answer
    r = await _service(FakePipeline(mark_unavailable="llm")).judge({"query": "感冒", "product": "感冒灵颗粒"})
    assert r["status"] == 503
    # an optional one only degrades
    r = await _service(FakePipeline(mark_unavailable="vl")).judge({"query": "感冒", "product": "感冒灵颗粒"})
    assert r["status"] == 200


async def test_bad_input_is_400_naming_the_field_and_batch_reports_per_item(pipeline_modules: None) -> None:
    svc = _service(FakePipeline())
    r = await svc.judge({"query": "x" * 300, "product": "p"})
    assert r["status"] == 400 and r["body"]["error"]["field"].startswith("query")
    r = await svc.judge({"query": "q", "product": {"name": "p", "images": [{"data": "bm90IGFuIGltYWdl"}]}})
    assert r["status"] == 400 and r["body"]["error"]["field"] == "product.images[0]"
    r = await svc.judge_batch({"pairs": [{"query": "感冒", "product": "感冒灵"}, {"query": "", "product": "p"}]})
    assert r["status"] == 200
    assert [i["status"] for i in r["body"]["results"]] == [200, 400]
    r = await svc.judge_batch({"pairs": [{"query": "q", "product": "p"}] * 65})
    assert r["status"] == 413


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
