"""Where Ray puts Serve replicas on the nodes of one pool, and how many nodes that takes.

Two layers decide it, and both are modelled here:

1. Ray's resource rule per node. Summing fractional GPUs is wrong: Ray keeps one instance per GPU and, for a
   unit-instance resource like GPU, allocates a fractional demand (0 < d < 1) from ONE instance (the best fit: least
   left over) and a whole demand (d >= 1, which must be an integer) from that many fully free instances
   (ray-project/ray, src/ray/common/scheduling/resource_instance_set.cc, NodeResourceInstanceSet::TryAllocate).
   So a replica of 0.55 GPU leaves 0.45 on its GPU that only a replica of <= 0.45 can use. `Node` models exactly
   that (GPUs as instances, CPUs and memory as totals). A replica is never split across nodes: a tensor-parallel
   group belongs on one node (armed asks STRICT_PACK for it, armed/serving/config.py ray_llm_config).

2. Which node Serve 2.60 picks (ray/serve/_private/deployment_scheduler.py, DeploymentScheduler.schedule):
   - SPREAD, Serve's default. `_use_pack_strategy()` is false unless RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY=1
     (constants.py ~619; its old name RAY_SERVE_USE_COMPACT_SCHEDULING_STRATEGY is its default) AND no deployment
     has a placement group other than STRICT_PACK (`is_non_strict_pack_pg`). `_schedule_with_spread_strategy`
     then submits every pending replica, deployment by deployment, with scheduling_strategy="SPREAD", and
     `_schedule_replica` gives a replica with placement-group bundles (a ray.serve.llm LLMServer) its own
     placement group instead (strategy PACK unless configured), the actor pinned to bundle 0.
     Ray core places a SPREAD actor round-robin (src/ray/raylet/scheduling/policy/spread_scheduling_policy.cc,
     SpreadSchedulingPolicy::Schedule): nodes in a fixed order, starting after the node it chose last, the first
     node where the request is available now; when none is, it waits (the autoscaler sees the demand). A
     placement group goes to the node with the highest LeastResourceScorer score (bundle_scheduling_policy.cc,
     BundlePackSchedulingPolicy / BundleStrictPackSchedulingPolicy via GetBestNode; scorer.cc: the sum over the
     requested resources of (available - requested) / available): the emptiest node that holds it.
     The autoscaler launches nodes for the demand that waits, bin-packed (ray/autoscaler/_private/
     resource_demand_scheduler.py, get_nodes_for / get_bin_pack_residual), and the waiting replicas then spread
     again over every node with room, old nodes included.
   - PACK, when turned on (`_schedule_with_pack_strategy`): all pending replicas sorted largest first
     (Resources.__lt__: GPU, then CPU, then memory), each on the best-fit node (`_best_fit_node`: least room
     left, compared GPU first, then CPU, then memory) among nodes that already run a replica, else among idle
     nodes (`_find_best_fit_node_for_pack`); none fits: submitted without a target, it waits and the autoscaler
     adds a node, which is idle, so the replica lands there.

`place(replicas, shape, strategy, ...)` runs either; `pack` is the first-fit-decreasing bin pack the autoscaler's
launch estimate and the lower bound use. What the model leaves out (docs/operations.md says so too): the order in
which Serve submits deployments (the model takes the Serve config's order), the position of a new node in Ray's
round-robin (appended here; Ray sorts random node ids), a PACK placement group split across nodes when no one node
holds it (here it waits for a node instead, as STRICT_PACK does), Serve's own scalar GPU check in pack mode (here
the instance rule of layer 1 decides, as Ray core does after Serve's soft target), and pack mode's later
compaction (it moves replicas off a node they can leave; the pack result here is what it converges to).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

_EPS = 1e-9

Strategy = Literal["spread", "pack"]
SPREAD: Strategy = "spread"
PACK: Strategy = "pack"
# Serve's switch (ray/serve/_private/constants.py ~614-622) and how Ray reads it (constants_utils.get_env_bool:
# only the exact text "1" is true).
PACK_ENV = "RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY"
PACK_ENV_OLD = "RAY_SERVE_USE_COMPACT_SCHEDULING_STRATEGY"


def pack_env_on(env: Mapping[str, str]) -> bool:
    """RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY as Ray reads it: its value, else the old name's, else "0"; true
    only when that text is exactly "1"."""
    return str(env.get(PACK_ENV, env.get(PACK_ENV_OLD, "0"))) == "1"


def serve_strategy(env: Mapping[str, str], non_strict_pack_groups: Iterable[str]) -> tuple[Strategy, str]:
    """The strategy Serve's controller uses (DeploymentScheduler._use_pack_strategy) and why, from the controller's
    environment and the deployments whose placement group is not STRICT_PACK."""
    blockers = sorted(non_strict_pack_groups)
    if not pack_env_on(env):
        return SPREAD, f"Serve's default: {PACK_ENV} is not 1 on the head (the Serve controller)"
    if blockers:
        return SPREAD, (f"{PACK_ENV}=1, but Serve falls back to spread while any deployment has a placement group "
                        f"that is not STRICT_PACK: {', '.join(blockers)}")
    return PACK, f"{PACK_ENV}=1 and every placement group is STRICT_PACK"


@dataclass(frozen=True)
class NodeShape:
    """What one node of a pool offers to Ray."""

    gpus: int
    cpus: float
    memory_gib: float | None = None  # None: memory is not a constraint (not reserved by the replicas)


@dataclass(frozen=True)
class Replica:
    """What one replica reserves (its Ray resource request; a placement group's bundles summed)."""

    name: str
    gpus: float = 0.0
    cpus: float = 0.0
    memory_gib: float = 0.0
    placement_group: bool = False  # its own placement group (ray.serve.llm): placed by the PG scheduler

    def __post_init__(self) -> None:
        if self.gpus >= 1 and abs(self.gpus - round(self.gpus)) > _EPS:
            # Ray refuses it too (TryAllocate above): no node could ever hold this replica.
            raise ValueError(f"{self.name}: num_gpus {self.gpus} >= 1 must be a whole number")


@dataclass
class Node:
    shape: NodeShape
    gpu_free: list[float]
    cpu_free: float
    mem_free: float | None
    replicas: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, shape: NodeShape) -> Node:
        return cls(shape, [1.0] * shape.gpus, float(shape.cpus), shape.memory_gib)

    def gpu_slots(self, demand: float) -> list[int] | None:
        """The GPU instances a demand would take here (Ray's rule), or None if it does not fit."""
        if demand <= _EPS:
            return []
        if demand >= 1:
            whole = [i for i, free in enumerate(self.gpu_free) if free >= 1 - _EPS]
            n = round(demand)
            return whole[:n] if len(whole) >= n else None
        fits = [i for i, free in enumerate(self.gpu_free) if free >= demand - _EPS]
        return [min(fits, key=lambda i: self.gpu_free[i] - demand)] if fits else None

    def fits(self, r: Replica) -> bool:
        if r.cpus > self.cpu_free + _EPS:
            return False
        if self.mem_free is not None and r.memory_gib > self.mem_free + _EPS:
            return False
        return self.gpu_slots(r.gpus) is not None

    def place(self, r: Replica) -> bool:
        if not self.fits(r):
            return False
        share = 1.0 if r.gpus >= 1 else r.gpus
        for i in self.gpu_slots(r.gpus) or []:
            self.gpu_free[i] -= share
        self.cpu_free -= r.cpus
        if self.mem_free is not None:
            self.mem_free -= r.memory_gib
        self.replicas.append(r.name)
        return True

    def left_after(self, r: Replica) -> tuple[float, float, float]:
        """Room left if `r` came here, in Serve's order of importance (Resources.__lt__: GPU, CPU, memory)."""
        return (sum(self.gpu_free) - r.gpus, self.cpu_free - r.cpus, (self.mem_free or 0.0) - r.memory_gib)

    def least_resource_score(self, r: Replica) -> float:
        """Ray's LeastResourceScorer::Score (scorer.cc): per requested resource (available - requested) /
        available, summed; an empty node scores highest."""
        score = 0.0
        for requested, available in ((r.gpus, sum(self.gpu_free)), (r.cpus, self.cpu_free),
                                     (r.memory_gib, self.mem_free or 0.0)):
            if requested > _EPS and available > _EPS:
                score += (available - requested) / available
        return score

    @property
    def gpus_touched(self) -> int:
        """GPUs with anything on them: a GPU shared by fractions is still a whole GPU."""
        return sum(1 for free in self.gpu_free if free < 1 - _EPS)


