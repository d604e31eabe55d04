"""Honest packing (`armed-ops capacity`) and bounded, per-deployment, engine-preserving tuning (`armed-ops tune`).

tune runs against the in-repo fake Kubernetes API server (the real kubernetes client, CRD validation wired in) and
a fake Prometheus that replays recorded /api/v1/query answers (tests/ops/fixtures/*.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from armed.serving.config import serve_config
from armed.serving.profiles import load_profile
from ops import capacity, tune
from ops.cli import main
from ops.kube import deployment_bounds
from ops.packing import PACK, NodeShape, Replica, most_that_fit, pack
from ops.pools import footprints, group_of, worker_groups
from tests.ops.fake_kube import FakeKube, FakePrometheus
from tests.ops.test_armed_ops import EXAMPLE, NAME, NS, rayservice

RECORDING = Path(__file__).parent / "fixtures" / "prometheus-a100-80g-l4-busy.json"
PROFILE = "a100-80g-l4"


# ---- packing -----------------------------------------------------------------------------------------------

def test_fractions_of_different_sizes_do_not_share_a_gpu():
    shape = NodeShape(gpus=8, cpus=96)
    big = [Replica("llm", 0.55, 1)] * 36
    packed = pack(big, shape)
    assert sum(r.gpus for r in big) == pytest.approx(19.8)  # what summing plans
    assert packed.gpus_touched == 36 and len(packed.nodes) == 5  # what Ray needs: 0.45 left on each GPU
    # ... and the 0.45 left on each is still usable by replicas that fit in it
    mixed = pack(big + [Replica("small", 0.45, 1)] * 36, shape)
    assert mixed.gpus_touched == 36 and not mixed.unplaced
    assert pack([*big, Replica("half", 0.5, 1)], shape).gpus_touched == 37


def test_whole_gpu_replicas_need_free_gpus_and_cpus_and_memory_bind():
    shape = NodeShape(gpus=2, cpus=8, memory_gib=64)
    # a 0.25 on each GPU leaves no whole free GPU for a 2-GPU (tensor-parallel) replica on that node
    packed = pack([Replica("a", 0.25), Replica("b", 0.25), Replica("tp2", 2)], shape)
    assert len(packed.nodes) == 2 and packed.nodes[0].replicas == ["tp2"]
    assert len(pack([Replica("cpu", 0, 3)] * 5, shape).nodes) == 3  # 8 CPUs hold two 3-CPU replicas
    assert len(pack([Replica("mem", 0, 1, 40)] * 3, shape).nodes) == 3
    with pytest.raises(ValueError, match="whole number"):
        Replica("bad", 1.5)


def test_max_nodes_leaves_replicas_unplaced_and_most_that_fit_counts_them():
    shape = NodeShape(gpus=2, cpus=24)
    packed = pack([Replica("llm", 2, 1)] * 5, shape, max_nodes=4)
    assert len(packed.nodes) == 4 and len(packed.unplaced) == 1
    assert most_that_fit([], Replica("llm", 2, 1), shape, 4, PACK) == 4
    smalls = [Replica("s", 0.25, 2)] * 3
    # Serve's pack: one GPU holds the three 0.25s (spread holds 5: tests/ops/test_placement.py works it out)
    assert most_that_fit(smalls, Replica("vl", 1, 4), shape, 4, PACK) == 7
    assert most_that_fit([Replica("x", 0, 25)], Replica("vl", 1, 4), shape, 4, PACK) == 0  # others overflow


# ---- capacity ----------------------------------------------------------------------------------------------

def test_capacity_packs_where_summing_is_wrong():
    # h100-x1: the 32B takes 0.55 of an H100; 72 judgments/s need 36 LLM replicas (6 req/s each, 3 calls per
    # judgment, headroom 1). Summing says ~20 GPUs; each 0.55 needs its own GPU (VL and the 0.6B models fill the
    # 0.45 left on some of them), so 36 single-GPU nodes.
    profile = load_profile("h100-x1")
    bench = capacity.load_benchmark(EXAMPLE)
    roles, pools = capacity.plan(profile, bench, qps=72, latency_ms=10_000, headroom=1.0)
    r = {x.role: x for x in roles}
    assert r["llm"].replicas == 36 and r["llm"].gpus == pytest.approx(19.8)
    gpu = next(p for p in pools if p.pool == "h100-x1")
    assert gpu.gpus < 24  # the naive sum
    assert gpu.gpus_occupied == 36 and gpu.nodes == 36 and gpu.gpus_total == 36
    assert gpu.cost_per_hour == pytest.approx(36 * 5.0)  # benchmark price of an H100, 1 per node
    assert any("do not share across sizes" in n for n in gpu.notes)
    assert any("needs 36 nodes > pool max_nodes 1" in n for n in gpu.notes)


def test_capacity_heterogeneous_profile_prices_each_pool(capsys):
    profile = load_profile(PROFILE)
    assert {p.name: p.gpu_type for p in profile.pools} == {"cpu": None, "a100-80g-x2": "A100-80G", "l4-x2": "L4"}
    assert profile.models["llm"].pool == "a100-80g-x2"
    assert {profile.models[r].pool for r in ("embedder", "consistency", "student", "vl")} == {"l4-x2"}
    assert profile.judge.pool == profile.models["ocr"].pool == "cpu"
    bench = capacity.load_benchmark(EXAMPLE)
    roles, pools = capacity.plan(profile, bench, qps=4, latency_ms=10_000, headroom=0.5)
    p = {x.pool: x for x in pools}
    # llm: 4 * 3 / 3 usable = 4 replicas of 2 GPUs on 2-GPU nodes → 4 nodes at the pool's own price
    assert p["a100-80g-x2"].nodes == 4 and p["a100-80g-x2"].cost_per_hour == pytest.approx(4 * 10.06)
    assert p["a100-80g-x2"].price_source == "profile cost_per_node_hour"
    # l4: three 0.25s share one GPU, VL (1 GPU each) the rest
    vl = next(x for x in roles if x.role == "vl").replicas
    assert p["l4-x2"].gpus_occupied == 1 + vl and p["l4-x2"].nodes == -(-(1 + vl) // 2)
    assert p["cpu"].cost_per_hour == pytest.approx(p["cpu"].nodes * 0.78)
    assert "judge/Gateway" in {n for node in p["cpu"].per_node for n in node}  # the judge app's proxy is placed too
    assert {x.strategy for x in pools} == {"spread"}  # the chart's Serve controller: spread (test_placement.py)
    assert main(["capacity", "--profile", PROFILE, "--qps", "4", "--latency-ms", "10000", "--headroom", "0.5",
                 "--benchmark", EXAMPLE]) == 0
    out = capsys.readouterr().out
    total = sum(x.cost_per_hour for x in pools)
    assert f"total ${total:,.2f}/h" in out and "pool l4" in out and "(profile cost_per_node_hour)" in out


# ---- tune against recorded metrics -------------------------------------------------------------------------

@pytest.fixture
def kube(crds, tmp_path):
    fake = FakeKube(crds)
    fake.start()
    fake.put(rayservice(PROFILE), "rayservices")
    fake.kc = fake.kubeconfig(str(tmp_path / "kubeconfig"))
    yield fake
    fake.stop()


@pytest.fixture
def prom():
    fake = FakePrometheus.from_recording(RECORDING)
    yield fake
    fake.stop()


def _tune(kube, prom, *extra: str) -> int:
    return main(["tune", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--prometheus", prom.url, *extra])


def _section(out: str, head: str) -> str:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return "\n".join(lines[start:end])


def test_pools_and_footprints_are_read_from_the_rayservice():
    rs = rayservice(PROFILE)
    groups = {g.name: g for g in worker_groups(rs)}
    assert (groups["a100-80g-x2"].shape.gpus, groups["a100-80g-x2"].max_nodes, groups["a100-80g-x2"].gpu_type) == \
        (2, 4, "A100-80G")
    fps = footprints(yaml.safe_load(rs["spec"]["serveConfigV2"]))
    llm = fps[("llm", "armed-llm")]
    assert (llm.replica.gpus, llm.accelerator_type) == (2.0, "A100-80G")  # TP 2 → two GPU bundles
    assert fps[("embedder", "armed-embedder")].replica.gpus == 0.25
    assert group_of("llm", llm, list(groups.values())).name == "a100-80g-x2"
    assert group_of("judge", fps[("judge", "Gateway")], list(groups.values())).name == "cpu"
    del rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][2]["template"]["metadata"]  # no roles annotation
    unlabelled = worker_groups(rs)
    assert group_of("vl", fps[("vl", "armed-vl")], unlabelled).name == "l4-x2"  # by accelerator type
    assert group_of("ocr", fps[("ocr", "ocr")], unlabelled).name == "cpu"


def test_tune_recorded_busy_hour(kube, prom, capsys):
    assert _tune(kube, prom) == 0
    out = capsys.readouterr().out
    llm = _section(out, "llm/armed-llm:")
    # at max 4 with vLLM queueing: 160 held (the 30 waiting in vLLM among them, counted once) + 50 queued in Serve
    # at target 32 want 7, but 4 two-GPU nodes hold 4 → max_replicas is NOT raised
    assert "R1 at max 4 replicas holding 160 requests" in llm and "30 of them waiting in vLLM" in llm
    assert "50 queued in Serve (target 32): load needs ~7;" in llm
    assert "worker group a100-80g-x2 holds at most 4 at maxReplicas 4" in llm and "not raised" in llm
    assert "under Serve's spread placement" in llm
    assert out.startswith("Replica placement assumed for pool bounds: Serve's spread (Serve's default: ")
    assert "max_replicas" not in llm.split("because")[-1]
    # vLLM's own metrics: 7.5 waiting per replica and a 97% KV cache → admit fewer per replica, scale sooner
    assert "R6 vLLM engine saturated: 7.5 waiting/replica" in llm and "KV cache 97%" in llm
    assert "target_ongoing_requests: 32.0 -> 25.6" in llm and "upscale_delay_s: 30.0 -> 15.0" in llm
    assert "override of the ray.serve.llm app; args untouched" in llm
    # VL: the load wants 9, the L4 pool holds 7 beside the three 0.25-GPU models (embedder at 2 replicas), spread
    vl = _section(out, "vl/armed-vl:")
    assert "autoscaling_config.max_replicas: 4 -> 7" in vl and "holds at most 7" in vl
    # per-deployment objectives: the embedder misses its 300 ms; the judge's 5 s p95 is within its 8 s
    assert "R2 p95 400 ms > objective 300 ms" in _section(out, "embedder/armed-embedder:")
    assert "judge/" not in out  # idle at min 2, its availability floor: never lowered
    assert "Not applied" in out and "restart" not in out
    assert all('namespace="armed"' in q for q in prom.queries)
    assert any("ray_vllm_kv_cache_usage_perc" in q for q in prom.queries)


def test_tune_one_latency_for_all_is_still_possible_but_per_deployment_wins(kube, prom, tmp_path, capsys):
    goals = tmp_path / "o.yaml"
    goals.write_text(yaml.safe_dump({"default": {"p95_ms": 100}, "judge/Judge": {"p95_ms": 4000}}))
    assert _tune(kube, prom, "--objectives", str(goals)) == 0
    out = capsys.readouterr().out
    assert "R2 p95 5000 ms > objective 4000 ms" in _section(out, "judge/Judge:")
    assert "R2 p95 5100 ms > objective 100 ms" in _section(out, "judge/Gateway:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"llm": {"p99_ms": 1}}))
    assert _tune(kube, prom, "--objectives", str(bad)) == 2
    assert "unknown fields ['p99_ms']" in capsys.readouterr().err


def _code_versions(cfg: dict) -> dict[str, str]:
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(cfg)  # what Serve's REST API accepts
    return {app.name: get_app_code_version(app) for app in schema.applications}


def test_tune_apply_changes_ray_llm_autoscaling_without_a_new_code_version(kube, prom, capsys):
    before = yaml.safe_load(kube.get("ray.io/v1", NS, "rayservices", NAME)["spec"]["serveConfigV2"])
    assert _tune(kube, prom, "--apply") == 0
    assert "Applied to spec.serveConfigV2" in capsys.readouterr().out
    after = yaml.safe_load(kube.get("ray.io/v1", NS, "rayservices", NAME)["spec"]["serveConfigV2"])
    app_b, app_a = (next(a for a in c["applications"] if a["name"] == "llm") for c in (before, after))
    assert app_a["args"] == app_b["args"] and app_a["import_path"] == app_b["import_path"]
    (override,) = app_a["deployments"]
    assert override["name"] == "armed-llm" and set(override) == {"name", "autoscaling_config"}
    assert override["autoscaling_config"]["target_ongoing_requests"] == 25.6
    assert override["autoscaling_config"]["max_replicas"] == 4  # bounded by the pool
    assert deployment_bounds(after)[("llm", "armed-llm")]["target_ongoing_requests"] == 25.6
    # Ray's own code version (its change would restart every vLLM engine) is unchanged for every application
    assert _code_versions(after) == _code_versions(before)
    assert deployment_bounds(after)[("vl", "armed-vl")]["max_replicas"] == 7


def test_tune_warns_once_when_an_old_config_has_no_llm_override(kube, prom, capsys):
    rs = kube.get("ray.io/v1", NS, "rayservices", NAME)
    cfg = yaml.safe_load(rs["spec"]["serveConfigV2"])
    llm_app = next(a for a in cfg["applications"] if a["name"] == "llm")
    del llm_app["deployments"]  # a RayService rendered before the override existed
    legacy = copy.deepcopy(rs)
    legacy["spec"]["serveConfigV2"] = yaml.safe_dump(cfg, sort_keys=False)
    kube.put(legacy, "rayservices")
    assert _tune(kube, prom, "--apply") == 0
    assert "app llm gets its first per-deployment autoscaling override" in capsys.readouterr().out
    after = yaml.safe_load(kube.get("ray.io/v1", NS, "rayservices", NAME)["spec"]["serveConfigV2"])
    before_v, after_v = _code_versions(cfg), _code_versions(after)
    assert before_v["llm"] != after_v["llm"]  # the warning is true: Ray sees a new code version once ...
    assert {k: v for k, v in before_v.items() if k != "llm"} == {k: v for k, v in after_v.items() if k != "llm"}
    assert _code_versions(tune.apply_to(after, tune.recommend(  # ... and never again
        after, {("llm", "armed-llm"): tune.Observation("llm", "armed-llm", 1, 1.0, 0.0, 100.0)},
        tune.load_objectives()))) == after_v


def test_serve_config_carries_the_llm_override_from_the_first_deploy():
    for name in ("a100-80g", PROFILE, "l4"):
        cfg = serve_config(load_profile(name))
        app = next(a for a in cfg["applications"] if a["name"] == "llm")
        (dep,) = app["deployments"]
        assert dep["autoscaling_config"] == app["args"]["llm_configs"][0]["deployment_config"]["autoscaling_config"]


def test_engine_saturation_blocks_raising_the_target_and_judge_floor_is_restored():
    cfg = serve_config(load_profile("a100-80g"))
    goals = tune.load_objectives()
    calm = tune.Observation("llm", "armed-llm", 2, 30.0, 0.0, 1000.0, engine_waiting=0.0, kv_cache_usage=0.5)
    (rec,) = tune.recommend(cfg, {("llm", "armed-llm"): calm}, goals)
    assert rec.changes["target_ongoing_requests"] == (32, 40.0)  # R5: latency to spare
    full_kv = tune.Observation("llm", "armed-llm", 2, 30.0, 0.0, 1000.0, engine_waiting=0.0, kv_cache_usage=0.95)
    (rec,) = tune.recommend(cfg, {("llm", "armed-llm"): full_kv}, goals)
    assert rec.changes["target_ongoing_requests"] == (32, 25.6) and rec.reasons[0].startswith("R6")
    single = serve_config(load_profile("h100-x1"))  # a small deployment with the judge at min 1
    recs = {r.deployment: r for r in tune.recommend(single, {}, goals)}
    assert recs["Judge"].changes["min_replicas"] == (1, 2) and recs["Gateway"].changes["min_replicas"] == (1, 2)
    assert recs["Judge"].changes["initial_replicas"] == (1, 2)


def test_recording_is_in_the_prometheus_api_format():
    doc = json.loads(RECORDING.read_text(encoding="utf-8"))
    for r in doc["responses"]:
        assert r["match"] in r["query"]
        assert r["response"]["status"] == "success" and r["response"]["data"]["resultType"] == "vector"


@pytest.mark.slow
def test_the_llm_override_names_a_deployment_the_ray_llm_builder_creates(monkeypatch):
    """Serve rejects an override for a deployment the app does not build (application_state.
    override_deployment_info: "Deployment ... does not exist"); build the real ray.serve.llm app (no cluster:
    the builder only reads the driver's runtime_env from Ray's context, so that is all that is stubbed)."""
    pytest.importorskip("vllm")
    import types

    import ray
    from ray._common.utils import import_attr

    monkeypatch.setattr(ray, "get_runtime_context", lambda: types.SimpleNamespace(runtime_env={}))
    from ray.serve._private.build_app import build_app

    for name in ("cpu-ray-llm", PROFILE):
        app = next(a for a in serve_config(load_profile(name))["applications"] if a["name"] == "llm")
        built = build_app(import_attr(app["import_path"].replace(":", "."))(app["args"]), name="llm")
        by_name = {d.name: d for d in built.deployments}
        (override,) = app["deployments"]
        assert override["name"] in by_name
        if name == PROFILE:  # and tune's footprint is the placement group ray.serve.llm asks for: 2 GPUs, 1 CPU
            bundles = by_name[override["name"]]._replica_config.placement_group_bundles
            assert sum(b.get("GPU", 0) for b in bundles) == 2 and sum(b.get("CPU", 0) for b in bundles) == 1
            fp = footprints(serve_config(load_profile(name)))[("llm", override["name"])]
            assert (fp.replica.gpus, fp.replica.cpus) == (2, 1)
