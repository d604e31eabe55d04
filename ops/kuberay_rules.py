"""KubeRay 1.7's own validation and reconcile preconditions, checked offline on rendered objects.

The CRD schemas (ops/crdvalidate.py) say what the API server stores; the KubeRay operator then runs Go-side checks
the schema cannot express and marks the object failed (event `InvalidRayServiceSpec`, condition
`ValidationFailed`) without creating a single pod. Each rule below is one of those checks, re-stated in Python,
with the Go function it comes from. Input: rendered objects (dicts, as `helm template` / `kubectl kustomize`
print them); output: `Violation`s (rule id, object, message). Kinds other than RayService / RayCluster / RayJob
are ignored.

Sources (kuberay = github.com/ray-project/kuberay at v1.7.0, the release whose CRDs are in ../shared/crds; line
numbers are approximate, "~"; each rule's `source` names the Go function, its docstring the lines):
  V  = kuberay ray-operator/controllers/ray/utils/validation.go (ValidateRayClusterSpec, ValidateRayServiceSpec,
       ValidateClusterUpgradeOptions, ValidateRayJobSpec, validateDeletionConfiguration,
       validateWorkerGroupIdleTimeout ...)
  C  = kuberay ray-operator/controllers/ray/utils/constant.go (MaxRayClusterNameLength, RayContainerIndex ...)
  U  = kuberay ray-operator/controllers/ray/utils/util.go (IsAutoscalingEnabled, IsAutoscalingV2Enabled,
       IsGCSFaultToleranceEnabled)
  S  = kuberay ray-operator/controllers/ray/rayservice_controller.go (isZeroDowntimeUpgradeEnabled)
  F  = kuberay ray-operator/pkg/features/features.go (defaultFeatureGates, ~105-117)
  D  = kuberay ray-operator/config/crd/bases/ray.io_*.yaml (the defaults the API server fills in before KubeRay
       sees the object: minReplicas 0, maxReplicas 2147483647, maxSurgePercent 100)
  P  = kuberay ray-operator/controllers/ray/common/pod.go (updateRayStartParamsResources)
  R  = ray 2.60.0 python/ray/autoscaler/_private/kuberay/autoscaling_config.py (what the autoscaler reads)
A rule that needs the operator's feature gates takes them from `check(..., feature_gates=)`; a gate not given there
takes KubeRay v1.7.0's default (F), which is what a stock operator install runs with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

# F: defaultFeatureGates of KubeRay v1.7.0 (features.go ~105-117). Beta and on by default: RayJobDeletionPolicy (beta
# v1.6), RayMultiHostIndexing (beta v1.6), RayServiceIncrementalUpgrade (beta v1.7), beside RayClusterStatusConditions;
# the v1.6/v1.7 alpha gates are off. These are every gate v1.7.0 knows: the operator refuses to start with a gate
# name not in this map (k8s.io/component-base featuregate.Set: "unrecognized feature gate"), so operator values
# naming any other gate are wrong (tests/k8s/test_kuberay_rules.py checks k8s/kuberay/values.yaml against it).
DEFAULT_FEATURE_GATES: dict[str, bool] = {
    "RayClusterStatusConditions": True,
    "RayJobDeletionPolicy": True,
    "RayMultiHostIndexing": True,
    "RayServiceIncrementalUpgrade": True,
    "RayCronJob": False,
    "SidecarSubmitterRestart": False,
    "RayClusterNetworkPolicy": False,
    "GCSFaultToleranceEmbeddedStorage": False,
    "RayClusterMTLS": False,
    "RayClusterHistoryServer": False,
    "KubernetesWAS": False,
}

# D: the CRD defaults of WorkerGroupSpec.minReplicas / maxReplicas and ClusterUpgradeOptions.maxSurgePercent; the
# API server fills them in before the operator validates, so an unset field is compared as its default.
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 2**31 - 1
DEFAULT_MAX_SURGE_PERCENT = 100

# C: 63 - len("-serve-svc") = 53; RayService / RayJob names get 6 characters appended (GenerateRayClusterName).
MAX_RAYCLUSTER_NAME = 53
MAX_RAYSERVICE_NAME = MAX_RAYCLUSTER_NAME - 6
MAX_RAYJOB_NAME = MAX_RAYCLUSTER_NAME - 6
GENERATE_NAME_SUFFIX = 5  # the API server appends 5 random characters to metadata.generateName

KINDS = ("RayService", "RayCluster", "RayJob")
UPGRADE_TYPES = ("NewClusterWithIncrementalUpgrade", "NewCluster", "None")


@dataclass(frozen=True)
class Violation:
    rule: str
    obj: str  # "Kind/name"
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Target:
    """One KubeRay object, with its RayCluster spec found where each kind keeps it."""

    kind: str
    obj: dict[str, Any]
    gates: Mapping[str, bool]

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata") or {}
        return meta.get("name") or meta.get("generateName") or ""

    @property
    def annotations(self) -> dict[str, str]:
        return (self.obj.get("metadata") or {}).get("annotations") or {}

    @property
    def spec(self) -> dict[str, Any]:
        return self.obj.get("spec") or {}

    def gate(self, name: str) -> bool:
        """The operator's feature gate `name`: as given to `check`, else KubeRay v1.7.0's default (F)."""
        return bool(self.gates.get(name, DEFAULT_FEATURE_GATES.get(name, False)))

    @property
    def cluster(self) -> dict[str, Any] | None:
        """The RayClusterSpec: RayService.spec.rayClusterConfig, RayJob.spec.rayClusterSpec, RayCluster.spec."""
        if self.kind == "RayService":
            return self.spec.get("rayClusterConfig") or {}
        if self.kind == "RayJob":
            return self.spec.get("rayClusterSpec")
        return self.spec


Check = Callable[[Target], Iterable[str]]


@dataclass(frozen=True)
class Rule:
    id: str
    kinds: tuple[str, ...]
    source: str
    check: Check


RULES: list[Rule] = []


def rule(rule_id: str, kinds: tuple[str, ...], source: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        RULES.append(Rule(rule_id, kinds, source, fn))
        return fn

    return register


# ---- helpers -----------------------------------------------------------------------------------------------

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_GO_DURATION = re.compile(r"^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")


def _groups(cluster: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("Head", headGroupSpec), then (groupName, workerGroupSpec) — the names KubeRay's messages use."""
    yield "Head", cluster.get("headGroupSpec") or {}
    for wg in cluster.get("workerGroupSpecs") or []:
        yield wg.get("groupName", "?"), wg


