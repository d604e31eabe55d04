"""The Serve config document: shape, agreement with the profile, and acceptance by Ray's own schemas."""

from __future__ import annotations

import copy

import pytest
from ray.serve.schema import ServeDeploySchema

from armed.serving.config import serve_config
from armed.serving.profiles import load_profile, profile_names


@pytest.mark.parametrize("name", profile_names())
def test_serve_config_is_a_valid_serve_deploy_document(name: str) -> None:
    profile = load_profile(name)
    cfg = serve_config(profile)
    ServeDeploySchema.model_validate(cfg)  # Ray's own schema: what `serve deploy` / the KubeRay operator accept
    apps = {a["name"]: a for a in cfg["applications"]}
    assert set(apps) == {*profile.deployed_roles(), "judge"}
    assert apps["judge"]["route_prefix"] == "/"
    assert apps["judge"]["import_path"] == "serve_apps.judge:build_judge_app"
    assert {d["name"] for d in apps["judge"]["deployments"]} == {"Gateway", "Judge"}
    for role in profile.deployed_roles():
        app = apps[role]
        assert app["route_prefix"] == f"/models/{role}"
        rp = profile.models[role]
        if rp.serving == "ray-llm":
            assert app["import_path"] == "serve_apps.models:build_ray_llm_app"  # build_openai_app + armed's key
            llm = app["args"]["llm_configs"][0]
            assert llm["engine_kwargs"]["tensor_parallel_size"] == rp.engine.tensor_parallel_size
            assert llm["deployment_config"]["autoscaling_config"]["max_replicas"] == rp.replicas.max
            continue
        assert app["import_path"] == f"serve_apps.models:build_{role}_app"
        (dep,) = app["deployments"]
        auto = dep["autoscaling_config"]
        assert (auto["min_replicas"], auto["max_replicas"]) == (rp.replicas.min, rp.replicas.max)
        assert auto["target_ongoing_requests"] == rp.autoscaling.target_ongoing_requests
        assert dep["max_queued_requests"] == rp.max_queued_requests
        assert dep["ray_actor_options"]["num_cpus"] == rp.resources.num_cpus
        assert dep["ray_actor_options"].get("num_gpus", 0) == rp.resources.num_gpus


def test_cpu_config_has_no_gpu_and_no_in_process_roles() -> None:
    cfg = serve_config(load_profile("cpu"))
    names = [a["name"] for a in cfg["applications"]]
    assert names == ["embedder", "ocr", "student", "judge"]  # no LLM on the CPU: the student judges
    assert all("num_gpus" not in d["ray_actor_options"] for a in cfg["applications"] for d in a.get("deployments", []))


def test_ray_llm_configs_validate_against_ray_serve_llm() -> None:
    llm = pytest.importorskip("ray.serve.llm", reason="ray.serve.llm needs vLLM + pyarrow installed")
    for name in ("a100-80g", "a100-40g", "h100-80g", "l4"):
        cfg = serve_config(load_profile(name))
        app = next(a for a in cfg["applications"] if a["name"] == "llm")
        conf = llm.LLMConfig.model_validate(app["args"]["llm_configs"][0])
        assert conf.model_id == "armed-llm"
        assert conf.accelerator_type == load_profile(name).models["llm"].resources.accelerator_type
        # What ray.serve.llm will place: one node for the whole tensor-parallel group (its default is PACK).
        engine = conf.get_engine_config()
        tp = load_profile(name).models["llm"].engine.tensor_parallel_size
        assert engine.placement_strategy == ("STRICT_PACK" if tp > 1 else "PACK")
        assert [b["GPU"] for b in engine.placement_bundles] == [1.0] * tp


