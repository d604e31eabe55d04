"""In-process DAG traces (critical path, cost by path) and the capacity file format, without Ray."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from armed.serving.profiles import Profile, load_profile
from armed_testing.zero_work import ZeroWork
from ops.perf.scenarios import capacity_file
from ops.perf.stack import zero_work_profile
from ops.perf.trace import Tracer, cost_table, trace_pair, traced_pipeline
from ops.perf.workload import all_pairs


def _traces(profile: Profile, counter=None) -> list[dict]:
    tracer = Tracer(counter)
    pipe = traced_pipeline(profile, tracer, ZeroWork())

    async def go() -> list[dict]:
        return [await trace_pair(pipe, tracer, p.query, p.product) for p in all_pairs(images_every=3)]

    return asyncio.run(go())


def test_zero_work_profile_deploys_every_role_with_caches_off() -> None:
    zw = Profile.model_validate(zero_work_profile(load_profile("cpu")))
    assert zw.deployed_roles() == ["llm", "embedder", "consistency", "vl", "ocr", "student"]
    assert zw.judge.caches.judgment.size == 0 and zw.judge.llm_text


def test_critical_path_is_longest_side_plus_join() -> None:
    traces = _traces(Profile.model_validate(zero_work_profile(load_profile("cpu"))))
    for t in traces:
        sides = t["by_side"]
        assert t["critical_path_calls"] == max(sides.get("query", 0), sides.get("product", 0)) + sides.get("join", 0)
        assert sum(sides.values()) == len(t["calls"])
        # the join: nothing on deterministic paths, the student alone, or the student and then the LLM
        assert sides.get("join", 0) == {"deterministic": 0, "student": 1, "llm_judge": 2}[t["path"]], t["path"]
    assert max(t["critical_path_calls"] for t in traces) >= 3
    assert {t["path"] for t in traces} >= {"deterministic", "student", "llm_judge"}


def test_cost_table_counts_calls_and_tokens_per_path() -> None:
    traces = _traces(load_profile("cpu"), counter=len)  # 1 token per character: easy to check by hand
    table = cost_table(traces)
    assert table["all"]["judgments"] == len(traces) and table["all"]["share"] == 1.0
    paths = ("deterministic", "student", "llm_judge", "fallback")
    assert sum(table[p]["judgments"] for p in paths if p in table) == len(traces)
    assert "llm" not in table["all"]["per_role"]  # the cpu profile has no LLM: the student judges
    student = table["student"]["per_role"]["student"]
    assert student["calls"] == 1 and student["prompt_tokens"] > 2
    traces = _traces(load_profile("h100-x1"), counter=len)  # an LLM behind the student: escalated pairs reach it
    table = cost_table(traces)
    llm = table["llm_judge"]["per_role"]["llm"]
    assert llm["calls"] >= 1 and llm["prompt_tokens"] > 50 and llm["output_tokens"] > 1


def test_capacity_file_is_read_by_armed_ops(tmp_path: Path) -> None:
    from ops.capacity import load_benchmark, plan

    eng = {r: {"throughput_rps": 10.0, "p50_ms": 50.0, "p95_ms": 90.0, "concurrency": 4}
           for r in ("student", "embedder", "ocr")}
    e2e = {"by_concurrency": {"8": {"throughput_rps": 3.0, "p50_ms": 900.0, "runs": [{"p95_ms": 1200.0}]}}}
    cap = capacity_file(load_profile("cpu"), eng, e2e, {"student": 0.57, "embedder": 0.71, "ocr": 0.25}, "test")
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(cap))
    roles, _ = plan(load_profile("cpu"), load_benchmark(path), qps=2.0, latency_ms=2000)
    by = {r.role: r for r in roles}
    assert by["student"].demand_rps == 2.0 * 0.57 and by["judge"].per_replica_rps == 3.0 * 0.7