def _containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return ((group.get("template") or {}).get("spec") or {}).get("containers") or []


def _ray_container(group: dict[str, Any]) -> dict[str, Any]:
    """C: RayContainerIndex = 0 — KubeRay (and Ray's autoscaler, R) treat the first container as Ray's."""
    cs = _containers(group)
    return cs[0] if cs else {}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e.get("name"): e for e in container.get("env") or []}


def _autoscaling(cluster: dict[str, Any]) -> bool:
    """U: IsAutoscalingEnabled — enableInTreeAutoscaling is set and true."""
    return cluster.get("enableInTreeAutoscaling") is True


def _autoscaler_v2(cluster: dict[str, Any]) -> bool:
    """What validateWorkerGroupIdleTimeout (V ~1016-1025) accepts as "autoscaler v2 is on": U IsAutoscalingV2Enabled
    (autoscalerOptions.version is v2), or the head's Ray container has RAY_enable_autoscaler_v2 "1" or "true"."""
    if (cluster.get("autoscalerOptions") or {}).get("version") == "v2":
        return True
    var = _env(_ray_container(cluster.get("headGroupSpec") or {})).get("RAY_enable_autoscaler_v2") or {}
    return str(var.get("value", "")) in ("1", "true")


def _gcs_ft(cluster: dict[str, Any], annotations: Mapping[str, str]) -> bool:
    """U: IsGCSFaultToleranceEnabled — annotation ray.io/ft-enabled "true" or gcsFaultToleranceOptions set."""
    return str(annotations.get("ray.io/ft-enabled", "")).lower() == "true" or bool(
        cluster.get("gcsFaultToleranceOptions") is not None)


def _start_params(group: dict[str, Any]) -> dict[str, Any]:
    return group.get("rayStartParams") or {}


def is_quantity(value: Any) -> bool:
    """A Kubernetes resource quantity (resource.ParseQuantity's grammar, as the CRD's int-or-string pattern)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and bool(_QUANTITY.match(value))


def _version(text: str) -> tuple[int, ...] | None:
    m = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    return tuple(int(x or 0) for x in m.groups()) if m else None


def _int(value: Any) -> int | None:
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


# ---- metadata ----------------------------------------------------------------------------------------------

@rule("name-length", KINDS, "V ValidateRayClusterMetadata / ValidateRayServiceMetadata / ValidateRayJobMetadata")
def name_length(t: Target) -> Iterable[str]:
    """RayCluster ≤ 53 characters (its `-serve-svc` Service name must fit 63); RayService / RayJob ≤ 47, because
    the operator appends 6 characters to make the RayCluster's name. A generateName counts its 5 random ones."""
    limit = {"RayCluster": MAX_RAYCLUSTER_NAME, "RayService": MAX_RAYSERVICE_NAME, "RayJob": MAX_RAYJOB_NAME}[t.kind]
    meta = t.obj.get("metadata") or {}
    length = len(meta["name"]) if meta.get("name") else len(meta.get("generateName") or "") + GENERATE_NAME_SUFFIX
    if length > limit:
        yield f"{t.kind} name should be no more than {limit} characters (is {length})"


