"""`armed-ops tune`: per-deployment autoscaling recommendations from live Serve metrics (Prometheus), and with
`--apply` an in-place patch of the RayService's serveConfigV2 (KubeRay applies a Serve-config-only change without
a new cluster; see the chart's upgrade strategy).

Rules, per deployment, over the look-back window (each recommendation prints its reason):
  R1 at max and still loaded   replicas == max_replicas and (queued > 0 or ongoing/replica >= target)
                               -> max_replicas = ceil((ongoing_total + queued) / target), at most 2x today's
  R2 latency over objective    p95 > --latency-ms -> target_ongoing_requests *= objective / p95 (>= 1),
                               upscale_delay_s halved (>= 5 s)
  R3 queueing below max        queued > 0 and replicas < max -> upscale_delay_s halved (>= 5 s)
  R4 idle floor                replicas == min_replicas > 1 and ongoing/replica < 0.3 * target
                               -> min_replicas - 1
  R5 latency to spare          p95 < objective / 2 and ongoing/replica >= 0.8 * target
                               -> target_ongoing_requests *= 1.25 (fewer replicas for the same load)
The GPU profile stays the source of truth: after `--apply`, copy the printed values into gpu_profiles/<P>.yaml,
or the next `helm upgrade` puts the old ones back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from ops import metrics as m
from ops.kube import autoscaling_ref, deployment_bounds, get_rayservice, patch_serve_config
from ops.prom import Prometheus


@dataclass
class Observation:
    app: str
    deployment: str
    replicas: float | None
    ongoing_per_replica: float | None
    queued: float | None
    p95_ms: float | None


@dataclass
class Recommendation:
    app: str
    deployment: str
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new)
    reasons: list[str] = field(default_factory=list)


def observe(prom: Prometheus, namespace: str, window: str = "15m") -> dict[tuple[str, str], Observation]:
    sel = f'{{namespace="{namespace}"}}'
    keys = ("application", "deployment")
    replicas = prom.by(f"sum by (application, deployment) ({m.REPLICA_HEALTHY}{sel})", *keys)
    ongoing = prom.by(f"avg by (application, deployment) (avg_over_time({m.ONGOING_AT_REPLICA}{sel}[{window}]))",
                      *keys)
    queued = prom.by(f"sum by (application, deployment) (avg_over_time({m.QUEUED}{sel}[{window}]))", *keys)
    p95 = prom.by(f"histogram_quantile(0.95, sum by (application, deployment, le) "
                  f"(rate({m.DEPLOYMENT_LATENCY_BUCKET}{sel}[{window}])))", *keys)
    out = {}
    for key in set(replicas) | set(ongoing) | set(queued) | set(p95):
        out[key] = Observation(key[0], key[1], replicas.get(key), ongoing.get(key), queued.get(key), p95.get(key))
    return out


def recommend(serve_cfg: dict[str, Any], obs: dict[tuple[str, str], Observation],
              latency_ms: float | None = None) -> list[Recommendation]:
    recs = []
    for key, auto in sorted(deployment_bounds(serve_cfg).items()):
        o = obs.get(key)
        if o is None or not auto or o.replicas is None:
            continue
        rec = Recommendation(*key)
        target = float(auto.get("target_ongoing_requests", 2.0))
        lo, hi = int(auto.get("min_replicas", 1)), int(auto.get("max_replicas", 1))
        up = float(auto.get("upscale_delay_s", 30.0))
        ongoing = o.ongoing_per_replica or 0.0
        queued = o.queued or 0.0
        new: dict[str, Any] = {}
        if o.replicas >= hi and (queued > 0 or ongoing >= target):
            want = math.ceil((ongoing * o.replicas + queued) / target)
            new_hi = min(max(want, hi + 1), hi * 2)
            new["max_replicas"] = new_hi
            rec.reasons.append(f"R1 at max {hi} replicas with {ongoing:.1f} ongoing/replica and {queued:.0f} queued "
                               f"(target {target:g}): load needs ~{want}")
        if latency_ms and o.p95_ms and o.p95_ms > latency_ms:
            new["target_ongoing_requests"] = max(1.0, round(target * latency_ms / o.p95_ms, 1))
            new["upscale_delay_s"] = max(5.0, up / 2)
            rec.reasons.append(f"R2 p95 {o.p95_ms:.0f} ms > objective {latency_ms:g} ms")
        elif queued > 0 and o.replicas < hi:
            new["upscale_delay_s"] = max(5.0, up / 2)
            rec.reasons.append(f"R3 {queued:.0f} queued while below max ({o.replicas:g} < {hi}): scale up sooner")
        if o.replicas <= lo and lo > 1 and ongoing < 0.3 * target and queued == 0:
            new["min_replicas"] = lo - 1
            rec.reasons.append(f"R4 idle at the floor: {ongoing:.1f} ongoing/replica < 30% of target {target:g}")
        if (latency_ms and o.p95_ms is not None and o.p95_ms < latency_ms / 2 and ongoing >= 0.8 * target
                and "target_ongoing_requests" not in new):
            new["target_ongoing_requests"] = round(target * 1.25, 1)
            rec.reasons.append(f"R5 p95 {o.p95_ms:.0f} ms < half the objective at {ongoing:.1f} ongoing/replica")
        for k, v in new.items():
            if auto.get(k) != v:
                rec.changes[k] = (auto.get(k), v)
        if "min_replicas" in rec.changes and "initial_replicas" in auto and auto["initial_replicas"] < new.get(
                "min_replicas", lo):
            rec.changes["initial_replicas"] = (auto["initial_replicas"], new["min_replicas"])
        if rec.changes:
            recs.append(rec)
    return recs


def apply_to(serve_cfg: dict[str, Any], recs: list[Recommendation]) -> dict[str, Any]:
    cfg = copy.deepcopy(serve_cfg)
    for rec in recs:
        auto = autoscaling_ref(cfg, rec.app, rec.deployment)
        if auto is None:
            raise KeyError(f"{rec.app}/{rec.deployment} is not in the Serve config")
        for k, (_, new) in rec.changes.items():
            auto[k] = new
        if auto.get("initial_replicas", 0) and auto.get("min_replicas", 0) > auto["initial_replicas"]:
            auto["initial_replicas"] = auto["min_replicas"]
    return cfg


def run(api: Any, prom: Prometheus, namespace: str, name: str, latency_ms: float | None, window: str,
        apply: bool) -> tuple[list[Recommendation], dict[str, Any] | None]:
    rs = get_rayservice(api, namespace, name)
    serve_cfg = yaml.safe_load(rs["spec"]["serveConfigV2"]) or {}
    recs = recommend(serve_cfg, observe(prom, namespace, window), latency_ms)
    patched = None
    if apply and recs:
        patched = patch_serve_config(api, namespace, name, apply_to(serve_cfg, recs),
                                     rs["metadata"].get("resourceVersion"))
    return recs, patched


def render(recs: list[Recommendation], applied: bool) -> str:
    if not recs:
        return "No changes recommended: every deployment is within its bounds and objective."
    out = []
    for r in recs:
        out.append(f"{r.app}/{r.deployment}:")
        for reason in r.reasons:
            out.append(f"  because {reason}")
        for k, (old, new) in r.changes.items():
            out.append(f"  autoscaling_config.{k}: {old} -> {new}")
    out.append("Applied to spec.serveConfigV2 (in place)." if applied else "Not applied (pass --apply to patch).")
    out.append("Copy the new values into the GPU profile, or the next helm upgrade restores the old ones.")
    return "\n".join(out)
