"""`armed-ops capacity`: replicas, GPUs and cost per hour for a target judgment rate and latency objective.

Benchmark result file (JSON), per-replica numbers measured on the profile's hardware:

    {
      "profile": "a100-80g",                      # the profile the numbers were measured on
      "source": "how/when it was measured",       # free text
      "models": {                                 # per model role (and "judge")
        "llm": {
          "requests_per_s": 6.0,                  # sustained throughput of ONE replica at `concurrency`
          "p50_ms": 900, "p95_ms": 2100,          # latency of one call at that throughput
          "concurrency": 32,                      # requests in flight per replica during the run
          "calls_per_judgment": 3.0               # model calls one judgment makes (the DAG's fan-out)
        }, ...
      },
      "prices_usd_per_hour": {"A100-80G": 3.0, "cpu_node": 0.8}   # per GPU of a type; per CPU-pool node
                                                  # (a pool's own cost_per_node_hour in the profile wins)
    }

Arithmetic, per deployed role R (printed with the result):
  demand_R    = target_qps * calls_per_judgment_R * (1 - cache_hit_rate)        (requests/s to R)
  usable_R    = requests_per_s_R * headroom                                     (per replica, leave headroom)
  replicas_R  = max(min_replicas_R, ceil(demand_R / usable_R))                  (flagged if > max_replicas_R)
  gpus_R      = replicas_R * num_gpus_R                                         (profile's per-replica GPUs)
  per pool    : every replica of the pool's deployments, each reserving what its Serve config entry asks Ray for
                (ops/pools.py footprints: the judge app's Gateway beside each Judge replica; a ray.serve.llm
                model's placement group, and its app's one OpenAI ingress replica) is placed on nodes the way
                the chart's Serve controller places it (ops/packing.py: Serve 2.60 SPREAD by default, PACK only
                when the chart turns it on and every placement group is STRICT_PACK; the output says which and
                why), with Ray's GPU rule (a fraction < 1 comes from ONE GPU, a whole number from that many free
                GPUs; CPUs and memory per node), so nodes = the nodes that placement needs, at least min_nodes.
                The fewest nodes any placement could use (a bin pack) is printed beside it when it is fewer.
                GPUs "occupied" counts every GPU with anything on it, which is what the node's price pays for.
  cost/h      = nodes * the pool's cost_per_node_hour (gpu_profiles/<P>.yaml), else nodes * gpus_per_node *
                price[gpu_type] or nodes * price[cpu_node] from the benchmark file
A role whose measured p95 exceeds the latency objective is flagged: its throughput was measured at a latency
the objective does not allow, so re-benchmark it at lower concurrency before trusting the replica count.
The judgment's end-to-end latency is the DAG's critical path, not a per-model number: the objective is applied
per call here, which is a necessary, not a sufficient, condition.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from armed.serving.config import JUDGE_APP, app_name, serve_config
from armed.serving.profiles import GpuPool, Profile
from ops.packing import NodeShape, Packing, Replica, Strategy, pack, place, serve_strategy
from ops.pools import RAY_LLM_INGRESS, Footprint, footprints, non_strict_pack_groups
from ops.profile_values import CHART_DIR


class BenchmarkError(ValueError):
    pass


@dataclass
class RolePlan:
    role: str
    pool: str
    demand_rps: float
    per_replica_rps: float
    replicas: int
    min_replicas: int
    max_replicas: int
    gpus_per_replica: float
    cpus_per_replica: float
    p95_ms: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def gpus(self) -> float:
        return self.replicas * self.gpus_per_replica


@dataclass
class PoolPlan:
    pool: str
    gpu_type: str | None
    nodes: int
    gpus: float  # GPUs the replicas request (the naive sum)
    cpus: float
    cost_per_hour: float | None
    gpus_occupied: int = 0  # GPUs with any replica on them after packing (what the nodes must have)
    gpus_total: int = 0  # nodes * gpus_per_node (what is paid for)
    price_source: str = ""
    per_node: list[list[str]] = field(default_factory=list)  # replica names per node, as placed
    notes: list[str] = field(default_factory=list)
    strategy: str = ""  # Serve's placement the node count assumes (ops/packing.py)
    nodes_bin_packed: int = 0  # the fewest nodes that hold the same replicas (a bin pack), for comparison


def load_benchmark(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"{path}: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise BenchmarkError(f"{path}: needs a non-empty 'models' object")
    for role, mm in models.items():
        rps = mm.get("requests_per_s") if isinstance(mm, dict) else None
        if not isinstance(rps, int | float) or rps <= 0:
            raise BenchmarkError(f"{path}: models.{role}.requests_per_s must be a positive number")
    return data


def plan(profile: Profile, bench: dict[str, Any], qps: float, latency_ms: float, headroom: float = 0.7,
         cache_hit_rate: float = 0.0) -> tuple[list[RolePlan], list[PoolPlan]]:
    if qps <= 0 or latency_ms <= 0 or not 0 < headroom <= 1 or not 0 <= cache_hit_rate < 1:
        raise BenchmarkError("need qps > 0, latency > 0, 0 < headroom <= 1, 0 <= cache hit rate < 1")
    models = bench["models"]
    roles: list[RolePlan] = []
    entries = [(r, profile.models[r]) for r in profile.deployed_roles()] + [("judge", profile.judge)]
    for role, rp in entries:
        mm = models.get(role)
        notes: list[str] = []
        if mm is None:
            raise BenchmarkError(f"benchmark has no numbers for deployed role {role!r}")
        calls = float(mm.get("calls_per_judgment", 1.0))
        hit = 0.0 if role == "judge" else cache_hit_rate
        demand = qps * calls * (1 - hit)
        usable = float(mm["requests_per_s"]) * headroom
        need = math.ceil(demand / usable - 1e-9) if demand > 0 else 0
        replicas = max(rp.replicas.min, need)
        p95 = mm.get("p95_ms", mm.get("p50_ms"))
        if p95 is not None and p95 > latency_ms:
            notes.append(f"measured p95 {p95:g} ms > objective {latency_ms:g} ms: re-benchmark at lower concurrency")
        if replicas > rp.replicas.max:
            notes.append(f"needs {replicas} replicas > profile max {rp.replicas.max}: raise replicas.max")
        roles.append(RolePlan(role, rp.pool, demand, usable, replicas, rp.replicas.min, rp.replicas.max,
                              rp.resources.num_gpus, rp.resources.num_cpus, p95, notes))
    strategy, _ = chart_placement(profile)
    pools = [plan_pool(profile, pool, roles, bench.get("prices_usd_per_hour") or {}, strategy)
             for pool in profile.pools]
    return roles, pools


def chart_env() -> dict[str, str]:
    """The environment the chart's values give every Ray container (values.yaml `env`): with the chart's own
    entries (templates/_helpers.tpl armed.env), which set no scheduling switch, what the Serve controller sees."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8")) or {}
    return {str(e["name"]): str(e["value"]) for e in values.get("env") or [] if "value" in e}


