"""Find the server-side traceback of a failed request in a local Ray session's logs, by its X-Request-Id.

Serve uses the X-Request-Id header as the request's id and writes it on every log line of the request; a
replica's failure is logged with its traceback right after. Best effort: the first exception line after the
request's first mention, within a few lines.
"""

from __future__ import annotations

import re
from pathlib import Path

_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception))(?::|$)")


def tracebacks(logs_dir: Path, request_ids: list[str], window: int = 80) -> dict[str, str]:
    """request id -> "file: ExceptionLine (innermost repo frame)" for the ids found."""
    wanted = set(request_ids)
    found: dict[str, str] = {}
    if not wanted or not logs_dir.is_dir():
        return found
    for path in sorted(logs_dir.rglob("*.log")) + sorted(logs_dir.rglob("*.err")):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines):
            ids = [r for r in wanted - set(found) if r in line]
            if not ids:
                continue
            frame, exc = "", ""
            for follow in lines[i : i + window]:
                s = follow.strip()
                if s.startswith('File "') and ("/deployments/" in s or "/armed/" in s or "/serve_apps/" in s):
                    frame = s
                m = _EXC_LINE.match(s)
                if m and "Traceback" not in s:
                    exc = s[:300]
                    break
            if exc:
                for r in ids:
                    found[r] = f"{path.name}: {exc}" + (f" ({frame[:200]})" if frame else "")
    return found
