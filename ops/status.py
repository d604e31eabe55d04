"""`armed-ops status`: what an SRE asks first. The RayService's conditions, each Serve application and deployment
status, replicas against their bounds, and per worker group the pods ready / pending (pending GPU pods called
out, with the scheduler's reason)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import yaml

from ops import metrics as m
from ops.kube import deployment_bounds, get_rayservice, list_pods
from ops.prom import Prometheus, PrometheusError

GPU_RESOURCE_HINTS = ("nvidia.com/gpu", "amd.com/gpu")


def _pod_gpus(pod: Any) -> int:
    total = 0
    for c in pod.spec.containers or []:
        limits = (c.resources.limits if c.resources else None) or {}
        for key in GPU_RESOURCE_HINTS:
            if key in limits:
                total += int(limits[key])
    return total


def _pending_reason(pod: Any) -> str:
    for cond in (pod.status.conditions or []) if pod.status else []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason}: {cond.message}" if cond.message else str(cond.reason)
    return "waiting"


def collect(api: Any, namespace: str, name: str, prom: Prometheus | None = None) -> dict[str, Any]:
    """Everything `status` prints, as data (tests read this)."""
    rs = get_rayservice(api, namespace, name)
    spec, st = rs.get("spec") or {}, rs.get("status") or {}
    serve_cfg = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
    bounds = deployment_bounds(serve_cfg)
    active = st.get("activeServiceStatus") or {}
    pending = st.get("pendingServiceStatus") or {}
    cluster = active.get("rayClusterName") or pending.get("rayClusterName")

    replicas: dict[tuple[str, str], float] = {}
    prom_error = None
    if prom is not None:
        try:
            replicas = prom.by(
                f'sum by (application, deployment) ({m.REPLICA_HEALTHY}{{namespace="{namespace}"}})',
                "application", "deployment")
        except PrometheusError as exc:
            prom_error = str(exc)

    apps = []
    for app_name, app in sorted((active.get("applicationStatuses") or {}).items()):
        deps = []
        for dep_name, dep in sorted((app.get("serveDeploymentStatuses") or {}).items()):
            b = bounds.get((app_name, dep_name), {})
            deps.append({
                "name": dep_name, "status": dep.get("status"), "message": dep.get("message", ""),
                "min": b.get("min_replicas"), "max": b.get("max_replicas"),
                "replicas": replicas.get((app_name, dep_name)),
            })
        apps.append({"name": app_name, "status": app.get("status"), "message": app.get("message", ""),
                     "deployments": deps})

    groups_spec = {g["groupName"]: g for g in (spec.get("rayClusterConfig") or {}).get("workerGroupSpecs") or []}
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"ready": 0, "pending": 0, "other": 0,
                                                            "pending_gpu": []})
    head = {"ready": 0, "total": 0}
    if cluster:
        for pod in list_pods(api, namespace, f"ray.io/cluster={cluster}"):
            labels = pod.metadata.labels or {}
            phase = pod.status.phase if pod.status else "Unknown"
            ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
            if labels.get("ray.io/node-type") == "head":
                head["total"] += 1
                head["ready"] += int(ready)
                continue
            g = groups[labels.get("ray.io/group", "?")]
            if phase == "Pending":
                g["pending"] += 1
                gpus = _pod_gpus(pod)
                if gpus:
                    g["pending_gpu"].append({"pod": pod.metadata.name, "gpus": gpus, "reason": _pending_reason(pod)})
            elif ready:
                g["ready"] += 1
            else:
                g["other"] += 1
    worker_groups = []
    for gname in sorted(set(groups_spec) | set(groups)):
        gs = groups_spec.get(gname, {})
        worker_groups.append({"name": gname, "min": gs.get("minReplicas"), "max": gs.get("maxReplicas"),
                              **groups[gname]})
    return {
        "name": name, "namespace": namespace, "cluster": cluster,
        "pending_cluster": pending.get("rayClusterName"),
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                       for c in st.get("conditions") or []],
        "service_status": st.get("serviceStatus"),
        "applications": apps, "head": head, "worker_groups": worker_groups, "prometheus_error": prom_error,
    }


def render(s: dict[str, Any]) -> str:
    out = [f"RayService {s['namespace']}/{s['name']}  active cluster: {s['cluster'] or '-'}"
           + (f"  pending cluster: {s['pending_cluster']}" if s["pending_cluster"] else "")]
    out.append("Conditions:")
    for c in s["conditions"] or [{"type": "-", "status": "", "reason": "", "message": "none reported"}]:
        out.append(f"  {c['type']:<24} {c['status'] or '':<6} {c['reason'] or ''} {c['message'] or ''}".rstrip())
    out.append("Applications:")
    if not s["applications"]:
        out.append("  none reported yet (the Serve config is not deployed)")
    for app in s["applications"]:
        out.append(f"  {app['name']:<14} {app['status']}" + (f"  {app['message']}" if app["message"] else ""))
        for d in app["deployments"]:
            rep = "?" if d["replicas"] is None else f"{d['replicas']:g}"
            flag = ""
            if d["replicas"] is not None and d["max"] is not None and d["replicas"] >= d["max"]:
                flag = "  AT MAX"
            out.append(f"    {d['name']:<28} {d['status'] or '-':<10} replicas {rep} in [{d['min']}, {d['max']}]"
                       f"{flag}" + (f"  {d['message']}" if d["message"] else ""))
    out.append(f"Head: {s['head']['ready']}/{s['head']['total']} ready")
    out.append("Worker groups (pods):")
    for g in s["worker_groups"]:
        out.append(f"  {g['name']:<14} ready {g['ready']}  pending {g['pending']}  other {g['other']}"
                   f"  bounds [{g['min']}, {g['max']}]")
        for p in g["pending_gpu"]:
            out.append(f"    PENDING GPU POD {p['pod']} ({p['gpus']} GPU): {p['reason']}")
    if s["prometheus_error"]:
        out.append(f"(replica counts unavailable: {s['prometheus_error']})")
    elif all(d["replicas"] is None for a in s["applications"] for d in a["deployments"]):
        out.append("(pass --prometheus URL for live replica counts)")
    return "\n".join(out)
