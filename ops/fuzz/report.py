"""The fuzz run's report: JSON (everything), Markdown (the summary), one reproducer per finding.

Written to a directory:
  report.json     gate, totals, route x status class, latency, findings with their reproducers
  report.md       the same, short
  requests.jsonl  one line per request: case, route, status, seconds
  cases/<n>.json  each finding's case (method, path, headers, how to rebuild the body) and, when it is at most
                  256 KB, cases/<n>.body with the exact bytes; replay with the curl line in the JSON
No API key is written anywhere: the curl lines read it from $ARMED_API_KEY.
"""

from __future__ import annotations

import json
import math
import shlex
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ops.fuzz.cases import FuzzCase
from ops.fuzz.runner import Options, Record, RunResult, record_dict, signature

MAX_SAVED_BODY = 256 * 1024


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))], 4)


def curl(case: FuzzCase, base_url: str, body_file: str | None, with_key: bool) -> str:
    parts = ["curl", "-sS", "-X", case.method, shlex.quote(base_url.rstrip("/") + case.path)]
    if case.content_type:
        parts += ["-H", shlex.quote(f"Content-Type: {case.content_type}")]
    for k, v in case.headers.items():
        shown = v if len(v) <= 200 else v[:40] + f"...({len(v)} chars, see the case JSON)"
        parts += ["-H", shlex.quote(f"{k}: {shown}")]
    if with_key:
        parts += ["-H", '"Authorization: Bearer $ARMED_API_KEY"']
    if case.chunked:
        parts += ["-H", "'Transfer-Encoding: chunked'"]
    if body_file:
        parts += ["--data-binary", "@" + shlex.quote(body_file)]
    return " ".join(parts)


