"""KubeRay's own (Go-side) rules, offline: KubeRay's 15 samples pass, one broken copy per rule fails for that rule
only, every render of every profile / overlay and the RayJob pass, and `armed-ops kuberay-check` reports them."""

from __future__ import annotations

import copy
import io
import json
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


def test_incremental_sample_needs_the_operator_gate(crds):
    """The incremental-upgrade sample is only right on an operator with the gate on (its guide says so)."""
    doc = SAMPLES["ray-service.incremental-upgrade.yaml"]
    assert ids(kr.check([doc])) == {"incremental-upgrade-gate"}  # KubeRay's default gates
    assert kr.check([doc], {"RayServiceIncrementalUpgrade": True}) == []


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
    "suspended group without gate": ("suspended-worker-group", _service, lambda d: _w0(d).update(suspend=True),
                                     None),
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
    "incremental without gate": ("incremental-upgrade-gate", _service, _incremental_ok, kr.DEFAULT_FEATURE_GATES),
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
    "deletion strategy without gate": ("rayjob-deletion-strategy", _job, lambda d: d["spec"].update(
        deletionStrategy={"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}), None),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_broken_copy_fails_for_its_rule(crds, what):
    rule_id, base, mutate, gates = BROKEN[what]
    doc = base()
    assert kr.check([doc], gates if gates is not None else OPERATOR_GATES) == [], "the base must pass"
    mutate(doc)
    assert ids(kr.check([doc], gates if gates is not None else OPERATOR_GATES)) == {rule_id}


def test_every_rule_has_a_broken_copy():
    assert {r.id for r in kr.RULES} == {rule_id for rule_id, *_ in BROKEN.values()}
    assert len({r.id for r in kr.RULES}) == len(kr.RULES)


def test_every_rule_cites_its_source():
    for r in kr.RULES:
        assert r.source and r.check.__doc__, r.id


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


def test_incremental_upgrade_render_needs_the_gate_this_repo_turns_on(helm):
    objs = ch.template(profile="a100-80g", sets={
        "modelWeights.source": "pvc",
        "upgradeStrategy.type": "NewClusterWithIncrementalUpgrade",
        "upgradeStrategy.clusterUpgradeOptions.gatewayClassName": "istio",
        "upgradeStrategy.clusterUpgradeOptions.stepSizePercent": "10",
        "upgradeStrategy.clusterUpgradeOptions.intervalSeconds": "30"})
    assert OPERATOR_GATES.get("RayServiceIncrementalUpgrade") is True  # k8s/kuberay/values.yaml
    assert kr.check(objs, OPERATOR_GATES) == []
    assert ids(kr.check(objs, kr.DEFAULT_FEATURE_GATES)) == {"incremental-upgrade-gate"}


def test_operator_values_feature_gates_format():
    """The kuberay-operator chart's format: a list of {name, enabled} (its values.yaml `featureGates`)."""
    values = yaml.safe_load((REPO_ROOT / "k8s" / "kuberay" / "values.yaml").read_text(encoding="utf-8"))
    assert all(set(g) == {"name", "enabled"} and isinstance(g["enabled"], bool) for g in values["featureGates"])
    assert set(OPERATOR_GATES) <= set(kr.DEFAULT_FEATURE_GATES)  # no misspelt gate names


def test_rayjob_conforms():
    docs = kr.load_documents([(REPO_ROOT / "k8s" / "rayjob" / "batch-judgment.yaml").read_text(encoding="utf-8")])
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    assert job["metadata"]["generateName"]  # the name-length rule counts the 5 generated characters
    assert kr.check(docs, OPERATOR_GATES) == []


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
    assert cli.main(["kuberay-check", str(path)]) == 1
    assert cli.main(["kuberay-check", "--feature-gate", "RayServiceIncrementalUpgrade=true", str(path)]) == 0
    assert cli.main(["kuberay-check", "--feature-gate", "RayServiceIncrementalUpgrade", str(path)]) == cli.EXIT_INPUT
    capsys.readouterr()