@dataclass
class Packing:
    nodes: list[Node]
    unplaced: list[Replica]
    strategy: str = "first-fit decreasing"

    @property
    def gpus_touched(self) -> int:
        return sum(n.gpus_touched for n in self.nodes)

    @property
    def gpus_requested(self) -> float:
        return sum(n.shape.gpus - sum(n.gpu_free) for n in self.nodes)

    @property
    def cpus_requested(self) -> float:
        return sum(n.shape.cpus - n.cpu_free for n in self.nodes)


def _key(r: Replica) -> tuple[float, float, float]:
    return (-r.gpus, -r.cpus, -r.memory_gib)


def pack(replicas: Iterable[Replica], shape: NodeShape, max_nodes: int | None = None,
         min_nodes: int = 0) -> Packing:
    """First-fit decreasing: largest replica first (GPUs, then CPUs, then memory), on the first node with room;
    a new node when none has room and the pool may still grow. The autoscaler's bin pack (its launch estimate)
    and the fewest nodes any placement can use; not where Serve puts replicas (see `place`). `min_nodes` nodes
    exist (and are paid for) even if empty. Replicas that fit nowhere (pool at max_nodes, or bigger than a node)
    are returned as unplaced."""
    nodes = [Node.empty(shape) for _ in range(min_nodes)]
    unplaced: list[Replica] = []
    for r in sorted(replicas, key=_key):
        if not any(n.place(r) for n in nodes):
            _on_a_new_node(r, nodes, unplaced, shape, max_nodes)
    return Packing(nodes, unplaced)


