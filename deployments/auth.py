"""Bearer-key check for every armed HTTP surface (the gateway and each model's OpenAI-compatible routes).

With ARMED_API_KEY set (the chart sets it from a Secret, `apiKey` in values.yaml), each request needs
`Authorization: Bearer <key>` (what the `openai` client sends for `api_key=...`); a missing or wrong key is 401
with a JSON reason and `WWW-Authenticate: Bearer`. Unset: the API is open (local use) and a warning is logged
once, when the replica starts. Set but empty: refused at start-up, never read as "open".

It is an HTTP middleware rather than a route dependency so that it runs before the body is read or validated
(an unauthenticated caller gets 401, not 413 / 422), and also covers FastAPI's /docs and /openapi.json and
unknown paths. Serve's own `/-/healthz` and `/-/routes` are answered by the proxy, never reach an application,
and stay open (the chart's probes use `/-/healthz` only); `/-/...` paths are let through here too.

The key is read once per process and held as a SecretStr; nothing logs or returns it.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from armed.log import get_logger
from armed.settings import ServingSettings

log = get_logger("armed.auth")
OPEN_PREFIXES = ("/-/",)
_UNSET = object()
_key: Any = _UNSET


def load_api_key(settings: ServingSettings | None = None) -> SecretStr | None:
    """The configured key (read from the environment once per process); warns once when there is none."""
    global _key
    if settings is not None or _key is _UNSET:
        key = (settings or ServingSettings()).api_key
        if key is None:
            log.warning("api_key_unset", detail="ARMED_API_KEY is not set: the HTTP API accepts every caller")
        _key = key
    return _key


def reset() -> None:
    """Forget the key read (tests)."""
    global _key
    _key = _UNSET


def unauthorized(message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "authentication_error", "code": 401}}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def check(authorization: str | None, key: SecretStr | None) -> JSONResponse | None:
    """None when the request may pass; otherwise the 401 response to send."""
    if key is None:
        return None
    if not authorization:
        return unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return unauthorized("malformed Authorization header: expected 'Bearer <key>'")
    if not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        return unauthorized("invalid API key")
    return None


def install_auth(app: FastAPI) -> None:
    """Require the API key on every request of `app` (install it last, so it runs first)."""

    @app.middleware("http")
    async def _require_api_key(request: Request, call_next: Any) -> Any:
        if not request.url.path.startswith(OPEN_PREFIXES):
            denied = check(request.headers.get("authorization"), load_api_key())
            if denied is not None:
                return denied
        return await call_next(request)