class ReportWriter:
    def __init__(self, out: Path, base_url: str, opts: Options, meta: dict[str, Any]) -> None:
        self.out = out
        self.base_url = base_url
        self.opts = opts
        self.meta = meta
        self._saved = 0

    def save_case(self, case: FuzzCase, why: str) -> dict[str, Any]:
        """Write one reproducer; returns its summary (file names and curl line)."""
        self._saved += 1
        stem = f"{self._saved:04d}"
        cases = self.out / "cases"
        cases.mkdir(parents=True, exist_ok=True)
        body_file = None
        if case.body is not None and len(case.body) <= MAX_SAVED_BODY:
            body_file = f"cases/{stem}.body"
            (self.out / body_file).write_bytes(case.body)
        info = {
            "case": case.id, "why": why, "method": case.method, "path": case.path, "content_type": case.content_type,
            "headers": case.headers, "chunked": case.chunked, "body_bytes": len(case.body or b""),
            "body_file": body_file, "rebuild": case.recipe or None,
            "body_json_escaped": (case.body.decode("ascii", "replace")[:2000]
                                  if case.body is not None and case.json_body is not None else None),
            "curl": curl(case, self.base_url, body_file, bool(self.opts.api_key)),
        }
        (cases / f"{stem}.json").write_text(json.dumps(info, ensure_ascii=True, indent=2) + "\n")
        return {"file": f"cases/{stem}.json", "body_file": body_file, "curl": info["curl"]}

    def build(self, result: RunResult) -> dict[str, Any]:
        recs = result.records
        slow_s = self.opts.slow_s
        routes: dict[str, Counter[str]] = defaultdict(Counter)
        latency: dict[str, list[float]] = defaultdict(list)
        families: dict[str, Counter[str]] = defaultdict(Counter)
        for r in recs:
            routes[r.route][r.status_class()] += 1
            latency[r.route].append(r.seconds)
            families[r.family][r.status_class()] += 1
        errors = [r for r in recs if r.is_error()]
        slow = [r for r in recs if r.is_slow(slow_s)]

        failures = []
        groups: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
        for r in errors:
            groups[signature(r)].append(r)
        for sig, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            minimal = next((result.minimal[r.case_id] for r in rs if r.case_id in result.minimal),
                           result.cases[rs[0].case_id])
            failures.append({
                "route": sig[0], "status": sig[1], "hint": sig[2], "count": len(rs),
                "families": dict(Counter(r.family for r in rs)),
                "cases": [r.case_id for r in rs[:25]], "request_ids": [r.request_id for r in rs[:5]],
                "error": rs[0].error, "snippet": rs[0].snippet,
                **({"server": rs[0].server} if rs[0].server else {}),
                "minimal_case": minimal.id,
                "reproducer": self.save_case(minimal, f"{sig[1]} on {sig[0]}: {sig[2]}"),
            })
        slow_list = [{"case": r.case_id, "route": r.route, "status": r.status, "outcome": r.outcome,
                      "seconds": round(r.seconds, 2), "probe": r.probe,
                      "reproducer": self.save_case(result.cases[r.case_id], f"slow: {r.seconds:.1f}s")}
                     for r in slow]
        contract = [{"case": r.case_id, "route": r.route, "status": r.status, "expect": r.expect,
                     "violation": r.violation, "snippet": r.snippet} for r in recs if r.violation]
        stalls = [{"case": r.case_id, "status": r.status, "seconds": round(r.seconds, 2), "probe": r.probe}
                  for r in result.isolated if r.probe and (r.probe.get("status") != 200
                                                          or r.probe.get("seconds", 0) > slow_s)]
        seconds = [r.seconds for r in recs]
        oracles = file_oracles(recs)
        gate = {
            "requests": len(recs), "errors_5xx": len(errors), "slow": len(slow),
            "liveness_after": result.liveness_after.get("ok", False),
        }
        gate["pass"] = gate["errors_5xx"] == 0 and gate["slow"] == 0 and gate["liveness_after"]
        return {
            "meta": {**self.meta, "base_url": self.base_url, "seconds": round(result.seconds, 1),
                     "stopped_early": result.stopped_early, "shrink_requests": result.shrink_requests,
                     "options": {k: v for k, v in vars(self.opts).items() if k != "api_key"}},
            "gate": gate,
            "totals": {"requests": len(recs), "by_class": dict(Counter(r.status_class() for r in recs)),
                       "by_status": dict(sorted(Counter(str(r.status or r.outcome) for r in recs).items())),
                       "p50_s": percentile(seconds, 0.5), "p99_s": percentile(seconds, 0.99),
                       "max_s": round(max(seconds), 3) if seconds else None},
            "routes": {rt: {**dict(sorted(c.items())), "requests": sum(c.values()),
                            "p50_s": percentile(latency[rt], 0.5), "p99_s": percentile(latency[rt], 0.99)}
                       for rt, c in sorted(routes.items())},
            "families": {f: dict(sorted(c.items())) for f, c in sorted(families.items())},
            "failures": failures,
            "slow": slow_list,
            "stalls": stalls,
            "contract_violations": contract,
            "file_existence_oracles": oracles,
            "listener_hits": self.meta.get("listener_hits", []),
            "liveness": {"before": result.liveness_before, "after": result.liveness_after},
        }

    def write(self, result: RunResult) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        report = self.build(result)
        (self.out / "report.json").write_text(json.dumps(report, ensure_ascii=True, indent=2) + "\n")
        with (self.out / "requests.jsonl").open("w") as fh:
            for r in result.records:
                fh.write(json.dumps(record_dict(r), ensure_ascii=True) + "\n")
        (self.out / "report.md").write_text(markdown(report))
        return report


ORACLE_VALUES = ("path_etc_shadow", "path_etc_hostname", "path_missing")


