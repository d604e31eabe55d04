"""KubeRay's own (Go-side) rules, offline: KubeRay's 15 samples pass, one broken copy per rule fails for that rule
only, every render of every profile / overlay and the RayJob pass, and `armed-ops kuberay-check` reports them."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from armed.serving.profiles import profile_names
from ops import chart as ch
from ops import cli
from ops import kuberay_rules as kr
from ops.crdvalidate import find_crd_dir
from ops.profile_values import REPO_ROOT

OPERATOR_GATES = ch.operator_feature_gates()  # what k8s/kuberay/install.sh runs the operator with


def _samples() -> dict[str, dict]:
    crd_dir = find_crd_dir()
    if crd_dir is None:
        return {}
    return {p.name: d for p in sorted((crd_dir / "kuberay-samples").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d and d.get("kind") == "RayService"}


SAMPLES = _samples()


def ids(violations: list[kr.Violation]) -> set[str]:
    return {v.rule for v in violations}


# ---- KubeRay's samples: known-good -------------------------------------------------------------------------

def test_fifteen_samples(crds):
    assert len(SAMPLES) == 15


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_kuberay_samples_pass(crds, name):
    assert kr.check([SAMPLES[name]], OPERATOR_GATES) == []


def test_incremental_sample_needs_the_gate_v1_7_turns_on(crds):
    """The incremental-upgrade sample is right on a stock v1.7.0 operator (the gate is beta, on by default) and
    only wrong on an operator that turns the gate off."""
    doc = SAMPLES["ray-service.incremental-upgrade.yaml"]
    assert kr.check([doc]) == []  # KubeRay v1.7.0's default gates
    assert ids(kr.check([doc], {"RayServiceIncrementalUpgrade": False})) == {"incremental-upgrade-gate"}


def test_default_gates_are_kuberay_v1_7_0():
    """features.go ~105-117 of v1.7.0: deletion policy, multi-host indexing and incremental upgrade are beta and on;
    the alpha gates are off; AsyncJobInfoQuery (v1.6) is gone (an operator given it would not start)."""
    on = {name for name, enabled in kr.DEFAULT_FEATURE_GATES.items() if enabled}
    assert on == {"RayClusterStatusConditions", "RayJobDeletionPolicy", "RayMultiHostIndexing",
                  "RayServiceIncrementalUpgrade"}
    assert "AsyncJobInfoQuery" not in kr.DEFAULT_FEATURE_GATES


# ---- broken copies: each fails for its rule and nothing else -----------------------------------------------

def _rc(d: dict) -> dict:
    return d["spec"]["rayClusterConfig"] if d["kind"] == "RayService" else d["spec"]["rayClusterSpec"]


def _head(d: dict) -> dict:
    return _rc(d)["headGroupSpec"]


def _head_c(d: dict) -> dict:
    return _head(d)["template"]["spec"]["containers"][0]


def _w0(d: dict) -> dict:
    return _rc(d)["workerGroupSpecs"][0]


def _env(container: dict, name: str, value: str = "x") -> None:
    container.setdefault("env", []).append({"name": name, "value": value})


def _service() -> dict:
    return copy.deepcopy(SAMPLES["ray-service.sample.yaml"])


def _job() -> dict:
    """A valid RayJob around the sample's cluster."""
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "sample-job"},
            "spec": {"entrypoint": "python -c 'print(1)'", "shutdownAfterJobFinishes": True,
                     "rayClusterSpec": copy.deepcopy(_service()["spec"]["rayClusterConfig"])}}


def _cluster() -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c" * 53},
            "spec": copy.deepcopy(_service()["spec"]["rayClusterConfig"])}


def _set(path_fn: Callable[[dict], dict], **kv: Any) -> Callable[[dict], None]:
    return lambda d: path_fn(d).update(kv)


def _autoscaled(d: dict) -> None:
    _rc(d)["enableInTreeAutoscaling"] = True