def _on_a_new_node(r: Replica, nodes: list[Node], unplaced: list[Replica], shape: NodeShape,
                   max_nodes: int | None) -> None:
    """A replica no running node holds: on a new node (the autoscaler's) while the pool may grow, else unplaced
    (also when it is bigger than a whole node)."""
    if max_nodes is not None and len(nodes) >= max_nodes:
        unplaced.append(r)
        return
    fresh = Node.empty(shape)
    if fresh.place(r):
        nodes.append(fresh)
    else:
        unplaced.append(r)


def serve_pack(replicas: Iterable[Replica], shape: NodeShape, max_nodes: int | None = None,
               min_nodes: int = 0) -> Packing:
    """Serve's pack strategy (module docstring, 2.): largest first (a stable sort, as Python's `sorted(...,
    reverse=True)` in _schedule_with_pack_strategy), best fit among nodes running a replica, then among idle
    nodes, else a new node (the autoscaler's) while the pool may grow."""
    nodes = [Node.empty(shape) for _ in range(min_nodes)]
    unplaced: list[Replica] = []
    for r in sorted(replicas, key=_key):
        busy = [n for n in nodes if n.replicas and n.fits(r)]
        idle = [n for n in nodes if not n.replicas and n.fits(r)]
        candidates = busy or idle
        if candidates:
            min(candidates, key=lambda n: n.left_after(r)).place(r)  # min(): the first on a tie, as Ray's `<`
        else:
            _on_a_new_node(r, nodes, unplaced, shape, max_nodes)
    return Packing(nodes, unplaced, PACK)


def serve_spread(replicas: Iterable[Replica], shape: NodeShape, max_nodes: int | None = None,
                 min_nodes: int = 0) -> Packing:
    """Serve's default (module docstring, 2.): replicas in submission order; a plain replica on the next node
    round-robin with room now, a placement-group replica on the node that scores highest (the emptiest that
    holds it). What waits makes the autoscaler launch the nodes a bin pack of it needs (`pack`), and everything
    still waiting spreads again over all nodes with room; until all are placed or the pool is at max_nodes."""
    nodes = [Node.empty(shape) for _ in range(min_nodes)]
    nxt = 0  # SpreadSchedulingPolicy's spread_scheduling_next_index_
    waiting = list(replicas)
    while waiting:
        still: list[Replica] = []
        for r in waiting:
            if r.placement_group:
                room = [n for n in nodes if n.fits(r)]
                if room:  # max() keeps the first of equal scores, as GetBestNode's strict `<`
                    max(room, key=lambda n: n.least_resource_score(r)).place(r)
                else:
                    still.append(r)
                continue
            for i in range(len(nodes)):
                j = (nxt + i) % len(nodes)
                if nodes[j].place(r):
                    nxt = (j + 1) % len(nodes)
                    break
            else:
                still.append(r)
        if not still:
            break
        room_left = None if max_nodes is None else max(max_nodes - len(nodes), 0)
        launched = len(pack(still, shape, max_nodes=room_left).nodes)
        if launched == 0:  # the pool is at max_nodes, or what waits is bigger than a node
            return Packing(nodes, still, SPREAD)
        nodes += [Node.empty(shape) for _ in range(launched)]
        waiting = still
    return Packing(nodes, [], SPREAD)


def place(replicas: Iterable[Replica], shape: NodeShape, strategy: Strategy, max_nodes: int | None = None,
          min_nodes: int = 0) -> Packing:
    """Where Serve's `strategy` puts `replicas` (in Serve's submission order) on a pool of `shape` nodes."""
    if strategy == PACK:
        return serve_pack(replicas, shape, max_nodes, min_nodes)
    if strategy == SPREAD:
        return serve_spread(replicas, shape, max_nodes, min_nodes)
    raise ValueError(f"strategy must be {SPREAD!r} or {PACK!r}, not {strategy!r}")


def most_that_fit(others: list[Replica], extra: Replica, shape: NodeShape, max_nodes: int,
                  strategy: Strategy = SPREAD, min_nodes: int = 0, limit: int = 256) -> int:
    """How many replicas like `extra` the pool's `max_nodes` nodes hold beside `others` (placed first, as they
    run already) under Serve's `strategy`: the count before the first one that does not fit (0 if `others` alone
    already overflow; at most `limit`)."""
    n = 0
    while n < limit and not place(others + [extra] * (n + 1), shape, strategy, max_nodes, min_nodes).unplaced:
        n += 1
    return n

