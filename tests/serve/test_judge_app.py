"""The judge application with the real Pipeline over handle clients (zero-work model engines), and the metrics
it exports through the Ray node's Prometheus endpoint. (That the served judgment is the library's, pair for pair, is
tests/serve/test_one_judgment_path.py, in-process.)
"""

from __future__ import annotations

import time

import httpx
import pytest

from armed.roles import ROLES
from armed_testing.zero_work import ZeroWork
from tests.serve.conftest import deploy_roles, replica_count, write_profile

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]


@pytest.fixture(scope="module")
def judge_stack(serve_port: int, profile_path: str) -> str:
    from serve_apps.judge import build_judge_app

    deploy_roles(profile_path, ROLES, judge=build_judge_app({"profile": profile_path}))
    return f"http://127.0.0.1:{serve_port}"


def test_judge_answers_and_caches(judge_stack: str) -> None:
    body = {"query": "布洛芬", "product": {"id": "p1", "name": "布洛芬缓释胶囊 0.3g*20粒", "cpv": {"剂型": "胶囊剂"}}}
    r = httpx.post(judge_stack + "/v1/judge", json=body, headers={"X-Request-Id": "req-1"}, timeout=120)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["request_id"] == "req-1" and j["level"] and j["versions"]["models"]["llm"]
    r = httpx.post(judge_stack + "/v1/judge/batch", json={"pairs": [body, body]}, timeout=120)
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == [200, 200]


@pytest.mark.parametrize("header", [b"X-Request-Id", b"serve_multiplexed_model_id", b"X-Anything"])
def test_a_non_utf8_header_is_400_from_serves_own_proxy(judge_stack: str, header: bytes) -> None:
    """The fuzz's last 500: Serve's proxy decodes these headers as UTF-8 before any app runs. The proxy guard
    (armed/serving/proxy_guard.py, installed through the node's environment) answers 400 instead, OpenAI-shaped."""
    body = {"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊 0.3g*20粒"}}
    r = httpx.post(judge_stack + "/v1/judge", json=body, headers={header: b"\xff\xfe-\xc3"}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and "not valid UTF-8" in r.json()["error"]["message"]
    r = httpx.post(judge_stack + "/v1/judge", json=body, headers={"X-Request-Id": "café-ok".encode()}, timeout=60)
    assert r.status_code == 200, r.text


def test_http_input_never_reads_a_local_file(judge_stack: str, tmp_path) -> None:
    """Issue 11, over real HTTP: a path in any form is a 400 with one message, the same for an existing secret file
    and a missing one; the bytes of the file never reach the OCR (whose zero-work answer names their length)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((128, 128), 64).convert("RGB").save(buf, format="PNG")
    secret = tmp_path / "shadow.png"
    secret.write_bytes(buf.getvalue())
    missing = tmp_path / "missing.png"

    def judge(img: object) -> httpx.Response:
        body = {"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊", "images": [img]}}
        return httpx.post(judge_stack + "/v1/judge", json=body, timeout=120)

    ok = judge(base64.b64encode(secret.read_bytes()).decode())  # control: as bytes, the OCR reads it
    assert ok.status_code == 200 and f"{secret.stat().st_size} bytes" in ok.text, ok.text
    for form in (lambda p: str(p), lambda p: {"uri": str(p)}, lambda p: f"file://{p}", lambda p: {"uri": f"file://{p}"},
                 lambda p: {"uri": "../" * 12 + str(p).lstrip("/")}):
        answers = [judge(form(p)) for p in (secret, missing)]
        assert [a.status_code for a in answers] == [400, 400], answers[0].text
        assert answers[0].json()["error"] == answers[1].json()["error"]
        assert "bytes\"" not in answers[0].text and "a request never names a local file" in answers[0].text
    r = httpx.post(judge_stack + "/v1/judge", json={"query": "布洛芬", "product": {
        "name": "布洛芬", "images": ["http://127.0.0.1:9/x.png"]}}, timeout=120)  # no allow-list: never fetched
    assert r.status_code == 400, r.text


def _armed_samples(metrics_url: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10).text
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name.startswith("ray_armed_")]


def test_judge_exports_the_metrics_contract(judge_stack: str, metrics_url: str) -> None:
    from armed.domain import RelevanceLevel
    from armed.serving.config import JUDGE_DEPLOYMENT
    from ops import metrics as contract

    body = {"query": "维生素C", "product": {"id": "m1", "name": "维生素C片 100片"}}
    for _ in range(2):  # the second is a judgment-cache hit
        r = httpx.post(judge_stack + "/v1/judge", json=body, timeout=120)
        assert r.status_code == 200, r.text
    level, degraded = r.json()["level"], "true" if r.json()["degraded"] else "false"
    want = {contract.JUDGMENTS, contract.STAGE_LATENCY_BUCKET, contract.CACHE_REQUESTS}
    deadline = time.monotonic() + 30  # the node's agent exports what the replica reported (every second here)
    while True:
        samples = [s for s in _armed_samples(metrics_url) if s.labels.get("deployment") == JUDGE_DEPLOYMENT]
        judged = sum(s.value for s in samples
                     if s.name == contract.JUDGMENTS and (s.labels["label"], s.labels["degraded"]) == (level, degraded))
        if ({s.name for s in samples} >= want and judged >= 2) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {s.name for s in samples} >= want, sorted({s.name for s in _armed_samples(metrics_url)})
    assert judged >= 2
    assert {s.labels["label"] for s in samples if s.name == contract.JUDGMENTS} <= {v.value for v in RelevanceLevel}
    stages = {s.labels["stage"] for s in samples if s.name == contract.STAGE_LATENCY_BUCKET}
    assert "judge" in stages and len(stages) > 1, stages
    caches = {(s.labels["cache"], s.labels["result"]) for s in samples if s.name == contract.CACHE_REQUESTS}
    assert ("judgment", "hit") in caches and ("judgment", "miss") in caches, caches
    assert {c for c, _ in caches} <= {"query", "product", "judgment"}


def test_failing_optional_model_degrades(judge_stack: str, profile_path: str) -> None:
    deploy_roles(profile_path, ("embedder",), ZeroWork(fail=True))
    r = httpx.post(judge_stack + "/v1/judge", json={"query": "感冒 发烧", "product": {"name": "感冒灵颗粒 10g*9袋"}},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"], "a failing embedder must mark the judgment degraded"
    deploy_roles(profile_path, ("embedder",))


def test_required_model_scaled_to_zero_is_503(judge_stack: str, profile_data: dict,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    data = profile_data
    data["models"]["llm"]["replicas"] = {"min": 0, "max": 1, "initial": 0}
    data["models"]["llm"]["autoscaling"]["downscale_delay_s"] = 60
    deploy_roles(write_profile(tmp_path_factory.mktemp("zero"), data), ("llm",))
    while replica_count("llm", "llm"):
        time.sleep(0.5)
    time.sleep(1.2)
    r = httpx.post(judge_stack + "/v1/judge", json={"query": "维生素C", "product": {"name": "维生素C片 100片"}},
                   timeout=120)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "7"
