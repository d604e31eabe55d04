"""The judge application with the real Pipeline over handle clients (zero-work model engines).

Needs the knowledge base (armed.knowledge.base), which arrives with the kb branch: skipped until then.
"""

from __future__ import annotations

import importlib.util
import time

import httpx
import pytest

from tests.serve.conftest import replica_count, write_profile

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("armed.knowledge") is None
                       or importlib.util.find_spec("armed.knowledge.base") is None,
                       reason="armed.knowledge.base is not in this branch yet (kb branch); the judge needs the KB"),
]
ROLES = ("llm", "embedder", "consistency", "vl", "ocr")


def _deploy(profile: str, roles: tuple[str, ...] = ROLES, options: dict | None = None) -> None:
    from ray import serve

    from serve_apps.models import build_model_app

    for role in roles:
        serve.run(build_model_app({"profile": profile, "role": role, "engine_source": "zero-work",
                                   "engine_options": (options or {}).get(role, {})}),
                  name=role, route_prefix=f"/models/{role}")


@pytest.fixture(scope="module")
def judge_stack(serve_port: int, profile_path: str) -> str:
    from ray import serve

    from serve_apps.judge import build_judge_app

    _deploy(profile_path)
    serve.run(build_judge_app({"profile": profile_path}), name="judge", route_prefix="/")
    return f"http://127.0.0.1:{serve_port}"


def test_judge_answers_and_caches(judge_stack: str) -> None:
    body = {"query": "布洛芬", "product": {"id": "p1", "name": "布洛芬缓释胶囊 0.3g*20粒", "cpv": {"剂型": "胶囊剂"}}}
    r = httpx.post(judge_stack + "/v1/judge", json=body, headers={"X-Request-Id": "req-1"}, timeout=120)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["request_id"] == "req-1" and j["level"] and j["versions"]["models"]["llm"]
    r = httpx.post(judge_stack + "/v1/judge/batch", json={"pairs": [body, body]}, timeout=120)
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == [200, 200]


def test_failing_optional_model_degrades(judge_stack: str, profile_path: str) -> None:
    _deploy(profile_path, ("embedder",), {"embedder": {"fail": True}})
    r = httpx.post(judge_stack + "/v1/judge", json={"query": "感冒 发烧", "product": {"name": "感冒灵颗粒 10g*9袋"}},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"], "a failing embedder must mark the judgment degraded"
    _deploy(profile_path, ("embedder",))


def test_required_model_scaled_to_zero_is_503(judge_stack: str, profile_data: dict,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    data = profile_data
    data["models"]["llm"]["replicas"] = {"min": 0, "max": 1, "initial": 0}
    data["models"]["llm"]["autoscaling"]["downscale_delay_s"] = 60
    _deploy(write_profile(tmp_path_factory.mktemp("zero"), data), ("llm",))
    while replica_count("llm", "llm"):
        time.sleep(0.5)
    time.sleep(1.2)
    r = httpx.post(judge_stack + "/v1/judge", json={"query": "维生素C", "product": {"name": "维生素C片 100片"}},
                   timeout=120)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "7"