def _incremental_bad_interval(d: dict) -> None:
    _autoscaled(d)
    d["spec"]["upgradeStrategy"] = {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
        "gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 0}}


def _incremental_ok(d: dict) -> None:
    _autoscaled(d)
    d["spec"]["upgradeStrategy"] = {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
        "gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 30}}


def _incremental_no_autoscaler(d: dict) -> None:
    d["spec"]["upgradeStrategy"] = {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
        "gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 30}}


def _no_cpu_anywhere(d: dict) -> None:
    _autoscaled(d)
    _w0(d)["template"]["spec"]["containers"][0]["resources"] = {"limits": {"memory": "2Gi"}}


def _v2_restart_always(d: dict) -> None:
    _autoscaled(d)
    _rc(d)["autoscalerOptions"] = {"version": "v2"}
    _w0(d)["template"]["spec"]["restartPolicy"] = "Always"


def _v2_env_without_autoscaler(d: dict) -> None:
    _rc(d)["enableInTreeAutoscaling"] = False
    _env(_head_c(d), "RAY_enable_autoscaler_v2", "true")


def _v2_env_and_version(d: dict) -> None:
    _autoscaled(d)
    _rc(d)["autoscalerOptions"] = {"version": "v2"}
    _env(_head_c(d), "RAY_enable_autoscaler_v2", "1")


def _ft_options(d: dict) -> None:
    _rc(d)["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379"}


def _incremental_step_above_surge(d: dict) -> None:
    _incremental_ok(d)
    d["spec"]["upgradeStrategy"]["clusterUpgradeOptions"]["maxSurgePercent"] = 5  # step 10 > surge 5


def _idle_timeout_with_v1(d: dict) -> None:
    _autoscaled(d)
    _rc(d)["autoscalerOptions"] = {"version": "v1"}
    _w0(d)["idleTimeoutSeconds"] = 60


def _idle_timeout_without_version(d: dict) -> None:
    _autoscaled(d)
    _w0(d)["idleTimeoutSeconds"] = 60


def _rules(*rules: tuple[str, str, int]) -> dict:
    """deletionRules from (jobStatus, policy, ttlSeconds)."""
    return {"deletionRules": [{"condition": {"jobStatus": st, "ttlSeconds": ttl}, "policy": pol}
                              for st, pol, ttl in rules]}


def _job_rules(*rules: tuple[str, str, int]) -> Callable[[dict], None]:
    """A RayJob in deletionRules mode (which excludes shutdownAfterJobFinishes) with these rules."""
    return lambda d: d["spec"].update(shutdownAfterJobFinishes=False, deletionStrategy=_rules(*rules))


GATE_OFF = {"RayJobDeletionPolicy": False}


# (rule id, base object, mutation, operator gates)
BROKEN: dict[str, tuple[str, Callable[[], dict], Callable[[dict], None], dict | None]] = {
    "service name 48 chars": ("name-length", _service, lambda d: d["metadata"].update(name="s" * 48), None),
    "cluster name 54 chars": ("name-length", _cluster, lambda d: d["metadata"].update(name="c" * 54), None),
    "job generateName too long": ("name-length", _job,
                                  lambda d: d["metadata"].update({"name": None, "generateName": "j" * 43}), None),
    "name not DNS-1035": ("name-dns1035", _service, lambda d: d["metadata"].update(name="1-svc"), None),
    "bad initializing timeout": ("initializing-timeout", _service, lambda d: d["metadata"].setdefault(
        "annotations", {}).update({"ray.io/initializing-timeout": "soon"}), None),
    "zero initializing timeout": ("initializing-timeout", _service, lambda d: d["metadata"].setdefault(
        "annotations", {}).update({"ray.io/initializing-timeout": "0"}), None),
    "head without containers": ("head-container", _service,
                                lambda d: _head(d)["template"]["spec"].update(containers=[]), None),
    "worker without containers": ("worker-container", _service,
                                  lambda d: _w0(d)["template"]["spec"].update(containers=[]), None),
    "num-gpus and resources": ("group-resources-conflict", _service, lambda d: _w0(d).update(
        rayStartParams={"num-gpus": "1"}, resources={"accelerator_type:A100": "1"}), None),
    "head num-cpus and resources": ("group-resources-conflict", _service, lambda d: _head(d).update(
        rayStartParams={"num-cpus": "0"}, resources={"CPU": "0"}), None),
    "labels in rayStartParams": ("group-labels", _service,
                                 lambda d: _w0(d).update(rayStartParams={"labels": "a=b"}), None),
    "bad label key": ("group-labels", _service, lambda d: _w0(d).update(labels={"bad key!": "x"}), None),
    "ft annotation and options": ("gcs-ft-annotation-and-options", _service, lambda d: (
        _ft_options(d), d["metadata"].setdefault("annotations", {}).update({"ray.io/ft-enabled": "true"})), None),
    "redis address without ft": ("redis-address-without-gcs-ft", _service,
                                 lambda d: _env(_head_c(d), "RAY_REDIS_ADDRESS", "redis:6379"), None),
    "redis password env with ft options": ("gcs-ft-legacy-settings", _service,
                                           lambda d: (_ft_options(d), _env(_head_c(d), "REDIS_PASSWORD")), None),
    "redis username": ("redis-username", _service,
                       lambda d: _head(d).update(rayStartParams={"redis-username": "ray"}), None),
    "suspended group with the gate off": ("suspended-worker-group", _service,
                                          lambda d: _w0(d).update(suspend=True), GATE_OFF),
    "suspended group with autoscaler": ("suspended-worker-group", _service,
                                        lambda d: (_autoscaled(d), _w0(d).update(suspend=True)),
                                        {"RayJobDeletionPolicy": True}),
    "v2 env without autoscaler": ("autoscaler-v2-env", _service, _v2_env_without_autoscaler, None),
    "v2 env and version": ("autoscaler-v2-env", _service, _v2_env_and_version, None),
    "v2 restartPolicy Always": ("autoscaler-v2-restart-policy", _service, _v2_restart_always, None),
    "token auth on old ray": ("auth-ray-version", _service, lambda d: _rc(d).update(
        authOptions={"mode": "token"}, rayVersion="2.46.0"), None),
    "resource not a quantity": ("group-resources-quantity", _service,
                                lambda d: _w0(d).update(resources={"accelerator_type:A100": "one"}), None),
    "autoscaler cannot see CPU": ("autoscaler-cpu-detectable", _service, _no_cpu_anywhere, None),
    "head service named": ("head-service-name", _service,
                           lambda d: _head(d).update(headService={"metadata": {"name": "mine"}}), None),
    "upgrade type Recreate": ("upgrade-strategy-type", _service,
                              lambda d: d["spec"].update(upgradeStrategy={"type": "Recreate"}), None),
    "negative deletion delay": ("cluster-deletion-delay", _service,
                                lambda d: d["spec"].update(rayClusterDeletionDelaySeconds=-1), None),
    "incremental interval 0": ("incremental-upgrade-options", _service, _incremental_bad_interval,
                               {"RayServiceIncrementalUpgrade": True}),
    "incremental without autoscaler": ("incremental-upgrade-options", _service, _incremental_no_autoscaler,
                                       {"RayServiceIncrementalUpgrade": True}),
    "incremental with the gate off": ("incremental-upgrade-gate", _service, _incremental_ok,
                                      {"RayServiceIncrementalUpgrade": False}),
    "incremental step above surge": ("incremental-upgrade-options", _service, _incremental_step_above_surge, None),
    "worker min above max": ("worker-replicas", _service,
                             lambda d: _w0(d).update(minReplicas=3, maxReplicas=2), None),
    "worker negative max": ("worker-replicas", _service, lambda d: _w0(d).update(maxReplicas=-1), None),
    "worker negative min": ("worker-replicas", _service, lambda d: _w0(d).update(minReplicas=-1), None),
    "worker idle timeout with autoscaler v1": ("worker-idle-timeout", _service, _idle_timeout_with_v1, None),
    "worker idle timeout without a version": ("worker-idle-timeout", _service, _idle_timeout_without_version,
                                              None),
    "serve config not YAML": ("serve-config-yaml", _service,
                              lambda d: d["spec"].update(serveConfigV2="applications: [\n  - name: x\n"), None),
    "serve config a list": ("serve-config-yaml", _service,
                            lambda d: d["spec"].update(serveConfigV2="- applications\n"), None),
    "suspended job without shutdown": ("rayjob-suspend", _job,
                                       lambda d: d["spec"].update(suspend=True, shutdownAfterJobFinishes=False), None),
    "negative ttl": ("rayjob-ttl", _job, lambda d: d["spec"].update(ttlSecondsAfterFinished=-1), None),
    "ttl without shutdown": ("rayjob-ttl", _job, lambda d: d["spec"].update(
        ttlSecondsAfterFinished=60, shutdownAfterJobFinishes=False), None),
    "no cluster": ("rayjob-cluster-source", _job, lambda d: d["spec"].pop("rayClusterSpec"), None),
    "interactive with retries": ("rayjob-submission-mode", _job,
                                 lambda d: d["spec"].update(submissionMode="InteractiveMode", backoffLimit=1), None),
    "runtime env not YAML": ("rayjob-runtime-env-yaml", _job,
                             lambda d: d["spec"].update(runtimeEnvYAML="env_vars: [\n"), None),
    "zero deadline": ("rayjob-deadline-backoff", _job, lambda d: d["spec"].update(activeDeadlineSeconds=0), None),
    "deletion strategy with the gate off": ("rayjob-deletion-strategy", _job, lambda d: d["spec"].update(
        deletionStrategy={"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteCluster"}}),
                                            GATE_OFF),
    "legacy DeleteNone with shutdown": ("rayjob-deletion-strategy", _job, lambda d: d["spec"].update(
        deletionStrategy={"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}), None),
    "legacy onFailure only": ("rayjob-deletion-strategy", _job, lambda d: d["spec"].update(
        deletionStrategy={"onFailure": {"policy": "DeleteCluster"}}), None),
    "deletion rules with shutdown": ("rayjob-deletion-strategy", _job, lambda d: d["spec"].update(
        ttlSecondsAfterFinished=0, deletionStrategy=_rules(("SUCCEEDED", "DeleteCluster", 0))), None),
    "deletion rules TTLs out of order": ("rayjob-deletion-strategy", _job, _job_rules(
        ("FAILED", "DeleteSelf", 60), ("FAILED", "DeleteCluster", 600)), None),
    "deletion rules duplicated": ("rayjob-deletion-strategy", _job, _job_rules(
        ("FAILED", "DeleteCluster", 60), ("FAILED", "DeleteCluster", 600)), None),
    "DeleteWorkers rule with the autoscaler": ("rayjob-deletion-strategy", _job, lambda d: (
        _autoscaled(d), _job_rules(("SUCCEEDED", "DeleteWorkers", 0))(d)), None),
}

# The three value combinations KubeRay v1.7.0 rejects that this checker used to pass (issue 24): the message says
# what KubeRay says.
MESSAGES = {
    "worker min above max": "worker group small-group has minReplicas 3 greater than maxReplicas 2",
    "worker idle timeout with autoscaler v1": "idleTimeoutSeconds is set, but autoscaler v2 is not enabled",
    "incremental step above surge": "stepSizePercent must be less than or equal to maxSurgePercent",
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_broken_copy_fails_for_its_rule(crds, what):
    rule_id, base, mutate, gates = BROKEN[what]
    doc = base()
    assert kr.check([doc], gates if gates is not None else OPERATOR_GATES) == [], "the base must pass"
    mutate(doc)
    violations = kr.check([doc], gates if gates is not None else OPERATOR_GATES)
    assert ids(violations) == {rule_id}
    if what in MESSAGES:
        assert any(MESSAGES[what] in v.message for v in violations), [str(v) for v in violations]


# ---- passing samples beside each new failing one: the same fields, values KubeRay accepts -------------------

PASSING: dict[str, Callable[[dict], None]] = {
    "worker min equals max": lambda d: _w0(d).update(minReplicas=2, maxReplicas=2),
    "worker min only (max defaults to 2^31-1)": lambda d: (_w0(d).pop("maxReplicas", None),
                                                          _w0(d).update(minReplicas=5)),
    "worker idle timeout with autoscaler v2": lambda d: (_autoscaled(d), _rc(d).update(
        autoscalerOptions={"version": "v2"}), _w0(d).update(idleTimeoutSeconds=60)),
    "worker idle timeout with the v2 env (KubeRay < 1.4 style)": lambda d: (
        _autoscaled(d), _env(_head_c(d), "RAY_enable_autoscaler_v2", "true"), _w0(d).update(idleTimeoutSeconds=60)),
    "cluster-wide idle timeout with autoscaler v1": lambda d: (_autoscaled(d), _rc(d).update(
        autoscalerOptions={"version": "v1", "idleTimeoutSeconds": 60})),
    "incremental step equals surge": lambda d: (_incremental_ok(d), d["spec"]["upgradeStrategy"][
        "clusterUpgradeOptions"].update(maxSurgePercent=10)),
    "incremental step with surge defaulted": _incremental_ok,
}


@pytest.mark.parametrize("what", sorted(PASSING))
def test_accepted_values_pass(crds, what):
    doc = _service()
    PASSING[what](doc)
    assert kr.check([doc]) == [] and kr.check([doc], OPERATOR_GATES) == []


def _batch_job() -> dict:
    docs = kr.load_documents([(REPO_ROOT / "k8s" / "rayjob" / "batch-judgment.yaml").read_text(encoding="utf-8")])
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    return job


@pytest.mark.parametrize("strategy", ["legacy", "rules"])
def test_rayjob_with_deletion_strategy_passes_on_v1_7_gates(strategy):
    """KubeRay v1.7.0 turns RayJobDeletionPolicy on by default: the batch RayJob with a valid deletionStrategy is
    accepted by a stock operator (this checker used to report it: it thought the gate was off)."""
    job = _batch_job()
    if strategy == "legacy":
        job["spec"]["deletionStrategy"] = {"onSuccess": {"policy": "DeleteCluster"},
                                           "onFailure": {"policy": "DeleteCluster"}}
    else:  # deletionRules exclude shutdownAfterJobFinishes, and so its TTL
        job["spec"].update(shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0,
                           deletionStrategy=_rules(("SUCCEEDED", "DeleteCluster", 600),
                                                   ("FAILED", "DeleteCluster", 3600),
                                                   ("FAILED", "DeleteSelf", 7200)))
    assert kr.check([job]) == []
    assert kr.check([job], OPERATOR_GATES) == []
    assert ids(kr.check([job], GATE_OFF)) == {"rayjob-deletion-strategy"}


def test_every_rule_has_a_broken_copy():
    assert {r.id for r in kr.RULES} == {rule_id for rule_id, *_ in BROKEN.values()}
    assert len({r.id for r in kr.RULES}) == len(kr.RULES)


def test_every_rule_cites_its_source():
    for r in kr.RULES:
        assert r.source and r.check.__doc__, r.id


def test_the_three_v1_7_rejections_cite_their_lines():
    """worker min > max (validation.go ~133-137), a group's idleTimeoutSeconds without autoscaler v2 (~1006-1027),
    stepSizePercent > maxSurgePercent (~736-738): each rule names its Go function and its lines."""
    by_id = {r.id: r for r in kr.RULES}
    for rule_id, func, lines in (("worker-replicas", "ValidateRayClusterSpec", "~133-137"),
                                 ("worker-idle-timeout", "validateWorkerGroupIdleTimeout", "~1006-1027"),
                                 ("incremental-upgrade-options", "ValidateClusterUpgradeOptions", "~736-738")):
        r = by_id[rule_id]
        assert func in r.source and lines in (r.source + (r.check.__doc__ or "")), rule_id


def test_validate_objects_reports_kuberay_rules_beside_the_schema(crds):
    doc = _service()
    _w0(doc).update(rayStartParams={"num-gpus": "1"}, resources={"GPU": "1"})
    assert crds.errors(doc) == []  # the CRD schema alone accepts it: that is why these rules exist
    (errors,) = ch.validate_objects([doc], crds).values()
    assert errors and errors[0].startswith("kuberay[group-resources-conflict]")


# ---- armed's renders ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", profile_names())
def test_every_profile_render_conforms(helm, name):
    """Today's chart failed this on every GPU profile: num-cpus/num-gpus in rayStartParams beside `resources`."""
    # every weight source a GPU profile renders with (none only renders for the cpu profiles)
    for sets in ({"modelWeights.source": "pvc"}, {"modelWeights.source": "objectStore"}):
        assert [str(v) for v in kr.check(ch.template(profile=name, sets=sets), OPERATOR_GATES)] == []


INCREMENTAL = {
    "upgradeStrategy.type": "NewClusterWithIncrementalUpgrade",
    "upgradeStrategy.clusterUpgradeOptions.gatewayClassName": "istio",
    "upgradeStrategy.clusterUpgradeOptions.stepSizePercent": "10",
    "upgradeStrategy.clusterUpgradeOptions.intervalSeconds": "30"}


def test_incremental_upgrade_render_passes_unless_the_gate_is_turned_off(helm):
    objs = ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc", **INCREMENTAL})
    assert OPERATOR_GATES.get("RayServiceIncrementalUpgrade") is not False  # k8s/kuberay/values.yaml
    assert kr.check(objs, OPERATOR_GATES) == [] and kr.check(objs) == []  # v1.7.0: on by default
    assert ids(kr.check(objs, {"RayServiceIncrementalUpgrade": False})) == {"incremental-upgrade-gate"}


# ---- the three rejected value combinations: refused by `helm template`, and by kuberay-check on a manifest --------

# (values that KubeRay v1.7.0 rejects, what the chart's message names, the rule, how to make a valid render bad)
REJECTED: dict[str, tuple[dict[str, str], str, str, Callable[[dict], None]]] = {
    "min above max": (
        {"workerGroups.overrides.a100-80g.minReplicas": "3", "workerGroups.overrides.a100-80g.maxReplicas": "2"},
        "minReplicas 3 (workerGroups.overrides.a100-80g.minReplicas) is greater than maxReplicas 2",
        "worker-replicas", lambda d: _w0(d).update(minReplicas=3, maxReplicas=2)),
    "min above the profile's max": (
        {"workerGroups.overrides.a100-80g.minReplicas": "99"},
        'maxReplicas 4 (profile "a100-80g" pool a100-80g maxNodes)',
        "worker-replicas", lambda d: _w0(d).update(minReplicas=99)),
    "group idle timeout with autoscaler v1": (
        {"autoscaler.version": "v1", "workerGroups.overrides.a100-80g.idleTimeoutSeconds": "60"},
        "workerGroups.overrides.a100-80g.idleTimeoutSeconds is set but autoscaler.version is v1",
        "worker-idle-timeout", lambda d: (_rc(d)["autoscalerOptions"].update(version="v1"),
                                          _w0(d).update(idleTimeoutSeconds=60))),
    "step above surge": (
        {**INCREMENTAL, "upgradeStrategy.clusterUpgradeOptions.maxSurgePercent": "5"},
        "stepSizePercent (10) is greater than upgradeStrategy.clusterUpgradeOptions.maxSurgePercent (5)",
        "incremental-upgrade-options", lambda d: d["spec"].update(upgradeStrategy={
            "type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
                "gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 30, "maxSurgePercent": 5}})),
}


@pytest.mark.parametrize("what", sorted(REJECTED))
def test_helm_template_refuses_what_kuberay_rejects(helm, what):
    sets, named, _, _ = REJECTED[what]
    with pytest.raises(RuntimeError, match=re.escape(named)):
        ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc", **sets})


def test_schema_refuses_a_surge_below_any_step(helm):
    """The part of step <= surge that JSON Schema can state: stepSizePercent is at least 1, so maxSurgePercent 0 can
    never hold a step (KubeRay would reject every such upgrade)."""
    with pytest.raises(RuntimeError, match=r"clusterUpgradeOptions\.maxSurgePercent: Must be greater than or equal"):
        ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc", **INCREMENTAL,
                                              "upgradeStrategy.clusterUpgradeOptions.stepSizePercent": "1",
                                              "upgradeStrategy.clusterUpgradeOptions.maxSurgePercent": "0"})


@pytest.mark.parametrize("what", sorted(REJECTED))
def test_kuberay_check_refuses_the_same_on_a_manifest(helm, tmp_path, capsys, what):
    """A manifest that did not come from the chart (edited by hand, or another tool) is caught by kuberay-check."""
    _, _, rule_id, spoil = REJECTED[what]
    objs = ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc"})
    (svc,) = [o for o in objs if o["kind"] == "RayService"]
    spoil(svc)
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump_all(objs), encoding="utf-8")
    assert cli.main(["kuberay-check", "--operator-values", str(ch.OPERATOR_VALUES), str(path)]) == 1
    out = capsys.readouterr().out
    assert f"[{rule_id}]" in out and out.count("[") == 1, out


def test_accepted_neighbours_of_the_rejected_values_render_and_conform(helm):
    """min == max, a group idle timeout on autoscaler v2 (the default), step == surge: helm renders them and
    KubeRay's rules pass them."""
    objs = ch.template(profile="a100-80g", sets={
        "modelWeights.source": "pvc", **INCREMENTAL, "upgradeStrategy.clusterUpgradeOptions.maxSurgePercent": "10",
        "workerGroups.overrides.a100-80g.minReplicas": "2", "workerGroups.overrides.a100-80g.maxReplicas": "2",
        "workerGroups.overrides.a100-80g.idleTimeoutSeconds": "60"})
    (svc,) = [o for o in objs if o["kind"] == "RayService"]
    (group,) = [g for g in _rc(svc)["workerGroupSpecs"] if g["groupName"] == "a100-80g"]
    assert (group["minReplicas"], group["maxReplicas"], group["idleTimeoutSeconds"]) == (2, 2, 60)
    assert kr.check(objs, OPERATOR_GATES) == []


def test_operator_values_feature_gates_format():
    """The kuberay-operator chart's format: a list of {name, enabled} (its values.yaml `featureGates`)."""
    values = yaml.safe_load((REPO_ROOT / "k8s" / "kuberay" / "values.yaml").read_text(encoding="utf-8"))
    assert all(set(g) == {"name", "enabled"} and isinstance(g["enabled"], bool) for g in values["featureGates"])
    assert set(OPERATOR_GATES) <= set(kr.DEFAULT_FEATURE_GATES)  # no misspelt gate names


def test_rayjob_conforms():
    docs = kr.load_documents([(REPO_ROOT / "k8s" / "rayjob" / "batch-judgment.yaml").read_text(encoding="utf-8")])
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    assert job["metadata"]["generateName"]  # the name-length rule counts the 5 generated characters
    assert kr.check(docs, OPERATOR_GATES) == [] and kr.check(docs) == []


# ---- the CLI -----------------------------------------------------------------------------------------------

def test_cli_reads_stdin_and_passes_a_render(helm, monkeypatch, capsys):
    text = yaml.safe_dump_all(ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc"}))
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert cli.main(["kuberay-check", "--operator-values", str(ch.OPERATOR_VALUES), "-"]) == 0
    assert "1 KubeRay object(s) checked, 0 violation(s)" in capsys.readouterr().err


def test_cli_fails_a_broken_file_with_the_rule(tmp_path, capsys, crds):
    doc = _service()
    _w0(doc).update(rayStartParams={"num-cpus": "1"}, resources={"CPU": "1"})
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, doc]),
                    encoding="utf-8")
    assert cli.main(["kuberay-check", str(path)]) == 1
    assert "[group-resources-conflict]" in capsys.readouterr().out
    assert cli.main(["kuberay-check", "--json", str(path)]) == 1
    (v,) = json.loads(capsys.readouterr().out)
    assert v["rule"] == "group-resources-conflict" and v["obj"] == "RayService/rayservice-sample"


def test_cli_feature_gate_flag(capsys, crds, tmp_path):
    path = tmp_path / "inc.yaml"
    path.write_text(yaml.safe_dump(SAMPLES["ray-service.incremental-upgrade.yaml"]), encoding="utf-8")
    assert cli.main(["kuberay-check", str(path)]) == 0  # KubeRay v1.7.0's default: the gate is on
    assert cli.main(["kuberay-check", "--feature-gate", "RayServiceIncrementalUpgrade=false", str(path)]) == 1
    assert cli.main(["kuberay-check", "--feature-gate", "RayServiceIncrementalUpgrade=true", str(path)]) == 0
    assert cli.main(["kuberay-check", "--feature-gate", "RayServiceIncrementalUpgrade", str(path)]) == cli.EXIT_INPUT
    capsys.readouterr()


def test_cli_lists_the_rules_from_the_code(capsys):
    """The number of rules is the code's (docs state none): --list-rules prints one line per rule, then the count."""
    assert cli.main(["kuberay-check", "--list-rules"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [r.id for r in kr.RULES]
    assert err.strip() == f"{len(kr.RULES)} rules"


def test_cli_without_files_is_an_input_error(capsys):
    assert cli.main(["kuberay-check"]) == cli.EXIT_INPUT
    assert "--list-rules" in capsys.readouterr().err


RULE_COUNT = re.compile(r"\b\d+ (?:KubeRay |Go-side )?rules\b")


def test_no_doc_states_a_rule_count():
    """A count written in prose goes stale (docs said 31 when there were 30): docs point at --list-rules instead."""
    docs = [REPO_ROOT / "README.md", REPO_ROOT / "k8s" / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md")),
            *sorted((REPO_ROOT / "helm").rglob("*.md"))]
    stated = [f"{p.relative_to(REPO_ROOT)}: {m.group(0)}" for p in docs
              for m in RULE_COUNT.finditer(p.read_text(encoding="utf-8"))]
    assert stated == []
