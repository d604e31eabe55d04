"""What a runtime may add around the one judgment flow (`Pipeline.judge`), and nothing more.

The library judges a pair with no hooks; the Serve judge (deployments/judge.py) passes hooks that admit the request
(its required models are up), serve whole judgments and each side's understanding from its caches, and keep what
it made; the perf tracer passes hooks that label each side's model calls. The flow itself (parse and sanitise the
pair, read its images, both sides concurrently, rules, hierarchy, the overall deadline) stays in the Pipeline, so
every runtime judges a pair the same way.

This module imports no stage, engine or knowledge code: the gateway imports the judge module, and must stay light.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from armed.domain import Judgment, Product, Query, StageReport

if TYPE_CHECKING:
    from armed.pipeline.product_side import ProductUnderstanding
    from armed.pipeline.query_side import QueryUnderstanding

T = TypeVar("T")


@dataclass
class Understood(Generic[T]):
    """One side's understanding with the stage reports that made it: what a side cache keeps, so a side that came
    from a cache can still say whether it was degraded."""

    value: T
    reports: list[StageReport] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)


SideLoader = Callable[[], Awaitable[Understood[T]]]


class JudgmentHooks:
    """Extension points of `Pipeline.judge`. Each default adds nothing, which is the library's judgment; a runtime
    overrides the ones it needs. Hooks are called in this order: `admit`, `cached`, then (on a miss) `query_side`
    and `product_side` concurrently, then `made` once the judgment is complete."""

    async def admit(self, query: Query, product: Product) -> None:
        """After the pair is parsed and its images read, before any cache or model: raise to refuse the judgment
        (the Serve judge raises ModelUnavailable while a required model has no replica)."""

    def cached(self, query: Query, product: Product) -> Judgment | None:
        """A judgment already made for this pair, served as it is (with this request's id and no time), or None."""
        return None

    async def query_side(
        self, query: Query, load: SideLoader[QueryUnderstanding]
    ) -> tuple[Understood[QueryUnderstanding], bool]:
        """The query side's understanding and whether it came from a cache (`load` computes it)."""
        return await load(), False

    async def product_side(
        self, product: Product, load: SideLoader[ProductUnderstanding]
    ) -> tuple[Understood[ProductUnderstanding], bool]:
        """The product side's understanding and whether it came from a cache (`load` computes it)."""
        return await load(), False

    def made(self, query: Query, product: Product, judgment: Judgment) -> None:
        """A judgment was made (not served by `cached`): the place to keep it."""


NO_HOOKS = JudgmentHooks()
