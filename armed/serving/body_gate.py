"""The whole request body read, counted and timed before anything behind it runs: one gate, two places.

Serve's HTTP proxy hands a request to a replica as soon as its headers are in (ray/serve/_private/proxy.py: the
replica then pulls the body through `receive_asgi_messages`), so a client that sends its body one byte a second
holds one of the ingress replica's `max_ongoing_requests` slots for as long as it likes: 300 such clients starved
every ordinary judgment (issue 24). The gate runs first inside the proxy (armed/serving/proxy_guard.py), so a slow
body costs a coroutine in the proxy and never a replica slot, and again in every armed app (deployments/api.py),
which must also hold for callers that reach a replica another way.

Bounds: a declared Content-Length past `body_bytes` is refused unread (413); a chunked body as soon as the bytes
received pass it (413); a body that takes longer than `body_timeout_s` in all is 408; each of these closes the
connection (the rest of the body is unread). Past the gate the body comes as one message, then whatever the client
sends next (its disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armed.serving.errors import send_error


@dataclass(frozen=True)
class BodyBounds:
    body_bytes: int
    body_timeout_s: float


class BodyGate:
    """Pure ASGI middleware; `bounds` is read per request (a replica's limits are set after its app is built)."""

    def __init__(self, app: ASGIApp, bounds: Callable[[], BodyBounds]) -> None:
        self.app = app
        self.bounds = bounds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim = self.bounds()
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None:
            if not declared.strip().isdigit():
                await send_error(send, 400, "Content-Length is not a number")
                return
            if int(declared) > lim.body_bytes:
                await send_error(send, 413, f"request body is {int(declared)} bytes; the limit is {lim.body_bytes}",
                                 close=True)
                return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(lim.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > lim.body_bytes:
                        await send_error(send, 413, f"request body is over {lim.body_bytes} bytes, the limit",
                                         close=True)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await send_error(send, 408, f"request body took longer than {lim.body_timeout_s:g}s to arrive", close=True)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)
