"""Local stacks for `armed-ops perf --local`: a fresh Ray, derived profiles, deploy and tear down applications."""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from armed.roles import BATCHED_ROLES, IN_PROCESS_KINDS, ROLES
from armed.serving.profiles import Profile, load_profile
from armed.serving.proxy_guard import PROXY_ENV
from armed.settings import EngineClass

# The zero-work engine classes, by time per engine call: `zero_work(delay_s=0.05)` is an EngineClass whose every
# call sleeps 0.05 s. armed ships no such engine: the caller passes it in (armed_testing.zero_work.ZeroWork, through
# `python -m armed_testing.cli perf`), so no armed setting or flag can deploy a double.
ZeroWorkFamily = Callable[..., EngineClass]

REPO = Path(__file__).resolve().parents[2]
FAST_AUTOSCALING = {"target_ongoing_requests": 2, "upscale_delay_s": 1, "downscale_delay_s": 5,
                    "metrics_interval_s": 1, "look_back_period_s": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zero_work_profile(base: Profile, *, name: str = "perf-zero-work", caches: bool = False) -> dict[str, Any]:
    """`base` with every role deployed (kb / ocr-kb / none become a deployed role that a zero-work engine answers),
    LLM text stages on (every role is used, as on the GPU profiles), one CPU pool, 0.1-CPU replicas, 1 replica
    each, fast autoscaling, the judge's caches off unless `caches`."""
    d = base.model_dump(mode="json")
    d["name"] = name
    d["description"] = f"armed-ops perf: {base.name} with every role on a zero-work engine"
    d["pools"] = [{"name": "cpu", "gpu_type": None, "gpus_per_node": 0, "cpus_per_node": 64}]
    j = d["judge"]
    j.update(pool="cpu", replicas={"min": 1, "max": 1, "initial": 1}, resources={"num_cpus": 0.1},
             autoscaling=dict(FAST_AUTOSCALING), llm_text=True, required_roles=["llm"], model_timeout_s=30,
             # half the zero-work student's answers escalate, so both the student and the LLM paths are measured
             escalate_below=0.5,
             max_ongoing_requests=256, max_queued_requests=-1)
    if not caches:
        for c in ("query", "product", "judgment"):
            j["caches"][c]["size"] = 0
    for role in ROLES:
        rp = d["models"][role]
        eng = rp["engine"]
        if eng["kind"] in IN_PROCESS_KINDS:  # a model kind of the role instead (vllm where it can, or its only one)
            kind = "vllm" if "vllm" in ROLES[role].engines else next(iter(ROLES[role].engines))
            eng.update(kind=kind, model=f"/zw/{role}" if kind == "vllm" else None)
        if eng["kind"] == "vllm" and "ray-llm" in ROLES[role].serving:
            # armed's own deployment is what is measured, and a profile serves a vLLM model of this role only
            # through ray.serve.llm: the spec says transformers (the zero-work engine answers for any kind)
            eng["kind"] = "transformers"
        eng["tensor_parallel_size"] = 1
        rp.update(serving="armed", pool="cpu", replicas={"min": 1, "max": 1, "initial": 1},
                  autoscaling=dict(FAST_AUTOSCALING), resources={"num_cpus": 0.1}, max_ongoing_requests=256,
                  max_queued_requests=-1, health_check_period_s=5, health_check_timeout_s=30)
        if role in BATCHED_ROLES and rp.get("batching") is None:
            rp["batching"] = {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}
        if role not in BATCHED_ROLES:
            rp["batching"] = None
    Profile.model_validate(d)
    return d


def write_profile(directory: Path, data: dict[str, Any]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_profile(path)
    return str(path)


def variant(data: dict[str, Any], name: str, **role_updates: dict[str, Any]) -> dict[str, Any]:
    d = copy.deepcopy(data)
    d["name"] = name
    for role, upd in role_updates.items():
        d["models"][role].update(upd)
    return d


@dataclass(frozen=True)
class ModelApp:
    """One model app to deploy: a role of a profile, its engines (None: the profile's; else this class in every
    replica), under the name `prefix + role`."""

    profile_path: str
    role: str
    engine_cls: EngineClass | None = None
    prefix: str = ""

    @property
    def name(self) -> str:
        return self.prefix + self.role


class LocalStack:
    """A fresh local Ray (never an existing cluster) with Serve on a free port."""

    def __init__(self, port: int | None = None, num_cpus: int | None = None,
                 metrics_port: int | None = None) -> None:
        """`metrics_port`: the node exports its Prometheus metrics there, reported every second (as the chart's
        Ray pods do on 8080, at Ray's default 10 s); None: Ray's defaults."""
        self.port = port or free_port()
        self.num_cpus = num_cpus
        self.metrics_port = metrics_port

    def start(self) -> LocalStack:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # The node (and so Serve's proxy) inherits this process's environment: the proxy guard as in `armed up`.
        os.environ.update(PROXY_ENV)
        import ray
        from ray import serve

        env = {"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"], "RAY_USAGE_STATS_ENABLED": "0"}
        metrics: dict[str, Any] = {} if self.metrics_port is None else {
            "_metrics_export_port": self.metrics_port, "_system_config": {"metrics_report_interval_ms": 1000}}
        ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, runtime_env={"env_vars": env},
                 log_to_driver=False, **metrics)
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        import ray
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()

    @staticmethod
    def deploy_models(profile_path: str, roles: list[str], engine_cls: EngineClass | None = None,
                      app_prefix: str = "") -> None:
        """One model app per role; `engine_cls` None: the profile's engines, else that class in every replica."""
        LocalStack.deploy_model_apps([ModelApp(profile_path, role, engine_cls, app_prefix) for role in roles])

    @staticmethod
    def deploy_model_apps(apps: list[ModelApp]) -> None:
        """Every app in one `serve.run_many` (Ray's public developer API): deployed together and waited for
        together, instead of one `serve.run` after another (each waits for its app on its own)."""
        from ray import serve

        from serve_apps.models import build_model_app

        serve.run_many([serve.RunTarget(build_model_app({"profile": a.profile_path, "role": a.role},
                                                        engine_cls=a.engine_cls),
                                        name=a.name, route_prefix=f"/models/{a.name}") for a in apps])

    @staticmethod
    def deploy_judge(profile_path: str) -> None:
        from ray import serve

        from deployments.perf_probe import build_probe_judge_app

        serve.run(build_probe_judge_app({"profile": profile_path}), name="judge", route_prefix="/")

    @staticmethod
    def deploy_relay() -> None:
        from ray import serve

        from deployments.perf_probe import build_relay_app

        serve.run(build_relay_app(), name="perf-relay", route_prefix=None)

    @staticmethod
    def delete_all() -> None:
        from ray import serve

        from armed.serving import ray_compat

        ray_compat.delete_apps(list(serve.status().applications))


def replica_counts() -> dict[str, int]:
    """RUNNING replicas of every deployment, keyed app/deployment (from serve.status(), the controller's view)."""
    from ray import serve

    out = {}
    for app_name, app in serve.status().applications.items():
        for dep_name, dep in app.deployments.items():
            states = {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()}
            out[f"{app_name}/{dep_name}"] = states.get("RUNNING", 0)
    return out
