"""A simulated day-2 run, offline: render two versions of a release and say what KubeRay's controller would do.

`helm upgrade` from v1 to v2 of the chart's values changes the RayService; whether that starts a new Ray cluster,
updates the running one, or silently does nothing is decided by KubeRay's RayService controller, not by Helm. This
module restates those rules from KubeRay v1.7.0's source and applies them to the two rendered RayServices:

* **The spec hash** (utils/util.go GenerateHashWithoutReplicasAndWorkersToDelete; the controller's copy,
  rayservice_controller.go generateHashWithoutReplicasAndWorkersToDelete, ~1409-1440 in the issue's reading): a
  hash of `spec.rayClusterConfig` with each worker group's `replicas`, `minReplicas`, `maxReplicas` and
  `scaleStrategy.workersToDelete` blanked. Only a change outside those fields is a cluster change.
* **New cluster or not** (rayservice_controller.go shouldPrepareNewCluster): equal hash → no new cluster; equal
  once the worker groups appended at the end are dropped → the active cluster is updated in place (shouldUpdateCluster
  / modifyRayCluster); otherwise a new cluster only if isZeroDowntimeUpgradeEnabled (~868-888): type NewCluster →
  yes; NewClusterWithIncrementalUpgrade → yes with the RayServiceIncrementalUpgrade gate, else no; None → no; no
  type → the operator's ENABLE_ZERO_DOWNTIME (default true).
* **serveConfigV2** is reconciled on its own (reconcileServe): a changed Serve config is applied in place to the
  active cluster when no new cluster is coming, or deployed on the new cluster.
* **Services** (common/service.go): `<name>-head-svc` always (BuildHeadServiceForRayService), `<name>-serve-svc`
  except in incremental mode (BuildServeService names the Service after each RayCluster there, ignoring
  spec.serveService), then the Gateway `<name>-gateway` and HTTPRoute `<name>-httproute` (createGateway /
  createHTTPRoute). A rollout moves the stable Services' `ray.io/cluster` selector to the new cluster once its
  Serve apps are ready (reconcileServicesToReadyCluster).
* **Head Service endpoints**: the selector of `<name>-head-svc` is HeadServiceLabels (service.go) with no labels
  passed in; the head pod's labels are labelPod (common/pod.go), where a template label overrides KubeRay's own for
  every key but ray.io/node-type, ray.io/group and ray.io/cluster (KubeRay issue #2648).

Everything here is a model of the source, checked against the source's text, not against a running operator:
docs/kubernetes.md lists it as unverified on a real cluster.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ops import chart as ch

# Worker-group fields KubeRay leaves out of the spec hash (GenerateHashWithoutReplicasAndWorkersToDelete).
MUTED_GROUP_FIELDS = ("replicas", "minReplicas", "maxReplicas")
INCREMENTAL = "NewClusterWithIncrementalUpgrade"
GATE = "RayServiceIncrementalUpgrade"
# utils.ApplicationName / utils.ComponentName: the values KubeRay's head Service selector requires.
KUBERAY_APP, KUBERAY_COMPONENT = "kuberay", "kuberay-operator"
UNOVERRIDABLE_POD_LABELS = ("ray.io/node-type", "ray.io/group", "ray.io/cluster")


def muted_cluster_spec(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """`rayClusterConfig` as KubeRay hashes it: replicas, min/max and workersToDelete of every group blanked."""
    spec = copy.deepcopy(dict(cluster))
    for g in spec.get("workerGroupSpecs") or []:
        for k in MUTED_GROUP_FIELDS:
            g.pop(k, None)
        (g.get("scaleStrategy") or {}).pop("workersToDelete", None)
    spec.pop("upgradeStrategy", None)  # the RayCluster's own strategy, muted as well (util.go)
    return spec


def spec_hash(cluster: Mapping[str, Any]) -> str:
    """A stable digest of the muted spec (KubeRay hashes its JSON; any injective encoding decides equality)."""
    return json.dumps(muted_cluster_spec(cluster), sort_keys=True, separators=(",", ":"))


def zero_downtime(strategy: str | None, gates: Mapping[str, bool], zero_downtime_env: bool = True) -> bool:
    """rayservice_controller.go isZeroDowntimeUpgradeEnabled."""
    if strategy is None:
        return zero_downtime_env
    if gates.get(GATE, False):
        return strategy in ("NewCluster", INCREMENTAL)
    return strategy == "NewCluster"


def incremental(rs: Mapping[str, Any]) -> bool:
    """utils.IsIncrementalUpgradeEnabled: the type alone (the gate decides only whether it rolls out)."""
    return ((rs["spec"].get("upgradeStrategy") or {}).get("type")) == INCREMENTAL


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths where `a` and `b` differ (lists by index; groups by position, as KubeRay compares them)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def _group_paths(cluster: Mapping[str, Any]) -> dict[str, str]:
    return {f"workerGroupSpecs[{i}]": g.get("groupName", str(i))
            for i, g in enumerate(cluster.get("workerGroupSpecs") or [])}


def services(rs: Mapping[str, Any]) -> dict[str, str]:
    """The Services (and Gateway API objects) KubeRay maintains for this RayService, name → what it is."""
    name = rs["metadata"]["name"]
    out = {f"{name}-head-svc": "Service: the active cluster's head (dashboard 8265, client 10001, GCS)"}
    if incremental(rs):
        out[f"{name}-gateway"] = "Gateway (HTTP, port 80): the entry point in incremental mode"
        out[f"{name}-httproute"] = "HTTPRoute: weights between <raycluster>-serve-svc of the active and pending cluster"
        out["<raycluster>-serve-svc"] = "Service per RayCluster (serve port), named after each cluster"
    else:
        serve = ((rs["spec"].get("serveService") or {}).get("metadata") or {}).get("name") or f"{name}-serve-svc"
        out[serve] = "Service: the active cluster's Serve proxies (ray.io/serve=true)"
    return out


def ingress_backends(objects: list[dict[str, Any]]) -> set[str]:
    return {p["backend"]["service"]["name"] for o in objects if o.get("kind") == "Ingress"
            for r in o["spec"].get("rules") or [] for p in (r.get("http") or {}).get("paths") or []}


def head_pod_labels(rs: Mapping[str, Any], cluster_name: str) -> dict[str, str]:
    """The labels KubeRay puts on the head pod of `cluster_name` (common/pod.go DefaultHeadPodTemplate → labelPod)."""
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]
    given = {**((head.get("template") or {}).get("metadata") or {}).get("labels", {}), **(head.get("labels") or {})}
    labels = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster_name, "ray.io/node-type": "head",
              "ray.io/group": "headgroup", "ray.io/identifier": f"{cluster_name}-head"[:63],
              "app.kubernetes.io/name": KUBERAY_APP, "app.kubernetes.io/created-by": KUBERAY_COMPONENT}
    labels.update({k: v for k, v in given.items() if k not in UNOVERRIDABLE_POD_LABELS})
    return labels


def head_service_selector(cluster_name: str) -> dict[str, str]:
    """Selector of `<name>-head-svc` pointed at `cluster_name` (service.go HeadServiceLabels, no labels passed)."""
    return {"ray.io/cluster": cluster_name, "ray.io/node-type": "head",
            "ray.io/identifier": f"{cluster_name}-head"[:63],
            "app.kubernetes.io/name": KUBERAY_APP, "app.kubernetes.io/created-by": KUBERAY_COMPONENT}


def head_service_has_endpoints(rs: Mapping[str, Any]) -> bool:
    cluster = f"{rs['metadata']['name']}-abcde"  # KubeRay's generated cluster name: <rayservice>-<random>
    pod = head_pod_labels(rs, cluster)
    return all(pod.get(k) == v for k, v in head_service_selector(cluster).items())


@dataclass
class Upgrade:
    """What KubeRay would do on `helm upgrade` from v1 to v2 (see the module doc for the source of each rule)."""

    strategy: str | None
    cluster_changes: list[str] = field(default_factory=list)  # rayClusterConfig paths that count for the hash
    ignored_changes: list[str] = field(default_factory=list)  # replicas/min/max: not in the hash, not applied
    cluster_action: str = "none"  # none | new-cluster | update-in-place | not-rolled-out
    serve_config: str = "unchanged"  # unchanged | in-place | on-new-cluster
    services: dict[str, str] = field(default_factory=dict)
    service_changes: list[str] = field(default_factory=list)
    ingress_backends: list[str] = field(default_factory=list)
    ingress_unmaintained: list[str] = field(default_factory=list)  # backends KubeRay maintains no Service for
    head_service_endpoints: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def rollout(self) -> bool:
        return self.cluster_action == "new-cluster"


def upgrade(v1: list[dict[str, Any]], v2: list[dict[str, Any]], gates: Mapping[str, bool],
            zero_downtime_env: bool = True) -> Upgrade:
    """Decide KubeRay's reaction to replacing the objects `v1` with `v2` (both `helm template` output)."""
    (rs1,) = [o for o in v1 if o.get("kind") == "RayService"]
    (rs2,) = [o for o in v2 if o.get("kind") == "RayService"]
    c1, c2 = rs1["spec"]["rayClusterConfig"], rs2["spec"]["rayClusterConfig"]
    strategy = (rs2["spec"].get("upgradeStrategy") or {}).get("type")
    up = Upgrade(strategy=strategy)
    up.cluster_changes = _diff(muted_cluster_spec(c1), muted_cluster_spec(c2))
    up.ignored_changes = [p for p in _diff(c1, c2) if p not in up.cluster_changes]
    names = _group_paths(c2)
    up.cluster_changes = [_named(p, names) for p in up.cluster_changes]
    up.ignored_changes = [_named(p, names) for p in up.ignored_changes]

    if spec_hash(c1) == spec_hash(c2):
        up.cluster_action = "none"
    elif _only_groups_appended(c1, c2):
        up.cluster_action = "update-in-place"
        up.notes.append("new worker groups appended at the end: KubeRay adds them to the active cluster "
                        "(shouldUpdateCluster, isClusterSpecHashEqual partial)")
    elif zero_downtime(strategy, gates, zero_downtime_env):
        up.cluster_action = "new-cluster"
    else:
        up.cluster_action = "not-rolled-out"
        why = ("upgradeStrategy None" if strategy == "None" else
               f"{INCREMENTAL} with the {GATE} gate off" if strategy == INCREMENTAL else
               "ENABLE_ZERO_DOWNTIME=false on the operator")
        up.notes.append(f"{why}: the cluster-spec change is never applied (isZeroDowntimeUpgradeEnabled false; "
                        "shouldUpdateCluster only updates in place for appended groups)")
    if up.ignored_changes:
        up.notes.append("replicas/minReplicas/maxReplicas changes are outside KubeRay's spec hash: no new cluster, "
                        "and the active RayCluster keeps its old bounds (shouldUpdateCluster: equal hash → no update)"
                        " until a cluster change rolls out")

    if rs1["spec"].get("serveConfigV2") != rs2["spec"].get("serveConfigV2"):
        up.serve_config = "on-new-cluster" if up.rollout else "in-place"

    up.services = services(rs2)
    old, new = services(rs1), up.services
    up.service_changes = [f"{n}: created" for n in new if n not in old] + \
                         [f"{n}: no longer maintained" for n in old if n not in new]
    if up.rollout:
        for n in new:
            if not n.startswith("<") and n.endswith("-svc"):
                up.service_changes.append(f"{n}: selector ray.io/cluster moves to the new cluster once its Serve "
                                          "apps are ready")
        if incremental(rs2):
            up.service_changes.append(f"{rs2['metadata']['name']}-httproute: traffic shifts by stepSizePercent "
                                      "every intervalSeconds to the new cluster's <raycluster>-serve-svc")
    backends = sorted(ingress_backends(v2))
    up.ingress_backends = backends
    up.ingress_unmaintained = [b for b in backends if b not in new]
    up.head_service_endpoints = head_service_has_endpoints(rs2)
    return up


