"""`armed-ops tune`: per-deployment autoscaling recommendations from live Serve and vLLM metrics (Prometheus), and
with `--apply` an in-place patch of the RayService's serveConfigV2 (KubeRay applies a Serve-config-only change
without a new cluster; see the chart's upgrade strategy).

Each deployment is judged against ITS objective (ops/objectives.yaml, or --objectives FILE: p95 latency, queue per
replica, and for ray.serve.llm models vLLM's own queue and KV-cache usage). Rules, over the look-back window (each
recommendation prints its reason):
  R1 at max and still loaded   replicas == max_replicas and (over a queue objective or ongoing/replica >= target)
                               -> max_replicas = ceil((ongoing_total + queued) / target), between today's + 1 and
                               2x today's, and never more than the worker group's maxReplicas nodes hold beside the
                               other deployments of the pool, placed as the RayService's Serve controller places
                               them (spread by default, or pack; ops/packing.py, with Ray's GPU rule).
                               ongoing_total is every request the replicas hold (Serve counts a request from the
                               replica accepting it to its answer), so vLLM's waiting requests are already in it:
                               they are reported, never added again; queued is Serve's own queue in the callers'
                               handles, not yet at any replica.
  R2 latency over objective    p95 > objective -> target_ongoing_requests *= objective / p95 (>= 1),
                               upscale_delay_s halved (>= 5 s)
  R6 engine saturated          vLLM waiting/replica > objective or KV-cache usage > objective (ray.serve.llm)
                               -> target_ongoing_requests *= 0.8 (>= 1), upscale_delay_s halved: Serve's target
                               lets more requests into a replica than its engine runs at once
  R3 queueing below max        Serve queue/replica > objective and replicas < max -> upscale_delay_s halved
  R4 idle floor                replicas == min_replicas > 1 and ongoing/replica < 0.3 * target, nothing queued
                               -> min_replicas - 1, never below the availability floor (the judge app: 2)
  R7 below availability floor  min_replicas < the floor (judge app: 2) -> min_replicas = floor
  R5 latency to spare          p95 < objective / 2 and ongoing/replica >= 0.8 * target, engine not saturated
                               -> target_ongoing_requests *= 1.25 (fewer replicas for the same load)

A ray.serve.llm model's autoscaling is written to the application's per-deployment override
(`applications[].deployments[<LLMServer>].autoscaling_config`), never to its `args`: the args are part of the app's
code version and changing them restarts every vLLM engine (ops/kube.py autoscaling_ref says where Ray decides).
The GPU profile stays the source of truth: after `--apply`, copy the printed values into gpu_profiles/<P>.yaml, or
the next `helm upgrade` puts the old ones back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ops import metrics as m
from ops.kube import autoscaling_ref, deployment_bounds, get_rayservice, patch_serve_config, ray_llm_deployments
from ops.packing import SPREAD, Strategy, most_that_fit
from ops.pools import Footprint, Group, footprints, group_of, placement_strategy, worker_groups
from ops.prom import Prometheus

OBJECTIVES_FILE = Path(__file__).resolve().parent / "objectives.yaml"
# Replicas an application keeps at least, whatever the load: the judge app (Gateway + Judge) serves every request,
# so one replica is one pod eviction or one failed health check away from an outage.
AVAILABILITY_FLOOR = {"judge": 2}


@dataclass(frozen=True)
class Objective:
    p95_ms: float | None = None
    queued_per_replica: float = 0.0
    engine_waiting_per_replica: float = 1.0
    kv_cache_usage: float = 0.9


class ObjectiveError(ValueError):
    pass


def load_objectives(path: Path | None = None, latency_ms: float | None = None) -> dict[str, dict[str, Any]]:
    """The objectives file (see ops/objectives.yaml); `latency_ms` replaces the `default` entry's p95."""
    path = Path(path or OBJECTIVES_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ObjectiveError(f"{path}: {exc}") from None
    known = {f.name for f in fields(Objective)}
    for key, entry in data.items():
        bad = sorted(set(entry or {}) - known)
        if not isinstance(entry, dict) or bad:
            raise ObjectiveError(f"{path}: {key}: unknown fields {bad}; known: {sorted(known)}")
    if latency_ms is not None:
        data = {**data, "default": {**(data.get("default") or {}), "p95_ms": latency_ms}}
    return data


def objective_for(objectives: dict[str, dict[str, Any]], app: str, deployment: str) -> Objective:
    merged: dict[str, Any] = {}
    for key in ("default", app, f"{app}/{deployment}"):
        merged.update(objectives.get(key) or {})
    return Objective(**merged)


@dataclass
class Observation:
    app: str
    deployment: str
    replicas: float | None
    ongoing_per_replica: float | None
    queued: float | None
    p95_ms: float | None
    engine_waiting: float | None = None  # vLLM requests waiting, summed over the deployment's replicas
    engine_running: float | None = None
    kv_cache_usage: float | None = None  # the fullest replica's KV cache, 0-1


@dataclass
class Recommendation:
    app: str
    deployment: str
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new)
    reasons: list[str] = field(default_factory=list)
    where: str = ""  # where in serveConfigV2 the change goes