@rule("name-dns1035", KINDS, "V ValidateRay*Metadata (validation.IsDNS1035Label)")
def name_dns1035(t: Target) -> Iterable[str]:
    """The name must be a DNS-1035 label: lower-case alphanumerics and '-', starting with a letter."""
    meta = t.obj.get("metadata") or {}
    name = meta.get("name") or ((meta.get("generateName") or "") + "abcde")
    if not _DNS1035.match(name) or len(name) > 63:
        yield f"{t.kind} name {name!r} should be a valid DNS1035 label"


@rule("initializing-timeout", ("RayService",), "V ValidateRayServiceMetadata → validateInitializingTimeout")
def initializing_timeout(t: Target) -> Iterable[str]:
    """ray.io/initializing-timeout, when set, is a positive Go duration ("30m") or a positive integer of seconds."""
    raw = str(t.annotations.get("ray.io/initializing-timeout", "") or "")
    if not raw:
        return
    if re.fullmatch(r"[+-]?\d+", raw):
        if int(raw) <= 0:
            yield f"annotation ray.io/initializing-timeout must be a positive integer (seconds), got: {raw}"
    elif not _GO_DURATION.match(raw) or raw.startswith("-") or not re.search(r"[1-9]", raw):
        yield f"annotation ray.io/initializing-timeout has invalid format or is not positive: {raw}"


# ---- RayClusterSpec (also inside RayService and RayJob) ----------------------------------------------------

@rule("head-container", KINDS, "V ValidateRayClusterSpec")
def head_container(t: Target) -> Iterable[str]:
    """The head pod template has at least one container (the Ray container is containers[0])."""
    if t.cluster is not None and not _containers(t.cluster.get("headGroupSpec") or {}):
        yield "headGroupSpec should have at least one container"


@rule("worker-container", KINDS, "V ValidateRayClusterSpec")
def worker_container(t: Target) -> Iterable[str]:
    """Every worker group's pod template has at least one container."""
    for name, g in list(_groups(t.cluster or {}))[1:]:
        if not _containers(g):
            yield f"workerGroupSpec {name} should have at least one container"


@rule("worker-replicas", KINDS,
      "V ValidateRayClusterSpec, worker group loop (negative ~127-132, min > max ~133-137); D min/maxReplicas")
def worker_replicas(t: Target) -> Iterable[str]:
    """Every worker group's minReplicas and maxReplicas are non-negative (~127-132) and minReplicas ≤ maxReplicas
    (~133-137: "worker group %s has minReplicas %d greater than maxReplicas %d"). An unset field is the CRD
    default (D: min 0, max 2147483647), as the API server fills it in; with those defaults the "must set both when
    autoscaling is disabled" check just above (~124-126) cannot fire on a stored object."""
    for name, g in list(_groups(t.cluster or {}))[1:]:
        lo = _int(g.get("minReplicas", DEFAULT_MIN_REPLICAS))
        hi = _int(g.get("maxReplicas", DEFAULT_MAX_REPLICAS))
        if lo is not None and lo < 0:
            yield f"worker group {name} has negative minReplicas {lo}"
        if hi is not None and hi < 0:
            yield f"worker group {name} has negative maxReplicas {hi}"
        if lo is not None and hi is not None and lo > hi:
            yield f"worker group {name} has minReplicas {lo} greater than maxReplicas {hi}"


@rule("worker-idle-timeout", KINDS, "V validateWorkerGroupIdleTimeout (~1006-1027, called from ValidateRayClusterSpec)")
def worker_idle_timeout(t: Target) -> Iterable[str]:
    """A worker group's own idleTimeoutSeconds is non-negative and only allowed with autoscaler v2
    (autoscalerOptions.version v2, or RAY_enable_autoscaler_v2 "1"/"true" in the head): with v1, or with no
    version set, KubeRay rejects the whole object. The cluster-wide autoscalerOptions.idleTimeoutSeconds works
    with either version."""
    c = t.cluster or {}
    for name, g in list(_groups(c))[1:]:
        raw = g.get("idleTimeoutSeconds")
        if raw is None:
            continue
        secs = _int(raw)
        if secs is not None and secs < 0:
            yield f"worker group {name}: idleTimeoutSeconds must be non-negative, got {secs}"
        elif not _autoscaler_v2(c):
            yield (f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled; set "
                   ".spec.autoscalerOptions.version to 'v2' or drop the group's idleTimeoutSeconds")


@rule("group-resources-conflict", KINDS, "V validateRayGroupResources (called from ValidateRayClusterSpec)")
def group_resources_conflict(t: Target) -> Iterable[str]:
    """A group sets its Ray resources either in rayStartParams (num-cpus, num-gpus, memory, resources) or in the
    group's top-level `resources` map, never both: the operator rejects the whole object otherwise."""
    for name, g in _groups(t.cluster or {}):
        params = _start_params(g)
        in_params = [k for k in ("num-cpus", "num-gpus", "memory", "resources") if str(params.get(k, "")) != ""]
        if in_params and g.get("resources"):
            yield (f"resource fields should not be set in both rayStartParams ({', '.join(in_params)}) and "
                   f"Resources for {name} group; please use only one")