def _named(path: str, groups: Mapping[str, str]) -> str:
    for prefix, name in groups.items():
        if path.startswith(prefix):
            return f"workerGroupSpecs[{name}]{path[len(prefix):]}"
    return path


def _only_groups_appended(c1: Mapping[str, Any], c2: Mapping[str, Any]) -> bool:
    g1, g2 = c1.get("workerGroupSpecs") or [], c2.get("workerGroupSpecs") or []
    if len(g2) <= len(g1):
        return False
    return spec_hash(c1) == spec_hash({**c2, "workerGroupSpecs": g2[:len(g1)]})


def render(profile: str | None = None, values_files: tuple[Path, ...] = (),
           sets: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One version of the release (`helm template` with these values)."""
    return ch.template(profile=profile, values_files=values_files, sets=sets)


def report(up: Upgrade) -> str:
    lines = [f"upgrade strategy: {up.strategy}", f"cluster: {up.cluster_action}"
             + (" (a new RayCluster; traffic switches when it is ready)" if up.rollout else "")]
    if up.cluster_changes:
        lines.append("  changes KubeRay counts: " + ", ".join(up.cluster_changes[:12])
                     + (f" (+{len(up.cluster_changes) - 12} more)" if len(up.cluster_changes) > 12 else ""))
    if up.ignored_changes:
        lines.append("  changes KubeRay ignores: " + ", ".join(up.ignored_changes))
    lines.append(f"serve config: {up.serve_config}")
    lines.append("services KubeRay maintains: " + ", ".join(up.services))
    lines += [f"  {c}" for c in up.service_changes]
    if up.ingress_backends:
        lines.append("ingress points at: " + ", ".join(up.ingress_backends)
                     + (f" (NOT maintained by KubeRay: {', '.join(up.ingress_unmaintained)})"
                        if up.ingress_unmaintained else " (maintained)"))
    if not up.head_service_endpoints:
        lines.append("head Service: NO endpoints (the head pod's labels do not match KubeRay's selector)")
    lines += [f"note: {n}" for n in up.notes]
    return "\n".join(lines)


def as_json(up: Upgrade) -> str:
    return json.dumps({**asdict(up), "rollout": up.rollout}, indent=2)
