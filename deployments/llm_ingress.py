"""ray.serve.llm's OpenAI ingress with armed's API-key check: the `serving: ray-llm` path of the GPU profiles.

`ray.serve.llm.build_openai_app` creates its FastAPI app inside and offers no hook for middleware, so the LLM's
own routes (`/models/llm/v1/...`) would serve every caller even with ARMED_API_KEY set. `build_authed_openai_app`
is that builder's default path (Ray 2.60, ray/llm/_internal/serve/core/ingress/builder.py, without direct
streaming) with two differences: armed's key check is installed on the app before Serve freezes it (installed
last, it runs first, before Ray's own middleware reads the body), and the ingress class reads the key when its
replica starts, like every armed deployment. The LLMServer deployments behind it serve handle calls only.

Imports ray.serve.llm (vLLM, pyarrow) only when called: the CPU profiles never need it.
"""

from __future__ import annotations

from typing import Any

from armed.serving.config import ray_llm_deployment_name
from deployments import auth, loopback


def build_authed_openai_app(builder_config: dict[str, Any]) -> Any:
    """`ray.serve.llm.build_openai_app(builder_config)` with ARMED_API_KEY required on every route."""
    from ray import serve
    from ray.llm._internal.common.dict_utils import maybe_apply_llm_deployment_config_defaults
    from ray.llm._internal.serve.constants import RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.builder import LLMServingArgs
    from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress, init, make_fastapi_ingress
    from ray.llm._internal.serve.core.server.builder import build_llm_deployment

    if RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING:
        # That mode makes the LLMServer itself the HTTP ingress, an app armed cannot put its key check on.
        raise ValueError("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1 bypasses armed's API-key check; unset it")
    args = LLMServingArgs.model_validate(builder_config)
    configs = args.llm_configs
    ingress_base = args.ingress_cls_config.ingress_cls
    if not issubclass(ingress_base, OpenAiIngress):
        raise ValueError(f"ingress_cls must be an OpenAiIngress, got {ingress_base!r}")

    class ArmedOpenAiIngress(ingress_base):  # type: ignore[misc, valid-type]
        """Reads ARMED_API_KEY when the replica starts (a blank key fails here, as in armed's deployments)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            loopback.keep_replica_grpc_on_loopback()
            auth.load_api_key()
            super().__init__(*a, **kw)

    ArmedOpenAiIngress.__name__ = ArmedOpenAiIngress.__qualname__ = ingress_base.__name__
    app = init()
    auth.install_auth(app)
    ingress_cls = make_fastapi_ingress(ArmedOpenAiIngress, app=app)
    options = maybe_apply_llm_deployment_config_defaults(
        ingress_base.get_deployment_options(configs), args.ingress_deployment_config
    )
    lora_paths = {c.model_id: c.lora_config.dynamic_lora_loading_path for c in configs if c.lora_config is not None}
    return serve.deployment(ingress_cls, **options).bind(
        # Named after the model id (armed.serving.config.ray_llm_deployment_name), not Ray's "LLMServer:<id>".
        llm_deployments={c.model_id: build_llm_deployment(
            c, override_serve_options={"name": ray_llm_deployment_name(c.model_id)}) for c in configs},
        model_cards={c.model_id: to_model_metadata(c.model_id, c) for c in configs},
        lora_paths=lora_paths,
        **args.ingress_cls_config.ingress_extra_kwargs,
    )