def observe(prom: Prometheus, namespace: str, window: str = "15m",
            llm_models: dict[tuple[str, str], str] | None = None) -> dict[tuple[str, str], Observation]:
    """Serve metrics per (application, deployment); vLLM metrics (labelled by model_name) joined to the
    ray.serve.llm deployment serving that model (`llm_models`: {(app, deployment): model id})."""
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
    if llm_models:
        waiting = prom.by(f"sum by (model_name) (avg_over_time({m.VLLM_WAITING}{sel}[{window}]))", "model_name")
        running = prom.by(f"sum by (model_name) (avg_over_time({m.VLLM_RUNNING}{sel}[{window}]))", "model_name")
        kv = prom.by(f"max by (model_name) (avg_over_time({m.VLLM_KV_CACHE}{sel}[{window}]))", "model_name")
        for key, model in llm_models.items():
            o = out.get(key)
            if o is not None:
                o.engine_waiting = waiting.get((model,))
                o.engine_running = running.get((model,))
                o.kv_cache_usage = kv.get((model,))
    return out


@dataclass
class Capacity:
    """The live cluster's pools and what each deployment reserves: for R1's bound."""

    groups: list[Group]
    footprints: dict[tuple[str, str], Footprint]
    strategy: Strategy = SPREAD  # how the Serve controller places replicas (ops/pools.py placement_strategy)
    strategy_why: str = ""

    def group(self, key: tuple[str, str]) -> Group | None:
        fp = self.footprints.get(key)
        return None if fp is None else group_of(key[0], fp, self.groups)

    def most_replicas(self, key: tuple[str, str], bounds: dict[tuple[str, str], dict[str, Any]],
                      obs: dict[tuple[str, str], Observation]) -> tuple[int, Group] | None:
        """How many replicas of `key` its worker group holds at maxReplicas nodes, beside every other deployment
        of the group at max(min_replicas, what runs now) placed first, under the Serve controller's strategy.
        None when the pool is unknown."""
        group = self.group(key)
        if group is None:
            return None
        others = []
        for other, fp in self.footprints.items():
            if other == key or self.group(other) is not group:
                continue
            running = (obs.get(other).replicas if obs.get(other) else None) or 0
            n = max(int((bounds.get(other) or {}).get("min_replicas", 1)), math.ceil(running))
            others += [fp.replica] * n
        return most_that_fit(others, self.footprints[key].replica, group.shape, group.max_nodes, self.strategy,
                             group.min_nodes), group


def _per_replica(total: float | None, replicas: float) -> float:
    return (total or 0.0) / max(replicas, 1.0)


