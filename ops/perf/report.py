"""perf.json (everything, with the machine described) and perf.md (the targets and the main tables)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    model = next((ln.split(":", 1)[1].strip() for ln in sh("lscpu").splitlines() if ln.startswith("Model name")),
                 platform.processor() or "unknown")
    mem = next((int(ln.split()[1]) // 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), None) if Path("/proc/meminfo").exists() else None
    return {"cpu_model": model, "cores": os.cpu_count(), "memory_mib": mem, "platform": platform.platform(),
            "python": platform.python_version(), "gpu": None}


def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _t(name: str, target: str, value: Any, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"name": name, "target": target, "value": value, "met": met, "note": note}


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    d = s.get("dag_overhead")
    if d and "ratio_p50" in d:
        r = d["ratio_p50"]
        out.append(_t("dag_overhead", "overhead at concurrency 1 ≤ 1.5 × the handle hops on the critical path",
                      {"ratio_p50": r, "overhead_p50_ms": d["overhead_p50_ms"], "hops_p50_ms": d["hops_p50_ms"],
                       "k": d["critical_path_calls_k"]}, r is not None and r <= 1.5))
        c = d["concurrency"]
        w, ideal = c.get("wall_over_sum_p50"), c.get("ideal_wall_over_sum_p50")
        out.append(_t("sides_concurrent", "query and product sides overlap: wall well under their sum (wall/sum < "
                      "0.9 and within 0.1 of max(sides)/sum, the fully concurrent ideal)",
                      {"wall_over_sum_p50": w, "ideal": ideal, "sum_ms": c.get("sum_of_sides_ms_p50"),
                       "wall_ms": c.get("both_sides_wall_ms_p50")},
                      w is not None and ideal is not None and w < 0.9 and w <= ideal + 0.1))
    roles = (s.get("batching") or {}).get("roles", {})
    b = roles.get("embedder")
    if b:
        # the synthetic rows say what the machine allows: a 10 ms engine call, a 30 ms one, and none at all (the
        # per-request ceiling that caps any batched throughput here)
        context = {k: {"ratio": v["ratio"], "batched_rps": v["batched_rps"]} for k, v in roles.items()
                   if k.startswith("embedder (synthetic")}
        out.append(_t("batching_embedder", "batched ≥ 3 × unbatched throughput, embedder, concurrency 32",
                      {"ratio": b["ratio"], "batched_rps": b["batched_rps"], "unbatched_rps": b["unbatched_rps"],
                       "engine": b["engine"], "synthetic": context}, b["ratio"] is not None and b["ratio"] >= 3))
    c = s.get("caching")
    if c:
        out.append(_t("caching_throughput", "cached judgments ≥ 20 × cold throughput",
                      {"hot_over_cold": c["hot_over_cold"], "hot_rps": c["hot_rps"], "cold_rps": c["cold_rps"]},
                      c["hot_over_cold"] is not None and c["hot_over_cold"] >= 20))
        p = c.get("inside_judge_hit_p50_ms")
        out.append(_t("caching_latency", "cache-hit p50 inside the judge < 5 ms", {"p50_ms": p,
                      "p99_ms": c.get("inside_judge_hit_p99_ms")}, None if p is None else p < 5))
    a = s.get("autoscaling")
    if a:
        out.append(_t("scale_up", "replicas rise within 15 s of a step load", {"scale_up_s": a["scale_up_s"]},
                      a["scale_up_s"] is not None and a["scale_up_s"] <= 15))
        out.append(_t("scale_no_failures", "0 failed requests through a full up/down cycle; others untouched",
                      {"failed": a["failed"], "back_to_min_s_after_step": a["back_to_min_s_after_step"],
                       "others_untouched": a["others_untouched"]},
                      a["failed"] == 0 and a["back_to_min_s_after_step"] is not None and a["others_untouched"]))
    out.append(_t("gpu_engine_ratio", "armed deployment ≥ 0.95 × raw vLLM engine throughput (ops/gpu_perf.py)",
                  None, None, "measured by ops/gpu_perf.py, not by armed-ops perf; see its own result file"))
    return out


def write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result["targets"] = targets(result["scenarios"])
    (out / "perf.json").write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    (out / "perf.md").write_text(markdown(result), encoding="utf-8")


def _f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _section(heading: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A numbered section of the report: its heading and a markdown table, one row per item (cells as given)."""
    return ["", f"## {heading}", "", _row(columns), "|" + "---|" * len(columns), *(_row(r) for r in rows)]


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(r: dict[str, Any]) -> str:
    m, s = r["meta"], r["scenarios"]
    lines = [f"# armed-ops perf — profile `{m['profile']}` ({m['mode']})", "",
             f"Machine: {m['machine']['cpu_model']}, {m['machine']['cores']} cores, {m['machine']['memory_mib']} MiB, "
             f"no GPU. Load average (1/5/15 min) before: {m['load_before']}, after: {m['load_after']}. "
             f"Commit {m['commit']}, {m['started']}, {m['duration_s']} s.", "",
             f"Command: `{m['command']}`", "",
             f"Each figure: median over {m['repeats']} runs of the run's p50 / p99; ratios taken within a run.", "",
             "## Targets", "", "| target | value | met |", "|---|---|---|"]
    for t in r["targets"]:
        v = json.dumps(t["value"], ensure_ascii=False) if t["value"] is not None else t["note"]
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {v} | {met} |")
    d = s.get("dag_overhead")
    if d and "judge_p50_ms" in d:
        lines += ["", "## 1. DAG overhead (zero-work engines)", "",
                  f"k = {d['critical_path_calls_k']} sequential model calls on the critical path, {d['delay_s']} s "
                  f"each ({d['model_time_on_critical_path_ms']} ms).", "",
                  "| | p50 ms | p99 ms |", "|---|---|---|",
                  f"| judge (handle) | {_f(d['judge_p50_ms'])} | {_f(d['judge_p99_ms'])} |",
                  f"| relay chain, k+1 hops (handle) | {_f(d['relay_p50_ms'])} | {_f(d['relay_p99_ms'])} |",
                  f"| judge over HTTP (proxy + gateway) | {_f(d['http_p50_ms'])} | {_f(d['http_p99_ms'])} |", "",
                  f"Overhead p50 {_f(d['overhead_p50_ms'])} ms vs hops {_f(d['hops_p50_ms'])} ms (per hop "
                  f"{_f(d['per_hop_p50_ms'])} ms): ratio {_f(d['ratio_p50'], 2)} (p99-based {_f(d['ratio_p99'], 2)}).",
                  f"Sides: query {_f(d['concurrency']['query_side_ms_p50'])} ms + product "
                  f"{_f(d['concurrency']['product_side_ms_p50'])} ms = {_f(d['concurrency']['sum_of_sides_ms_p50'])}"
                  f" ms of stage time ran in {_f(d['concurrency']['both_sides_wall_ms_p50'])} ms wall "
                  f"(wall/sum {_f(d['concurrency']['wall_over_sum_p50'], 2)})."]
    e = s.get("end_to_end")
    if e and "by_concurrency" in e:
        lines += _section("2. End to end (HTTP /v1/judge, cold)",
                          ("concurrency", "judgments/s", "p50 ms", "p99 ms", "failed"),
                          [(c, _f(v["throughput_rps"], 2), _f(v["p50_ms"]), _f(v["p99_ms"]), v["failed"])
                           for c, v in e["by_concurrency"].items()])
    b = s.get("batching")
    if b and "roles" in b:
        lines += _section("3. Batching (concurrency 32)",
                          ("role", "engine", "batched rps", "unbatched rps", "ratio", "batched p50 ms",
                           "unbatched p50 ms"),
                          [(role, v["engine"], _f(v["batched_rps"]), _f(v["unbatched_rps"]), _f(v["ratio"], 2),
                            _f(v["batched_p50_ms"]), _f(v["unbatched_p50_ms"])) for role, v in b["roles"].items()])
    c = s.get("caching")
    if c and "cold_rps" in c:
        lines += ["", "## 4. Caching", "", "| traffic | judgments/s | p50 ms | p99 ms |", "|---|---|---|---|",
                  f"| cold (caches off) | {_f(c['cold_rps'], 2)} | {_f(c['cold_p50_ms'])} | {_f(c['cold_p99_ms'])} |",
                  f"| Zipf mix (caches on) | {_f(c['zipf_rps'], 2)} | "
                  f"{_f(c['zipf_p50_ms'])} | {_f(c['zipf_p99_ms'])} |",
                  f"| hot (all hits) | {_f(c['hot_rps'], 2)} | {_f(c['hot_p50_ms'])} | {_f(c['hot_p99_ms'])} |", "",
                  f"Inside the judge, hit p50 {_f(c['inside_judge_hit_p50_ms'], 3)} ms, p99 "
                  f"{_f(c['inside_judge_hit_p99_ms'], 3)} ms. Hit rates of the Zipf run: "
                  + json.dumps({k: v.get('hit_rate') for k, v in (c.get('hit_rates_zipf') or {}).items()})]
    a = s.get("autoscaling")
    if a and "cycles" in a:
        lines += _section("5. Autoscaling",
                          ("cycle", "start", "peak", "up after s", "back to min s after step", "requests", "failed",
                           "others untouched"),
                          [(i, cy["start_replicas"], cy["peak_replicas"], _f(cy["scale_up_s"]),
                            _f(cy["back_to_min_s_after_step"]), sum(cy["requests"].values()), cy["failed"],
                            cy["others_untouched"]) for i, cy in enumerate(a["cycles"])])
    g = s.get("engines")
    if g and isinstance(g, dict) and "error" not in g:
        lines += _section("6. Per-model engine throughput (one replica each; capacity.json)",
                          ("role", "engine", "concurrency", "requests/s", "p50 ms", "p95 ms", "prompt tok/s",
                           "output tok/s"),
                          [(role, v["engine"], v["concurrency"], _f(v["throughput_rps"], 2), _f(v["p50_ms"]),
                            _f(v["p95_ms"]), _f(v["prompt_tokens_per_s"]), _f(v["output_tokens_per_s"]))
                           for role, v in g.items()])
    k = s.get("cost")
    if k and "profiles" in k:
        lines += ["", "## 7. Cost per judgment (no caching)", "", "| profile | path | share | model calls | "
                  "per role: calls / prompt tok / output tok |", "|---|---|---|---|---|"]
        for name, pv in k["profiles"].items():
            for path in ("deterministic", "llm_judge", "fallback", "all"):
                v = pv.get(path)
                if not v:
                    continue
                roles = "; ".join(f"{r}: {x['calls']:g} / {x['prompt_tokens']:g} / {x['output_tokens']:g}"
                                  for r, x in v["per_role"].items())
                lines.append(f"| {name} | {path} | {v['share']} | {v['model_calls_per_judgment']} | {roles} |")
        lines += ["", k["student_teacher"] + ".", "",
                  "GPU cost per million judgments for a profile = 10⁶ × Σ_roles calls_per_judgment_R × (1 − cache "
                  "hit rate) / requests_per_s_R (one replica) × GPUs per replica_R × price per GPU-second; the "
                  "requests_per_s come from a capacity file measured on that GPU (section 6's format)."]
        if k.get("cpu_replica_seconds_per_judgment"):
            lines.append(f"On this machine (profile {m['profile']}): "
                         f"{json.dumps(k['cpu_replica_seconds_per_judgment'])} replica-seconds per judgment.")
    for n in r.get("notes", []):
        lines.append(f"\n> {n}")
    return "\n".join(lines) + "\n"
