"""The whole serving stack in one process, without Ray: what the fuzz suite's fast part drives.

Every armed class is the real one (Gateway, JudgeDeployment with the real Pipeline and knowledge base, the model
deployments with zero-work engines); only Ray Serve's transport is replaced, at the three functions armed calls:
`serve.get_deployment_handle` (a handle whose `.method.remote()` calls the replica object in this process, with
arguments copied through pickle as Ray would), `serve.status` (every deployed role has one RUNNING replica) and
`serve.get_replica_context` (the servable behind the FastAPI app that is being called). An ASGI router stands in
for Serve's proxy: `/models/<role>/...` goes to that role's app with the prefix as root_path, the rest to the
gateway. Exceptions that escape a route propagate out of the ASGI app, so a test sees the traceback itself
instead of a bare 500.
"""

from __future__ import annotations

import contextvars
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from armed.roles import ROLES
from armed.serving import config as serve_cfg
from armed.serving.profiles import load_profile
from armed_testing.zero_work import ZeroWork

_SERVABLE: contextvars.ContextVar[Any] = contextvars.ContextVar("armed_test_servable")


def user_class(deployment: Any) -> type:
    """The class a `@serve.deployment` (and `@serve.ingress`) wrapped: what a replica instantiates."""
    from ray.serve._private.http_util import ASGIAppReplicaWrapper

    for base in deployment.func_or_class.__mro__:
        if base.__module__.startswith("deployments.") and not issubclass(base, ASGIAppReplicaWrapper):
            return base
    raise TypeError(f"no armed class behind {deployment!r}")


def instantiate(deployment: Any, *args: Any, **kwargs: Any) -> Any:
    cls = user_class(deployment)
    obj = cls.__new__(cls)
    cls.__init__(obj, *args, **kwargs)
    return obj


class _Method:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        # Ray pickles arguments to another process: a value that cannot cross fails here as it would there.
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
        return self._call(args, kwargs)

    async def _call(self, args: tuple, kwargs: dict) -> Any:
        result = await self._fn(*args, **kwargs)
        return pickle.loads(pickle.dumps(result))


class LocalHandle:
    """A deployment handle whose calls run on a replica object in this process."""

    def __init__(self, replica: Any) -> None:
        self._replica = replica

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._replica, name))