def recommend(serve_cfg: dict[str, Any], obs: dict[tuple[str, str], Observation],
              objectives: dict[str, dict[str, Any]] | None = None,
              capacity: Capacity | None = None) -> list[Recommendation]:
    objectives = objectives if objectives is not None else load_objectives()
    bounds = deployment_bounds(serve_cfg)
    llm = ray_llm_deployments(serve_cfg)
    recs = []
    for key, auto in sorted(bounds.items()):
        o = obs.get(key)
        floor = AVAILABILITY_FLOOR.get(key[0], 0)
        if not auto or ((o is None or o.replicas is None) and not floor):
            continue
        goal = objective_for(objectives, *key)
        rec = Recommendation(*key, where=(f"applications[{key[0]}].deployments[{key[1]}].autoscaling_config"
                                          + (" (override of the ray.serve.llm app; args untouched)"
                                             if key in llm else "")))
        target = float(auto.get("target_ongoing_requests", 2.0))
        lo, hi = int(auto.get("min_replicas", 1)), int(auto.get("max_replicas", 1))
        up = float(auto.get("upscale_delay_s", 30.0))
        new: dict[str, Any] = {}
        if lo < floor:
            new["min_replicas"] = floor
            rec.reasons.append(f"R7 min_replicas {lo} < availability floor {floor} of the {key[0]} app")
        if o is None or o.replicas is None:
            _finish(rec, auto, new, recs)
            continue
        ongoing = o.ongoing_per_replica or 0.0
        queued = o.queued or 0.0
        q_rep = _per_replica(o.queued, o.replicas)
        w_rep = _per_replica(o.engine_waiting, o.replicas)
        kv = o.kv_cache_usage or 0.0
        engine_hot = w_rep > goal.engine_waiting_per_replica or kv > goal.kv_cache_usage
        engine_busy = w_rep > 0 or kv > goal.kv_cache_usage
        over_queue = q_rep > goal.queued_per_replica or engine_hot
        if o.replicas >= hi and (over_queue or ongoing >= target):
            # The vLLM queue is inside `ongoing` (the replica holds each request it passed to its engine): one count.
            want = math.ceil((ongoing * o.replicas + queued) / target - 1e-9)
            new_hi = min(max(want, hi + 1), hi * 2)
            why = (f"R1 at max {hi} replicas holding {ongoing * o.replicas:.0f} requests ({ongoing:.1f}/replica"
                   + (f"; {o.engine_waiting:.0f} of them waiting in vLLM" if o.engine_waiting else "")
                   + f"), {queued:.0f} queued in Serve (target {target:g}): load needs ~{want}")
            fit = capacity.most_replicas(key, bounds, obs) if capacity else None
            if fit is not None:
                most, group = fit
                why += (f"; worker group {group.name} holds at most {most} at maxReplicas {group.max_nodes} beside "
                        f"the pool's other deployments under Serve's {capacity.strategy} placement")
                new_hi = min(new_hi, most)
            if new_hi > hi:
                new["max_replicas"] = new_hi
            else:
                why += ": not raised; add nodes to the pool (its max_nodes) first"
            rec.reasons.append(why)
        if goal.p95_ms and o.p95_ms and o.p95_ms > goal.p95_ms:
            new["target_ongoing_requests"] = max(1.0, round(target * goal.p95_ms / o.p95_ms, 1))
            new["upscale_delay_s"] = max(5.0, up / 2)
            rec.reasons.append(f"R2 p95 {o.p95_ms:.0f} ms > objective {goal.p95_ms:g} ms")
        elif engine_hot:
            new["target_ongoing_requests"] = max(1.0, round(target * 0.8, 1))
            new["upscale_delay_s"] = max(5.0, up / 2)
            rec.reasons.append(f"R6 vLLM engine saturated: {w_rep:.1f} waiting/replica (objective "
                               f"{goal.engine_waiting_per_replica:g}), KV cache {kv:.0%} (objective "
                               f"{goal.kv_cache_usage:.0%})")
        elif q_rep > goal.queued_per_replica and o.replicas < hi:
            new["upscale_delay_s"] = max(5.0, up / 2)
            rec.reasons.append(f"R3 {queued:.0f} queued while below max ({o.replicas:g} < {hi}): scale up sooner")
        if (o.replicas <= lo and lo > max(1, floor) and ongoing < 0.3 * target and queued == 0
                and not engine_busy and "min_replicas" not in new):
            new["min_replicas"] = lo - 1
            rec.reasons.append(f"R4 idle at the floor: {ongoing:.1f} ongoing/replica < 30% of target {target:g}")
        if (goal.p95_ms and o.p95_ms is not None and o.p95_ms < goal.p95_ms / 2 and ongoing >= 0.8 * target
                and not engine_busy and "target_ongoing_requests" not in new):
            new["target_ongoing_requests"] = round(target * 1.25, 1)
            rec.reasons.append(f"R5 p95 {o.p95_ms:.0f} ms < half the objective {goal.p95_ms:g} ms at "
                               f"{ongoing:.1f} ongoing/replica")
        _finish(rec, auto, new, recs)
    return recs


