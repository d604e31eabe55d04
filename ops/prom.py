"""A small Prometheus HTTP API client (GET /api/v1/query) for armed-ops."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Instant query → [(labels, value)]; NaN samples are dropped."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = json.loads(resp.read())
        except OSError as exc:
            raise PrometheusError(f"{self.url}: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"query failed: {body.get('error', body)}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"expected a vector result, got {data.get('resultType')!r}")
        out = []
        for item in data.get("result") or []:
            value = float(item["value"][1])
            if value == value:  # not NaN
                out.append((item.get("metric") or {}, value))
        return out

    def by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(m.get(label, "") for label in labels): v for m, v in self.query(expr)}