def chart_placement(profile: Profile) -> tuple[Strategy, str]:
    """How the chart's Serve controller places this profile's replicas (the chart's env and the profile's
    placement groups; the same rule `armed-ops tune` reads from a live RayService, ops/pools.py)."""
    return serve_strategy(chart_env(), non_strict_pack_groups(serve_config(profile)))


def _role_of_app(profile: Profile) -> dict[str, str]:
    return {**{app_name(r): r for r in profile.deployed_roles()}, JUDGE_APP: "judge"}


def pool_replicas(profile: Profile, pool: GpuPool, roles: list[RolePlan]) -> list[Replica]:
    """Every replica the plan puts on `pool`, in the order Serve submits them (the Serve config's), each with what
    its deployment asks Ray for (ops/pools.py footprints of the profile's Serve config): a role's deployments run
    the role's planned replica count (the judge app's Gateway and Judge both the judge's), a ray.serve.llm app's
    OpenAI ingress one replica while its model runs any."""
    count = {r.role: r.replicas for r in roles if r.pool == pool.name}
    role_of = _role_of_app(profile)
    out: list[Replica] = []
    fps: dict[tuple[str, str], Footprint] = footprints(serve_config(profile))
    for (app, dep), fp in fps.items():
        n = count.get(role_of.get(app, ""), 0)
        out += [fp.replica] * (min(n, 1) if dep == RAY_LLM_INGRESS else n)
    return out


def _pool_price(pool: GpuPool, prices: dict[str, Any]) -> tuple[float | None, str]:
    """USD per node-hour and where it came from."""
    if pool.cost_per_node_hour is not None:
        return pool.cost_per_node_hour, "profile cost_per_node_hour"
    if pool.gpus_per_node:
        price = prices.get(pool.gpu_type)
        return (None, "") if price is None else (pool.gpus_per_node * float(price), f"benchmark {pool.gpu_type}")
    price = prices.get("cpu_node")
    return (None, "") if price is None else (float(price), "benchmark cpu_node")


