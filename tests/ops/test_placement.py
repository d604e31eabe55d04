"""Replica placement (ops/packing.py, ops/pools.py) checked against Ray Serve 2.60's scheduler: its rules worked by
hand (each case cites the rule), and its own code run directly where it is pure Python
(ray/serve/_private/deployment_scheduler.py: DeploymentScheduler with a stand-in for its ClusterNodeInfoCache, the
boundary to the GCS, and for the actor class it submits). Ray core's round-robin (spread_scheduling_policy.cc) and
placement-group scorer (scorer.cc) are C++: those rules are checked by hand-worked cases only."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest
import yaml

from armed.serving.config import serve_config
from armed.serving.profiles import load_profile, profile_names
from ops import capacity, tune
from ops.kube import deployment_bounds
from ops.packing import (
    PACK,
    PACK_ENV,
    PACK_ENV_OLD,
    SPREAD,
    NodeShape,
    Replica,
    most_that_fit,
    pack_env_on,
    place,
    serve_pack,
    serve_spread,
    serve_strategy,
)
from ops.pools import RAY_LLM_INGRESS, footprints, non_strict_pack_groups, placement_strategy

GiB = 2**30


def _names(packing) -> list[list[str]]:
    return [n.replicas for n in packing.nodes]


# ---- Serve's and Ray core's rules, worked by hand ----------------------------------------------------------------

def test_spread_round_robins_where_pack_fills_the_busy_node():
    # Two 4-CPU nodes up (min_nodes 2), four 1-CPU replicas.
    # SPREAD (spread_scheduling_policy.cc): each goes to the next node after the last one chosen -> a, b, a, b.
    # PACK (_find_best_fit_node_for_pack): a node running a replica first, least room left -> all on the first.
    reps = [Replica(n, cpus=1) for n in "abcd"]
    shape = NodeShape(gpus=0, cpus=4)
    assert _names(serve_spread(reps, shape, min_nodes=2)) == [["a", "c"], ["b", "d"]]
    assert _names(serve_pack(reps, shape, min_nodes=2)) == [["a", "b", "c", "d"], []]


def test_spread_strands_the_whole_gpus_a_tensor_parallel_replica_needs():
    # 2-GPU nodes, two up. Serve submits two 1-GPU replicas, then a 2-GPU (tensor-parallel) one.
    # SPREAD: one 1-GPU replica per node; no node has two free GPUs left, so the TP replica waits and the autoscaler
    # adds a node for it (resource_demand_scheduler: the waiting demand bin-packed) -> 3 nodes.
    # PACK: largest first (Resources.__lt__, GPU first): tp on node 1, the two 1-GPU replicas best-fit on node 2.
    reps = [Replica("one-a", 1, 1), Replica("one-b", 1, 1), Replica("tp", 2, 1)]
    shape = NodeShape(gpus=2, cpus=16)
    spread = serve_spread(reps, shape, min_nodes=2)
    assert _names(spread) == [["one-a"], ["one-b"], ["tp"]] and not spread.unplaced
    assert _names(serve_pack(reps, shape, min_nodes=2)) == [["tp"], ["one-a", "one-b"]]
    # ... and with the pool capped at its two nodes, spread leaves the TP replica pending where pack places it
    assert [r.name for r in serve_spread(reps, shape, max_nodes=2, min_nodes=2).unplaced] == ["tp"]
    assert not serve_pack(reps, shape, max_nodes=2, min_nodes=2).unplaced


def test_spread_from_no_nodes_launches_a_bin_pack_then_spreads_over_it():
    # No node yet: everything waits; the autoscaler launches the nodes a bin pack of the waiting replicas needs
    # (FFD over 2 GPUs: v1 v2 | v3 v4 | s1 s2 s3 on one GPU -> 3 nodes), then Ray spreads them in Serve's order from
    # its round-robin index: s1 -> n1, s2 -> n2, s3 -> n3, v1 -> n1 (GPU 1), v2 -> n2, v3 -> n3, v4 -> none has a
    # whole GPU (each has one 0.75 GPU and one full one taken) -> waits -> one more node.
    reps = [Replica(f"s{i}", 0.25, 1) for i in (1, 2, 3)] + [Replica(f"v{i}", 1, 1) for i in (1, 2, 3, 4)]
    shape = NodeShape(gpus=2, cpus=16)
    spread = serve_spread(reps, shape)
    assert _names(spread) == [["s1", "v1"], ["s2", "v2"], ["s3", "v3"], ["v4"]]
    assert spread.gpus_touched == 7 and len(serve_pack(reps, shape).nodes) == 3


def test_placement_group_replica_goes_to_the_emptiest_node_that_holds_it():
    # LeastResourceScorer (scorer.cc): the sum over requested resources of (available - requested) / available; the
    # placement-group scheduler takes the highest score (GetBestNode). Two nodes of 8 CPUs and 2 GPUs; three 2-CPU
    # replicas spread round-robin: cpu -> n1, cpu2 -> n2, cpu3 -> n1. Then the LLM's group (1 GPU, 1 CPU): n1 scores
    # (4-1)/4 + (2-1)/2 = 1.25, n2 (6-1)/6 + (2-1)/2 = 1.33 -> n2. The group does not move the round-robin index
    # (it is the spread policy's), which still points at n2 for the next plain replica.
    shape = NodeShape(gpus=2, cpus=8)
    reps = [Replica("cpu", 0, 2), Replica("cpu2", 0, 2), Replica("cpu3", 0, 2),
            Replica("llm", 1, 1, placement_group=True), Replica("cpu4", 0, 1)]
    placed = serve_spread(reps, shape, min_nodes=2)
    assert _names(placed) == [["cpu", "cpu3"], ["cpu2", "llm", "cpu4"]]
    assert placed.nodes[0].least_resource_score(Replica("x", 1, 1)) == pytest.approx((4 - 1) / 4 + (2 - 1) / 2)
    # where the round-robin index points at the fuller node, the group still takes the emptier one: big -> n1,
    # small -> n2, index back at n1 (1 CPU free: (1-1)/1 + 1/2 = 0.5) vs n2 (7 free: 6/7 + 1/2 = 1.36)
    assert _names(serve_spread([Replica("big", 0, 7), Replica("small", 0, 1), Replica("llm", 1, 1,
                                placement_group=True)], shape, min_nodes=2)) == [["big"], ["small", "llm"]]
    # ... where a plain replica of the same size follows the index
    assert _names(serve_spread([Replica("big", 0, 7), Replica("small", 0, 1), Replica("plain", 1, 1)], shape,
                               min_nodes=2)) == [["big", "plain"], ["small"]]


def test_most_that_fit_depends_on_the_strategy():
    # 4 nodes of 2 GPUs; three 0.25-GPU replicas run. PACK puts them on one GPU (best fit) -> 7 whole GPUs for VL.
    # SPREAD (worked as in the test above): the three 0.25s land on three nodes, each blocking a GPU -> 5.
    shape = NodeShape(gpus=2, cpus=24)
    smalls = [Replica("s", 0.25, 2)] * 3
    assert most_that_fit(smalls, Replica("vl", 1, 4), shape, 4, PACK) == 7
    assert most_that_fit(smalls, Replica("vl", 1, 4), shape, 4, SPREAD) == 5
    assert most_that_fit([], Replica("llm", 2, 1), shape, 4, SPREAD) == 4
    assert most_that_fit([Replica("x", 0, 25)], Replica("vl", 1, 4), shape, 4, SPREAD) == 0  # others overflow
    with pytest.raises(ValueError, match="strategy must be"):
        place(smalls, shape, "compact")  # type: ignore[arg-type]


# ---- which strategy Serve uses --------------------------------------------------------------------------------------

_ENV_CASES = [{}, {PACK_ENV: "1"}, {PACK_ENV: "true"}, {PACK_ENV: "0", PACK_ENV_OLD: "1"}, {PACK_ENV_OLD: "1"},
              {PACK_ENV_OLD: "yes"}, {PACK_ENV: " 1"}]


def test_pack_switch_is_read_as_ray_reads_it():
    """Ray's own constants module, imported under each environment (a subprocess: it reads os.environ once)."""
    script = textwrap.dedent(f"""
        import importlib, json, os, sys
        out = []
        for case in json.loads(sys.argv[1]):
            for k in ({PACK_ENV!r}, {PACK_ENV_OLD!r}):
                os.environ.pop(k, None)
            os.environ.update(case)
            import ray.serve._private.constants as c
            out.append(importlib.reload(c).RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY)
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(_ENV_CASES)], capture_output=True, text=True,
                          timeout=300, check=True)
    ray_says = json.loads(done.stdout.strip().splitlines()[-1])
    assert ray_says == [pack_env_on(case) for case in _ENV_CASES]
    assert ray_says == [False, True, False, False, True, False, False]  # only the exact text "1"


class _Nodes:
    """Stand-in for Serve's ClusterNodeInfoCache (the GCS boundary): identical idle nodes."""

    def __init__(self, n: int, shape: NodeShape):
        res = {"CPU": float(shape.cpus), "GPU": float(shape.gpus)}
        if shape.memory_gib is not None:
            res["memory"] = shape.memory_gib * GiB
        self.total = {f"{i + 1:056x}": dict(res) for i in range(n)}  # Ray wants hex node ids

    def get_available_resources_per_node(self):
        return {k: dict(v) for k, v in self.total.items()}

    def get_total_resources_per_node(self):
        return {k: dict(v) for k, v in self.total.items()}

    def get_active_node_ids(self):
        return set(self.total)

    def get_node_labels(self, node_id):
        return {}


class _Actor:
    """Stand-in for the replica actor class: records the options Serve submits it with."""

    def __init__(self):
        self.options_seen: list[dict] = []

    def options(self, **kw):
        self.options_seen.append(kw)
        return self

    def remote(self, *args):
        return object()


class _Body:
    pass


def _ray_scheduler(nodes: _Nodes, deployments: list[tuple[str, dict, dict]], pgs: list | None = None):
    """A real DeploymentScheduler with `deployments` [(name, ray_actor_options, extra ReplicaConfig kwargs)]."""
    from ray.serve._private import deployment_scheduler as ds
    from ray.serve._private.common import DeploymentID
    from ray.serve._private.config import ReplicaConfig

    pgs = pgs if pgs is not None else []
    sched = ds.DeploymentScheduler(nodes, "head-not-in-pool", lambda req: pgs.append(req) or object())
    configs = {}
    for name, actor_opts, extra in deployments:
        dep = DeploymentID(name=name, app_name="app")
        sched.on_deployment_created(dep, ds.SpreadDeploymentSchedulingPolicy())
        rc = ReplicaConfig.create(_Body, ray_actor_options=actor_opts, **extra)
        sched.on_deployment_deployed(dep, rc)
        configs[dep] = rc
    return sched, configs


def _requests(configs: dict, counts: dict[str, int], actor: _Actor):
    from ray.serve._private import deployment_scheduler as ds
    from ray.serve._private.common import ReplicaID

    out = {}
    for dep, rc in configs.items():
        out[dep] = [ds.ReplicaSchedulingRequest(
            replica_id=ReplicaID(unique_id=f"{dep.name}-{i}", deployment_id=dep), actor_def=actor,
            actor_resources=rc.resource_dict, actor_options={"name": f"{dep.name}-{i}"}, actor_init_args=(),
            on_scheduled=lambda *a, **k: None, placement_group_bundles=rc.placement_group_bundles,
            placement_group_strategy=rc.placement_group_strategy) for i in range(counts[dep.name])]
    return out


def test_spread_is_serves_default_and_a_pack_placement_group_keeps_it(monkeypatch):
    from ray.serve._private import deployment_scheduler as ds
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pgs: list = []
    deps = [("plain", {"num_cpus": 1}, {}),
            ("llm", {"num_cpus": 1}, {"placement_group_bundles": [{"CPU": 1, "GPU": 1}]})]  # strategy unset
    sched, configs = _ray_scheduler(_Nodes(2, NodeShape(2, 8)), deps, pgs)
    actor = _Actor()
    monkeypatch.setattr(ds, "RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY", False)
    sched.schedule(_requests(configs, {"plain": 2, "llm": 1}, actor), {})
    strategies = [o["scheduling_strategy"] for o in actor.options_seen]
    assert strategies[:2] == ["SPREAD", "SPREAD"] and isinstance(strategies[2], PlacementGroupSchedulingStrategy)
    assert [p.strategy for p in pgs] == ["PACK"]  # _schedule_replica's default for a replica's placement group
    # the switch on, and still spread: the llm deployment's group is not STRICT_PACK
    monkeypatch.setattr(ds, "RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY", True)
    assert sched._use_pack_strategy() is False
    cfg = {"applications": [{"name": "app", "deployments": [
        {"name": "plain", "ray_actor_options": {"num_cpus": 1}},
        {"name": "llm", "ray_actor_options": {"num_cpus": 1}, "placement_group_bundles": [{"CPU": 1, "GPU": 1}]}]}]}
    assert serve_strategy({PACK_ENV: "1"}, non_strict_pack_groups(cfg))[0] == SPREAD
    # STRICT_PACK everywhere: Ray and the model both pack
    cfg["applications"][0]["deployments"][1]["placement_group_strategy"] = "STRICT_PACK"
    sched2, _ = _ray_scheduler(_Nodes(2, NodeShape(2, 8)), [
        deps[0], ("llm", {"num_cpus": 1}, {"placement_group_bundles": [{"CPU": 1, "GPU": 1}],
                                          "placement_group_strategy": "STRICT_PACK"})])
    assert sched2._use_pack_strategy() is True
    assert serve_strategy({PACK_ENV: "1"}, non_strict_pack_groups(cfg))[0] == PACK
    assert serve_strategy({}, non_strict_pack_groups(cfg))[0] == SPREAD


@pytest.mark.parametrize("seed", range(12))
def test_pack_places_as_rays_own_pack_scheduler(seed, monkeypatch):
    """Random deployments (whole GPUs, CPUs, memory: where Serve's scalar check and Ray's GPU instances agree) placed
    by the real DeploymentScheduler in pack mode on enough identical idle nodes, and by serve_pack: the same number
    of nodes, and the same room used on each (which node wins a tie is Ray's set order, so nodes are compared by
    what they hold, not by name)."""
    from ray.serve._private import deployment_scheduler as ds

    rng = random.Random(seed)
    shape = NodeShape(gpus=2, cpus=8, memory_gib=32)
    deps, counts, model = [], {}, []
    for d in range(rng.randint(3, 5)):
        g, c, m = rng.choice([0, 0, 1, 2]), rng.choice([0.5, 1, 2, 3, 4]), rng.choice([0, 4, 8, 12])
        opts = {"num_cpus": c, "num_gpus": g, **({"memory": m * GiB} if m else {})}
        deps.append((f"d{d}", opts, {}))
        counts[f"d{d}"] = rng.randint(1, 6)
        model += [Replica(f"d{d}", g, c, m)] * counts[f"d{d}"]
    nodes = _Nodes(len(model), shape)
    sched, configs = _ray_scheduler(nodes, deps)
    monkeypatch.setattr(ds, "RAY_SERVE_USE_PACK_SCHEDULING_STRATEGY", True)
    actor = _Actor()
    sched.schedule(_requests(configs, counts, actor), {})
    use: dict[str, list[float]] = {}
    for dep, launching in sched._launching_replicas.items():
        opts = {n: o for n, o, _ in deps}[dep.name]
        for info in launching.values():
            u = use.setdefault(info.target_node_id, [0.0, 0.0, 0.0])
            u[0] += opts.get("num_gpus", 0)
            u[1] += opts["num_cpus"]
            u[2] += opts.get("memory", 0) / GiB
    assert all(o["scheduling_strategy"].node_id in use for o in actor.options_seen)  # every replica got a node
    ours = serve_pack(model, shape)
    assert not ours.unplaced
    ours_use = sorted((round(shape.gpus - sum(n.gpu_free), 6), round(shape.cpus - n.cpu_free, 6),
                       round(shape.memory_gib - n.mem_free, 6)) for n in ours.nodes)
    assert len(ours.nodes) == len(use)
    assert ours_use == sorted(tuple(round(x, 6) for x in u) for u in use.values())


# ---- the chart, capacity and tune agree ---------------------------------------------------------------------------

_PACK_ON = [{"name": PACK_ENV, "value": "1"}]


@pytest.mark.parametrize("name,env,expect", [
    ("cpu", [], SPREAD),
    ("cpu", _PACK_ON, PACK),
    ("cpu-ray-llm", _PACK_ON, SPREAD),  # its vLLM engine's placement group is PACK
    ("a100-80g-l4", [], SPREAD),
])
def test_the_rendered_chart_places_as_capacity_assumes(helm, tmp_path, name, env, expect, monkeypatch):
    """tune's reader (placement_strategy) on the RayService the chart renders gives the strategy capacity assumes
    from the chart's values: the two never disagree, and both follow the switch and the placement groups."""
    from ops import chart
    from tests.k8s.test_chart import with_weights

    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"env": env}), encoding="utf-8")
    objs = chart.template(profile=name, sets=with_weights(), values_files=(values,) if env else ())
    (rs,) = [o for o in objs if o["kind"] == "RayService"]
    rendered = placement_strategy(rs, yaml.safe_load(rs["spec"]["serveConfigV2"]))
    assert rendered[0] == expect
    if env:  # capacity reads the chart's values.yaml: give it the same env as the values file above
        monkeypatch.setattr(capacity, "chart_env", lambda: {e["name"]: e["value"] for e in env})
    assert capacity.chart_placement(load_profile(name)) == rendered


