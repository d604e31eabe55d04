"""Prometheus metric names that the chart's alerts and dashboard and `armed-ops tune` read: one list, here.

Ray exports every metric of a node on its metrics port (8080 in the chart); metrics created with
`ray.util.metrics` get the `ray_` prefix. The `ray_serve_*` and `ray_vllm_*` series come from Ray Serve and from
vLLM under ray.serve.llm. The `ray_armed_*` series are armed's own and are a CONTRACT the judge deployment must
emit (with `ray.util.metrics`, names without the `ray_` prefix; deployments/metrics.py does, through
`ray.serve.metrics`, which adds the deployment / replica / application tags):

  armed_judgments_total      Counter   tags: label (the relevance label), degraded ("true"/"false")
  armed_stage_latency_ms     Histogram tags: stage (query_rewrite, search, two_stage_filter, ..., judge)
  armed_cache_requests_total Counter   tags: cache (query, product, judgment), result ("hit"/"miss")

The chart cannot import Python, so the names its PrometheusRule uses travel as helm/armed/files/metrics.json,
written from this module by `armed-ops chart-readme` (tests/k8s/test_prometheus_rules.py keeps it current): a name
that Ray changes is fixed here, for the alerts, the dashboard and tune at once. tests/serve/test_prometheus_real.py
checks every name against a real Prometheus scraping a real local stack.
"""

from __future__ import annotations

import json
from pathlib import Path

# Ray Serve (HTTP proxy, handles and replicas).
HTTP_REQUESTS = "ray_serve_num_http_requests_total"  # route, method, application, status_code
HTTP_ERRORS = "ray_serve_num_http_error_requests_total"  # route, error_code, method, application
HTTP_LATENCY_BUCKET = "ray_serve_http_request_latency_ms_bucket"  # route, application
DEPLOYMENT_REQUESTS = "ray_serve_deployment_request_counter_total"  # deployment, replica, application
DEPLOYMENT_LATENCY_BUCKET = "ray_serve_deployment_processing_latency_ms_bucket"  # deployment, application
QUEUED = "ray_serve_deployment_queued_queries"  # deployment, application (waiting in callers' handles)
ONGOING_AT_REPLICA = "ray_serve_replica_processing_queries"  # deployment, replica, application
REPLICA_HEALTHY = "ray_serve_deployment_replica_healthy"  # deployment, replica, application (1 per replica)
# vLLM engine metrics (ray.serve.llm exports vllm:* as ray_vllm_*).
VLLM_WAITING = "ray_vllm_num_requests_waiting"
VLLM_RUNNING = "ray_vllm_num_requests_running"
VLLM_KV_CACHE = "ray_vllm_kv_cache_usage_perc"
# Only a ray.serve.llm replica running vLLM exports these (tests/serve/test_ray_llm.py checks them on one).
VLLM = (VLLM_WAITING, VLLM_RUNNING, VLLM_KV_CACHE)
# armed's own (see the module docstring).
JUDGMENTS = "ray_armed_judgments_total"
STAGE_LATENCY_BUCKET = "ray_armed_stage_latency_ms_bucket"
CACHE_REQUESTS = "ray_armed_cache_requests_total"


METRICS_FILE = Path(__file__).resolve().parents[1] / "helm" / "armed" / "files" / "metrics.json"


def names() -> dict[str, str]:
    """Every metric name above, by its constant's name (what the chart's templates index)."""
    return {k: v for k, v in sorted(globals().items()) if k.isupper() and isinstance(v, str) and v.startswith("ray_")}


def metrics_json() -> str:
    return json.dumps(names(), indent=2) + "\n"


def write_metrics_file(path: Path = METRICS_FILE) -> Path:
    path.write_text(metrics_json(), encoding="utf-8")
    return path