@rule("group-labels", KINDS, "V validateRayGroupLabels (called from ValidateRayClusterSpec)")
def group_labels(t: Target) -> Iterable[str]:
    """rayStartParams['labels'] is not allowed (use the group's `labels`), and every group label is a valid
    Kubernetes label (qualified-name key, label value)."""
    for name, g in _groups(t.cluster or {}):
        if "labels" in _start_params(g):
            yield f"rayStartParams['labels'] is not supported for {name} group; use the top-level Labels field"
        for key, val in (g.get("labels") or {}).items():
            prefix, _, local = str(key).rpartition("/")
            if (not _QUALIFIED_NAME.match(local) or len(local) > 63
                    or (prefix and (not _DNS1123_SUBDOMAIN.match(prefix) or len(prefix) > 253))):
                yield f"invalid label key for {name} group: {key!r}"
            if not _LABEL_VALUE.match(str(val)) or len(str(val)) > 63:
                yield f"invalid label value for key {key!r} in {name} group: {val!r}"


@rule("gcs-ft-annotation-and-options", KINDS, "V ValidateRayClusterSpec")
def gcs_ft_both(t: Target) -> Iterable[str]:
    """The legacy ray.io/ft-enabled annotation and gcsFaultToleranceOptions are never set together."""
    if t.cluster is not None and t.annotations.get("ray.io/ft-enabled") and \
            t.cluster.get("gcsFaultToleranceOptions") is not None:
        yield "ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set; use GcsFaultToleranceOptions"


@rule("redis-address-without-gcs-ft", KINDS, "V ValidateRayClusterSpec")
def redis_without_ft(t: Target) -> Iterable[str]:
    """RAY_REDIS_ADDRESS in the head's Ray container implicitly enables GCS FT: it needs gcsFaultToleranceOptions."""
    c = t.cluster
    if c is not None and not _gcs_ft(c, t.annotations) and \
            "RAY_REDIS_ADDRESS" in _env(_ray_container(c.get("headGroupSpec") or {})):
        yield "RAY_REDIS_ADDRESS is set but GcsFaultToleranceOptions is not; set GcsFaultToleranceOptions"


@rule("gcs-ft-legacy-settings", KINDS, "V ValidateRayClusterSpec")
def gcs_ft_legacy(t: Target) -> Iterable[str]:
    """With gcsFaultToleranceOptions, Redis is configured there only: no redis-password rayStartParam, no
    REDIS_PASSWORD / RAY_REDIS_ADDRESS env in the head, no ray.io/external-storage-namespace annotation."""
    c = t.cluster
    if c is None or c.get("gcsFaultToleranceOptions") is None:
        return
    head = c.get("headGroupSpec") or {}
    env = _env(_ray_container(head))
    if _start_params(head).get("redis-password"):
        yield "cannot set redis-password in rayStartParams with GcsFaultToleranceOptions (use its redisPassword)"
    for var in ("REDIS_PASSWORD", "RAY_REDIS_ADDRESS"):
        if var in env:
            yield f"cannot set {var} env var in the head Pod with GcsFaultToleranceOptions"
    if t.annotations.get("ray.io/external-storage-namespace"):
        yield "cannot set ray.io/external-storage-namespace with GcsFaultToleranceOptions (externalStorageNamespace)"


@rule("redis-username", KINDS, "V ValidateRayClusterSpec")
def redis_username(t: Target) -> Iterable[str]:
    """A Redis user name goes in gcsFaultToleranceOptions.redisUsername, not rayStartParams or REDIS_USERNAME."""
    c = t.cluster
    if c is None:
        return
    head = c.get("headGroupSpec") or {}
    if _start_params(head).get("redis-username") or "REDIS_USERNAME" in _env(_ray_container(head)):
        yield "cannot set redis username in rayStartParams or env; use GcsFaultToleranceOptions.RedisUsername"


@rule("suspended-worker-group", KINDS, "V ValidateRayClusterSpec")
def suspended_worker_group(t: Target) -> Iterable[str]:
    """A suspended worker group needs the RayJobDeletionPolicy gate (on by default in v1.7.0, F) and is not allowed
    with the autoscaler."""
    c = t.cluster or {}
    for name, g in list(_groups(c))[1:]:
        if g.get("suspend") is True:
            if not t.gate("RayJobDeletionPolicy"):
                yield f"worker group {name} can be suspended only when the RayJobDeletionPolicy feature gate is on"
            if _autoscaling(c):
                yield f"worker group {name} cannot be suspended with Autoscaler enabled"