def test_capacity_says_which_placement_it_assumed(capsys):
    from ops.cli import main
    from tests.ops.test_armed_ops import EXAMPLE

    assert main(["capacity", "--profile", "a100-80g-l4", "--qps", "4", "--latency-ms", "10000",
                 "--benchmark", EXAMPLE]) == 0
    assert f"replica placement: Serve's spread (Serve's default: {PACK_ENV} is not 1" in capsys.readouterr().out


@pytest.mark.parametrize("name", profile_names())
def test_every_deployment_at_max_replicas_fits_its_pool(name):
    """What the profile allows (every deployment at max_replicas) fits its pools at max_nodes, placed as the
    chart's Serve controller places it: capacity and the profile agree that the profile can run."""
    profile = load_profile(name)
    roles = [capacity.RolePlan(r, rp.pool, 0, 1, rp.replicas.max, rp.replicas.min, rp.replicas.max,
                               rp.resources.num_gpus, rp.resources.num_cpus, None)
             for r, rp in [*((r, profile.models[r]) for r in profile.deployed_roles()), ("judge", profile.judge)]]
    strategy, _ = capacity.chart_placement(profile)
    for pool in profile.pools:
        reps = capacity.pool_replicas(profile, pool, roles)
        placed = place(reps, NodeShape(pool.gpus_per_node, pool.cpus_per_node, pool.memory_gib_per_node), strategy,
                       max_nodes=pool.max_nodes, min_nodes=pool.min_nodes)
        assert not placed.unplaced, (f"{name}: pool {pool.name} at max_nodes {pool.max_nodes} cannot hold "
                                     f"{sorted({r.name for r in placed.unplaced})} with every deployment at max")


