"""armed's own Prometheus metrics, recorded by the judge deployment: the contract in `ops/metrics.py`.

  armed_judgments_total      Counter   label (the RelevanceLevel value), degraded ("true"/"false")
  armed_stage_latency_ms     Histogram stage: one observation per StageReport that ran (status ok / failed /
                                       timeout; "skipped" and "disabled" reports took no time and would only drag
                                       the quantiles to 0), plus stage="judge" for the whole judgment
  armed_cache_requests_total Counter   cache (query / product / judgment), result ("hit"/"miss")

A judgment served from the judgment cache counts in armed_judgments_total and in stage="judge" (that is what the
caller got, and how long it took), but its stored per-stage reports are not observed again. Errors (400, 503,
504) are not judgments: Serve's own HTTP metrics count them.

`JudgeService` talks to a `MetricsRecorder`; `RayMetricsRecorder` creates the `ray.serve.metrics` objects once
(per replica, in the deployment's constructor) and Serve adds the deployment / replica / application tags.
Tests inject any object with the same three methods.
"""

from __future__ import annotations

from typing import Any, Protocol

from ops import metrics as contract

JUDGMENTS = contract.JUDGMENTS.removeprefix("ray_")
STAGE_LATENCY = contract.STAGE_LATENCY_BUCKET.removeprefix("ray_").removesuffix("_bucket")
CACHE_REQUESTS = contract.CACHE_REQUESTS.removeprefix("ray_")
# Milliseconds: cache hits and rule stages (~1 ms) up to the whole judgment's deadline (timeouts.total, 180 s).
STAGE_BUCKETS_MS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 180_000,
)
TIMED_STATUSES = frozenset({"ok", "failed", "timeout"})
JUDGE_STAGE = "judge"


class MetricsRecorder(Protocol):
    def judgment(self, label: str, degraded: bool) -> None: ...

    def stage(self, stage: str, ms: float) -> None: ...

    def cache(self, cache: str, hit: bool) -> None: ...


class NullRecorder:
    """Records nothing (the library and tests that do not look at metrics)."""

    def judgment(self, label: str, degraded: bool) -> None:
        pass

    def stage(self, stage: str, ms: float) -> None:
        pass

    def cache(self, cache: str, hit: bool) -> None:
        pass


class RayMetricsRecorder:
    """The contract's three metrics through `ray.serve.metrics`; create one per replica, not per request."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._judgments = metrics.Counter(
            JUDGMENTS, description="Judgments served, by relevance level and whether degraded.",
            tag_keys=("label", "degraded"),
        )
        self._latency = metrics.Histogram(
            STAGE_LATENCY, description="Latency of each pipeline stage that ran, and of the whole judgment (judge).",
            boundaries=list(STAGE_BUCKETS_MS), tag_keys=("stage",),
        )
        self._cache = metrics.Counter(
            CACHE_REQUESTS, description="Judge cache lookups, by cache and hit/miss.", tag_keys=("cache", "result"),
        )

    def judgment(self, label: str, degraded: bool) -> None:
        self._judgments.inc(1, tags={"label": label, "degraded": "true" if degraded else "false"})

    def stage(self, stage: str, ms: float) -> None:
        self._latency.observe(max(ms, 0.0), tags={"stage": stage})

    def cache(self, cache: str, hit: bool) -> None:
        self._cache.inc(1, tags={"cache": cache, "result": "hit" if hit else "miss"})


def record_judgment(recorder: MetricsRecorder, judgment: Any, seconds: float, *, cached: bool = False) -> None:
    """One served Judgment: its label and degraded flag, the stages that ran (unless cached), the whole time."""
    recorder.judgment(str(getattr(judgment.level, "value", judgment.level)), bool(judgment.degraded))
    if not cached:
        for report in judgment.stages:
            if report.status in TIMED_STATUSES:
                recorder.stage(report.name, report.seconds * 1000.0)
    recorder.stage(JUDGE_STAGE, seconds * 1000.0)