@rule("autoscaler-v2-env", KINDS, "V ValidateRayClusterSpec")
def autoscaler_v2_env(t: Target) -> Iterable[str]:
    """RAY_enable_autoscaler_v2 in the head: not "1"/"true" without enableInTreeAutoscaling, and not together with
    autoscalerOptions.version (set only the latter)."""
    c = t.cluster
    if c is None:
        return
    env = _env(_ray_container(c.get("headGroupSpec") or {}))
    var = env.get("RAY_enable_autoscaler_v2")
    if var is None:
        return
    if not _autoscaling(c) and str(var.get("value", "")) in ("1", "true"):
        yield "RAY_enable_autoscaler_v2 cannot be set to true when enableInTreeAutoscaling is false"
    if _autoscaling(c) and (c.get("autoscalerOptions") or {}).get("version") is not None:
        yield "both .spec.autoscalerOptions.version and head env RAY_enable_autoscaler_v2 are set; use the former"


@rule("autoscaler-v2-restart-policy", KINDS, "V ValidateRayClusterSpec (IsAutoscalingV2Enabled)")
def autoscaler_v2_restart(t: Target) -> Iterable[str]:
    """With autoscaler v2 every Ray pod's restartPolicy is Never or unset (the autoscaler replaces pods)."""
    c = t.cluster or {}
    if not (_autoscaling(c) and (c.get("autoscalerOptions") or {}).get("version") == "v2"):
        return
    for name, g in _groups(c):
        policy = ((g.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in (None, "", "Never"):
            yield f"restartPolicy for {name} group should be Never or unset when using autoscaler V2 (is {policy})"


@rule("auth-ray-version", KINDS, "V ValidateRayClusterSpec (IsAuthEnabled)")
def auth_ray_version(t: Target) -> Iterable[str]:
    """authOptions.mode token needs rayVersion set, parseable, and ≥ 2.52.0."""
    c = t.cluster or {}
    if (c.get("authOptions") or {}).get("mode") != "token":
        return
    ver = _version(c.get("rayVersion", "")) if c.get("rayVersion") else None
    if ver is None:
        yield "authOptions.mode is 'token' but rayVersion is missing or invalid (2.52.0 or later required)"
    elif ver < (2, 52, 0):
        yield f"authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {c['rayVersion']}"


@rule("group-resources-quantity", KINDS, "P updateRayStartParamsResources; R _get_ray_resources_from_group_spec")
def group_resources_quantity(t: Target) -> Iterable[str]:
    """Every value of a group's `resources` map is a Kubernetes quantity: the operator silently drops one it cannot
    parse from `ray start`, while Ray's autoscaler raises on it and stops scaling the whole cluster."""
    for name, g in _groups(t.cluster or {}):
        for key, val in (g.get("resources") or {}).items():
            if not is_quantity(val):
                yield f"resources[{key!r}] of {name} group is not a resource quantity: {val!r}"


@rule("autoscaler-cpu-detectable", KINDS, "R _get_num_cpus (Ray's autoscaler, autoscaling_config.py)")
def autoscaler_cpu(t: Target) -> Iterable[str]:
    """With the in-tree autoscaler, every group's CPU count is readable: from `resources.CPU`, num-cpus, or the Ray
    container's cpu limit/request. Otherwise the autoscaler raises "failed to detect CPU" and scales nothing."""
    c = t.cluster or {}
    if not _autoscaling(c):
        return
    for name, g in _groups(c):
        res = _ray_container(g).get("resources") or {}
        if not ("CPU" in (g.get("resources") or {}) or "num-cpus" in _start_params(g)
                or "cpu" in (res.get("limits") or {}) or "cpu" in (res.get("requests") or {})):
            yield f"the autoscaler cannot detect CPU resources for {name} group (set resources.CPU or a cpu limit)"


# ---- RayService --------------------------------------------------------------------------------------------

@rule("head-service-name", ("RayService",), "V ValidateRayServiceSpec")
def head_service_name(t: Target) -> Iterable[str]:
    """The RayService names its head Service itself: headGroupSpec.headService.metadata.name stays unset."""
    head = (t.cluster or {}).get("headGroupSpec") or {}
    if ((head.get("headService") or {}).get("metadata") or {}).get("name"):
        yield "spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set"


@rule("upgrade-strategy-type", ("RayService",), "V ValidateRayServiceSpec")
def upgrade_strategy_type(t: Target) -> Iterable[str]:
    """upgradeStrategy.type is one of NewClusterWithIncrementalUpgrade, NewCluster, None."""
    typ = (t.spec.get("upgradeStrategy") or {}).get("type")
    if typ is not None and typ not in UPGRADE_TYPES:
        yield f"Spec.UpgradeStrategy.Type value {typ} is invalid, valid options are {', '.join(UPGRADE_TYPES)}"


@rule("cluster-deletion-delay", ("RayService",), "V ValidateRayServiceSpec")
def cluster_deletion_delay(t: Target) -> Iterable[str]:
    """rayClusterDeletionDelaySeconds is non-negative."""
    delay = t.spec.get("rayClusterDeletionDelaySeconds")
    if delay is not None and _int(delay) is not None and _int(delay) < 0:
        yield f"Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got {delay}"


@rule("incremental-upgrade-options", ("RayService",),
      "V ValidateRayServiceSpec → ValidateClusterUpgradeOptions (~716-749); D maxSurgePercent")
def incremental_upgrade_options(t: Target) -> Iterable[str]:
    """NewClusterWithIncrementalUpgrade needs the in-tree autoscaler and clusterUpgradeOptions with
    maxSurgePercent in [0, 100] (CRD default 100), stepSizePercent in [0, 100] and not above maxSurgePercent
    (~736-738: "stepSizePercent must be less than or equal to maxSurgePercent"), intervalSeconds > 0 and a
    gatewayClassName. (KubeRay checks this only with the RayServiceIncrementalUpgrade gate on, its v1.7.0 default;
    a render is checked for either.)"""
    strat = t.spec.get("upgradeStrategy") or {}
    if strat.get("type") != "NewClusterWithIncrementalUpgrade":
        return
    if not _autoscaling(t.cluster or {}):
        yield "Ray Autoscaler is required for NewClusterWithIncrementalUpgrade"
        return
    opts = strat.get("clusterUpgradeOptions")
    if opts is None:
        yield "ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade"
        return
    surge = _int(opts.get("maxSurgePercent", DEFAULT_MAX_SURGE_PERCENT))
    if surge is None or not 0 <= surge <= 100:
        yield "maxSurgePercent must be between 0 and 100"
    step = _int(opts["stepSizePercent"]) if opts.get("stepSizePercent") is not None else None
    if step is None or not 0 <= step <= 100:
        yield "stepSizePercent must be between 0 and 100"
    elif surge is not None and 0 <= surge < step:
        yield (f"stepSizePercent must be less than or equal to maxSurgePercent (stepSizePercent {step}, "
               f"maxSurgePercent {surge})")
    interval = _int(opts["intervalSeconds"]) if opts.get("intervalSeconds") is not None else None
    if interval is None or interval <= 0:
        yield "intervalSeconds must be greater than 0"
    if not opts.get("gatewayClassName"):
        yield "gatewayClassName is required for NewClusterWithIncrementalUpgrade"


@rule("incremental-upgrade-gate", ("RayService",), "S isZeroDowntimeUpgradeEnabled; F RayServiceIncrementalUpgrade")
def incremental_upgrade_gate(t: Target) -> Iterable[str]:
    """With the RayServiceIncrementalUpgrade gate off, type NewClusterWithIncrementalUpgrade is not an error but
    turns zero-downtime upgrades off: a changed rayClusterConfig is never rolled out. The gate is on by default in
    KubeRay v1.7.0 (F, beta); this fires only for an operator that turns it off (its featureGates values)."""
    typ = (t.spec.get("upgradeStrategy") or {}).get("type")
    if typ == "NewClusterWithIncrementalUpgrade" and not t.gate("RayServiceIncrementalUpgrade"):
        yield ("upgradeStrategy NewClusterWithIncrementalUpgrade with the operator's RayServiceIncrementalUpgrade "
               "feature gate off: KubeRay disables zero-downtime upgrades and never rolls out cluster changes")


@rule("serve-config-yaml", ("RayService",), "S updateServeDeployment (yaml.Unmarshal into map[string]interface{})")
def serve_config_yaml(t: Target) -> Iterable[str]:
    """serveConfigV2 parses as a YAML mapping: the operator unmarshals it before every submission, and a parse
    error leaves the Serve applications unsubmitted (the cluster starts, nothing is served)."""
    raw = t.spec.get("serveConfigV2")
    if raw is None:
        return
    try:
        doc = yaml.safe_load(raw) if isinstance(raw, str) else raw
    except yaml.YAMLError as exc:
        yield f"serveConfigV2 is not valid YAML: {str(exc).splitlines()[0]}"
        return
    if not isinstance(doc, dict):
        yield f"serveConfigV2 must be a YAML mapping (Serve's config), got {type(doc).__name__}"


# ---- RayJob ------------------------------------------------------------------------------------------------

@rule("rayjob-suspend", ("RayJob",), "V ValidateRayJobSpec")
def rayjob_suspend(t: Target) -> Iterable[str]:
    """A suspended RayJob needs shutdownAfterJobFinishes and cannot use clusterSelector."""
    s = t.spec
    if s.get("suspend") is True:
        if not s.get("shutdownAfterJobFinishes"):
            yield "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"
        if s.get("clusterSelector"):
            yield "the ClusterSelector mode doesn't support the suspend operation"


@rule("rayjob-ttl", ("RayJob",), "V ValidateRayJobSpec; validateDeletionConfiguration")
def rayjob_ttl(t: Target) -> Iterable[str]:
    """ttlSecondsAfterFinished is non-negative and is only set with shutdownAfterJobFinishes."""
    ttl = _int(t.spec.get("ttlSecondsAfterFinished", 0)) or 0
    if ttl < 0:
        yield "TTLSecondsAfterFinished must be a non-negative integer"
    if ttl > 0 and not t.spec.get("shutdownAfterJobFinishes"):
        yield "a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished"


@rule("rayjob-cluster-source", ("RayJob",), "V ValidateRayJobSpec")
def rayjob_cluster_source(t: Target) -> Iterable[str]:
    """One of rayClusterSpec or clusterSelector; a selector names the cluster (ray.io/cluster) and is not used in
    SidecarMode."""
    s = t.spec
    sel = s.get("clusterSelector") or {}
    if s.get("rayClusterSpec") is None and not sel:
        yield "one of RayClusterSpec or ClusterSelector must be set"
    if sel:
        if not sel.get("ray.io/cluster"):
            yield "cluster name in ClusterSelector should not be empty"
        if s.get("submissionMode") == "SidecarMode":
            yield "ClusterSelector is not supported in SidecarMode"


@rule("rayjob-submission-mode", ("RayJob",), "V ValidateRayJobSpec")
def rayjob_submission_mode(t: Target) -> Iterable[str]:
    """InteractiveMode allows no retries (backoffLimit > 0); SidecarMode has no submitterPodTemplate, no
    submitterConfig, and a head restartPolicy of Never or unset."""
    s = t.spec
    mode = s.get("submissionMode")
    if mode == "InteractiveMode" and (_int(s.get("backoffLimit", 0)) or 0) > 0:
        yield "BackoffLimit is incompatible with InteractiveMode"
    if mode == "SidecarMode":
        if s.get("submitterPodTemplate") is not None:
            yield "SidecarMode doesn't support SubmitterPodTemplate"
        if s.get("submitterConfig") is not None:
            yield "SidecarMode doesn't support SubmitterConfig"
        head = (s.get("rayClusterSpec") or {}).get("headGroupSpec") or {}
        if ((head.get("template") or {}).get("spec") or {}).get("restartPolicy") not in (None, "", "Never"):
            yield "restartPolicy for head Pod should be Never or unset when using SidecarMode"


@rule("rayjob-runtime-env-yaml", ("RayJob",), "V ValidateRayJobSpec (UnmarshalRuntimeEnvYAML)")
def rayjob_runtime_env(t: Target) -> Iterable[str]:
    """runtimeEnvYAML, when set, parses as YAML (a mapping: the runtime environment)."""
    raw = t.spec.get("runtimeEnvYAML")
    if not raw:
        return
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        yield f"runtimeEnvYAML is not valid YAML: {str(exc).splitlines()[0]}"
        return
    if doc is not None and not isinstance(doc, dict):
        yield f"runtimeEnvYAML must be a mapping, got {type(doc).__name__}"


@rule("rayjob-deadline-backoff", ("RayJob",), "V ValidateRayJobSpec")
def rayjob_deadline_backoff(t: Target) -> Iterable[str]:
    """activeDeadlineSeconds, when set, is positive; backoffLimit, when set, is not negative."""
    s = t.spec
    if s.get("activeDeadlineSeconds") is not None and (_int(s["activeDeadlineSeconds"]) or 0) <= 0:
        yield "activeDeadlineSeconds must be a positive integer"
    if s.get("backoffLimit") is not None and (_int(s["backoffLimit"]) or 0) < 0:
        yield "backoffLimit must be a positive integer"


@rule("rayjob-deletion-strategy", ("RayJob",),
      "V validateDeletionConfiguration → validateLegacyDeletionPolicies / validateDeletionRules")
def rayjob_deletion_strategy(t: Target) -> Iterable[str]:
    """deletionStrategy needs the RayJobDeletionPolicy gate (on by default in v1.7.0, F). Either the legacy pair
    onSuccess/onFailure (both, each with a policy; no DeleteNone with shutdownAfterJobFinishes) or deletionRules
    (not with shutdownAfterJobFinishes; one rule per (status, policy); ttlSeconds ≥ 0 and ordered DeleteWorkers ≤
    DeleteCluster ≤ DeleteSelf per status). In both forms DeleteCluster/DeleteWorkers are refused with a
    clusterSelector, and DeleteWorkers with the autoscaler."""
    s = t.spec
    ds = s.get("deletionStrategy")
    if ds is None:
        return
    if not t.gate("RayJobDeletionPolicy"):
        yield "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy"
        return
    legacy = ds.get("onSuccess") is not None or ds.get("onFailure") is not None
    rules = ds.get("deletionRules") or []
    if rules and s.get("shutdownAfterJobFinishes"):
        yield "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive"
    if rules and legacy:
        yield "cannot use both legacy onSuccess/onFailure fields and deletionRules"
    elif legacy:
        yield from _legacy_deletion(s, ds)
    elif rules:
        yield from _deletion_rules(s, rules)
    else:
        yield "DeletionStrategy requires either both onSuccess and onFailure, or deletionRules"


_DELETION_ORDER = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")  # V validateTTLConsistency: TTLs non-decreasing


def _refused_policy(spec: dict[str, Any], policy: Any) -> str | None:
    """Why a deletion policy is refused in this RayJob's context (clusterSelector / autoscaler), or None."""
    if spec.get("clusterSelector") and policy in ("DeleteCluster", "DeleteWorkers"):
        return f"DeletionPolicyType {policy!r} not supported when ClusterSelector is set"
    if policy == "DeleteWorkers" and _autoscaling(spec.get("rayClusterSpec") or {}):
        return "DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled"
    return None


def _legacy_deletion(spec: dict[str, Any], ds: dict[str, Any]) -> Iterator[str]:
    """V validateLegacyDeletionPolicies."""
    if ds.get("onSuccess") is None or ds.get("onFailure") is None:
        yield "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set"
        return
    policies = {when: (ds[key] or {}).get("policy") for when, key in (("success", "onSuccess"),
                                                                     ("failure", "onFailure"))}
    for when, policy in policies.items():
        if policy is None:
            yield f"the DeletionPolicyType of DeletionStrategy.On{when.capitalize()} cannot be unset"
        elif (why := _refused_policy(spec, policy)) is not None:
            yield f"on {when}: {why}"
    if spec.get("shutdownAfterJobFinishes") and "DeleteNone" in policies.values():
        yield "shutdownAfterJobFinishes is set to 'true' while deletion policy is 'DeleteNone'"


def _deletion_rules(spec: dict[str, Any], rules: list[dict[str, Any]]) -> Iterator[str]:
    """V validateDeletionRules, validateDeletionCondition, validateTTLConsistency."""
    by_status: dict[tuple[str, str], dict[str, int]] = {}
    for i, r in enumerate(rules):
        cond = r.get("condition") or {}
        keys = [k for k in ("jobStatus", "jobDeploymentStatus") if cond.get(k) is not None]
        ttl = _int(cond.get("ttlSeconds", 0))
        if len(keys) != 1:
            yield f"deletionRules[{i}]: exactly one of JobStatus and JobDeploymentStatus must be set"
            continue
        if ttl is None or ttl < 0:
            yield f"deletionRules[{i}]: TTLSeconds must be non-negative"
            continue
        policy = r.get("policy")
        if (why := _refused_policy(spec, policy)) is not None:
            yield f"deletionRules[{i}]: {why}"
            continue
        status = (keys[0], str(cond[keys[0]]))
        if policy in by_status.setdefault(status, {}):
            yield f"deletionRules[{i}]: duplicate rule for DeletionPolicyType {policy!r} and {status[0]} {status[1]!r}"
            continue
        by_status[status][str(policy)] = ttl
    for (kind, value), ttls in by_status.items():
        ordered = [(p, ttls[p]) for p in _DELETION_ORDER if p in ttls]
        for (prev, prev_ttl), (cur, cur_ttl) in pairwise(ordered):
            if cur_ttl < prev_ttl:
                yield f"for {kind} {value!r}: {cur} TTL ({cur_ttl}) must be >= {prev} TTL ({prev_ttl})"


# ---- entry points ------------------------------------------------------------------------------------------

def check(objects: Iterable[dict[str, Any]], feature_gates: Mapping[str, bool] | None = None) -> list[Violation]:
    """Every violation of every rule by every KubeRay object in `objects` (empty when KubeRay would accept them).

    `feature_gates` are the operator's (e.g. `operator_feature_gates(k8s/kuberay/values.yaml)`); missing gates
    take KubeRay's defaults."""
    gates = {**DEFAULT_FEATURE_GATES, **(feature_gates or {})}
    out: list[Violation] = []
    for obj in objects:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if kind not in KINDS or not str(obj.get("apiVersion", "")).startswith("ray.io/"):
            continue
        target = Target(kind, obj, gates)
        for r in RULES:
            if kind in r.kinds:
                out.extend(Violation(r.id, f"{kind}/{target.name}", msg) for msg in r.check(target))
    return out


def operator_feature_gates(values_file: Path) -> dict[str, bool]:
    """The featureGates of a kuberay-operator Helm values file (`featureGates: [{name, enabled}]`)."""
    values = yaml.safe_load(values_file.read_text(encoding="utf-8")) or {}
    return {g["name"]: bool(g.get("enabled")) for g in values.get("featureGates") or []}


def load_documents(texts: Iterable[str]) -> list[dict[str, Any]]:
    """The non-empty YAML documents of multi-document texts (a `helm template` / `kubectl kustomize` output)."""
    return [d for text in texts for d in yaml.safe_load_all(text) if isinstance(d, dict)]
