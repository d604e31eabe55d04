"""Pack Serve replicas onto the nodes of one pool the way Ray's scheduler hands out GPUs: first-fit decreasing.

Summing fractional GPUs is wrong: Ray keeps one instance per GPU and, for a unit-instance resource like GPU,
allocates a fractional demand (0 < d < 1) from ONE instance (the best fit: least left over) and a whole demand
(d >= 1, which must be an integer) from that many fully free instances (ray-project/ray,
src/ray/common/scheduling/resource_instance_set.cc, NodeResourceInstanceSet::TryAllocate, commit 0678da2031da).
So a replica of 0.55 GPU leaves 0.45 on its GPU that only a replica of <= 0.45 can use: 36 such replicas need 36
GPUs, not 19.8. This module models exactly that, per node (GPUs as instances, CPUs and memory as totals), and
places replicas largest first, each on the first node that fits (opening a node when none does, up to the pool's
maximum). A replica is never split across nodes: a tensor-parallel group belongs on one node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

_EPS = 1e-9


@dataclass(frozen=True)
class NodeShape:
    """What one node of a pool offers to Ray."""

    gpus: int
    cpus: float
    memory_gib: float | None = None  # None: memory is not a constraint (not reserved by the replicas)


@dataclass(frozen=True)
class Replica:
    """What one replica reserves (its Ray resource request)."""

    name: str
    gpus: float = 0.0
    cpus: float = 0.0
    memory_gib: float = 0.0

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

    def place(self, r: Replica) -> bool:
        if r.cpus > self.cpu_free + _EPS:
            return False
        if self.mem_free is not None and r.memory_gib > self.mem_free + _EPS:
            return False
        slots = self.gpu_slots(r.gpus)
        if slots is None:
            return False
        share = 1.0 if r.gpus >= 1 else r.gpus
        for i in slots:
            self.gpu_free[i] -= share
        self.cpu_free -= r.cpus
        if self.mem_free is not None:
            self.mem_free -= r.memory_gib
        self.replicas.append(r.name)
        return True

    @property
    def gpus_touched(self) -> int:
        """GPUs with anything on them: a GPU shared by fractions is still a whole GPU."""
        return sum(1 for free in self.gpu_free if free < 1 - _EPS)


@dataclass
class Packing:
    nodes: list[Node]
    unplaced: list[Replica]

    @property
    def gpus_touched(self) -> int:
        return sum(n.gpus_touched for n in self.nodes)

    @property
    def gpus_requested(self) -> float:
        return sum(n.shape.gpus - sum(n.gpu_free) for n in self.nodes)

    @property
    def cpus_requested(self) -> float:
        return sum(n.shape.cpus - n.cpu_free for n in self.nodes)


def _key(r: Replica) -> tuple[float, float, float, str]:
    return (-r.gpus, -r.cpus, -r.memory_gib, r.name)


def pack(replicas: Iterable[Replica], shape: NodeShape, max_nodes: int | None = None,
         min_nodes: int = 0) -> Packing:
    """First-fit decreasing: largest replica first (GPUs, then CPUs, then memory), on the first node with room;
    a new node when none has room and the pool may still grow. `min_nodes` nodes exist (and are paid for) even
    if empty. Replicas that fit nowhere (pool at max_nodes, or bigger than a node) are returned as unplaced."""
    nodes = [Node.empty(shape) for _ in range(min_nodes)]
    unplaced: list[Replica] = []
    for r in sorted(replicas, key=_key):
        if any(n.place(r) for n in nodes):
            continue
        if max_nodes is not None and len(nodes) >= max_nodes:
            unplaced.append(r)
            continue
        fresh = Node.empty(shape)
        if fresh.place(r):
            nodes.append(fresh)
        else:
            unplaced.append(r)  # bigger than a whole node
    return Packing(nodes, unplaced)


def most_that_fit(others: list[Replica], extra: Replica, shape: NodeShape, max_nodes: int,
                  limit: int = 256) -> int:
    """How many replicas like `extra` the pool's `max_nodes` nodes hold beside `others`: the count before the
    first one that does not pack (0 if `others` alone already overflow; at most `limit`)."""
    n = 0
    while n < limit and not pack(others + [extra] * (n + 1), shape, max_nodes).unplaced:
        n += 1
    return n
