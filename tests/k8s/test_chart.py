"""The Helm chart: lint, render every profile, validate every object, and check the rendered structure."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

import pytest
import yaml

from armed.serving.config import serve_config
from armed.serving.profiles import PROFILE_DIR, load_profile, profile_names
from armed.serving.proxy_guard import PROXY_ENV
from ops import chart as ch
from ops.chart_readme import readme, value_docs
from ops.dashboard import DASHBOARD_FILE, dashboard_json
from ops.profile_values import CHART_DIR, CHART_PROFILE_DIR, chart_profile_file, values_file
from tests.k8s.notes import render_notes

PROFILES = profile_names()
ALL_ON = {
    "monitoring.serviceMonitor.enabled": "true",
    "monitoring.podMonitor.enabled": "true",
    "monitoring.prometheusRule.enabled": "true",
    "ingress.enabled": "true",
}
# A GPU profile renders only with a weight source (the chart fails without one); pvc adds no init container and,
# on the cpu profiles (no /models paths), nothing at all. render() and lint use it unless `sets` say otherwise.
WEIGHTS = {"modelWeights.source": "pvc"}
_cache: dict = {}


def with_weights(sets: dict | None = None) -> dict:
    return {**WEIGHTS, **(sets or {})}


def render(profile: str, sets: dict | None = None, values_files: tuple = ()) -> list[dict]:
    sets = with_weights(sets)
    key = (profile, tuple(sorted(sets.items())), values_files)
    if key not in _cache:
        _cache[key] = ch.template(profile=profile, sets=sets, values_files=values_files)
    return _cache[key]


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def rayservice(objs: list[dict]) -> dict:
    (rs,) = by_kind(objs, "RayService")
    return rs


# ---- generated files are current ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profile_file_is_current(name):
    path = CHART_PROFILE_DIR / f"{name}.yaml"
    assert path.read_text(encoding="utf-8") == chart_profile_file(load_profile(name)), (
        f"{path} is stale: run `armed-ops render-values --write-chart`"
    )


def test_no_orphan_profile_files():
    assert sorted(p.stem for p in CHART_PROFILE_DIR.glob("*.yaml")) == PROFILES


def test_dashboard_and_readme_are_current():
    assert DASHBOARD_FILE.read_text(encoding="utf-8") == dashboard_json(), "run `armed-ops chart-readme`"
    assert (CHART_DIR / "README.md").read_text(encoding="utf-8") == readme(), "run `armed-ops chart-readme`"


def test_every_value_is_documented():
    undocumented = [k for k, _, d in value_docs() if not d]
    assert undocumented == []


def test_schema_profile_enum_matches_profiles():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["profile"]["enum"] == PROFILES


# ---- helm lint / template ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROFILES)
def test_lint_strict(helm, name):
    ch.lint(profile=name, sets=with_weights())
    ch.lint(profile=name, sets=with_weights(ALL_ON))


@pytest.mark.parametrize("name", PROFILES)
def test_every_rendered_object_is_valid(helm, crds, name):
    objs = render(name, ALL_ON)
    kinds = {o["kind"] for o in objs}
    assert {"RayService", "Service", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor",
            "PodMonitor", "PrometheusRule", "ConfigMap", "Secret"} <= kinds
    assert ch.validate_objects(objs, crds) == {}


@pytest.mark.parametrize(
    "sets",
    [
        {"modelWeights.source": "pvc", "modelWeights.pvc.create": "true"},
        {"modelWeights.source": "objectStore", "modelWeights.objectStore.endpoint": "https://minio:9000"},
        {"upgradeStrategy.type": "NewCluster"},
        {"upgradeStrategy.type": "NewClusterWithIncrementalUpgrade",
         "upgradeStrategy.clusterUpgradeOptions.gatewayClassName": "istio",
         "upgradeStrategy.clusterUpgradeOptions.stepSizePercent": "10",
         "upgradeStrategy.clusterUpgradeOptions.intervalSeconds": "30"},
        {"apiKey.existingSecret": "prod-key", "networkPolicy.enabled": "false", "services.type": "LoadBalancer"},
        {"workerGroups.overrides.a100-80g.maxReplicas": "2", "workerGroups.overrides.a100-80g.priorityClassName": "x"},
    ],
    ids=["pvc", "object-store", "new-cluster", "incremental", "existing-secret", "override"],
)
def test_variants_are_valid(helm, crds, sets):
    objs = render("a100-80g", sets)
    assert ch.validate_objects(objs, crds) == {}


@pytest.mark.parametrize(
    "bad",
    ["profile=v100", "upgradeStrategy.type=Recreate", "modelWeights.source=nfs", "bogus=1", "image.tags.gpu=",
     "autoscaler.version=v3", "services.type=ExternalName", "podSecurity.runAsUser=0",
     "upgradeStrategy.type=NewClusterWithIncrementalUpgrade", "workerGroups.overrides.GPU_POOL.maxReplicas=2"],
)
def test_schema_rejects_bad_values(helm, bad):
    key, _, value = bad.partition("=")
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        ch.template(sets={key: value})


def test_float_values_are_type_checked(helm):
    proc = subprocess.run([helm, "template", "x", str(CHART_DIR), "--set-json", "workerGroups.nodeShare=1.5"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "nodeShare" in proc.stderr


# ---- structure ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROFILES)
def test_serve_config_v2_is_armed_serve_config(helm, name):
    rs = rayservice(render(name))
    assert yaml.safe_load(rs["spec"]["serveConfigV2"]) == serve_config(load_profile(name))


@pytest.mark.parametrize("name", ["cpu", "l4"])
def test_render_values_file_path_gives_the_same_serve_config(helm, tmp_path, name):
    values = tmp_path / "v.yaml"
    values.write_text(values_file(load_profile(name)), encoding="utf-8")
    rs = rayservice(ch.template(values_files=(values,), sets=with_weights()))
    assert rs["spec"]["serveConfigV2"] == rayservice(render(name))["spec"]["serveConfigV2"]
    assert yaml.safe_load(rs["spec"]["serveConfigV2"]) == serve_config(load_profile(name))
    # A profile file given by path (a copy outside gpu_profiles/): `armed serve-config --profile ./x.yaml` and
    # the chart's serveConfigV2 from `armed-ops render-values --profile ./x.yaml` are the same bytes.
    from armed.serving.cli import cmd_serve_config

    copy = tmp_path / f"{name}.yaml"
    shutil.copy(PROFILE_DIR / f"{name}.yaml", copy)
    out = tmp_path / "serve.yaml"
    assert cmd_serve_config(argparse.Namespace(profile=str(copy), out=out)) == 0
    values.write_text(values_file(load_profile(copy)), encoding="utf-8")
    rs = rayservice(ch.template(values_files=(values,), sets=with_weights()))
    assert rs["spec"]["serveConfigV2"] == out.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", PROFILES)
def test_one_worker_group_per_pool_with_gpus_where_the_profile_says(helm, name):
    profile = load_profile(name)
    rc = rayservice(render(name))["spec"]["rayClusterConfig"]
    assert rc["enableInTreeAutoscaling"] is True and rc["autoscalerOptions"]["version"] == "v2"
    groups = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
    assert list(groups) == [p.name for p in profile.pools]
    for pool in profile.pools:
        g = groups[pool.name]
        assert (g["minReplicas"], g["maxReplicas"]) == (pool.min_nodes, pool.max_nodes)
        # Ray resources live in the group's `resources` field only (KubeRay rejects them in both places).
        assert not {"num-cpus", "num-gpus", "memory", "resources"} & set(g["rayStartParams"])
        assert g["resources"]["CPU"] == str(pool.cpus_per_node)
        assert g["resources"]["GPU"] == str(pool.gpus_per_node)
        spec = g["template"]["spec"]
        (c,) = spec["containers"]
        res = c["resources"]
        assert spec["nodeSelector"]["armed.io/pool"] == pool.name
        assert g["labels"]["armed.io/pool"] == pool.name
        if pool.gpus_per_node:
            assert res["limits"]["nvidia.com/gpu"] == str(pool.gpus_per_node)
            assert res["requests"]["nvidia.com/gpu"] == str(pool.gpus_per_node)
            assert g["resources"][f"accelerator_type:{pool.gpu_type}"] == "1"
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
            assert spec["priorityClassName"] == "armed-serving-gpu"
        else:
            assert "nvidia.com/gpu" not in res["limits"] and "nvidia.com/gpu" not in res["requests"]
            assert not any(k.startswith("accelerator_type:") for k in g["resources"])
    # every replica that asks for GPUs lands on a pool that has them
    for role in profile.deployed_roles():
        rp = profile.models[role]
        if rp.resources.num_gpus:
            assert groups[rp.pool]["resources"]["GPU"] != "0"


@pytest.mark.parametrize("name", PROFILES)
def test_head_schedules_no_serve_work(helm, name):
    head = rayservice(render(name))["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["num-gpus"] == "0"
    (c,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])


@pytest.mark.parametrize("name", PROFILES)
def test_requests_limits_security_and_probes_everywhere(helm, name):
    rs = rayservice(render(name, {"modelWeights.source": "objectStore"}))
    rc = rs["spec"]["rayClusterConfig"]
    assert rc["autoscalerOptions"]["resources"]["requests"] and rc["autoscalerOptions"]["resources"]["limits"]
    pods = [rc["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in rc["workerGroupSpecs"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] >= 60
        for c in pod["containers"] + pod.get("initContainers", []):
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
        for c in pod["containers"]:
            # KubeRay injects its own liveness/readiness probes only where the template has none (test_podspec.py).
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe not in c, (c["name"], probe)
            assert "preStop" in c["lifecycle"]
            assert {"name": "ARMED_API_KEY", "valueFrom": {"secretKeyRef": {"name": "armed-api-key",
                                                                             "key": "api-key"}}} in c["env"]
            # Every Ray container's Serve proxy carries the header guard (the one list is proxy_guard.PROXY_ENV).
            for var, value in PROXY_ENV.items():
                assert {"name": var, "value": value} in c["env"], (c["name"], var)


@pytest.mark.parametrize("name", PROFILES)
def test_services_ingress_and_alerts_per_model(helm, name):
    profile = load_profile(name)
    objs = render(name, ALL_ON)
    roles = profile.deployed_roles()
    (ing,) = by_kind(objs, "Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {**{f"/models/{r}": "armed-serve-svc" for r in roles}, "/": "armed-serve-svc"}
    (rule,) = by_kind(objs, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {"ArmedJudgeErrorRateHigh", "ArmedDegradedRateHigh", "ArmedQueueDepthHigh"} <= set(alerts)
    assert alerts.count("ArmedReplicasAtMax") == len(roles) + 1
    pdbs = by_kind(objs, "PodDisruptionBudget")
    assert len(pdbs) == len(profile.pools)


def test_dashboard_panels(helm):
    objs = render("a100-80g")
    (cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "armed-dashboard"]
    dash = json.loads(cm["data"]["armed-dashboard.json"])
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for word in ("requests per second", "latency", "queued", "replicas", "stage latency", "cache hit",
                 "degraded", "label distribution"):
        assert word in titles


def test_notes_name_the_endpoints(helm, tmp_path):
    text = render_notes(tmp_path, profile="l4", sets=with_weights({"ingress.enabled": "true"}))
    assert "http://armed-serve-svc.armed.svc:8000/v1/judge" in text
    assert "http://armed-serve-svc.armed.svc:8000/models/llm" in text
    assert "port-forward" in text and "armed-ops status" in text
