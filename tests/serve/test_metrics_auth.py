"""Metrics recorder and API-key check, in-process (no Ray): the judge's metrics contract and the 401 behaviour."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from armed.settings import ArmedSettings, ServingSettings
from deployments import api, auth
from deployments import metrics as m
from ops import metrics as contract
from tests.serve.judging import (
    CountingPipeline,
    counting_pipeline,
    judge_service,
    packaged_kb,
    zero_work_clients,
)

# --- metrics ------------------------------------------------------------------------------------------------------


class FakeRecorder:
    def __init__(self) -> None:
        self.judgments: Counter[tuple[str, bool]] = Counter()
        self.stages: list[tuple[str, float]] = []
        self.caches: Counter[tuple[str, bool]] = Counter()

    def judgment(self, label: str, degraded: bool) -> None:
        self.judgments[(label, degraded)] += 1

    def stage(self, stage: str, ms: float) -> None:
        self.stages.append((stage, ms))

    def cache(self, cache: str, hit: bool) -> None:
        self.caches[(cache, hit)] += 1

    def stage_names(self) -> list[str]:
        return [s for s, _ in self.stages]


class FakeClock:
    """Seconds that move only when the test (or the pipeline below) says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ClockedPipeline(CountingPipeline):
    """The real pipeline (zero-work engines), whose conclusion takes 0.75 s of `clock` (the service's clock), so the
    whole judgment's time is known exactly."""

    def __init__(self, clock: FakeClock, **overrides: Any) -> None:
        super().__init__(ArmedSettings(**overrides), packaged_kb(), zero_work_clients())
        self.clock = clock

    async def conclude(self, *args: Any, **kwargs: Any) -> Any:
        self.clock.now += 0.75
        return await super().conclude(*args, **kwargs)


def _service(pipeline: Any, recorder: FakeRecorder, clock: FakeClock | None = None) -> Any:
    return judge_service(pipeline, metrics=recorder, clock=clock or FakeClock())


def _timed(body: dict[str, Any]) -> list[tuple[str, float]]:
    """The stages of a served judgment that took time (what the stage-latency histogram observes), in ms."""
    return [(s["name"], s["seconds"] * 1000.0) for s in body["stages"] if s["status"] in m.TIMED_STATUSES]


def test_metric_names_are_the_contract() -> None:
    assert "ray_" + m.JUDGMENTS == contract.JUDGMENTS == "ray_armed_judgments_total"
    assert "ray_" + m.STAGE_LATENCY + "_bucket" == contract.STAGE_LATENCY_BUCKET
    assert m.STAGE_LATENCY == "armed_stage_latency_ms"
    assert "ray_" + m.CACHE_REQUESTS == contract.CACHE_REQUESTS == "ray_armed_cache_requests_total"
    assert list(m.STAGE_BUCKETS_MS) == sorted(set(m.STAGE_BUCKETS_MS)) and m.STAGE_BUCKETS_MS[-1] >= 180_000


