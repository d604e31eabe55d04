"""ray.serve.llm's OpenAI ingress with armed's API-key check: the `serving: ray-llm` path of the GPU profiles.

`ray.serve.llm.build_openai_app` creates its FastAPI app inside and offers no hook for middleware, so the LLM's
own routes (`/models/llm/v1/...`) would serve every caller even with ARMED_API_KEY set. `build_authed_openai_app`
is that builder's default path (Ray 2.60, ray/llm/_internal/serve/core/ingress/builder.py, without direct
streaming; its private pieces come from armed/serving/ray_compat.py `llm_ingress_parts`) with two differences:
armed's key check is installed on the app before Serve freezes it (installed last, it runs first, before Ray's own
middleware reads the body), and the ingress class reads the key when its replica starts, like every armed
deployment. The LLMServer deployments behind it serve handle calls only.

Imports ray.serve.llm (vLLM, pyarrow) only when called: the CPU profiles never need it.
"""

from __future__ import annotations

from typing import Any

from armed.serving.config import ray_llm_deployment_name
from armed.serving.ray_compat import llm_ingress_parts
from deployments import auth, loopback


def build_authed_openai_app(builder_config: dict[str, Any]) -> Any:
    """`ray.serve.llm.build_openai_app(builder_config)` with ARMED_API_KEY required on every route."""
    from ray import serve

    parts = llm_ingress_parts()
    if parts.direct_streaming:
        # That mode makes the LLMServer itself the HTTP ingress, an app armed cannot put its key check on.
        raise ValueError("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1 bypasses armed's API-key check; unset it")
    args = parts.serving_args.model_validate(builder_config)
    configs = args.llm_configs
    ingress_base = args.ingress_cls_config.ingress_cls
    if not issubclass(ingress_base, parts.ingress_base):
        raise ValueError(f"ingress_cls must be an OpenAiIngress, got {ingress_base!r}")

    class ArmedOpenAiIngress(ingress_base):  # type: ignore[misc, valid-type]
        """Reads ARMED_API_KEY when the replica starts (a blank key fails here, as in armed's deployments)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            loopback.keep_replica_grpc_on_loopback()
            auth.load_api_key()
            super().__init__(*a, **kw)

    ArmedOpenAiIngress.__name__ = ArmedOpenAiIngress.__qualname__ = ingress_base.__name__
    app = parts.new_app()
    auth.install_auth(app)
    ingress_cls = parts.make_fastapi_ingress(ArmedOpenAiIngress, app=app)
    options = parts.apply_deployment_defaults(
        ingress_base.get_deployment_options(configs), args.ingress_deployment_config
    )
    lora_paths = {c.model_id: c.lora_config.dynamic_lora_loading_path for c in configs if c.lora_config is not None}
    return serve.deployment(ingress_cls, **options).bind(
        # Named after the model id (armed.serving.config.ray_llm_deployment_name), not Ray's "LLMServer:<id>".
        llm_deployments={c.model_id: parts.build_llm_deployment(
            c, override_serve_options={"name": ray_llm_deployment_name(c.model_id)}) for c in configs},
        model_cards={c.model_id: parts.model_metadata(c.model_id, c) for c in configs},
        lora_paths=lora_paths,
        **args.ingress_cls_config.ingress_extra_kwargs,
    )