@pytest.mark.parametrize("name", profile_names())
def test_tensor_parallel_ray_llm_replicas_are_strict_pack(name: str) -> None:
    """A replica that shards over >1 GPU must not be split across nodes (PACK is only best effort)."""
    profile = load_profile(name)
    cfg = serve_config(profile)
    for app in cfg["applications"]:
        if app["import_path"] != "serve_apps.models:build_ray_llm_app":
            continue
        (llm_cfg,) = app["args"]["llm_configs"]
        rp = profile.models[app["name"]]
        pg = llm_cfg.get("placement_group_config") or {}
        if rp.resources.num_gpus and rp.engine.tensor_parallel_size > 1:
            assert pg == {"bundle_per_worker": {"GPU": 1}, "strategy": "STRICT_PACK"}
        else:
            assert pg.get("strategy", "PACK") == "PACK" and len(pg.get("bundles", [{}])) == 1


def test_every_ray_llm_app_validates_and_a_gpu_share_is_what_ray_places() -> None:
    """Every ray-llm app of every profile is a valid LLMConfig; a replica on a share of a GPU (the 0.25 embedders,
    h100-x1's 0.55 LLM) gets one bundle of that share and vLLM is told the same share (Ray's fractional-GPU
    recipe); the embedder's engine runs vLLM's pooling runner."""
    llm = pytest.importorskip("ray.serve.llm", reason="ray.serve.llm needs vLLM + pyarrow installed")
    shares = 0
    for name in profile_names():
        profile = load_profile(name)
        for app in serve_config(profile)["applications"]:
            if app["import_path"] != "serve_apps.models:build_ray_llm_app":
                continue
            rp = profile.models[app["name"]]
            conf = llm.LLMConfig.model_validate(app["args"]["llm_configs"][0])
            assert conf.model_id == f"armed-{app['name']}"
            assert conf.engine_kwargs["runner"] == ("pooling" if app["name"] == "embedder" else "generate")
            if 0 < rp.resources.num_gpus < 1:
                shares += 1
                assert [b.get("GPU") for b in conf.get_engine_config().placement_bundles] == [rp.resources.num_gpus]
                assert conf.runtime_env["env_vars"]["VLLM_RAY_PER_WORKER_GPUS"] == str(rp.resources.num_gpus)
    assert shares >= 7  # six GPU profiles' embedders and h100-x1's LLM


def test_vllm_on_the_cpu_runs_eager_and_on_a_gpu_as_vllm_defaults() -> None:
    """cpu-ray-llm's engine runs eager as the in-process vLLM engine does on the CPU (no inductor build at each start);
    a GPU profile's engine keeps vLLM's own compilation default."""
    (cpu_llm,) = next(a for a in serve_config(load_profile("cpu-ray-llm"))["applications"]
                      if a["name"] == "llm")["args"]["llm_configs"]
    assert cpu_llm["engine_kwargs"]["enforce_eager"] is True
    (gpu_llm,) = next(a for a in serve_config(load_profile("a100-80g"))["applications"]
                      if a["name"] == "llm")["args"]["llm_configs"]
    assert "enforce_eager" not in gpu_llm["engine_kwargs"]


def test_batching_on_a_ray_llm_role_is_a_profile_error() -> None:
    import yaml

    from armed.serving.profiles import PROFILE_DIR, Profile

    raw = yaml.safe_load((PROFILE_DIR / "a100-80g.yaml").read_text(encoding="utf-8"))
    raw["models"]["embedder"]["batching"] = {"max_batch_size": 8, "batch_wait_timeout_s": 0.01}
    with pytest.raises(ValueError, match=r"models\.embedder\.batching: ray\.serve\.llm's LLMServer batches inside"):
        Profile.model_validate(raw)


def test_one_vllm_serving_path_for_the_roles_llmserver_serves() -> None:
    import yaml

    from armed.serving.profiles import PROFILE_DIR, Profile

    raw = yaml.safe_load((PROFILE_DIR / "a100-80g.yaml").read_text(encoding="utf-8"))
    for role in ("llm", "embedder", "vl"):
        bad = copy.deepcopy(raw)
        bad["models"][role]["serving"] = "armed"
        with pytest.raises(ValueError, match=f"vllm is served with serving: ray-llm for the {role} role"):
            Profile.model_validate(bad)
    assert raw["models"]["student"].get("serving", "armed") == "armed"  # classify: armed's engine, the one left
