"""`armed-ops perf` end to end on a fresh local Ray with zero-work engines (passed in by `python -m armed_testing.cli
perf`, as armed ships none): tiny counts, checks the files it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import parser

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]
REPO = Path(__file__).resolve().parents[2]


def test_perf_is_an_armed_ops_command() -> None:
    args = parser().parse_args(["perf", "--out", "x", "--local", "--quick"])
    assert args.cmd == "perf" and args.quick and args.func.__name__ == "cmd_perf"


def test_perf_smoke_zero_work(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "armed_testing.cli", "perf", "--local", "--out", str(out), "--quick", "--repeats", "1",
           "--no-tokens", "--no-progress",
           "--only", "dag,e2e,batching,caching,engines,cost", "--concurrency", "1,4", "--delay", "0.02"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "perf.json").read_text())
    s = data["scenarios"]
    assert data["meta"]["machine"]["cores"] and data["meta"]["load_before"]
    assert data["meta"]["profile_engines"] == "injected ZeroWork(delay_s=0.0, fail=False, wedge_on=None)"
    d = s["dag_overhead"]
    assert d["critical_path_calls_k"] >= 2 and d["judge_p50_ms"] > d["model_time_on_critical_path_ms"]
    assert d["runs"][0]["judge"]["failed"] == 0 and d["runs"][0]["relay"]["failed"] == 0
    assert set(s["end_to_end"]["by_concurrency"]) == {"1", "4"}
    assert all(v["failed"] == 0 for v in s["end_to_end"]["by_concurrency"].values())
    assert s["caching"]["hit_rates_zipf"]["query"]["hits"] > 0
    rows = s["batching"]["roles"]
    assert {"embedder", "embedder (synthetic)", "consistency (synthetic)", "embedder (synthetic, 30 ms)",
            "embedder (synthetic, 0 ms: per-request ceiling)"} <= set(rows)
    for row in rows.values():  # every call of every row answered (a broken row once failed them all)
        assert all(run[k]["failed"] == 0 and run[k]["ok"] > 0 for run in row["runs"] for k in ("batched", "unbatched"))
    assert {t["name"] for t in data["targets"]} >= {"dag_overhead", "sides_concurrent", "caching_throughput"}
    assert "## 1. DAG overhead" in (out / "perf.md").read_text()
    # capacity.json is in exactly the format armed-ops capacity reads
    from armed.serving.profiles import load_profile
    from ops.capacity import load_benchmark, plan

    bench = load_benchmark(out / "capacity.json")
    roles, _ = plan(load_profile("cpu"), bench, qps=1.0, latency_ms=5000)
    assert {r.role for r in roles} == {"embedder", "ocr", "student", "judge"}
