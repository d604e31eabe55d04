"""The edge's time bounds: how long Serve's HTTP proxy waits for a client, in one place.

What each bounds and who enforces it (issue 24's slow-loris probe: 300 slow-body clients starved ordinary
judgments, headers sent a line a second were never timed out, idle connections were held over 90 s):

- `header_timeout_s`: from a connection's accept, or from the first byte of its next request, to the end of that
  request's headers; 408 in armed's error shape past it. Uvicorn (which Serve 2.60's proxy runs,
  ray/serve/_private/http_util.py `start_asgi_http_server`) has no such timer: armed/serving/edge_protocol.py adds
  it to the proxy's HTTP protocol.
- `keep_alive_timeout_s`: an idle connection between requests is closed after it. Serve's own setting
  (`http_options.keep_alive_timeout_s`, uvicorn's `timeout_keep_alive`; Serve's default is 90 s), passed by
  `armed up` (`http_options`). The chart leaves Serve's 90 s: behind an ingress the proxy must keep upstream
  connections longer than the ingress does (ingress-nginx: 60 s), and the ingress holds the clients (docs/security.md).
- `body_bytes`, `body_timeout_s`: the proxy reads the whole body before Serve picks a replica
  (armed/serving/body_gate.py, installed by armed/serving/proxy_guard.py), so a slow body never holds a replica.
  The defaults are the apps' own (armed.serving.limits.InputLimits), so the proxy refuses nothing an app accepts;
  `armed up` passes the profile's `limits` to the proxy through the environment of `ray start` (`proxy_env`).

The proxy process reads these from its environment (ARMED_EDGE_*), which it inherits from the Ray node.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from armed.serving.limits import InputLimits

_LIMITS = InputLimits.model_fields


class EdgeSettings(BaseSettings):
    """Time and size bounds of Serve's HTTP proxy (environment: ARMED_EDGE_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="ARMED_EDGE_", extra="ignore", frozen=True)

    header_timeout_s: float = Field(
        default=10.0, gt=0, le=300,
        description="Longest wait for a request's headers, from the connection's accept or the request's first "
                    "byte: 408 and the connection closed past it.",
    )
    keep_alive_timeout_s: int = Field(
        default=5, ge=1, le=600, description="An idle keep-alive connection is closed after this many seconds.",
    )
    body_bytes: int = Field(default=_LIMITS["body_bytes"].default, ge=1024,
                            description=_LIMITS["body_bytes"].description)
    body_timeout_s: float = Field(default=_LIMITS["body_timeout_s"].default, gt=0,
                                  description=_LIMITS["body_timeout_s"].description)


def proxy_env(limits: InputLimits) -> dict[str, str]:
    """The environment that gives Serve's proxy the body bounds of a profile's `limits` (for `ray start`)."""
    return {"ARMED_EDGE_BODY_BYTES": str(limits.body_bytes), "ARMED_EDGE_BODY_TIMEOUT_S": repr(limits.body_timeout_s)}


def http_options(host: str, port: int, edge: EdgeSettings | None = None) -> dict[str, Any]:
    """Serve's `http_options` for a local stack: loopback host and port, and the edge's keep-alive."""
    edge = edge or EdgeSettings()
    return {"host": host, "port": port, "keep_alive_timeout_s": edge.keep_alive_timeout_s}
