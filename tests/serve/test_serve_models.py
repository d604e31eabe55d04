"""Model deployments and the gateway on a real local Ray, with zero-work engines.

Covers: each model answers over its own HTTP prefix and over its handle; batching merges concurrent calls; the
gateway's OpenAI-compatible surface works with the unmodified `openai` client; bad requests are 4xx with a
reason; a scaled-to-zero model answers 503 + Retry-After and is woken up; a missing judge answers 503; with
ARMED_API_KEY set, the gateway and a model's routes want the key (the openai client's api_key).
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import time
from typing import Any

import httpx
import pytest

from armed_testing.zero_work import ZeroWork
from tests.serve.conftest import REPO, deploy_roles, replica_count, write_profile

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

ROLES = ("llm", "embedder", "consistency", "vl", "ocr", "student")


def _png(size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> str:
    """A decompression bomb: 200 million pixels in a few hundred bytes of PNG, as base64."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20_000, 10_000)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def stack(serve_port: int, profile_path: str, profile_data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Model apps for all six roles + the gateway alone: no judge app, so the gateway's answer for a missing judge
    can be tested (the judge app itself: test_judge_app.py)."""
    from ray import serve

    from serve_apps.judge import build_gateway_app

    # A second profile whose OCR may scale to zero, for the 503 test: the gateway reads the same file.
    deploy_roles(profile_path, ROLES, ZeroWork(), judge=build_gateway_app({"profile": profile_path}))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = serve.status().applications
        if all(a in st and str(st[a].status.value if hasattr(st[a].status, "value") else st[a].status) == "RUNNING"
               for a in (*ROLES, "judge")):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"apps not running: { {k: v.status for k, v in serve.status().applications.items()} }")
    return {"base": f"http://127.0.0.1:{serve_port}", "profile": profile_path}


def test_each_model_answers_on_its_own_prefix(stack: dict) -> None:
    base = stack["base"]
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/models/embedder/v1/embeddings", json={"model": "armed-embedder", "input": ["感冒药", "aspirin"]})
        assert r.status_code == 200, r.text
        vecs = [d["embedding"] for d in r.json()["data"]]
        assert len(vecs) == 2 and all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-6 for v in vecs)
        # usage is the engine's own count (the zero-work engine: one token per character), not the route's guess
        assert r.json()["usage"] == {"prompt_tokens": 10, "total_tokens": 10}
        r = c.post("/models/consistency/v1/classify", json={"model": "armed-consistency", "pairs": [["a", "b"]]})
        assert r.status_code == 200, r.text
        assert set(r.json()["data"][0]["probabilities"]) == {"consistent", "inconsistent"}
        # the student: its own app and route, a pair classifier over the four levels, also through the gateway
        for url in ("/models/student/v1/classify", "/v1/classify"):
            r = c.post(url, json={"model": "armed-student", "pairs": [["布洛芬", "布洛芬缓释胶囊"]]})
            assert r.status_code == 200, r.text
            assert set(r.json()["data"][0]["probabilities"]) == {
                "highly_relevant", "moderately_relevant", "weakly_relevant", "irrelevant"}
        r = c.post("/models/llm/v1/chat/completions", json={
            "model": "armed-llm", "messages": [{"role": "user", "content": "relevant?"}],
            "guided_choice": ["yes", "no"]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] in ("yes", "no")
        img = base64.b64encode(_png()).decode()
        r = c.post("/models/ocr/v1/ocr", json={"image": img})
        assert r.status_code == 200 and r.json()["lines"], r.text
        r = c.get("/models/vl/v1/models")
        assert [m["id"] for m in r.json()["data"]] == ["armed-vl"]
        # the wrong model name on a role's own prefix is a 404, not a silent answer from another model
        r = c.post("/models/embedder/v1/embeddings", json={"model": "armed-llm", "input": "x"})
        assert r.status_code == 404


def test_handles_share_the_request_path_and_batch(stack: dict) -> None:
    from ray import serve

    from armed.engines.base import ChatMessage

    emb = serve.get_deployment_handle("embedder", "embedder")
    http_vec = httpx.post(stack["base"] + "/models/embedder/v1/embeddings",
                          json={"model": "embedder", "input": "布洛芬"}, timeout=30).json()["data"][0]["embedding"]
    assert emb.embed.remote(["布洛芬"]).result(timeout_s=30)[0] == pytest.approx(http_vec)

    async def burst() -> list:
        return await asyncio.gather(*(emb.embed.remote([f"text {i}"]) for i in range(24)))

    assert len(asyncio.run(burst())) == 24
    stats = emb.engine_stats.remote().result(timeout_s=30)
    sizes = stats["batch_sizes"]
    assert max(sizes) > 1, f"concurrent calls were never batched: {sizes}"
    assert max(stats["batcher_batch_sizes"]) == max(sizes)  # the largest engine call was one of the batcher's
    vl = serve.get_deployment_handle("vl", "vl")
    res = vl.choose.remote([ChatMessage("user", "same product?", (_png(),))], ["consistent", "cheating"]).result(
        timeout_s=30)
    assert res.label in ("consistent", "cheating") and abs(sum(res.probabilities.values()) - 1) < 1e-9


def test_openai_client_works_unchanged(stack: dict) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=stack["base"] + "/v1", api_key="unused", max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == ["armed-consistency", "armed-embedder", "armed-llm",
                                                              "armed-student", "armed-vl"]
    emb = client.embeddings.create(model="armed-embedder", input=["维生素C", "vitamin c"])
    assert len(emb.data) == 2 and len(emb.data[1].embedding) == 8
    assert emb.usage.prompt_tokens == emb.usage.total_tokens == 13  # through the gateway: the engine's count too
    chat = client.chat.completions.create(
        model="armed-llm", messages=[{"role": "user", "content": "Is 布洛芬 relevant to 头痛?"}],
        extra_body={"guided_choice": ["relevant", "irrelevant"]})
    assert chat.choices[0].message.content in ("relevant", "irrelevant")
    free = client.chat.completions.create(model="armed-llm", messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=8)
    assert free.choices[0].message.content
    # through the gateway and the llm's handle: the engine's finish reason and token counts (zero-work: one
    # character per token)
    cut = client.chat.completions.create(model="armed-llm", messages=[{"role": "user", "content": "hello"}],
                                         max_tokens=3, temperature=0.5, seed=1, stop=["x"])
    assert cut.choices[0].message.content == "hel" and cut.choices[0].finish_reason == "length"
    assert (cut.usage.prompt_tokens, cut.usage.completion_tokens) == (5, 3)
    url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    vision = client.chat.completions.create(
        model="armed-vl",
        messages=[{"role": "user", "content": [{"type": "text", "text": "name matches image?"},
                                               {"type": "image_url", "image_url": {"url": url}}]}],
        extra_body={"guided_choice": ["consistent", "cheating"]})
    assert vision.choices[0].message.content in ("consistent", "cheating")
    schema = httpx.get(stack["base"] + "/openapi.json", timeout=30).json()
    assert {"/v1/judge", "/v1/judge/batch", "/v1/embeddings", "/v1/chat/completions", "/v1/classify"} <= set(
        schema["paths"])


def test_bad_requests_are_4xx_with_a_reason(stack: dict) -> None:
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=stack["base"] + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(NotFoundError, match="unknown model"):
        client.embeddings.create(model="gpt-9", input="x")
    with httpx.Client(base_url=stack["base"], timeout=30) as c:
        cases = [
            ("/v1/embeddings", b"{not json", 400),
            ("/v1/embeddings", {"model": "armed-embedder", "input": ["x"] * 300}, 422),
            ("/v1/embeddings", {"model": "armed-embedder", "input": "x" * 9000}, 422),
            ("/v1/embeddings", {"model": "armed-llm", "input": "x"}, 400),
            ("/v1/chat/completions", {"model": "armed-llm", "messages": []}, 422),
            ("/v1/chat/completions", {"model": "armed-llm", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, 400),
            ("/v1/chat/completions", {"model": "armed-vl", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}, 400),
            ("/v1/chat/completions", {"model": "armed-vl", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]}, 400),
            ("/v1/classify", {"model": "armed-consistency", "pairs": [["a"]]}, 422),
            # issue 11: empty, non-image, decompression-bomb and path "images" are 400s at the edge, never 500s
            ("/v1/ocr", {"model": "armed-ocr", "image": "data:,"}, 400),
            ("/v1/ocr", {"model": "armed-ocr", "image": ""}, 400),
            ("/v1/ocr", {"model": "armed-ocr", "image": "bm90IGFuIGltYWdl"}, 400),
            ("/v1/ocr", {"model": "armed-ocr", "image": _bomb()}, 400),
            ("/v1/ocr", {"model": "armed-ocr", "image": "/etc/passwd"}, 400),
            ("/models/ocr/v1/ocr", {"image": "data:image/png;base64,"}, 400),
            ("/models/ocr/v1/ocr", {"image": _bomb()}, 400),
            ("/v1/chat/completions", {"model": "armed-vl", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _bomb()}}]}]}, 400),
            ("/v1/judge", {"query": "x"}, 422),
        ]
        for path, body, status in cases:
            r = (c.post(path, content=body, headers={"content-type": "application/json"}) if isinstance(body, bytes)
                 else c.post(path, json=body))
            assert r.status_code == status, (path, body if not isinstance(body, dict) else list(body), r.text)
            assert r.json()["error"]["message"], r.text
        big = b'{"model": "armed-embedder", "input": "' + b"x" * (17 * 1024 * 1024) + b'"}'
        r = c.post("/v1/embeddings", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]

        def chunked() -> Any:  # no Content-Length: counted as it arrives, through Serve's proxy
            for _ in range(20):
                yield b"x" * (1024 * 1024)

        r = c.post("/v1/embeddings", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error", r.text
        r = c.post("/v1/embeddings", content=b'{"model": "armed-embedder", "input": "\\ud800"}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "input", r.text


def test_api_key_is_required_when_set(stack: dict) -> None:
    """A second gateway and embedder whose replicas see ARMED_API_KEY (as the chart's Secret sets it on pods)."""
    from openai import AuthenticationError, OpenAI
    from ray import serve

    import serve_apps.judge
    import serve_apps.models
    from serve_apps.judge import build_gateway_app
    from serve_apps.models import build_model_app

    key = "test-key-0f3a"
    env = {"ARMED_API_KEY": key, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    def keyed(options: Any) -> Any:
        def with_key(profile: Any, role: str) -> dict:
            o = options(profile, role)
            return {**o, "ray_actor_options": {**o["ray_actor_options"], "runtime_env": {"env_vars": env}}}
        return with_key

    with pytest.MonkeyPatch.context() as mp:
        for module in (serve_apps.judge, serve_apps.models):
            mp.setattr(module, "deployment_options", keyed(module.deployment_options))
        serve.run(build_gateway_app({"profile": stack["profile"]}), name="keyed-gateway",
                  route_prefix="/keyed-gateway")
        serve.run(build_model_app({"profile": stack["profile"], "role": "embedder"}, engine_cls=ZeroWork()),
                  name="keyed-embedder", route_prefix="/keyed-embedder")
    try:
        for prefix in ("/keyed-gateway", "/keyed-embedder"):
            good = OpenAI(base_url=stack["base"] + prefix + "/v1", api_key=key, max_retries=0)
            assert len(good.embeddings.create(model="armed-embedder", input=["维生素C"]).data) == 1
            bad = OpenAI(base_url=stack["base"] + prefix + "/v1", api_key="wrong", max_retries=0)
            with pytest.raises(AuthenticationError, match="invalid API key"):
                bad.embeddings.create(model="armed-embedder", input=["维生素C"])
            r = httpx.get(stack["base"] + prefix + "/v1/models", timeout=30)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
            assert r.json()["error"]["message"]
        r = httpx.post(stack["base"] + "/keyed-gateway/v1/judge", json={"query": "x"}, timeout=30)
        assert r.status_code == 401  # before validation
        assert httpx.get(stack["base"] + "/-/healthz", timeout=30).status_code == 200  # the probes' path stays open
        assert httpx.get(stack["base"] + "/v1/models", timeout=30).status_code == 200  # apps without the key: open
    finally:
        serve.delete("keyed-gateway")
        serve.delete("keyed-embedder")


def test_missing_judge_is_503_with_retry_after(stack: dict) -> None:
    # The stack deploys no judge app: the gateway must answer for it.
    r = httpx.post(stack["base"] + "/v1/judge", json={"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊"}},
                   timeout=30)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "7"
    assert r.headers["X-Request-Id"]


def test_scaled_to_zero_model_is_503_then_wakes_up(stack: dict, profile_data: dict,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:


    data = profile_data
    data["models"]["ocr"]["replicas"] = {"min": 0, "max": 1, "initial": 0}
    data["models"]["ocr"]["autoscaling"]["downscale_delay_s"] = 60
    path = write_profile(tmp_path_factory.mktemp("zero"), data)
    deploy_roles(path, ("ocr",))
    deadline = time.monotonic() + 60
    while replica_count("ocr", "ocr") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert replica_count("ocr", "ocr") == 0
    time.sleep(1.2)  # the gateway's cached replica counts expire after 1 s
    img = base64.b64encode(_png()).decode()
    r = httpx.post(stack["base"] + "/v1/ocr", json={"model": "armed-ocr", "image": img}, timeout=30)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "7"
    assert "no running replica" in r.json()["error"]["message"]
    # The 503 left a wake-up call queued: the autoscaler sees demand and starts a replica.
    deadline = time.monotonic() + 60
    while replica_count("ocr", "ocr") == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert replica_count("ocr", "ocr") == 1
    time.sleep(1.2)
    r = httpx.post(stack["base"] + "/v1/ocr", json={"model": "armed-ocr", "image": img}, timeout=30)
    assert r.status_code == 200, r.text


def test_status_rows_show_replicas_and_bounds(stack: dict) -> None:
    from armed.serving.cli import status_rows

    rows = {(r["app"], r["deployment"]): r for r in status_rows()}
    emb = rows[("embedder", "embedder")]
    assert emb["replicas"] == 1 and (emb["min"], emb["max"]) == (1, 1) and emb["route_prefix"] == "/models/embedder"
    assert ("judge", "Gateway") in rows