def test_pool_replicas_count_the_ray_llm_ingress_and_the_gateway():
    profile = load_profile("cpu-ray-llm")
    roles, _ = capacity.plan(profile, {"models": {r: {"requests_per_s": 1e6} for r in
                                                  [*profile.deployed_roles(), "judge"]}}, 1, 1000)
    names = [r.name for r in capacity.pool_replicas(profile, profile.pools[0], roles)]
    assert names.count(f"llm/{RAY_LLM_INGRESS}") == 1 and names.count("judge/Gateway") == names.count("judge/Judge")
    fps = footprints(serve_config(profile))
    assert fps[("llm", RAY_LLM_INGRESS)].replica.cpus == 0.1 and fps[("llm", "armed-llm")].replica.placement_group


# ---- tune counts vLLM's queue once --------------------------------------------------------------------------------

def test_tune_counts_vllm_waiting_requests_once():
    """Serve's ongoing count at a replica is every request it holds, those waiting inside vLLM included; adding
    vLLM's waiting count again overstates the load. Replicas at max, each holding `target` requests (12 running in
    vLLM, 20 waiting there), none queued in Serve: the load needs exactly max_replicas, so R1 raises only by its
    +1 floor (at max and loaded), where the double count would ask for ~1.6x."""
    cfg = serve_config(load_profile("a100-80g"))
    auto = deployment_bounds(cfg)[("llm", "armed-llm")]
    hi, target = int(auto["max_replicas"]), float(auto["target_ongoing_requests"])
    waiting = 20.0
    obs = tune.Observation("llm", "armed-llm", hi, target, 0.0, 1000.0, engine_waiting=waiting * hi,
                           engine_running=(target - waiting) * hi, kv_cache_usage=0.5)
    goals = {"default": {"p95_ms": 100_000, "engine_waiting_per_replica": 100}}
    (rec,) = [r for r in tune.recommend(cfg, {("llm", "armed-llm"): obs}, goals) if r.deployment == "armed-llm"]
    (r1,) = [x for x in rec.reasons if x.startswith("R1")]
    assert f"load needs ~{hi};" in r1 + ";" and f"{waiting * hi:.0f} of them waiting in vLLM" in r1
    assert rec.changes["max_replicas"] == (hi, hi + 1)
    double = -(-(target * hi + waiting * hi) // target)  # what counting the waiting requests twice wants
    assert double > hi + 1


@pytest.mark.slow
def test_llm_placement_groups_and_ingress_are_what_ray_serve_llm_builds(monkeypatch):
    """Build each ray.serve.llm app of every profile with Ray's own builder (no cluster: only the driver's runtime
    env is stubbed, as in test_tune_capacity.py): the deployments whose placement group is not STRICT_PACK are
    exactly those non_strict_pack_groups names (so the strategy switch is judged as Serve judges it), each
    LLMServer's bundles sum to its footprint, and the OpenAI ingress is one replica of the CPUs its footprint says."""
    pytest.importorskip("vllm")
    import types

    import ray
    from ray._common.utils import import_attr
    from ray.serve._private.build_app import build_app

    monkeypatch.setattr(ray, "get_runtime_context", lambda: types.SimpleNamespace(runtime_env={}))
    seen = 0
    for name in profile_names():
        cfg = serve_config(load_profile(name))
        blockers = {b.split(" (")[0] for b in non_strict_pack_groups(cfg)}
        fps = footprints(cfg)
        for app in cfg["applications"]:
            if "llm_configs" not in (app.get("args") or {}):
                continue
            built = build_app(import_attr(app["import_path"].replace(":", "."))(app["args"]), name=app["name"])
            for dep in built.deployments:
                rc = dep._replica_config
                key = (app["name"], dep.name)
                if rc.placement_group_bundles:
                    seen += 1
                    assert (f"{app['name']}/{dep.name}" in blockers) == (rc.placement_group_strategy != "STRICT_PACK")
                    assert sum(b.get("GPU", 0) for b in rc.placement_group_bundles) == \
                        pytest.approx(fps[key].replica.gpus), key
                    assert sum(b.get("CPU", 0) for b in rc.placement_group_bundles) == \
                        pytest.approx(fps[key].replica.cpus), key
                else:
                    assert dep.name == RAY_LLM_INGRESS and rc.resource_dict["CPU"] == fps[key].replica.cpus
                    auto = dep._deployment_config.autoscaling_config
                    assert (auto.min_replicas, auto.max_replicas) == (1, 1)
    assert seen >= 5