async def test_service_records_judgments_stages_and_caches() -> None:
    rec, clock = FakeRecorder(), FakeClock()
    svc = _service(ClockedPipeline(clock, stages={"search": False}), rec, clock)
    pair = {"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "id": "p1"}}
    body = (await svc.judge(pair))["body"]
    level = body["level"]
    assert rec.judgments == {(level, False): 1}
    assert rec.caches == {("judgment", False): 1, ("query", False): 1, ("product", False): 1}
    # one observation per stage that ran, in ms, then the whole judgment; the switched-off search took no time
    timed = _timed(body)
    assert rec.stage_names() == [name for name, _ in timed] + ["judge"]
    assert rec.stages[:-1] == timed  # the same floats: the body is the judgment that was recorded
    assert {"query_rewrite", "cheating_check", "rules"} <= set(rec.stage_names())
    assert {"name": "search", "status": "disabled", "seconds": 0.0, "detail": "switched off by settings"} in \
        body["stages"] and "search" not in rec.stage_names()
    assert rec.stages[-1] == ("judge", 750.0)  # the conclusion's 0.75 s on the service's clock

    # the same pair again: a judgment-cache hit counts as a judgment and a "judge" time, no stage re-observed
    rec.stages.clear()
    assert (await svc.judge(pair))["status"] == 200
    assert rec.judgments == {(level, False): 2}
    assert rec.caches[("judgment", True)] == 1 and rec.stages == [("judge", 0.0)]  # no clock time passed

    # same query, other product: query side from its cache (its stages not re-observed), product side runs
    rec.stages.clear()
    body = (await svc.judge({"query": "布洛芬", "product": {"name": "对乙酰氨基酚片", "id": "p2"}}))["body"]
    assert rec.caches[("query", True)] == 1 and rec.caches[("product", False)] == 2
    assert rec.stage_names() == [name for name, _ in _timed(body)] + ["judge"]
    assert "query_rewrite" not in rec.stage_names() and "cheating_check" in rec.stage_names()


async def test_degraded_and_failed_requests() -> None:
    rec = FakeRecorder()
    svc = _service(counting_pipeline(zero_work_clients(embedder={"fail": True})), rec)
    body = (await svc.judge({"query": "感冒", "product": "感冒灵颗粒"}))["body"]
    assert body["degraded"] == ["two_stage_filter"]
    assert rec.judgments == {(body["level"], True): 1}
    # a 400 is not a judgment
    r = await svc.judge({"query": "", "product": "p"})
    assert r["status"] == 400 and sum(rec.judgments.values()) == 1


def test_ray_recorder_makes_the_contract_metrics_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve import metrics as serve_metrics

    made: list[Any] = []

    class Fake:
        def __init__(self, name: str, description: str = "", tag_keys: tuple = (), boundaries: Any = None) -> None:
            self.name, self.tag_keys, self.boundaries, self.calls = name, tuple(tag_keys), boundaries, []
            made.append(self)

        def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
            self.calls.append((value, tags))

        def observe(self, value: float, tags: dict | None = None) -> None:
            self.calls.append((value, tags))

    monkeypatch.setattr(serve_metrics, "Counter", Fake)
    monkeypatch.setattr(serve_metrics, "Histogram", Fake)
    r = m.RayMetricsRecorder()
    for _ in range(3):
        r.judgment("weakly_relevant", True)
        r.stage("search", 12.5)
        r.cache("product", False)
    assert len(made) == 3  # created in the constructor, not per call
    by = {x.name: x for x in made}
    assert by["armed_judgments_total"].tag_keys == ("label", "degraded")
    assert by["armed_judgments_total"].calls[0] == (1, {"label": "weakly_relevant", "degraded": "true"})
    assert by["armed_stage_latency_ms"].tag_keys == ("stage",)
    assert by["armed_stage_latency_ms"].boundaries == list(m.STAGE_BUCKETS_MS)
    assert by["armed_stage_latency_ms"].calls[0] == (12.5, {"stage": "search"})
    assert by["armed_cache_requests_total"].calls[0] == (1, {"cache": "product", "result": "miss"})


# --- API key ------------------------------------------------------------------------------------------------------


class Echo(BaseModel):
    text: str


def _app() -> TestClient:
    app = FastAPI()
    api.install_error_handlers(app)

    @app.post("/v1/echo")
    async def echo(body: Echo) -> dict:
        return {"text": body.text}

    return TestClient(app)


@pytest.fixture
def keyed() -> Any:
    auth.load_api_key(ServingSettings(api_key="s3cret-key"))
    yield
    auth.reset()


def test_key_required_when_set(keyed: None) -> None:
    client = _app()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-key"},
                    {"Authorization": "Bearer "}, {"Authorization": "s3cret-key"}):
        r = client.post("/v1/echo", json={"text": "hi"}, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "authentication_error" and r.json()["error"]["message"]
        assert "s3cret" not in r.text
    ok = {"Authorization": "Bearer s3cret-key"}
    assert client.post("/v1/echo", json={"text": "hi"}, headers=ok).json() == {"text": "hi"}
    lower = {"authorization": "bearer s3cret-key"}
    assert client.post("/v1/echo", json={"text": "hi"}, headers=lower).status_code == 200
    # checked before the body: no key and a bad or oversized body is still 401; with the key, 422 / 413 as before
    assert client.post("/v1/echo", json={"nope": 1}).status_code == 401
    assert client.post("/v1/echo", content=b"x", headers={"content-length": str(api.limits().body_bytes + 1)}
                       ).status_code == 401
    assert client.post("/v1/echo", json={"nope": 1}, headers=ok).status_code == 422
    # FastAPI's own pages and unknown paths are covered too; Serve's /-/ paths are not the app's to refuse
    assert client.get("/openapi.json").status_code == 401 and client.get("/docs").status_code == 401
    assert client.get("/nowhere").status_code == 401 and client.get("/nowhere", headers=ok).status_code == 404
    assert client.get("/-/healthz").status_code == 404


def test_open_without_key_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARMED_API_KEY", raising=False)
    auth.reset()
    warned: list[str] = []
    monkeypatch.setattr(auth.log, "warning", lambda event, **kw: warned.append(event))
    try:
        client = _app()
        assert client.post("/v1/echo", json={"text": "hi"}).status_code == 200
        assert client.post("/v1/echo", json={"text": "hi"}, headers={"Authorization": "Bearer x"}).status_code == 200
        assert warned == ["api_key_unset"]
    finally:
        auth.reset()


def test_key_from_env_is_secret_and_never_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMED_API_KEY", "from-env-key")
    s = ServingSettings()
    assert s.api_key is not None and s.api_key.get_secret_value() == "from-env-key"
    assert "from-env-key" not in repr(s) and "from-env-key" not in s.model_dump_json()
    monkeypatch.setenv("ARMED_API_KEY", "  ")
    with pytest.raises(ValueError, match="set but empty"):
        ServingSettings()
