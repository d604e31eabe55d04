"""What armed adds to Ray Serve's HTTP proxy: guards that run there, before Serve reads a request or picks a replica.

- Header encoding. Ray Serve 2.60's proxy decodes header names, and the values of `X-Request-Id`, the multiplexed
  model id and the session id, as UTF-8 (`ray/serve/_private/proxy.py`, `setup_request_context_and_handle`,
  `value.decode()`) before any application code runs. A client that sends a non-UTF-8 byte in such a header gets a
  500 from the proxy, which no armed app can catch (the fuzz found this: benchmarks/security/2026-11-28-after). HTTP
  allows such bytes (obs-text), so the proxy must refuse them itself: `HeaderEncodingGuard` answers 400 with armed's
  OpenAI-shaped error for any header whose name or value is not UTF-8, and passes everything else on untouched.
- The body. Serve hands a request to a replica once its headers are in, and the replica pulls the body: a slow body
  holds a replica slot (issue 24). `BodyGate` (armed/serving/body_gate.py) reads the whole body first, bounded in
  size and time by armed/serving/edge.py's `EdgeSettings`.
- Serve's own answers. The proxy answers some requests itself, in plain text (ray/serve/_private/proxy.py:
  `not_found_response` 404, the 503 of an unhealthy node, 408/500/503 from `get_http_response_status` in
  http_util.py, all through `convert_object_to_asgi_messages`). `ErrorShapeGuard` rewrites any text/plain response
  of status 400 or more into armed's error shape, its text as the message; JSON (every armed app's) passes as is.
- The HTTP level (header timeout, the server's own 400s in the error shape): armed/serving/edge_protocol.py, which
  `proxy_middlewares` installs, since it runs in the proxy process before the proxy's server starts.

How it gets there: Serve's supported hook for proxy middlewares is the environment variable
`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` (ray/serve/_private/http_util.py, `configure_http_middlewares`),
naming a function that returns Starlette `Middleware` objects; Serve wraps them outside its own
RequestIdMiddleware, the first outermost, so these guards see the raw request first. The proxy reads the variable
from its own process environment, which it inherits from the Ray node: `PROXY_ENV` must be in the environment of
`ray start` or of the driver's `ray.init` that starts the node (armed/serving/local_ray.py, ops/perf/stack.py, the
chart's container env), not only in a job's runtime_env.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from armed.serving import edge_protocol
from armed.serving.body_gate import BodyBounds, BodyGate
from armed.serving.edge import EdgeSettings
from armed.serving.errors import error_body, error_json

CALLBACK = "armed.serving.proxy_guard.proxy_middlewares"
PROXY_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": CALLBACK}


def undecodable_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The name (printable) of the first header whose name or value is not UTF-8, or None when all are."""
    for name, value in headers:
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            return name.decode("latin-1")
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return name.decode("utf-8")
    return None


class HeaderEncodingGuard:
    """Pure ASGI: 400 for a request with a non-UTF-8 header, before anything else reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bad = undecodable_header(scope.get("headers", []))
            if bad is not None:
                await _refuse(send, 400, f"header {bad!r} is not valid UTF-8", param=bad)
                return
        await self.app(scope, receive, send)


MAX_QUOTED_BYTES = 4096  # Serve's own messages are one sentence; the error quotes at most this much of one


def _is_plain_text(headers: list) -> bool:
    for name, value in headers:
        if bytes(name).lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/plain")
    return False


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # Serve's 499 (client gone) is no HTTPStatus
        return f"status {status}"


class ErrorShapeGuard:
    """Pure ASGI: a text/plain response with status >= 400 (Serve's proxy's own) becomes the error shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict | None = None
        text = b""

        async def shaped(message: dict) -> None:
            nonlocal held, text
            if message["type"] == "http.response.start" and message["status"] >= 400 \
                    and _is_plain_text(message.get("headers", [])):
                held = message  # answered once its whole body is in
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            text = (text + message.get("body", b""))[:MAX_QUOTED_BYTES]
            if message.get("more_body", False):
                return
            status = held["status"]
            message_text = text.decode("utf-8", "replace").strip() or _phrase(status)
            body = error_json(status, message_text)
            headers = [(bytes(k), bytes(v)) for k, v in held.get("headers", [])
                       if bytes(k).lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, shaped)


async def _refuse(send: Send, status: int, message: str, param: str) -> None:
    body = json.dumps(error_body(status, message, param=param), ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list[Middleware]:
    """What `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` names: the middlewares Serve's proxy wraps itself in (the
    first outermost); also installs the edge's HTTP protocol in this (the proxy's) process, whose server starts next.
    """
    edge = EdgeSettings()
    edge_protocol.install(edge)
    bounds = BodyBounds(body_bytes=edge.body_bytes, body_timeout_s=edge.body_timeout_s)
    return [Middleware(HeaderEncodingGuard), Middleware(BodyGate, bounds=lambda: bounds), Middleware(ErrorShapeGuard)]
