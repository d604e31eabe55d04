"""armed's Grafana dashboard, generated here and shipped as helm/armed/files/dashboard.json (a test checks it).

Panels: per-model (Serve application / deployment) request rate, latency percentiles, queue depth, ongoing
requests and replicas; per-stage DAG latency; cache hit rate; degraded share and label distribution of judgments.
Every series filters on the `namespace` variable (prometheus-operator adds the label when it scrapes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ops import metrics as m

DASHBOARD_FILE = Path(__file__).resolve().parents[1] / "helm" / "armed" / "files" / "dashboard.json"
NS = 'namespace=~"$namespace"'


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int, w: int = 12,
           kind: str = "timeseries", description: str = "") -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend} for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _quantiles(bucket: str, by: str, where: str = NS) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket}{{{where}}}[5m])))", f"p{int(q * 100)} {{{{{by}}}}}")
        for q in (0.5, 0.95, 0.99)
    ]


def dashboard() -> dict[str, Any]:
    panels = [
        _panel(1, "Requests per second by application", [
            (f"sum by (application) (rate({m.HTTP_REQUESTS}{{{NS}}}[5m]))", "{{application}}")], "reqps", 0, 0),
        _panel(2, "HTTP errors per second by application", [
            (f"sum by (application) (rate({m.HTTP_ERRORS}{{{NS}}}[5m]))", "{{application}}")], "reqps", 12, 0),
        _panel(3, "HTTP latency by application", _quantiles(m.HTTP_LATENCY_BUCKET, "application"), "ms", 0, 8),
        _panel(4, "Deployment processing latency (p95)", [
            (f"histogram_quantile(0.95, sum by (deployment, le) (rate({m.DEPLOYMENT_LATENCY_BUCKET}{{{NS}}}[5m])))",
             "{{deployment}}")], "ms", 12, 8),
        _panel(5, "Requests per second by deployment (model)", [
            (f"sum by (deployment) (rate({m.DEPLOYMENT_REQUESTS}{{{NS}}}[5m]))", "{{deployment}}")], "reqps", 0, 16),
        _panel(6, "Queued requests by deployment", [
            (f"sum by (deployment) ({m.QUEUED}{{{NS}}})", "{{deployment}}")], "short", 12, 16),
        _panel(7, "Ongoing requests per replica (mean) by deployment", [
            (f"avg by (deployment) ({m.ONGOING_AT_REPLICA}{{{NS}}})", "{{deployment}}")], "short", 0, 24),
        _panel(8, "Healthy replicas by deployment", [
            (f"sum by (deployment) ({m.REPLICA_HEALTHY}{{{NS}}})", "{{deployment}}")], "short", 12, 24),
        _panel(9, "vLLM requests waiting / running", [
            (f"sum by (model_name) ({m.VLLM_WAITING}{{{NS}}})", "waiting {{model_name}}"),
            (f"sum by (model_name) ({m.VLLM_RUNNING}{{{NS}}})", "running {{model_name}}")], "short", 0, 32),
        _panel(10, "vLLM KV-cache usage", [
            (f"max by (model_name) ({m.VLLM_KV_CACHE}{{{NS}}})", "{{model_name}}")], "percentunit", 12, 32),
        _panel(11, "DAG stage latency (p95) by stage", [
            (f"histogram_quantile(0.95, sum by (stage, le) (rate({m.STAGE_LATENCY_BUCKET}{{{NS}}}[5m])))",
             "{{stage}}")], "ms", 0, 40,
            description="armed_stage_latency_ms emitted by the judge (ops/metrics.py)."),
        _panel(12, "Cache hit rate by cache", [
            (f'sum by (cache) (rate({m.CACHE_REQUESTS}{{{NS},result="hit"}}[5m])) / '
             f"sum by (cache) (rate({m.CACHE_REQUESTS}{{{NS}}}[5m]))", "{{cache}}")], "percentunit", 12, 40),
        _panel(13, "Degraded judgments (share)", [
            (f'sum(rate({m.JUDGMENTS}{{{NS},degraded="true"}}[15m])) / sum(rate({m.JUDGMENTS}{{{NS}}}[15m]))',
             "degraded")], "percentunit", 0, 48),
        _panel(14, "Label distribution (judgments per second)", [
            (f"sum by (label) (rate({m.JUDGMENTS}{{{NS}}}[15m]))", "{{label}}")], "reqps", 12, 48),
    ]
    return {
        "title": "armed: relevance judgment on Ray Serve",
        "uid": "armed-serve",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["armed", "ray-serve"],
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "namespace",
                    "type": "query",
                    "label": "Namespace",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({m.HTTP_REQUESTS}, namespace)",
                    "includeAll": True,
                    "multi": True,
                },
            ]
        },
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def write_dashboard(path: Path = DASHBOARD_FILE) -> Path:
    path.write_text(dashboard_json(), encoding="utf-8")
    return path
