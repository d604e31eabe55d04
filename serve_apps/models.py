"""Application builders for the model roles: the `import_path` targets of the Serve config's model apps.

Each builder validates its args (pydantic), reads the role's section of the profile and binds the role's
deployment class (its entry in armed/roles.py) with the profile's deployment options.
`serve.run(build_embedder_app({...}))` locally and a `serve deploy` of `armed serve-config` on a cluster therefore
deploy the same thing.

Engines: a model replica builds the profile's engine. A caller in Python (tests, the perf stack) can inject
another one with the builder's `engine_cls` keyword, bound into the deployment like ray.serve.llm's
`LLMServer(llm_config, engine_cls=...)`; the Serve config's `args` cannot carry it (ModelAppArgs forbids extra
fields), so a deployed config always serves real engines.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from armed.roles import IN_PROCESS_KINDS, ROLES
from armed.serving.config import deployment_name, deployment_options
from armed.serving.profiles import ProfileRef, resolve_profile
from deployments.engines import EngineClass


class ModelAppArgs(BaseModel):
    """Arguments of a model application (the `args` of its entry in the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileRef = Field(
        default="cpu", description="The whole profile (a dict, as serve_config writes it), or a profile name "
        "(gpu_profiles/<name>.yaml) or YAML path."
    )
    role: str | None = Field(default=None, description="The role; set by the role-specific builders.")


def build_model_app(args: dict[str, Any], *, engine_cls: EngineClass | None = None) -> Application:
    """The role's deployment bound with its profile's settings; `engine_cls` (Python callers only) replaces the
    profile's engine in every replica (deployments/engines.py)."""
    a = ModelAppArgs.model_validate(args)
    if a.role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, got {a.role!r}")
    profile = resolve_profile(a.profile)
    rp = profile.models[a.role]
    if rp.engine.kind in IN_PROCESS_KINDS:
        raise ValueError(f"profile {profile.name!r} serves {a.role} with kind {rp.engine.kind!r}: no deployment")
    if rp.serving == "ray-llm":
        raise ValueError(f"profile {profile.name!r} serves {a.role} with ray.serve.llm; use build_ray_llm_app")
    batching = rp.batching
    init_args = {
        "role": a.role,
        "engine": rp.engine.model_dump(),
        "call_timeout_s": rp.call_timeout_s,
        "wedged_after_s": rp.wedged_after_s,
        "health_timeout_s": rp.health_check_timeout_s,
        "limits": profile.limits.model_dump(),
        **({"max_batch_size": batching.max_batch_size, "batch_wait_timeout_s": batching.batch_wait_timeout_s}
           if batching else {}),
    }
    cls = ROLES[a.role].deployment_class()
    bound = {"engine_cls": engine_cls} if engine_cls is not None else {}  # the default stays out of the code version
    return cls.options(name=deployment_name(profile, a.role), **deployment_options(profile, a.role)).bind(
        init_args, **bound)


def _for(role: str, name: str) -> Any:
    def build(args: dict[str, Any], *, engine_cls: EngineClass | None = None) -> Application:
        return build_model_app({**args, "role": role}, engine_cls=engine_cls)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Builder of the {role} application (import_path {__name__}:{name})."
    return build


# One builder per role, named as its entry in armed/roles.py says (`builder`; tests/test_roles.py resolves each).
build_llm_app = _for("llm", "build_llm_app")
build_vl_app = _for("vl", "build_vl_app")
build_embedder_app = _for("embedder", "build_embedder_app")
build_consistency_app = _for("consistency", "build_consistency_app")
build_ocr_app = _for("ocr", "build_ocr_app")
build_student_app = _for("student", "build_student_app")


def resolve_llm_configs(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The LLM configs with each `shipped:` model_source replaced by its folder, and a callback that builds that
    folder on the node that loads it (deployments/shipped_checkpoint.py): this runs in the Serve build task, on any
    node, where building it would leave the folder on the wrong pod. Other sources pass through unchanged."""
    from armed.engines.shipped import SHIPPED_PREFIX, shipped_path
    from deployments.shipped_checkpoint import callback_config

    out = []
    for cfg in configs:
        loading = dict(cfg.get("model_loading_config") or {})
        source = loading.get("model_source")
        if isinstance(source, str) and source.startswith(SHIPPED_PREFIX):
            if cfg.get("callback_config"):
                raise ValueError(f"llm_configs[{loading.get('model_id')}]: a shipped model_source ({source}) brings "
                                 "its own callback_config (the build on the loading node); remove the other one")
            path = shipped_path(source)
            loading["model_source"] = str(path)
            cfg = {**cfg, "callback_config": callback_config(source, path)}
        out.append({**cfg, "model_loading_config": loading})
    return out


def build_ray_llm_app(args: dict[str, Any]) -> Application:
    """The LLM role through ray.serve.llm (LLMServer + OpenAI ingress) for profiles with `serving: ray-llm`.

    `args` is what `ray.serve.llm.build_openai_app` takes (`{"llm_configs": [...]}`, the Serve config's args of
    that app); the ingress requires ARMED_API_KEY like every armed route (deployments/llm_ingress.py). A `shipped:`
    model (the CPU profile's SmolLM2) is built where LLMServer loads it (resolve_llm_configs).
    """
    from deployments.llm_ingress import build_authed_openai_app

    return build_authed_openai_app({**args, "llm_configs": resolve_llm_configs(args.get("llm_configs") or [])})
