"""The one shape of every HTTP error armed sends: OpenAI's `{"error": {"message", "type", "param", "code"}}`.

Its own small module because two processes send it: the apps' edge (deployments/api.py) and what runs inside Ray
Serve's HTTP proxy (armed/serving/proxy_guard.py, armed/serving/edge_protocol.py), which should not import the apps
to do so. Three ways out, one shape: a dict (`error_body`), an ASGI response (`send_error`), and whole HTTP bytes for
the HTTP server's own refusals (`raw_error_response`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from armed.text import escape_surrogates

_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                408: "timeout_error", 429: "rate_limit_error", 503: "service_unavailable", 504: "timeout_error"}


def error_type(status: int) -> str:
    """The OpenAI `type` of an error status (what clients switch on)."""
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def printable(text: str) -> str:
    """`text` safe to write as UTF-8: a lone surrogate (which a refused field name may hold) as its escape text, as
    the batch CLI's records write it (armed.text.escape_surrogates)."""
    return escape_surrogates(text)


def error_body(status: int, message: str, kind: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": printable(message), "type": kind or error_type(status),
                      "param": printable(param) if param is not None else None, "code": status}}


def error_json(status: int, message: str, kind: str | None = None, param: str | None = None) -> bytes:
    """`error_body` as the UTF-8 JSON bytes every armed error response carries."""
    return json.dumps(error_body(status, message, kind, param), ensure_ascii=False).encode("utf-8")


async def send_error(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, message: str,
                     param: str | None = None, close: bool = False) -> None:
    """Answer an ASGI http request with the error shape (pure ASGI: the proxy's guards and the apps' gate);
    `close` ends the connection after it (a body left unread must not be parsed as the next request)."""
    body = error_json(status, message, param=param)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def raw_error_response(status: int, message: str, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 error response in the error shape, closing the connection: for the HTTP server itself
    (armed/serving/edge_protocol.py), which answers before any ASGI app exists for the request."""
    body = error_json(status, message)
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")]
    head += [name + b": " + value + b"\r\n" for name, value in extra_headers]
    head += [b"content-type: application/json\r\n", b"content-length: " + str(len(body)).encode() + b"\r\n",
             b"connection: close\r\n", b"\r\n"]
    return b"".join(head) + body
