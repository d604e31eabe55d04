"""The proxy guard on its own (pure ASGI); tests/serve/test_judge_app.py checks it inside a real Serve proxy."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from armed.serving import edge_protocol
from armed.serving.body_gate import BodyGate
from armed.serving.errors import error_type
from armed.serving.proxy_guard import (
    CALLBACK,
    PROXY_ENV,
    ErrorShapeGuard,
    HeaderEncodingGuard,
    proxy_middlewares,
    undecodable_header,
)


def _app() -> HeaderEncodingGuard:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.headers.get("x-request-id", "-"))

    return HeaderEncodingGuard(Starlette(routes=[Route("/", echo, methods=["GET", "POST"])]))


@pytest.mark.parametrize("headers, bad", [
    ([(b"x-request-id", b"abc")], None),
    ([(b"x-request-id", "café".encode())], None),
    ([(b"user-agent", b"ok"), (b"x-request-id", b"\xff")], "x-request-id"),
    ([(b"x-\xe9", b"ok")], "x-é"),
])
def test_undecodable_header(headers, bad) -> None:
    assert undecodable_header(headers) == bad


async def test_guard_refuses_with_openai_shaped_400_and_passes_the_rest() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        r = await client.post("/", headers={"X-Request-Id": b"\xc3\x28"}, content=b"{}")
        assert r.status_code == 400
        assert r.json() == {"error": {"message": "header 'x-request-id' is not valid UTF-8",
                                      "type": "invalid_request_error", "param": "x-request-id", "code": 400}}
        r = await client.get("/", headers={"X-Request-Id": "caf\u00e9".encode()})
        assert r.status_code == 200 and r.text == "café".encode().decode("latin-1")  # Starlette reads latin-1


def test_the_env_names_the_callback_serve_calls() -> None:
    from ray.serve._private.http_util import validate_http_proxy_callback_return
    from ray.serve._private.utils import call_function_from_import_path

    assert PROXY_ENV == {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": CALLBACK}
    middlewares = validate_http_proxy_callback_return(call_function_from_import_path(CALLBACK))
    expected = [HeaderEncodingGuard, BodyGate, ErrorShapeGuard]
    assert [m.cls for m in middlewares] == expected == [m.cls for m in proxy_middlewares()]
    assert edge_protocol.installed()  # the callback also gives this process's uvicorn the edge's protocol


async def _through_error_shape(messages: list[dict]) -> list[dict]:
    sent: list[dict] = []

    async def app(scope, receive, send) -> None:
        for m in messages:
            await send(m)

    async def collect(m: dict) -> None:
        sent.append(m)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    await ErrorShapeGuard(app)({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, collect)
    return sent


@pytest.mark.parametrize("status", [404, 408, 499, 500, 503])
async def test_serves_own_plain_text_errors_get_the_error_shape(status: int) -> None:
    """Serve's proxy answers these itself, as plain text, through convert_object_to_asgi_messages (the real one)."""
    from ray.serve._private.http_util import convert_object_to_asgi_messages

    text = "Path '*' not found. Ping http://.../-/routes for available routes."
    sent = await _through_error_shape(convert_object_to_asgi_messages(text, status_code=status))
    start, body = sent
    assert start["status"] == status and (b"content-type", b"application/json") in start["headers"]
    assert json.loads(body["body"])["error"] == {"message": text, "type": error_type(status), "param": None,
                                                  "code": status}


async def test_json_errors_and_plain_text_successes_pass_untouched() -> None:
    from ray.serve._private.http_util import convert_object_to_asgi_messages

    for messages in (convert_object_to_asgi_messages("success", status_code=200),
                     convert_object_to_asgi_messages({"error": {"message": "x"}}, status_code=422)):
        assert await _through_error_shape(messages) == messages
