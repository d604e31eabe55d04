"""Find the server-side traceback of a failed request in a local Ray session's logs, by its X-Request-Id.

Serve takes the X-Request-Id header as the request's id and writes it on every log line of the request; a replica
that fails a request logs "Request failed." with the traceback under it. A request that failed in a model replica
fails again in the judge and the gateway, so the earliest failure is the cause: that one is reported, as
"<deployment>: <exception line> (<innermost frame outside site-packages>)".
"""

from __future__ import annotations

import re
from pathlib import Path

_RECORD = re.compile(r"^((DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{4}-\d\d-\d\d |\d{4}-\d\d-\d\dT\d\d:)")
# armed's own structlog lines (worker-*.err): `2026-11-28T11:00:36.796572Z [error    ] judge_failed   request_id=...`
_STRUCTLOG_ERROR = re.compile(r"^(\S+Z) \[error\s*\] (\w+)\s+.*request_id=(\S+)")
_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit)(?:\([\w.]+\))?(?::|$)")
_FRAME = re.compile(r'^File "([^"]+)", line (\d+), in (\S+)')


def _frame(line: str) -> str:
    m = _FRAME.match(line)
    if not m:
        return ""
    path = m.group(1)
    for marker in ("/armed/", "/deployments/", "/serve_apps/", "/ops/"):
        if marker in path:
            path = marker.strip("/") + "/" + path.split(marker, 1)[1]
            break
    return f"{path}:{m.group(2)} in {m.group(3)}"


def _failures(path: Path, lines: list[str], wanted: set[str]) -> list[tuple[int, str, str, str]]:
    """(line index, request id, when, where) of each failure logged for a wanted request in one file."""
    out = []
    for i, line in enumerate(lines):
        if "Request failed" in line:  # Serve's replica log
            rid = next((r for r in wanted if f" {r} " in line), None)
            if rid is not None:
                out.append((i, rid, " ".join(line.split()[1:3]).replace(",", "."),
                            "_".join(path.stem.split("_")[1:-1])))
        elif "[error" in line and "request_id=" in line:  # armed's structlog, e.g. judge_failed
            m = _STRUCTLOG_ERROR.match(line)
            if m:
                rid = next((r for r in wanted if m.group(3) == r or m.group(3).startswith(r + "-")), None)
                if rid is not None:
                    out.append((i, rid, m.group(1).replace("T", " ").rstrip("Z"), m.group(2)))
    return out


def tracebacks(logs_dir: Path, request_ids: list[str], max_lines: int = 600) -> dict[str, str]:
    """request id -> the earliest server-side failure found for it."""
    wanted = set(request_ids)
    best: dict[str, tuple[str, str]] = {}
    paths = sorted(logs_dir.glob("serve/replica_*.log")) + sorted(logs_dir.glob("worker-*.err"))
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "Request failed" not in text and "request_id=" not in text:
            continue
        lines = text.splitlines()
        for i, rid, when, deployment in _failures(path, lines, wanted):
            exc, frame = "", ""
            for follow in lines[i + 1 : i + max_lines]:
                if _RECORD.match(follow):
                    break
                s = follow.strip()
                if s.startswith('File "') and "site-packages" not in s and "<frozen" not in s:
                    frame = _frame(s) or frame
                elif _EXC_LINE.match(s):
                    exc = s
            if exc and (rid not in best or when < best[rid][0]):
                best[rid] = (when, f"{deployment}: {exc[:240]}" + (f" ({frame})" if frame else ""))
    return {rid: text for rid, (_, text) in best.items()}


def short(found: str) -> str:
    """"dep: ExcType: message (frame)" -> "dep: ExcType (frame)": what identifies the bug, without the data."""
    dep, _, rest = found.partition(": ")
    exc = re.split(r"[:(]", rest, maxsplit=1)[0].strip()
    frame = found.rsplit(" (", 1)[1].rstrip(")") if found.endswith(")") and " (" in found else ""
    return f"{dep}: {exc}" + (f" at {frame}" if frame else "")
