"""Every use of Ray's private API in armed, in one module, read against one Ray version (RAY_CHECKED).

Ray's public API does not cover a few things armed needs; each is a small function here, so a Ray upgrade is one
file to read (the line of Ray each relies on is named) and one test module to run: tests/serve/test_ray_compat.py
pins RAY_CHECKED to the installed Ray and to pyproject's `ray[serve]==` pin, and calls every function below for real
against the installed Ray (a local Serve instance where one is needed). Nothing outside this module imports
`ray._private`, `ray._raylet`, `ray.serve._private`, `ray.llm._internal` or a private attribute of a Ray object;
tests/serve/test_ray_compat.py scans the shipped packages for that.

Ray is imported inside the functions only: `armed serve-config` and the chart's CI import armed.serving without
starting (or having) Ray, and `armed up` must set the driver's environment before Ray reads its constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAY_CHECKED = "2.60.0"  # the Ray every function below was read against (pyproject pins the same)


# --- the driver ---------------------------------------------------------------------------------------------------


def disable_auto_connect() -> None:
    """Stop this process's Ray API calls from starting or joining a Ray on their own (ray/_private/auto_init_hook.py,
    `enable_auto_connect`): per process, unlike RAY_ENABLE_AUTO_CONNECT=0, which workers would inherit."""
    import ray._private.auto_init_hook as auto_init

    auto_init.enable_auto_connect = False


def auto_connect_enabled() -> bool:
    import ray._private.auto_init_hook as auto_init

    return bool(auto_init.enable_auto_connect)


def refresh_driver_auth(cluster: bool) -> None:
    """Re-read the settings `import ray` froze before armed set the driver's environment: whether this node may
    join a cluster (ray/_private/ray_constants.py ENABLE_RAY_CLUSTER, from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER), the
    C++ config (ray._raylet.Config, where RAY_AUTH_MODE is read) and the cached auth token
    (ray._raylet.AuthenticationTokenLoader, RAY_AUTH_TOKEN)."""
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    ray_constants.ENABLE_RAY_CLUSTER = cluster
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def session_dir() -> Path:
    """The session folder of the Ray this process started or joined (its logs/ hold the replicas' logs);
    ray/_private/worker.py `_global_node`, ray/_private/node.py `get_session_dir_path`."""
    from ray._private import worker

    node = worker._global_node
    if node is None:
        raise RuntimeError("this process has not started or joined a Ray (ray.init)")
    return Path(node.get_session_dir_path())


# --- Serve's controller -------------------------------------------------------------------------------------------


def serve_controller_alive() -> bool:
    """Whether Serve's controller actor runs on the Ray this process is connected to, without starting it
    (serve.status() would): the actor's name and namespace are ray/serve/_private/constants.py's."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def serve_details() -> dict[str, Any]:
    """The controller's full view (ServeInstanceDetails as a dict: http_options, and per deployment its
    deployment_config with the autoscaling config), which serve.status() leaves out; ray/serve/context.py
    `_get_global_client`, ray/serve/_private/client.py `get_serve_details`."""
    from ray.serve.context import _get_global_client

    return _get_global_client().get_serve_details()


def delete_apps(names: list[str], timeout_s: float = 120.0) -> None:
    """Delete several Serve applications at once and wait until every one is gone. `serve.delete` (public) deletes
    one and waits about three of its 1 s polls before the next can start (ray/serve/api.py `delete` →
    _private/client.py `delete_apps`, CLIENT_POLLING_INTERVAL_S); its private `_blocking=False` sends the request
    without waiting, so all are torn down together, and the public serve.status() says when they are gone."""
    import time

    from ray import serve

    for name in names:
        serve.delete(name, _blocking=False)
    deadline = time.monotonic() + timeout_s
    while set(names) & set(serve.status().applications):
        if time.monotonic() > deadline:
            left = sorted(set(names) & set(serve.status().applications))
            raise TimeoutError(f"Serve applications not deleted after {timeout_s:g} s: {left}")
        time.sleep(0.2)


# --- deployment handles and replicas ------------------------------------------------------------------------------


def handle_running_replicas(handle: Any) -> int | None:
    """Running replicas of a deployment as its handle's router sees them, or None when it cannot tell.

    None: the handle has not been used yet (no router), the router never saw a replica, the controller marked the
    deployment unavailable, or this Ray lays its router out differently. Reads ray/serve/handle.py `_router`
    (a SingletonThreadRouter), its `_asyncio_router` (ray/serve/_private/router.py AsyncioRouter:
    `_deployment_available`, `running_replicas_populated()`) and that router's `_request_router.curr_replicas` —
    the attribute, not the `request_router` property, which builds the router lazily and may run on another thread
    than the router's loop.
    """
    router = getattr(getattr(handle, "_router", None), "_asyncio_router", None)
    if router is None or getattr(router, "_deployment_available", True) is False:
        return None
    try:
        if not router.running_replicas_populated():
            return None
        replicas = router._request_router.curr_replicas
    except AttributeError:
        return None
    return len(replicas)


_ALL_INTERFACES = "[::]:"


def bind_replica_grpc_to_loopback() -> bool:
    """Make this replica process bind its inter-deployment gRPC server to 127.0.0.1 instead of `[::]` (every
    interface). Ray 2.60 binds it in ray/serve/_private/replica.py (`_on_initialized`:
    `add_port_to_grpc_server(self._server, "[::]:0")`, a name that module imports from ray._common.tls_utils and
    looks up when it runs), with no setting for the address; the wrapper rewrites that address only. Idempotent;
    True when the wrapper is in place."""
    from ray.serve._private import replica

    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None:
        return False
    if getattr(original, "armed_loopback", False):
        return True

    def on_loopback(server: Any, address: str) -> int:
        if address.startswith(_ALL_INTERFACES):
            address = "127.0.0.1:" + address.removeprefix(_ALL_INTERFACES)
        return original(server, address)

    on_loopback.armed_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = on_loopback
    return True


# --- ray.serve.llm internals --------------------------------------------------------------------------------------


def llm_embedding_completion_request() -> type:
    """ray.serve.llm's embeddings request in its completion form: the public `EmbeddingRequest` is a Union (completion
    | chat input) that cannot be constructed; ray/llm/_internal/serve/core/configs/openai_api_models.py."""
    from ray.llm._internal.serve.core.configs.openai_api_models import EmbeddingCompletionRequest

    return EmbeddingCompletionRequest


@dataclass(frozen=True)
class LLMIngressParts:
    """The pieces of `ray.serve.llm.build_openai_app`'s default path (ray/llm/_internal/serve/core/ingress/builder.py,
    `build_openai_app`) that deployments/llm_ingress.py reassembles with armed's key check on the FastAPI app."""

    direct_streaming: bool  # RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING: the LLMServer would be the HTTP ingress
    serving_args: type  # LLMServingArgs: validates the builder's config
    ingress_base: type  # OpenAiIngress: what an ingress_cls must subclass
    new_app: Any  # ingress.init(): the FastAPI app the ingress serves
    make_fastapi_ingress: Any  # (cls, app=) -> the ingress class with the app's routes
    apply_deployment_defaults: Any  # maybe_apply_llm_deployment_config_defaults(defaults, user_config)
    build_llm_deployment: Any  # (llm_config, override_serve_options=) -> the bound LLMServer
    model_metadata: Any  # to_model_metadata(model_id, llm_config): the model card of GET /v1/models


def llm_ingress_parts() -> LLMIngressParts:
    from ray.llm._internal.common.dict_utils import maybe_apply_llm_deployment_config_defaults
    from ray.llm._internal.serve.constants import RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.builder import LLMServingArgs
    from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress, init, make_fastapi_ingress
    from ray.llm._internal.serve.core.server.builder import build_llm_deployment

    return LLMIngressParts(
        direct_streaming=bool(RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING), serving_args=LLMServingArgs,
        ingress_base=OpenAiIngress, new_app=init, make_fastapi_ingress=make_fastapi_ingress,
        apply_deployment_defaults=maybe_apply_llm_deployment_config_defaults,
        build_llm_deployment=build_llm_deployment, model_metadata=to_model_metadata,
    )


def llm_callback_base() -> type:
    """ray.serve.llm's engine-start hook base class (ray/llm/_internal/common/callbacks/base.py, CallbackBase).

    LLMConfig.callback_config names a subclass; Ray 2.60 instantiates it in the LLMServer replica
    (llm_config.py get_or_create_callback) and runs `on_before_download_model_files_distributed` on every node the
    replica's placement group spans, right before vLLM loads the model there (serve/utils/node_initialization_utils.py
    initialize_remote_node -> common/utils/download_utils.py download_model_files). Not exported publicly.
    """
    from ray.llm._internal.common.callbacks.base import CallbackBase

    return CallbackBase
