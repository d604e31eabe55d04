"""What the in-process judge tests share: a real Pipeline over the packaged knowledge base with zero-work engines in
every role, a pipeline that counts its side runs, and doubles of the judge's required-model clients.

The served judge (deployments.judge.JudgeService) gives the pipeline hooks and nothing else, so these tests drive the
real `Pipeline.judge`; only the model engines and the handle clients' availability are doubles.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from armed.engines.base import ModelClients
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.dag import Pipeline
from armed.pipeline.stages import StageRecorder
from armed.roles import ROLES
from armed.serving.profiles import JudgeCaches
from armed.settings import ArmedSettings
from armed_testing.zero_work import zero_work_engine
from deployments.clients import UNAVAILABLE_ROLES, ModelUnavailable, Target


@cache
def packaged_kb() -> KnowledgeBase:
    return KnowledgeBase.load()


def zero_work_clients(**options: dict[str, Any]) -> ModelClients:
    """Every model role (armed/roles.py) answered by its zero-work engine; `options[role]` are that engine's knobs
    (delay_s, fail)."""
    clients = ModelClients()
    for role in ROLES:
        setattr(clients, role, zero_work_engine(role, **options.get(role, {})))
    return clients


class CountingPipeline(Pipeline):
    """The real Pipeline, counting how often each side is understood and each judgment concluded (what the judge's
    caches save)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = {"query": 0, "product": 0, "conclude": 0}

    async def understand_query(self, query: str, rec: StageRecorder) -> Any:
        self.calls["query"] += 1
        return await super().understand_query(query, rec)

    async def understand_product(self, product: Any, rec: StageRecorder) -> Any:
        self.calls["product"] += 1
        return await super().understand_product(product, rec)

    async def conclude(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["conclude"] += 1
        return await super().conclude(*args, **kwargs)


def counting_pipeline(clients: ModelClients | None = None, **overrides: Any) -> CountingPipeline:
    """`overrides`: nested settings, e.g. stages={'cheating_check': False}."""
    return CountingPipeline(ArmedSettings(**overrides), packaged_kb(), clients or zero_work_clients())


class Required:
    """A required role's handle client as the judge sees it: `ensure_available` raises while the role is down."""

    def __init__(self, role: str = "llm", up: bool = True) -> None:
        self.target = Target(role, role, role)
        self.up = up

    async def ensure_available(self) -> None:
        if not self.up:
            raise ModelUnavailable(self.target.role, "no running replica", 9)


class Vanishing:
    """Wraps an engine; every call finds its role gone the way a handle client does (the role goes into
    UNAVAILABLE_ROLES, ModelUnavailable is raised): a replica that disappeared during the judgment."""

    def __init__(self, engine: Any, role: str) -> None:
        self._engine, self._role = engine, role

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if not callable(attr):
            return attr

        async def gone(*args: Any, **kwargs: Any) -> Any:
            marks = UNAVAILABLE_ROLES.get()
            if marks is not None:
                marks.add(self._role)
            raise ModelUnavailable(self._role, "no running replica", 9)

        return gone


def judge_service(pipeline: Pipeline, required: list[Any] | None = None, **kwargs: Any) -> Any:
    from deployments.judge import JudgeService

    return JudgeService(pipeline, JudgeCaches(), required=required if required is not None else [Required()],
                        retry_after_s=9, **kwargs)
