"""What a live RayService's worker groups can hold, and what each Serve deployment's replica reserves there.

`armed-ops tune` reads both from the RayService itself (not from a GPU profile, which may not be the one deployed)
to check a raised max_replicas against the pool with Serve's own placement (ops/packing.py), under the strategy that
RayService's Serve controller uses (`placement_strategy`: its head's environment and its placement groups).

A worker group's node shape is read the ways KubeRay lets a chart say it (ray-operator/controllers/ray/common/
pod.go, generateRayStartCommand / addWellKnownAcceleratorResources): the group's `resources` map (Ray resource
names: CPU, GPU, memory), else rayStartParams num-cpus / num-gpus / memory, else the Ray container's limits
(cpu, nvidia.com/gpu, memory). Which deployment runs in which group: the chart annotates each group's pod template
with the roles it serves (`armed.io/roles`, the Serve application names, "judge" included); without it, a GPU
deployment goes to the group whose accelerator type it asks for and a CPU-only one to a group without GPUs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from armed.serving.config import ray_llm_deployment_name
from ops.packing import NodeShape, Replica, Strategy, serve_strategy

ROLES_ANNOTATION = "armed.io/roles"
# The OpenAI ingress deployment ray.serve.llm builds beside each LLMServer (deployments/llm_ingress.py keeps Ray's
# class name); one replica: its autoscaling_config sets no bounds (ray.llm ... ingress.DEFAULT_INGRESS_OPTIONS), so
# Serve's AutoscalingConfig defaults apply, min_replicas 1 and max_replicas 1 (ray/serve/config.py).
RAY_LLM_INGRESS = "OpenAiIngress"
SERVE_DEFAULT_NUM_CPUS = 1.0  # a deployment's ray_actor_options without num_cpus reserves one CPU
ACCEL_PREFIX = "accelerator_type:"
_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("16", "500m", "64Gi") as a number."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


@dataclass
class Group:
    name: str
    shape: NodeShape
    min_nodes: int
    max_nodes: int
    gpu_type: str | None
    apps: list[str] = field(default_factory=list)  # from the armed.io/roles annotation; empty when absent


def _container(group: dict[str, Any]) -> dict[str, Any]:
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return containers[0]


def _group(g: dict[str, Any]) -> Group:
    res = {str(k): v for k, v in (g.get("resources") or {}).items()}
    params = g.get("rayStartParams") or {}
    limits = (_container(g).get("resources") or {}).get("limits") or {}

    def pick(ray_name: str, param: str, limit: str) -> float | None:
        for source, key in ((res, ray_name), (params, param), (limits, limit)):
            if key in source:
                return quantity(source[key])
        return None

    gpus = int(pick("GPU", "num-gpus", "nvidia.com/gpu") or 0)
    cpus = pick("CPU", "num-cpus", "cpu") or 0.0
    memory = pick("memory", "memory", "memory")
    gpu_type = next((k[len(ACCEL_PREFIX):] for k in res if k.startswith(ACCEL_PREFIX)), None)
    if gpu_type is None and params.get("resources"):
        custom = json.loads(str(params["resources"]).strip("'\""))
        gpu_type = next((k[len(ACCEL_PREFIX):] for k in custom if k.startswith(ACCEL_PREFIX)), None)
    meta = (g.get("template") or {}).get("metadata") or {}
    roles = ((meta.get("annotations") or {}).get(ROLES_ANNOTATION)
             or (meta.get("labels") or {}).get(ROLES_ANNOTATION) or "")
    apps = [a for a in str(roles).split(",") if a]
    return Group(g["groupName"], NodeShape(gpus, cpus, None if memory is None else memory / 2**30),
                 int(g.get("minReplicas", 0)), int(g.get("maxReplicas", 1)), gpu_type, apps)


def worker_groups(rayservice: dict[str, Any]) -> list[Group]:
    spec = (rayservice.get("spec") or {}).get("rayClusterConfig") or {}
    return [_group(g) for g in spec.get("workerGroupSpecs") or []]


@dataclass
class Footprint:
    replica: Replica
    accelerator_type: str | None


def _actor_footprint(name: str, opts: dict[str, Any]) -> Footprint:
    memory = float(opts.get("memory") or 0) / 2**30
    return Footprint(Replica(name, float(opts.get("num_gpus") or 0),
                             float(opts.get("num_cpus", SERVE_DEFAULT_NUM_CPUS)), memory),
                     opts.get("accelerator_type"))


def footprints(serve_cfg: dict[str, Any]) -> dict[tuple[str, str], Footprint]:
    """{(app, deployment): what one replica reserves}, in the Serve config's order (the order Serve submits them).
    A ray.serve.llm LLMServer replica is its placement group: tensor x pipeline parallel GPUs (one bundle each,
    ray.llm ... vllm_models.VLLMEngineConfig.placement_bundles) plus its own actor's CPUs (llm_server.LLMServer.
    get_deployment_options merges them), or the explicit bundles of placement_group_config; packed here on one
    node, as a tensor-parallel group should be, and placed by Ray's placement-group scheduler. Its app's OpenAI
    ingress is one more replica (RAY_LLM_INGRESS) of the CPUs `ingress_deployment_config` gives it."""
    out: dict[tuple[str, str], Footprint] = {}
    for app in serve_cfg.get("applications") or []:
        args = app.get("args") or {}
        for llm in args.get("llm_configs") or []:
            model_id = (llm.get("model_loading_config") or {}).get("model_id", app["name"])
            dep = ray_llm_deployment_name(model_id)
            kw = llm.get("engine_kwargs") or {}
            actor = ((llm.get("deployment_config") or {}).get("ray_actor_options") or {})
            bundles = (llm.get("placement_group_config") or {}).get("bundles")
            if bundles:
                gpus = sum(float(b.get("GPU", 0)) for b in bundles)
                cpus = sum(float(b.get("CPU", 0)) for b in bundles) + float(actor.get("num_cpus", 1.0))
            else:
                gpus = float(kw.get("tensor_parallel_size", 1) * kw.get("pipeline_parallel_size", 1))
                cpus = float(actor.get("num_cpus", 1.0))
            out[(app["name"], dep)] = Footprint(Replica(f"{app['name']}/{dep}", gpus, cpus, placement_group=True),
                                                llm.get("accelerator_type"))
        if args.get("llm_configs"):
            ingress = (args.get("ingress_deployment_config") or {}).get("ray_actor_options") or {}
            out[(app["name"], RAY_LLM_INGRESS)] = _actor_footprint(f"{app['name']}/{RAY_LLM_INGRESS}", ingress)
        for dep in app.get("deployments") or []:
            if (app["name"], dep["name"]) in out:  # a ray.serve.llm override entry: the footprint is above
                continue
            fp = _actor_footprint(f"{app['name']}/{dep['name']}", dep.get("ray_actor_options") or {})
            if dep.get("placement_group_bundles"):  # a plain deployment with its own placement group
                bundles = dep["placement_group_bundles"]
                fp = Footprint(Replica(fp.replica.name, sum(float(b.get("GPU", 0)) for b in bundles),
                                       sum(float(b.get("CPU", 0)) for b in bundles), placement_group=True),
                               fp.accelerator_type)
            out[(app["name"], dep["name"])] = fp
    return out


def non_strict_pack_groups(serve_cfg: dict[str, Any]) -> list[str]:
    """Deployments whose replicas get a placement group that is not STRICT_PACK: any one keeps Serve on spread
    (deployment_scheduler.py, DeploymentSchedulingInfo.is_non_strict_pack_pg, _use_pack_strategy). A ray.serve.llm
    LLMServer's group is PACK unless its placement_group_config says otherwise (VLLMEngineConfig.placement_strategy);
    a plain deployment's, unless placement_group_strategy says otherwise (_schedule_replica's default)."""
    out = []
    for app in serve_cfg.get("applications") or []:
        for llm in (app.get("args") or {}).get("llm_configs") or []:
            strategy = (llm.get("placement_group_config") or {}).get("strategy", "PACK")
            if strategy != "STRICT_PACK":
                model_id = (llm.get("model_loading_config") or {}).get("model_id", app["name"])
                out.append(f"{app['name']}/{ray_llm_deployment_name(model_id)} ({strategy})")
        for dep in app.get("deployments") or []:
            if dep.get("placement_group_bundles") and dep.get("placement_group_strategy") != "STRICT_PACK":
                out.append(f"{app['name']}/{dep['name']} ({dep.get('placement_group_strategy') or 'PACK'})")
    return out


def container_env(env: Any) -> dict[str, str]:
    """A container's `env` list ([{name, value}]) as {name: value}; a value from a secret or a field
    (valueFrom) is not known here and is left out."""
    return {str(e["name"]): str(e["value"]) for e in env or [] if isinstance(e, dict) and "value" in e}


def head_env(rayservice: dict[str, Any]) -> dict[str, str]:
    """The Ray head container's environment: the Serve controller runs on the head and reads its scheduling
    switch from there."""
    head = ((rayservice.get("spec") or {}).get("rayClusterConfig") or {}).get("headGroupSpec") or {}
    return container_env(_container(head).get("env"))


def placement_strategy(rayservice: dict[str, Any], serve_cfg: dict[str, Any]) -> tuple[Strategy, str]:
    """The strategy the RayService's Serve controller places replicas with, and why (ops/packing.py)."""
    return serve_strategy(head_env(rayservice), non_strict_pack_groups(serve_cfg))


def group_of(app: str, fp: Footprint, groups: list[Group]) -> Group | None:
    """The worker group a deployment's replicas run in (see the module docstring)."""
    labelled = [g for g in groups if app in g.apps]
    if labelled:
        return labelled[0]
    if fp.replica.gpus:
        typed = [g for g in groups if g.shape.gpus and (fp.accelerator_type in (None, g.gpu_type))]
        return typed[0] if typed else None
    cpu_only = [g for g in groups if not g.shape.gpus]
    return cpu_only[0] if cpu_only else None
