"""The one shape of every HTTP error armed sends: OpenAI's `{"error": {"message", "type", "param", "code"}}`.

Its own small module because two processes send it: the apps' edge (deployments/api.py) and the guard that runs
inside Ray Serve's HTTP proxy (armed/serving/proxy_guard.py), which should not import the apps to do so.
"""

from __future__ import annotations

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