class InProcessStack:
    """Replica objects for every deployed role, the judge and the gateway, and an ASGI app routing to them."""

    def __init__(self, profile_ref: str, engines: dict[str, ZeroWork] | None = None) -> None:
        """Every deployed role on a zero-work engine: `engines[role]` where given (slow, failing), else ZeroWork()."""
        from deployments.judge import Gateway, JudgeDeployment, gateway_api
        from deployments.models import _chat_api  # noqa: F401
        from serve_apps.models import ModelAppArgs  # noqa: F401

        self.profile = load_profile(profile_ref)
        self.handles: dict[tuple[str, str], LocalHandle] = {}
        self.apps: dict[str, tuple[Any, Any]] = {}  # route prefix -> (FastAPI app, replica)
        self.down: set[str] = set()  # roles reported with no running replica (tests of the 503 path)
        for role in self.profile.deployed_roles():
            rp = self.profile.models[role]
            args = {"role": role, "engine": rp.engine.model_dump(), "health_timeout_s": rp.health_check_timeout_s}
            if rp.batching:
                args |= {"max_batch_size": rp.batching.max_batch_size,
                         "batch_wait_timeout_s": rp.batching.batch_wait_timeout_s}
            with self.patched():
                replica = instantiate(ROLES[role].deployment_class(), args,
                                      engine_cls=(engines or {}).get(role, ZeroWork()))
            key = (serve_cfg.deployment_name(self.profile, role), serve_cfg.app_name(role))
            self.handles[key] = LocalHandle(replica)
            self.apps[serve_cfg.route_prefix(role)] = (_ingress_app(ROLES[role].deployment_class()), replica)
        judge_args = {"profile": profile_ref}
        with self.patched():
            judge = instantiate(JudgeDeployment, judge_args)
            gateway = instantiate(Gateway, judge_args, LocalHandle(judge))
        self.handles[(serve_cfg.JUDGE_DEPLOYMENT, serve_cfg.JUDGE_APP)] = LocalHandle(judge)
        self.judge, self.gateway = judge, gateway
        self.gateway_app = gateway_api

    def set_down(self, roles: set[str]) -> None:
        """Report these roles with no running replica from now on (the clients' cached view is dropped)."""
        self.down = set(roles)
        self.gateway.availability.invalidate()
        for clients in (self.gateway.clients, self.judge.service.pipeline.clients):
            for client in vars(clients).values():
                if hasattr(client, "availability"):
                    client.availability.invalidate()

    # --- the Ray Serve functions armed calls -------------------------------------------------------------------

    def _get_deployment_handle(self, deployment: str, app: str = "default") -> LocalHandle:
        return self.handles[(deployment, app)]

    def _status(self) -> Any:
        apps: dict[str, Any] = {}
        for deployment, app in self.handles:
            running = 0 if any(app == serve_cfg.app_name(r) for r in self.down) else 1
            deps = apps.setdefault(app, SimpleNamespace(deployments={})).deployments
            deps[deployment] = SimpleNamespace(replica_states={"RUNNING": running})
        return SimpleNamespace(applications=apps)

    @contextmanager
    def patched(self) -> Iterator[None]:
        from ray import serve

        saved = (serve.get_deployment_handle, serve.status, serve.get_replica_context)
        serve.get_deployment_handle = self._get_deployment_handle
        serve.status = self._status
        serve.get_replica_context = lambda: SimpleNamespace(servable_object=_SERVABLE.get())
        try:
            yield
        finally:
            serve.get_deployment_handle, serve.status, serve.get_replica_context = saved

    # --- Serve's proxy ------------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        app, servable = self.gateway_app, self.gateway
        if scope["type"] == "http" and scope["path"] == "/-/routes":  # the proxy's own route table
            from starlette.responses import JSONResponse

            routes = {"/": serve_cfg.JUDGE_APP, **{p: p.removeprefix("/models/") for p in self.apps}}
            await JSONResponse(routes)(scope, receive, send)
            return
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, (role_app, replica) in self.apps.items():
                if path == prefix or path.startswith(prefix + "/"):
                    scope = {**scope, "path": path[len(prefix):] or "/", "root_path": prefix}
                    app, servable = role_app, replica
                    break
        token = _SERVABLE.set(servable)
        try:
            await app(scope, receive, send)
        finally:
            _SERVABLE.reset(token)


def _ingress_app(deployment: Any) -> Any:
    """The FastAPI app a model deployment class was declared with (`@serve.ingress(app)`)."""
    from deployments import models

    cls = user_class(deployment)
    for name in ("embedder_api", "classifier_api", "llm_api", "vl_api", "ocr_api"):
        app = getattr(models, name)
        if any(getattr(r, "endpoint", None) is not None and
               getattr(r.endpoint, "__qualname__", "").startswith(cls.__qualname__ + ".") for r in app.routes):
            return app
    raise LookupError(f"no FastAPI app for {cls.__qualname__}")


def documents(profile_ref: str) -> list[Any]:
    """The OpenAPI documents the stack serves (gateway at "", each deployed role at /models/<role>), without
    building replicas: what the fuzzer would discover, available when tests are collected."""
    from deployments.judge import gateway_api
    from ops.fuzz.cases import Api

    profile = load_profile(profile_ref)
    apis = [Api("", gateway_api.openapi())]
    for role in profile.deployed_roles():
        apis.append(Api(serve_cfg.route_prefix(role), _ingress_app(ROLES[role].deployment_class()).openapi()))
    return apis
