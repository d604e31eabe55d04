"""A guard that runs inside Ray Serve's HTTP proxy, before Serve reads a request's headers.

Why it exists: Ray Serve 2.60's proxy decodes header names, and the values of `X-Request-Id`, the multiplexed
model id and the session id, as UTF-8 (`ray/serve/_private/proxy.py`, `setup_request_context_and_handle`,
`value.decode()`) before any application code runs. A client that sends a non-UTF-8 byte in such a header gets
a 500 from the proxy, which no armed app can catch (the fuzz found this: benchmarks/security/2026-11-28-after).
HTTP allows such bytes (obs-text), so the proxy must refuse them itself: this middleware answers 400 with
armed's OpenAI-shaped error for any header whose name or value is not UTF-8, and passes everything else on
untouched.

How it gets there: Serve's supported hook for proxy middlewares is the environment variable
`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` (ray/serve/_private/http_util.py, `configure_http_middlewares`),
naming a function that returns Starlette `Middleware` objects; Serve wraps them outside its own
RequestIdMiddleware, so this guard sees the raw headers first. The proxy reads the variable from its own process
environment, which it inherits from the Ray node: `PROXY_ENV` must be in the environment of `ray start` or of the
driver's `ray.init` that starts the node (armed/serving/local_ray.py, ops/perf/stack.py, the chart's container
env), not only in a job's runtime_env.
"""

from __future__ import annotations

import json

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from armed.serving.errors import error_body

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


async def _refuse(send: Send, status: int, message: str, param: str) -> None:
    body = json.dumps(error_body(status, message, param=param), ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list[Middleware]:
    """What `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` names: the middlewares Serve's proxy wraps itself in."""
    return [Middleware(HeaderEncodingGuard)]
