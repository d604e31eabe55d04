"""Kubernetes node sizes: what a pod can request on a node (its allocatable), and the node types the docs name.

A pod is scheduled against a node's *allocatable* CPU and memory: the machine's capacity less what the kubelet
reserves for the OS and Kubernetes daemons, less the memory eviction threshold. A worker group that requests a
share of the nominal machine memory (921 GiB of "1024") never schedules on a node with ~660 GiB allocatable, so
the chart sizes its requests from the allocatable computed here (or given in the profile).

Reservation formulas, as the providers document them:
- GKE: https://cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes ("Memory and CPU reservations"):
  memory 255 MiB on machines under 1 GiB, else 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of
  the next 112, 2% above 128 GiB; CPU 6% of the first core, 1% of the next, 0.5% of the next 2, 0.25% above 4
  cores; eviction threshold 100 MiB.
- EKS (amazon-eks-ami / nodeadm): kube-reserved memory 255 MiB + 11 MiB per pod the node may run (max pods from
  eni-max-pods.txt), CPU by the same steps as GKE; eviction threshold 100 MiB.
Machine sizes are the providers' published figures (GCE lists GB, EKS GiB; both are taken as GiB, and the
chart's `workerGroups.nodeShare` leaves headroom for the kernel's own memory and for DaemonSets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EVICTION_GIB = 100 / 1024
_CPU_STEPS = ((1.0, 0.06), (1.0, 0.01), (2.0, 0.005), (float("inf"), 0.0025))
_GKE_MEMORY_STEPS = ((4.0, 0.25), (4.0, 0.20), (8.0, 0.10), (112.0, 0.06), (float("inf"), 0.02))


def _tiered(amount: float, steps: tuple[tuple[float, float], ...]) -> float:
    reserved, left = 0.0, amount
    for size, share in steps:
        take = min(left, size)
        reserved += take * share
        left -= take
        if left <= 0:
            break
    return reserved


def reserved_cpus(cpus: float) -> float:
    """CPU cores the kubelet reserves on a node with `cpus` cores (GKE and EKS use the same steps)."""
    return _tiered(cpus, _CPU_STEPS)


def gke_allocatable(cpus: float, memory_gib: float) -> tuple[float, float]:
    """(CPU cores, memory GiB) a GKE Standard node of this size offers to pods."""
    reserved_mem = 255 / 1024 if memory_gib < 1 else _tiered(memory_gib, _GKE_MEMORY_STEPS)
    return cpus - reserved_cpus(cpus), memory_gib - reserved_mem - EVICTION_GIB


def eks_allocatable(cpus: float, memory_gib: float, max_pods: int) -> tuple[float, float]:
    """(CPU cores, memory GiB) an EKS node (amazon-eks-ami defaults) of this size offers to pods."""
    reserved_mem = (255 + 11 * max_pods) / 1024
    return cpus - reserved_cpus(cpus), memory_gib - reserved_mem - EVICTION_GIB


@dataclass(frozen=True)
class NodeType:
    """One machine type a pool may run on, as its provider publishes it."""

    name: str
    provider: Literal["gke", "eks"]
    cpus: int
    memory_gib: float
    gpus: int
    gpu_type: str | None
    max_pods: int = 110  # EKS only: what eni-max-pods.txt lists for the type (it sizes kube-reserved memory)

    def allocatable(self) -> tuple[float, float]:
        if self.provider == "gke":
            return gke_allocatable(self.cpus, self.memory_gib)
        return eks_allocatable(self.cpus, self.memory_gib, self.max_pods)


# The machine types k8s/node-pools/README.md names for each pool (tests/k8s/test_podspec.py checks the README names
# the same ones and that every shipped profile's requests fit each of them). GCE: the accelerator-optimized and
# general-purpose machine tables; EC2: the accelerated-computing and general-purpose instance tables.
NODE_TYPES: dict[str, NodeType] = {
    n.name: n
    for n in (
        NodeType("e2-standard-16", "gke", 16, 64, 0, None),
        NodeType("m6i.4xlarge", "eks", 16, 64, 0, None, max_pods=234),
        NodeType("a2-ultragpu-8g", "gke", 96, 1360, 8, "A100-80G"),
        NodeType("a2-ultragpu-2g", "gke", 24, 340, 2, "A100-80G"),
        NodeType("p4de.24xlarge", "eks", 96, 1152, 8, "A100-80G", max_pods=737),
        NodeType("a2-highgpu-8g", "gke", 96, 680, 8, "A100-40G"),
        NodeType("p4d.24xlarge", "eks", 96, 1152, 8, "A100-40G", max_pods=737),
        NodeType("a3-highgpu-8g", "gke", 208, 1872, 8, "H100"),
        NodeType("p5.48xlarge", "eks", 192, 2048, 8, "H100", max_pods=100),
        NodeType("a3-highgpu-1g", "gke", 26, 234, 1, "H100"),
        NodeType("g2-standard-48", "gke", 48, 192, 4, "L4"),
        NodeType("g2-standard-24", "gke", 24, 96, 2, "L4"),
        NodeType("g6.12xlarge", "eks", 48, 192, 4, "L4", max_pods=234),
    )
}

# Pool name (as the shipped profiles name pools) -> the machine types documented for it.
POOL_NODE_TYPES: dict[str, tuple[str, ...]] = {
    "cpu": ("e2-standard-16", "m6i.4xlarge"),
    "a100-80g": ("a2-ultragpu-8g", "p4de.24xlarge"),
    "a100-40g": ("a2-highgpu-8g", "p4d.24xlarge"),
    "h100-80g": ("a3-highgpu-8g", "p5.48xlarge"),
    "h100-x1": ("a3-highgpu-1g",),
    "l4": ("g2-standard-48", "g6.12xlarge"),
    # the heterogeneous profile a100-80g-l4: two-GPU machines, pools named apart so a node label means one shape
    "a100-80g-x2": ("a2-ultragpu-2g",),
    "l4-x2": ("g2-standard-24",),
}
