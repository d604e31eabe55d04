"""Running one stage: switch, timeout, timing, and what a failure does to the judgment.

Which switch turns a stage on and which timeout bounds it is armed/stages.py's table: `StageRecorder.run` reads
both from there by the stage's name, so no caller picks its own, and an unknown name is refused.
A required stage that fails fails the judgment. An optional stage that fails or times out returns its default
and the stage's name goes into `degraded`, so the judgment says which evidence it lacked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from armed.domain import Entities, StageReport
from armed.knowledge.base import KnowledgeBase
from armed.log import get_logger
from armed.settings import ArmedSettings
from armed.stages import get_stage

T = TypeVar("T")
log = get_logger("armed.stage")


@dataclass
class Detailed(Generic[T]):
    """A stage result with a one-line detail for its report (what it found, which model answered)."""

    value: T
    detail: str = ""


@dataclass
class StageRecorder:
    """Collects the reports of every stage of one judgment (query and product sides run concurrently)."""

    reports: list[StageReport] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)

    def skip(self, name: str, reason: str, status: str = "skipped") -> None:
        self.reports.append(StageReport(name=name, status=status, detail=reason))  # type: ignore[arg-type]

    async def run(
        self,
        name: str,
        fn: Callable[[], Awaitable[T | Detailed[T]]],
        settings: ArmedSettings,
        *,
        default: T,
        optional: bool = True,
        skip_reason: str | None = None,
    ) -> T:
        """Run the stage `name` (armed/stages.py) with `fn`, if its switch in `settings.stages` is on, under its
        timeout in `settings.timeouts`. `skip_reason` says why an enabled stage has nothing to do this time (no
        documents, no model for the role). ValueError for a name the table does not list."""
        stage = get_stage(name)
        timeout = stage.timeout_s(settings.timeouts)
        if not stage.enabled(settings.stages):
            self.skip(name, "switched off by settings", status="disabled")
            return default
        if skip_reason:
            self.skip(name, skip_reason)
            return default
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(fn(), timeout)
        except TimeoutError:
            seconds = time.perf_counter() - start
            self.reports.append(StageReport(name=name, status="timeout", seconds=seconds, detail=f"> {timeout}s"))
            log.warning("stage_timeout", stage=name, timeout_s=timeout)
            if not optional:
                raise
            self.degraded.append(name)
            return default
        except Exception as exc:
            seconds = time.perf_counter() - start
            detail = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.reports.append(StageReport(name=name, status="failed", seconds=seconds, detail=detail))
            log.warning("stage_failed", stage=name, error=detail)
            if not optional:
                raise
            self.degraded.append(name)
            return default
        seconds = time.perf_counter() - start
        if isinstance(result, Detailed):
            self.reports.append(StageReport(name=name, status="ok", seconds=seconds, detail=result.detail))
            log.debug("stage_ok", stage=name, seconds=round(seconds, 4))
            return result.value
        self.reports.append(StageReport(name=name, status="ok", seconds=seconds))
        return result


def ground_in_knowledge(kb: KnowledgeBase, entities: Entities, notes: list[str]) -> Entities:
    """Entities plus what the knowledge base's drug records say of their common names, each fact noted with
    its source (both sides use it: query grounding and the product's information extension)."""
    for cn in entities.common_name:
        rec = kb.drug_record(cn)
        if rec is not None:
            notes.append(f"knowledge ({'/'.join(rec.sources)}): {cn} — efficacy {'/'.join(rec.efficacy) or 'unknown'}")
    return kb.enrich(entities)
