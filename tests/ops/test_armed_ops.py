"""armed-ops over real HTTP: the kubernetes client against the in-repo fake API server (CRD validation wired in),
Prometheus queries against a fake Prometheus HTTP API."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from armed.serving.config import serve_config
from armed.serving.profiles import load_profile
from ops import capacity, tune
from ops.cli import EXIT_API, EXIT_INPUT, main
from ops.kube import api_client, autoscaling_ref, deployment_bounds, get_rayservice, patch_serve_config
from ops.profile_values import serve_config_text
from tests.ops.fake_kube import FakeKube, FakePrometheus

NS, NAME, CLUSTER = "armed", "armed", "armed-raycluster-abcde"
EXAMPLE = "ops/examples/benchmark.EXAMPLE.json"


def rayservice(profile_name: str = "a100-80g") -> dict:
    profile = load_profile(profile_name)
    groups = []
    for pool in profile.pools:
        limits = {"cpu": str(pool.cpus_per_node), "memory": f"{pool.memory_gib_per_node}Gi"}
        if pool.gpus_per_node:
            limits["nvidia.com/gpu"] = str(pool.gpus_per_node)
        roles = [r for r in profile.deployed_roles() if profile.models[r].pool == pool.name]
        roles += ["judge"] if profile.judge.pool == pool.name else []
        group = {"groupName": pool.name, "minReplicas": pool.min_nodes, "maxReplicas": pool.max_nodes,
                 "rayStartParams": {"num-gpus": str(pool.gpus_per_node)},
                 "template": {"metadata": {"annotations": {"armed.io/roles": ",".join(roles)}},  # as the chart
                              "spec": {"containers": [{"name": "ray-worker", "image": "armed-ray:x",
                                                       "resources": {"limits": limits}}]}}}
        if pool.gpu_type:
            group["resources"] = {f"accelerator_type:{pool.gpu_type}": "1"}
        groups.append(group)
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"armed.io/profile": profile.name}},
        "spec": {
            "serveConfigV2": serve_config_text(profile),
            "rayClusterConfig": {
                "rayVersion": "2.60.0", "enableInTreeAutoscaling": True,
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                                  "template": {"spec": {"containers": [{"name": "ray-head", "image": "armed-ray:x"}]}}},
                "workerGroupSpecs": groups,
            },
        },
        "status": {
            "serviceStatus": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints", "message": "",
                 "lastTransitionTime": "2026-11-26T00:00:00Z"},
                {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster", "message": "",
                 "lastTransitionTime": "2026-11-26T00:00:00Z"},
            ],
            "activeServiceStatus": {
                "rayClusterName": CLUSTER,
                "applicationStatuses": {
                    "llm": {"status": "RUNNING", "serveDeploymentStatuses": {
                        "armed-llm": {"status": "UPSCALING"}, "OpenAiIngress": {"status": "HEALTHY"}}},
                    "vl": {"status": "UNHEALTHY", "message": "replica failed health check",
                           "serveDeploymentStatuses": {"vl": {"status": "UNHEALTHY",
                                                              "message": "check_health timed out after 120s"}}},
                    "judge": {"status": "RUNNING", "serveDeploymentStatuses": {
                        "Judge": {"status": "HEALTHY"}, "Gateway": {"status": "HEALTHY"}}},
                },
            },
        },
    }


def pod(name: str, group: str | None, ready: bool, phase: str = "Running", gpus: int = 0,
        unschedulable: str | None = None) -> dict:
    labels = {"ray.io/cluster": CLUSTER, "ray.io/node-type": "head" if group is None else "worker"}
    if group:
        labels["ray.io/group"] = group
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conds = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "ray", "image": "armed-ray:x", "resources": {"limits": limits}}]},
            "status": {"phase": phase, "conditions": conds}}


@pytest.fixture
def kube(crds, tmp_path):
    fake = FakeKube(crds)
    fake.start()
    fake.put(rayservice(), "rayservices")
    for p in [pod("head-0", None, True), pod("cpu-0", "cpu", True), pod("gpu-0", "a100-80g", True, gpus=8),
              pod("gpu-1", "a100-80g", False, "Pending", gpus=8,
                  unschedulable="0/5 nodes are available: 5 Insufficient nvidia.com/gpu."),
              pod("other-cluster", "cpu", True)]:
        if p["metadata"]["name"] == "other-cluster":
            p["metadata"]["labels"]["ray.io/cluster"] = "someone-else"
        fake.put(p, "pods")
    fake.kc = fake.kubeconfig(str(tmp_path / "kubeconfig"))
    yield fake
    fake.stop()


def q(labels_values):
    return [({"application": a, "deployment": d}, v) for (a, d), v in labels_values.items()]


@pytest.fixture
def prom():
    fake = FakePrometheus([
        ("ray_serve_deployment_replica_healthy", q({("llm", "armed-llm"): 4, ("judge", "Judge"): 3,
                                                      ("embedder", "armed-embedder"): 1})),
        ("ray_serve_replica_processing_queries", q({("llm", "armed-llm"): 40, ("judge", "Judge"): 5,
                                                     ("embedder", "armed-embedder"): 70})),
        ("ray_serve_deployment_queued_queries", q({("llm", "armed-llm"): 50, ("embedder", "armed-embedder"): 20})),
        ("histogram_quantile", q({("llm", "armed-llm"): 2500, ("judge", "Judge"): 800,
                                  ("embedder", "armed-embedder"): 40})),
    ])
    yield fake
    fake.stop()


# ---- status ------------------------------------------------------------------------------------------------

def test_status_text(kube, prom, capsys):
    rc = main(["status", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--prometheus", prom.url])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"active cluster: {CLUSTER}" in out
    assert "Ready" in out and "NonZeroServeEndpoints" in out
    assert "vl             UNHEALTHY" in out and "check_health timed out" in out
    assert "armed-llm" in out and "replicas 4 in [1, 4]  AT MAX" in out
    assert "a100-80g       ready 1  pending 1" in out
    assert "PENDING GPU POD gpu-1 (8 GPU): Unschedulable: 0/5 nodes are available" in out
    assert "Head: 1/1 ready" in out
    assert ("GET", "/apis/ray.io/v1/namespaces/armed/rayservices/armed") in kube.requests


def test_status_json_without_prometheus(kube, capsys):
    assert main(["status", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    groups = {g["name"]: g for g in data["worker_groups"]}
    assert groups["cpu"]["ready"] == 1  # the other cluster's pod is not counted
    assert groups["a100-80g"]["pending_gpu"][0]["gpus"] == 8
    llm = next(a for a in data["applications"] if a["name"] == "llm")
    dep = next(d for d in llm["deployments"] if d["name"] == "armed-llm")
    assert (dep["min"], dep["max"], dep["replicas"]) == (1, 4, None)


def test_status_missing_rayservice_is_a_clear_error(kube, capsys):
    assert main(["status", "--kubeconfig", kube.kc, "-n", NS, "--name", "nope"]) == EXIT_API
    assert "Kubernetes API 404" in capsys.readouterr().err


# ---- tune --------------------------------------------------------------------------------------------------

@pytest.fixture
def objectives(tmp_path):
    path = tmp_path / "objectives.yaml"
    path.write_text(yaml.safe_dump({"default": {"p95_ms": 5000}, "llm": {"p95_ms": 2000}}))
    return str(path)


def test_tune_recommends_without_applying(kube, prom, objectives, capsys):
    before = copy.deepcopy(kube.get("ray.io/v1", NS, "rayservices", NAME))
    assert main(["tune", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--prometheus", prom.url,
                 "--objectives", objectives]) == 0
    out = capsys.readouterr().out
    assert "llm/armed-llm:" in out and "R1 at max 4" in out
    assert "autoscaling_config.max_replicas: 4 -> 7" in out  # ceil((40*4 + 50) / 32) = 7
    assert "R2 p95 2500 ms > objective 2000 ms" in out
    assert "Not applied" in out
    assert kube.get("ray.io/v1", NS, "rayservices", NAME)["metadata"]["resourceVersion"] == \
        before["metadata"]["resourceVersion"]
    assert all('namespace="armed"' in qq for qq in prom.queries)


def test_tune_apply_patches_serve_config_in_place(kube, prom, objectives, capsys):
    before = kube.get("ray.io/v1", NS, "rayservices", NAME)
    rv = before["metadata"]["resourceVersion"]
    assert main(["tune", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--prometheus", prom.url,
                 "--objectives", objectives, "--apply"]) == 0
    assert "Applied to spec.serveConfigV2" in capsys.readouterr().out
    after = kube.get("ray.io/v1", NS, "rayservices", NAME)
    assert after["metadata"]["resourceVersion"] != rv
    cfg = yaml.safe_load(after["spec"]["serveConfigV2"])
    bounds = deployment_bounds(cfg)
    llm = bounds[("llm", "armed-llm")]
    assert llm["max_replicas"] == 7
    assert llm["target_ongoing_requests"] == 25.6  # 32 * 2000 / 2500
    assert llm["upscale_delay_s"] == 15.0
    emb = bounds[("embedder", "armed-embedder")]  # 70 ongoing >= 64 target at max? no: 1 < 4 replicas → R3 only
    assert emb["upscale_delay_s"] == 7.5 and emb["max_replicas"] == 4
    # everything else is untouched; the cluster spec is not changed (an in-place Serve update)
    original = serve_config(load_profile("a100-80g"))
    assert cfg["applications"][-1] == original["applications"][-1]
    assert after["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]


def test_tune_apply_conflict_is_409(kube, prom, monkeypatch, capsys):
    stale = copy.deepcopy(kube.get("ray.io/v1", NS, "rayservices", NAME))
    kube.put(kube.get("ray.io/v1", NS, "rayservices", NAME), "rayservices")  # someone else wrote it
    monkeypatch.setattr(tune, "get_rayservice", lambda *a: stale)
    assert main(["tune", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--prometheus", prom.url,
                 "--apply"]) == EXIT_API
    assert "Kubernetes API 409" in capsys.readouterr().err


def test_bad_patch_gets_422_from_crd_validation(kube):
    api = api_client(kube.kc)
    co = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object("ray.io", "v1", NS, "rayservices", NAME,
                                          {"spec": {"serveConfigV2": {"applications": []}}})
    assert exc.value.status == 422 and "serveConfigV2" in exc.value.body
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object("ray.io", "v1", NS, "rayservices", NAME,
                                          {"spec": {"rayClusterConfig": {"workerGroupSpecs": [{"groupName": "x"}]}}})
    assert exc.value.status == 422
    # and a good patch through the helper passes
    rs = get_rayservice(api, NS, NAME)
    cfg = yaml.safe_load(rs["spec"]["serveConfigV2"])
    out = patch_serve_config(api, NS, NAME, cfg, rs["metadata"]["resourceVersion"])
    assert out["metadata"]["generation"] == 2


def test_fake_server_watch_and_create(kube):
    api = api_client(kube.kc)
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(NS, client.V1Pod(metadata=client.V1ObjectMeta(name="new"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="i")])))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(NS, {"metadata": {"name": "new"}, "spec": {"containers": []}})
    assert exc.value.status == 409
    from kubernetes import watch

    names = [e["object"].metadata.name for e in watch.Watch().stream(core.list_namespaced_pod, NS,
                                                                     timeout_seconds=1)]
    assert "new" in names and "head-0" in names


def test_recommend_rules_unit():
    cfg = serve_config(load_profile("a100-80g"))
    goals = tune.load_objectives(latency_ms=1000)
    # the judge idles at min 2, but 2 is its availability floor: R4 never takes it lower
    idle_judge = {("judge", "Judge"): tune.Observation("judge", "Judge", 2, 1.0, 0.0, 100.0)}
    assert tune.recommend(cfg, idle_judge, goals) == []
    # the same idleness at a floor of 2 on a model deployment does lower it (R4)
    autoscaling_ref(cfg, "embedder", "armed-embedder").update(min_replicas=2, initial_replicas=2)
    idle_emb = {("embedder", "armed-embedder"): tune.Observation("embedder", "armed-embedder", 2, 1.0, 0.0, 10.0)}
    (rec,) = tune.recommend(cfg, idle_emb, goals)
    assert rec.changes == {"min_replicas": (2, 1)} and rec.reasons[0].startswith("R4")
    assert tune.recommend(cfg, {}, goals) == []


# ---- capacity ----------------------------------------------------------------------------------------------

def test_capacity_arithmetic():
    profile = load_profile("a100-80g")
    bench = capacity.load_benchmark(EXAMPLE)
    roles, pools = capacity.plan(profile, bench, qps=10, latency_ms=5000, headroom=0.5, cache_hit_rate=0.5)
    r = {x.role: x for x in roles}
    # llm: 10 qps * 3 calls * (1 - 0.5) = 15 req/s; 6 req/s * 0.5 = 3 usable → 5 replicas (> max 4: flagged)
    assert r["llm"].demand_rps == 15 and r["llm"].per_replica_rps == 3 and r["llm"].replicas == 5
    assert r["llm"].gpus == 10 and any("raise replicas.max" in n for n in r["llm"].notes)
    assert r["embedder"].replicas == 1  # the profile's floor
    assert r["judge"].demand_rps == 10  # the judge's own calls are not cached
    p = {x.pool: x for x in pools}
    gpus = 10 + 0.25 + 0.25 + r["student"].gpus + r["vl"].gpus
    assert p["a100-80g"].gpus == gpus and p["a100-80g"].nodes == -(-gpus // 8)
    assert p["a100-80g"].cost_per_hour == p["a100-80g"].nodes * 8 * 3.0


def test_capacity_cli(capsys):
    assert main(["capacity", "--profile", "a100-80g", "--qps", "20", "--latency-ms", "3000",
                 "--benchmark", EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "EXAMPLE FILE, NOT MEASURED" in out
    assert "= max(1, ceil(60.00 / 4.20))" in out and "total $" in out
    assert main(["capacity", "--profile", "cpu", "--qps", "1", "--latency-ms", "3000", "--benchmark", EXAMPLE,
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {x["role"] for x in data["roles"]} == {"embedder", "ocr", "student", "judge"}


def test_capacity_bad_inputs(tmp_path, capsys):
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"models": {"llm": {"requests_per_s": 0}}}))
    assert main(["capacity", "--profile", "cpu", "--qps", "1", "--latency-ms", "1", "--benchmark", str(bad)]) \
        == EXIT_INPUT
    assert "requests_per_s must be a positive number" in capsys.readouterr().err
    partial = tmp_path / "p.json"
    partial.write_text(json.dumps({"models": {"llm": {"requests_per_s": 1}}}))
    assert main(["capacity", "--profile", "cpu", "--qps", "1", "--latency-ms", "1", "--benchmark",
                 str(partial)]) == EXIT_INPUT
    assert main(["capacity", "--profile", "nope", "--qps", "1", "--latency-ms", "1", "--benchmark",
                 EXAMPLE]) == EXIT_INPUT


# ---- render-values -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "h100-80g"])
def test_render_values(name, capsys):
    assert main(["render-values", "--profile", name]) == 0
    values = yaml.safe_load(capsys.readouterr().out)
    assert values["profile"] == name
    pv = values["profileValues"]
    assert yaml.safe_load(pv["serveConfigV2"]) == serve_config(load_profile(name))
    assert [p["name"] for p in pv["pools"]] == [p.name for p in load_profile(name).pools]


def test_render_values_unknown_profile(capsys):
    assert main(["render-values", "--profile", "v100"]) == EXIT_INPUT
    assert "no profile" in capsys.readouterr().err


# ---- a real cluster (skips here) ---------------------------------------------------------------------------

@pytest.mark.cluster
def test_status_on_a_real_cluster(capsys):
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("needs a real cluster: set KUBECONFIG (and ARMED_OPS_NAMESPACE / ARMED_OPS_NAME)")
    rc = main(["status", "-n", os.environ.get("ARMED_OPS_NAMESPACE", "armed"),
               "--name", os.environ.get("ARMED_OPS_NAME", "armed"), "--json"])
    assert rc == 0
    assert "conditions" in json.loads(capsys.readouterr().out)
