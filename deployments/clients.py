"""Model clients backed by Serve deployment handles: the armed.engines.base protocols over the network.

The judge builds its Pipeline with these clients, so it runs exactly the DAG the library runs in-process.
Nothing here contacts a backend at construction: handles are looked up on first use. A role's availability (its
app exists and has a running replica) is read first from the handle's own router, which the Serve controller
keeps up to date by long poll, so the request path costs a few attribute reads. Only when the router cannot
vouch for a running replica (handle not used yet, scaled to zero, deleted) is the controller asked, through
`serve.status()`, cached for a second: that call builds pydantic models of the whole instance (~100 ms of the
replica's CPU with six apps), and reading it on every request made up most of the DAG overhead `armed-ops perf`
measured.

A role with no running replica raises `ModelUnavailable` at once instead of queueing forever behind a
scaled-to-zero or missing deployment; the call also leaves a wake-up request queued, so a scale-to-zero
deployment sees load and scales up. The judge turns ModelUnavailable of a required role into 503 + Retry-After;
for an optional role the pipeline stage fails and the judgment is marked degraded.

No call waits forever: a model call has `timeout_s` (the profile's judge.model_timeout_s), the replica's own
deadline (deployments/deadlines.py) usually answers first with its reason, and either way the caller gets
`ModelTimeout`, a ModelUnavailable, so a required role that does not answer in time is a 503 with Retry-After
rather than a silently worse fallback, and the gateway's model routes answer 503 rather than 500. A replica that
dies mid-call (killed, crashed) counts the same way. The controller read that backs availability runs on its
own thread with a deadline (armed/blocking.py), never on asyncio's shared default executor.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from armed.blocking import BlockingTimeout, BlockingWorker, run_with_deadline
from armed.engines.base import (
    ChatMessage,
    ChoiceResult,
    Completion,
    ModelClients,
    SamplingOptions,
)
from armed.log import get_logger
from armed.roles import get_role
from armed.serving.ray_compat import handle_running_replicas

log = get_logger("armed.clients")

# Roles found unavailable while the current request ran. The judge sets a fresh set per request; asyncio tasks
# started by the DAG's gather copy the context, so they share (and add to) the same set object.
UNAVAILABLE_ROLES: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("armed_unavailable", default=None)


class ModelUnavailable(RuntimeError):
    """A model role has no running replica (scaled to zero, not deployed, or all replicas down)."""

    def __init__(self, role: str, reason: str, retry_after_s: int = 10) -> None:
        super().__init__(f"model {role!r} is unavailable: {reason}")
        self.role = role
        self.reason = reason
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:  # keep the three fields across processes (Ray pickles exceptions)
        return (type(self), (self.role, self.reason, self.retry_after_s))


class ModelTimeout(ModelUnavailable):
    """A model role did not answer within its deadline (the replica's, or the caller's own)."""


@dataclass(frozen=True)
class Target:
    """Where a role is served: Serve application and deployment names."""

    role: str
    app: str
    deployment: str


@dataclass
class ReplicaAvailability:
    """Running-replica counts per (app, deployment), from `serve.status()`, cached for `ttl_s`.

    The fallback of `HandleClient.ensure_available` when the handle's router cannot tell (see the module doc).
    """

    ttl_s: float = 1.0
    timeout_s: float = 5.0  # a controller that does not answer within this is a BlockingTimeout, not a hang
    _checked: float = -1e9
    _running: dict[tuple[str, str], int] = field(default_factory=dict)
    _apps: set[str] = field(default_factory=set)
    _lock: asyncio.Lock | None = None
    _worker: BlockingWorker = field(default_factory=lambda: BlockingWorker("armed-serve-status"))

    async def running(self, target: Target) -> int | None:
        """Running replicas of the target; None when its application is not deployed at all."""
        if time.monotonic() - self._checked > self.ttl_s:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if time.monotonic() - self._checked > self.ttl_s:
                    await run_with_deadline(self._worker, self._refresh, timeout_s=self.timeout_s,
                                            what="serve.status() (the Serve controller)")
        if target.app not in self._apps:
            return None
        return self._running.get((target.app, target.deployment), 0)

    def _refresh(self) -> None:
        from ray import serve

        status = serve.status()
        running: dict[tuple[str, str], int] = {}
        for app_name, app in status.applications.items():
            for dep_name, dep in app.deployments.items():
                states = {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()}
                running[(app_name, dep_name)] = states.get("RUNNING", 0)
        self._running = running
        self._apps = set(status.applications)
        self._checked = time.monotonic()

    def invalidate(self) -> None:
        self._checked = -1e9


class HandleClient:
    """Calls one role's deployment through a handle, after checking that it has a running replica."""

    def __init__(
        self, target: Target, model_id: str, availability: ReplicaAvailability, *, timeout_s: float = 60.0,
        retry_after_s: int = 10,
    ) -> None:
        self.target = target
        self.model_id = model_id
        self.availability = availability
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._handle: Any = None
        self._wake: asyncio.Task | None = None

    def handle(self) -> Any:
        if self._handle is None:
            from ray import serve

            self._handle = serve.get_deployment_handle(self.target.deployment, self.target.app)
        return self._handle

    def _unavailable(self, reason: str, kind: type[ModelUnavailable] = ModelUnavailable) -> ModelUnavailable:
        marks = UNAVAILABLE_ROLES.get()
        if marks is not None:
            marks.add(self.target.role)
        return kind(self.target.role, reason, self.retry_after_s)

    async def ensure_available(self) -> None:
        # The handle's router (Ray internals, armed/serving/ray_compat.py) sees a running replica: no controller
        # round trip on the request path. When it cannot tell (None), the controller is asked.
        if self._handle is not None and (handle_running_replicas(self._handle) or 0) > 0:
            return
        try:
            running = await self.availability.running(self.target)
        except BlockingTimeout as exc:
            raise self._unavailable(str(exc), ModelTimeout) from None
        if running is None:
            raise self._unavailable(f"application {self.target.app!r} is not deployed")
        if running == 0:
            self._wake_up()
            raise self._unavailable(f"deployment {self.target.app}/{self.target.deployment} has no running replica")

    def _wake_up(self) -> None:
        """Queue one cheap call so that a scale-to-zero deployment sees demand (at most one at a time)."""
        if self._wake is not None and not self._wake.done():
            return

        async def wake() -> None:
            try:
                await asyncio.wait_for(self.handle().ping.remote(), 600)
            except Exception as exc:
                log.debug("wake_failed", role=self.target.role, error=str(exc)[:200])

        self._wake = asyncio.get_running_loop().create_task(wake())

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        await self.ensure_available()
        return await self.guarded(getattr(self.handle(), method).remote(*args, **kwargs))

    async def guarded(self, work: Any) -> Any:
        """Await a call to this role under `timeout_s`; every way it can fail to answer becomes ModelUnavailable
        (ModelTimeout for a deadline), marked for the judgment."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        from deployments.deadlines import EngineTimeout

        try:
            return await asyncio.wait_for(work, self.timeout_s)
        except (DeploymentUnavailableError, BackPressureError) as exc:
            self.availability.invalidate()
            raise self._unavailable(type(exc).__name__) from None
        except EngineTimeout as exc:  # the replica's own deadline, with its reason
            raise self._unavailable(exc.message, ModelTimeout) from None
        except TimeoutError:
            raise self._unavailable(f"no answer within {self.timeout_s:g}s (model_timeout_s)", ModelTimeout) from None
        except RayActorError as exc:  # the replica died or became unreachable mid-call (ActorDiedError, ...)
            self.availability.invalidate()
            raise self._unavailable(f"the replica was lost mid-call ({type(exc).__name__})") from None


class HandleChatModel(HandleClient):
    """ChatModel over an armed chat deployment's handle (LLMDeployment, VLDeployment)."""

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        return await self.call("choose", list(messages), list(choices))

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        return await self.call("generate", list(messages), max_tokens)

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        return await self.call("complete", list(messages), options)


