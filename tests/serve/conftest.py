"""Fixtures for Serve tests: a light test profile (zero-work engines, 0.1 CPU replicas) and one local Ray per module.

Other test suites share this 2-core machine, so replicas reserve 0.1 CPU, autoscaling reacts within seconds
(metrics every 1 s), and every module shuts Ray down when it ends.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from armed.serving.edge import http_options
from armed.serving.proxy_guard import PROXY_ENV

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_test_profile(name: str = "serve-test") -> dict:
    """All six roles deployed on armed's own deployments (transformers-kind specs, so their names are realistic;
    the zero-work engine answers), each 0.1 CPU, fast autoscaling."""
    auto = {"target_ongoing_requests": 2, "upscale_delay_s": 1, "downscale_delay_s": 4, "metrics_interval_s": 1,
            "look_back_period_s": 2}

    def role(model: str | None, **extra: object) -> dict:
        return {
            "engine": {"kind": "transformers", "model": model} if model else {"kind": "rapidocr"},
            "pool": "cpu",
            "replicas": {"min": 1, "max": 1},
            "autoscaling": auto,
            "max_ongoing_requests": 8,
            "resources": {"num_cpus": 0.1},
            "health_check_period_s": 2,
            "health_check_timeout_s": 10,
            **extra,
        }

    return {
        "name": name,
        "description": "Serve tests: zero-work engines, tiny reservations.",
        "pools": [{"name": "cpu", "gpu_type": None, "gpus_per_node": 0, "cpus_per_node": 2}],
        "judge": {
            "pool": "cpu", "replicas": {"min": 1, "max": 1}, "resources": {"num_cpus": 0.1}, "llm_weight": 0.35,
            "required_roles": ["llm"], "retry_after_s": 7, "model_timeout_s": 10,
            "caches": {"query": {"size": 100, "ttl_s": 60}, "product": {"size": 100, "ttl_s": 60},
                       "judgment": {"size": 100, "ttl_s": 60}},
        },
        "models": {
            "llm": role("/models/tiny-llm"),
            "embedder": role("/models/tiny-embedder", batching={"max_batch_size": 16, "batch_wait_timeout_s": 0.05}),
            "consistency": role("/models/tiny-consistency",
                                batching={"max_batch_size": 16, "batch_wait_timeout_s": 0.05}),
            "vl": role("/models/tiny-vl"),
            "ocr": role(None),
            "student": role("/models/tiny-student", batching={"max_batch_size": 16, "batch_wait_timeout_s": 0.05}),
        },
    }


def write_profile(directory: Path, data: dict) -> str:
    """Write the profile as DIRECTORY/NAME.yaml, atomically: the fuzz suite writes its fixed per-user path while its
    tests are collected, and the parallel runner's two processes collect it at once (one had read the file while the
    other was rewriting it: an empty profile, a collection error)."""
    path = directory / f"{data['name']}.yaml"
    tmp = directory / f".{data['name']}.{os.getpid()}.yaml"
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return str(path)


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_profile(tmp_path_factory.mktemp("profiles"), serve_test_profile())


@pytest.fixture(scope="module")
def profile_data() -> dict:
    return copy.deepcopy(serve_test_profile())


# Ports of the module's local Ray, set by `serve_port`: "metrics" is the node's Prometheus export.
RAY_PORTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def serve_port() -> Iterator[int]:
    """A fresh local Ray (never an existing cluster) with Serve's proxy on a free port; shut down afterwards.

    The node exports its metrics (Prometheus text) on another free port, reported every second."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray import serve

    if ray.is_initialized():
        # A handle that outlived the previous module's Ray (its metrics pusher) can re-initialise one on its own:
        # start from a clean slate instead of failing with "ray.init twice".
        ray.shutdown()
    port = free_port()
    RAY_PORTS["metrics"] = free_port()
    # Workers import this worktree's packages (the venv's editable install points at another checkout).
    env = {"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    os.environ.update(PROXY_ENV)  # the node, and so Serve's proxy, inherits the driver's environment
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env},
             log_to_driver=False, _metrics_export_port=RAY_PORTS["metrics"],
             _system_config={"metrics_report_interval_ms": 1000})
    try:
        serve.start(http_options=http_options("127.0.0.1", port))  # the edge's keep-alive, as `armed up` sets it
        yield port
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def metrics_url(serve_port: int) -> str:
    """The module's Ray node's Prometheus endpoint (the one the chart's PodMonitor scrapes on port 8080)."""
    return f"http://127.0.0.1:{RAY_PORTS['metrics']}/metrics"


def replica_count(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    states = {str(getattr(k, "value", k)): v for k, v in status.replica_states.items()}
    return states.get("RUNNING", 0)


def deploy_roles(profile: str, roles: Iterable[str], engine_cls: Any = None,
                 engines: Mapping[str, Any] | None = None, judge: Any = None) -> None:
    """Each role's model app (`engines[role]`, else `engine_cls`, else a ZeroWork per role) and, when given, the
    judge app at "/", deployed together in one `serve.run_many` and waited for together: one `serve.run` per app
    waits ~3 s for each in turn."""
    from ray import serve

    from armed.serving.config import route_prefix
    from armed_testing.zero_work import ZeroWork
    from serve_apps.models import build_model_app

    engines = engines or {}
    targets = [serve.RunTarget(build_model_app({"profile": profile, "role": role},
                                               engine_cls=engines.get(role, engine_cls or ZeroWork())),
                               name=role, route_prefix=route_prefix(role)) for role in roles]
    if judge is not None:
        targets.append(serve.RunTarget(judge, name="judge", route_prefix="/"))
    serve.run_many(targets)