def file_oracles(recs: list[Record]) -> list[dict[str, Any]]:
    """Fields where an existing and a missing path get different answers: the server looked at the file system.
    (The answers are compared with the path itself blanked out.)"""
    from ops.fuzz.values import image_values

    paths = image_values(None)
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    for r in recs:
        head, _, value = r.case_id.rpartition("|")
        for name in ORACLE_VALUES:
            if value in (name, "uri_" + name):
                answer = f"{r.status} {r.item_status or ''} {r.error}".replace(paths[name], "<path>")
                groups[head + ("|uri" if value.startswith("uri_") else "")][name] = answer
    return [{"field": k, "answers": v} for k, v in sorted(groups.items())
            if len(v) > 1 and len(set(v.values())) > 1]


def _cell(v: Any) -> str:
    return "" if v in (None, 0) else str(v)


def markdown(report: dict[str, Any]) -> str:
    g, t, m = report["gate"], report["totals"], report["meta"]
    lines = [
        "# Fuzz run",
        "",
        f"Target {m['base_url']}, seed {m['options']['seed']}, {g['requests']} requests in {m['seconds']} s "
        f"(+{m['shrink_requests']} to shrink failures, + liveness and probe judgments).",
        "",
        f"**Gate: {'PASS' if g['pass'] else 'FAIL'}** — responses >= 500 (or no response): {g['errors_5xx']}; "
        f"slower than {m['options']['slow_s']:.0f} s: {g['slow']}; judging afterwards: "
        f"{'yes' if g['liveness_after'] else 'NO'}.",
        "",
        f"Latency p50 {t['p50_s']} s, p99 {t['p99_s']} s, max {t['max_s']} s. By status: {t['by_status']}.",
        "",
        "## Routes",
        "",
        "| route | requests | 2xx | 3xx | 4xx | 5xx | timeout | no response | exception | p50 s | p99 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rt, c in report["routes"].items():
        lines.append(f"| `{rt}` | {c['requests']} | {_cell(c.get('2xx'))} | {_cell(c.get('3xx'))} | "
                     f"{_cell(c.get('4xx'))} | {_cell(c.get('5xx'))} | {_cell(c.get('timeout'))} | "
                     f"{_cell(c.get('transport_error'))} | {_cell(c.get('exception'))} | {c['p50_s']} | {c['p99_s']} |")
    lines += ["", "## Failures (>= 500), by distinct cause", ""]
    if not report["failures"]:
        lines.append("None.")
    for f in report["failures"]:
        lines.append(f"- **{f['status']}** `{f['route']}` — {f['hint'] or f['error'][:80]} — {f['count']} requests "
                     f"({', '.join(f'{k} {v}' for k, v in f['families'].items())}); minimal case `{f['minimal_case']}`"
                     f" → `{f['reproducer']['file']}`")
    lines += ["", f"## Slower than {m['options']['slow_s']:.0f} s", ""]
    lines += [f"- `{s['case']}`: {s['seconds']} s ({s['status'] or s['outcome']})" for s in report["slow"]] or ["None."]
    lines += ["", "## Requests that stalled other callers (isolated, with a probe judgment alongside)", ""]
    lines += [f"- `{s['case']}`: {s['status']} in {s['seconds']} s; probe {s['probe']}" for s in report["stalls"]] \
        or ["None."]
    lines += ["", "## Accepted but should be refused (contract, not part of the gate)", ""]
    viol = report["contract_violations"]
    by: Counter[str] = Counter(f"{v['route']} | {v['case'].split('|')[-2]}={v['case'].split('|')[-1]}: "
                               f"{v['violation']}" for v in viol)
    lines += [f"- {k} ({n})" for k, n in sorted(by.items())] or ["None."]
    lines += ["", "## Local files and URLs", ""]
    lines.append(f"- connections to the fuzzer's loopback listener (a URL from HTTP input was fetched): "
                 f"{len(report['listener_hits'])}")
    for o in report["file_existence_oracles"]:
        lines.append(f"- file-existence oracle at `{o['field']}`: " + "; ".join(
            f"{k} -> {v.strip()[:90]!r}" for k, v in o["answers"].items()))
    live = report["liveness"]
    lines += ["", "## Liveness", "", f"- before: {live['before']}", f"- after: {live['after']}", ""]
    return "\n".join(lines)