class HandleEmbedder(HandleClient):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.call("embed", list(texts))

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        return await self.call("embed_with_usage", list(texts))

    async def count_tokens(self, texts: Sequence[str]) -> int:
        return await self.call("count_tokens", list(texts))


class HandlePairClassifier(HandleClient):
    def __init__(self, *args: Any, labels: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = tuple(labels)  # from the profile: known without asking the replica

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        return await self.call("classify", [tuple(p) for p in pairs])


class HandleImageReader(HandleClient):
    async def read(self, image: bytes) -> list[str]:
        return await self.call("read", image)


def build_handle_clients(
    targets: dict[str, Target],
    model_ids: dict[str, str],
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    ray_llm_roles: Sequence[str] = (),
    timeout_s: float = 60.0,
    retry_after_s: int = 10,
    availability: ReplicaAvailability | None = None,
) -> ModelClients:
    """ModelClients for the deployed roles; a role without a target stays None (the pipeline's fallbacks).

    Each role's client class is its entry's in armed/roles.py (`handle_client`, or `ray_llm_client` for the roles in
    `ray_llm_roles`); a pair classifier knows its labels from `labels` (the profile's), else from the table."""
    availability = availability or ReplicaAvailability()
    kw = {"timeout_s": timeout_s, "retry_after_s": retry_after_s}
    clients = ModelClients()
    for role, target in targets.items():
        entry = get_role(role)
        cls = entry.client_class("ray-llm" if role in ray_llm_roles else "armed")
        extra = {"labels": tuple((labels or {}).get(role, entry.labels))} if entry.labels else {}
        setattr(clients, role, cls(target, model_ids[role], availability, **extra, **kw))
    return clients