def _finish(rec: Recommendation, auto: dict[str, Any], new: dict[str, Any], recs: list[Recommendation]) -> None:
    for k, v in new.items():
        if auto.get(k) != v:
            rec.changes[k] = (auto.get(k), v)
    lo = new.get("min_replicas", auto.get("min_replicas", 1))
    if "initial_replicas" in auto and auto["initial_replicas"] is not None and auto["initial_replicas"] < lo:
        rec.changes["initial_replicas"] = (auto["initial_replicas"], lo)
    if rec.changes:
        recs.append(rec)


def apply_to(serve_cfg: dict[str, Any], recs: list[Recommendation]) -> dict[str, Any]:
    cfg = copy.deepcopy(serve_cfg)
    for rec in recs:
        auto = autoscaling_ref(cfg, rec.app, rec.deployment)
        if auto is None:
            raise KeyError(f"{rec.app}/{rec.deployment} is not in the Serve config")
        for k, (_, new) in rec.changes.items():
            auto[k] = new
    return cfg


def new_overrides(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Applications that gain a deployment override carrying autoscaling_config: Ray counts that as a new code
    version once (get_app_code_version lists deployments' autoscaling policies), so those replicas restart once."""
    def with_auto(cfg: dict[str, Any]) -> dict[str, int]:
        return {a["name"]: sum(1 for d in a.get("deployments") or [] if isinstance(d.get("autoscaling_config"),
                                                                                   dict))
                for a in cfg.get("applications") or []}

    b, a = with_auto(before), with_auto(after)
    return sorted(name for name, n in a.items() if n > b.get(name, 0))


def run(api: Any, prom: Prometheus, namespace: str, name: str, objectives: dict[str, dict[str, Any]],
        window: str, apply: bool) -> tuple[list[Recommendation], dict[str, Any] | None, list[str], str]:
    """Recommendations, the patched RayService (with `apply`), the apps whose replicas restart once, and the
    placement the pool bounds assumed (Serve's strategy in that RayService, and why)."""
    rs = get_rayservice(api, namespace, name)
    serve_cfg = yaml.safe_load(rs["spec"]["serveConfigV2"]) or {}
    obs = observe(prom, namespace, window, ray_llm_deployments(serve_cfg))
    capacity = Capacity(worker_groups(rs), footprints(serve_cfg), *placement_strategy(rs, serve_cfg))
    recs = recommend(serve_cfg, obs, objectives, capacity)
    patched = None
    restarts: list[str] = []
    if recs:
        new_cfg = apply_to(serve_cfg, recs)
        restarts = new_overrides(serve_cfg, new_cfg)
        if apply:
            patched = patch_serve_config(api, namespace, name, new_cfg, rs["metadata"].get("resourceVersion"))
    return recs, patched, restarts, f"{capacity.strategy} ({capacity.strategy_why})"


def render(recs: list[Recommendation], applied: bool, restarts: list[str] | None = None,
           placement: str | None = None) -> str:
    head = [f"Replica placement assumed for pool bounds: Serve's {placement}"] if placement else []
    if not recs:
        return "\n".join([*head, "No changes recommended: every deployment is within its bounds and objective."])
    out = head
    for r in recs:
        out.append(f"{r.app}/{r.deployment}:  ({r.where})")
        for reason in r.reasons:
            out.append(f"  because {reason}")
        for k, (old, new) in r.changes.items():
            out.append(f"  autoscaling_config.{k}: {old} -> {new}")
    for app in restarts or []:
        out.append(f"NOTE: app {app} gets its first per-deployment autoscaling override: Ray counts that as a new "
                   "code version once, so its replicas restart this one time (later tunes reconfigure in place).")
    out.append("Applied to spec.serveConfigV2 (in place)." if applied else "Not applied (pass --apply to patch).")
    out.append("Copy the new values into the GPU profile, or the next helm upgrade restores the old ones.")
    return "\n".join(out)