def plan_pool(profile: Profile, pool: GpuPool, roles: list[RolePlan], prices: dict[str, Any],
              strategy: Strategy | None = None) -> PoolPlan:
    strategy = strategy or chart_placement(profile)[0]
    replicas = pool_replicas(profile, pool, roles)
    shape = NodeShape(pool.gpus_per_node, pool.cpus_per_node, pool.memory_gib_per_node)
    placed: Packing = place(replicas, shape, strategy, max_nodes=None, min_nodes=pool.min_nodes)
    nodes = len(placed.nodes)
    fewest = len(pack(replicas, shape, min_nodes=pool.min_nodes).nodes)
    notes = [f"{r.name} ({r.gpus:g} GPU, {r.cpus:g} CPU) does not fit on one node of the pool" for r in
             {r.name: r for r in placed.unplaced}.values()]
    price, source = _pool_price(pool, prices)
    if price is None:
        notes.append(f"no price: set pools[{pool.name}].cost_per_node_hour in the profile, or "
                     f"{pool.gpu_type or 'cpu_node'} in the benchmark's prices_usd_per_hour")
    if nodes > pool.max_nodes:
        notes.append(f"needs {nodes} nodes > pool max_nodes {pool.max_nodes}: raise max_nodes (the worker "
                     f"group's maxReplicas) or the replicas will stay pending")
    if fewest < nodes:
        notes.append(f"Serve's {strategy} placement needs {nodes} nodes where a bin pack would need {fewest}")
    requested = sum(r.gpus for r in replicas)
    if placed.gpus_touched > math.ceil(requested - 1e-9):
        notes.append(f"fractional GPUs do not share across sizes or nodes: {requested:g} GPUs requested occupy "
                     f"{placed.gpus_touched} GPUs")
    return PoolPlan(pool.name, pool.gpu_type, nodes, requested, sum(r.cpus for r in replicas),
                    None if price is None else nodes * price, placed.gpus_touched, nodes * pool.gpus_per_node,
                    source, [n.replicas for n in placed.nodes], notes, strategy, fewest)


def render(profile: Profile, bench: dict[str, Any], roles: list[RolePlan], pools: list[PoolPlan], qps: float,
           latency_ms: float, headroom: float, cache_hit_rate: float, bench_path: str) -> str:
    out = [f"Capacity for {qps:g} judgments/s, latency objective {latency_ms:g} ms, profile {profile.name}",
           f"benchmark: {bench_path}" + (f" ({bench['source']})" if bench.get("source") else "")]
    if bench.get("EXAMPLE"):
        out.append(f"WARNING: {bench['EXAMPLE']}")
    if bench.get("profile") and bench["profile"] != profile.name:
        out.append(f"WARNING: benchmark measured on profile {bench['profile']!r}, planning for {profile.name!r}")
    out.append(f"headroom {headroom:g} (replicas run at most this share of measured throughput); "
               f"cache hit rate {cache_hit_rate:g} on model calls")
    strategy, why = chart_placement(profile)
    out.append(f"replica placement: Serve's {strategy} ({why})")
    out.append("")
    out.append(f"{'role':<12} {'pool':<10} {'demand/s':>9} {'usable/s':>9} {'replicas':>8} {'[min,max]':>9} "
               f"{'GPU/rep':>7} {'GPUs':>6}")
    for r in roles:
        out.append(f"{r.role:<12} {r.pool:<10} {r.demand_rps:>9.2f} {r.per_replica_rps:>9.2f} {r.replicas:>8} "
                   f"{f'[{r.min_replicas},{r.max_replicas}]':>9} {r.gpus_per_replica:>7g} {r.gpus:>6g}")
        out.append(f"  = max({r.min_replicas}, ceil({r.demand_rps:.2f} / {r.per_replica_rps:.2f}))"
                   + "".join(f"\n  ! {n}" for n in r.notes))
    out.append("")
    total = 0.0
    priced = True
    for p in pools:
        cost = "?" if p.cost_per_hour is None else f"${p.cost_per_hour:,.2f}/h ({p.price_source})"
        gpus = f"GPUs requested {p.gpus:g} occupied {p.gpus_occupied} of {p.gpus_total}  " if p.gpu_type else ""
        out.append(f"pool {p.pool:<10} {p.gpu_type or 'cpu':<9} nodes {p.nodes:>3}  {gpus}"
                   f"CPUs {p.cpus:g}  cost {cost}" + "".join(f"\n  ! {n}" for n in p.notes))
        if p.cost_per_hour is None:
            priced = False
        else:
            total += p.cost_per_hour
    out.append(f"total {'≥ ' if not priced else ''}${total:,.2f}/h (whole nodes: a node is paid for all its GPUs)")
    return "\n".join(out)
