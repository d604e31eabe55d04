"""Run a judge over benchmark items into a resumable predictions JSONL (the `judge-batch` pattern).

A judge is the local library (`LocalJudge`, a Pipeline in this process) or a running endpoint
(`EndpointJudge`: POST {URL}/v1/judge with {"query", "product"} → a Judgment JSON). Each item gets exactly one
row keyed by its id, written as soon as it finishes; a rerun skips ids already written (a half-written last
line from a crash is cut off first), so an interrupted run resumes where it stopped; a local judge refuses to
resume rows written with other model, knowledge or rule versions. A row whose judgment raised, timed out or
could not be read has `pred: null` — a FAILED sample in the metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from armed.batch import _repair_tail, read_rows_by_id
from armed.domain import BenchmarkLevel
from armed.eval.datasets import BenchItem
from armed.log import get_logger

log = get_logger("armed.eval")

JudgeFn = Callable[[BenchItem], Awaitable[dict[str, Any]]]


class LocalJudge:
    """Judges through a Pipeline in this process."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        # What every judgment will carry as `versions`: a resumed run must not mix in rows of another model.
        versions = getattr(pipeline, "versions", None)
        self.versions: dict[str, Any] | None = versions().model_dump(mode="json") if callable(versions) else None

    async def __call__(self, item: BenchItem) -> dict[str, Any]:
        judgment = await self.pipeline.judge(item.query, item.product)
        return judgment.model_dump(mode="json")


class EndpointError(RuntimeError):
    pass


class EndpointJudge:
    """Judges through a running armed service: POST {url}/v1/judge."""

    def __init__(self, url: str, timeout_s: float = 200.0, client: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/") + "/v1/judge"
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def __call__(self, item: BenchItem) -> dict[str, Any]:
        resp = await self._client.post(self.url, json={"query": item.query, "product": item.product})
        if resp.status_code != 200:
            raise EndpointError(f"HTTP {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        if not isinstance(body, dict):
            raise EndpointError("the endpoint did not answer a JSON object")
        return body

    async def aclose(self) -> None:
        await self._client.aclose()


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """id → row of a predictions file (the last row wins; unreadable lines are skipped)."""
    return read_rows_by_id(path)


def _record(item: BenchItem, category: str, judgment: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": item.id,
        "query": item.query,
        "product_name": item.product_name,
        "gold": item.label.value if item.label else None,
        "raw_label": item.raw_label,
        "category": category,
        "pred": None,
        "level": None,
        "branch": None,
        "probabilities": None,
        "student": None,
        "degraded": [],
        "seconds": None,
        "versions": None,
        "error": error,
    }
    if judgment is not None:
        try:
            rec["pred"] = BenchmarkLevel(judgment.get("benchmark_level")).value
        except ValueError:
            rec["error"] = f"unparseable answer: benchmark_level={judgment.get('benchmark_level')!r}"
        for key in ("level", "branch", "probabilities", "student", "degraded", "seconds", "versions"):
            if key in judgment:
                rec[key] = judgment[key]
    return rec


async def run_predictions(
    items: Sequence[BenchItem],
    judge: JudgeFn,
    out_path: Path,
    *,
    categories: dict[str, str] | None = None,
    concurrency: int = 4,
    progress: bool = True,
    desc: str = "judging",
    timeout_s: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Judge every item not yet in `out_path`; return id → row for exactly `items`."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(out_path)
    done = read_predictions(out_path)
    expected = getattr(judge, "versions", None)
    if expected is not None:
        stale = [r["versions"] for r in done.values() if r.get("versions") not in (None, expected)]
        if stale:
            raise ValueError(f"{out_path} holds {len(stale)} judgments made with other versions than this judge "
                             f"(e.g. {stale[0]} vs {expected}): resuming would mix two judges; remove the file or "
                             "choose another --out")
    todo = [it for it in items if it.id not in done]
    cats = categories or {}
    sem = asyncio.Semaphore(concurrency)
    lock = asyncio.Lock()
    bar = tqdm(total=len(items), initial=len(items) - len(todo), disable=not progress, unit="pair", desc=desc)
    with out_path.open("a", encoding="utf-8") as out:

        async def one(item: BenchItem) -> None:
            async with sem:
                started = time.perf_counter()
                judgment, error = None, None
                try:
                    if timeout_s:
                        judgment = await asyncio.wait_for(judge(item), timeout_s)
                    else:
                        judgment = await judge(item)
                except TimeoutError:
                    error = f"timeout after {timeout_s}s"
                except Exception as exc:  # one failing pair is a FAILED sample, never a lost run
                    error = f"{type(exc).__name__}: {exc}"
                rec = _record(item, cats.get(item.id, item.category or "unknown"), judgment, error)
                if rec["seconds"] is None:
                    rec["seconds"] = time.perf_counter() - started
                async with lock:
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    out.flush()
                    done[item.id] = rec
                bar.update(1)

        await asyncio.gather(*(one(it) for it in todo))
    bar.close()
    return {it.id: done[it.id] for it in items}


def pred_of(row: dict[str, Any]) -> BenchmarkLevel | None:
    p = row.get("pred")
    return BenchmarkLevel(p) if p else None
