"""A real Prometheus (Debian's `prometheus` package) scraping a local Ray node, and the check that a PromQL
expression's metrics exist there (issue 24 item 5: the alerts, the dashboard and `armed-ops tune` against the real
Ray / Serve / armed / vLLM exporters, not hand-written answers).

`LocalPrometheus` runs the binary on a free loopback port with a 1 s scrape and rule-evaluation interval, a
throw-away TSDB, and the `namespace` label that prometheus-operator adds in a cluster (every query filters on it).
`problems(prom, expr)` says what is wrong with one expression: it must evaluate, every metric selector in it must
return series, and so must the expression itself (for an alert: its left side, the comparison taken off), except
where a matcher watches a condition that holds only when something is wrong (`CONDITIONS`: a 5xx status, a degraded
judgment): there that matcher is relaxed to "the label is present", so a mistyped metric or label still fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ops.prom import Prometheus, PrometheusError
from tests.skips import found_or_skip

HOW_TO_INSTALL = ("needs Debian's prometheus package (prometheus + promtool): `apt-get install prometheus` "
                  "(.ci/run installs it)")

# Label values that appear only while the watched condition holds (an alert's trigger): an empty answer for them
# on a healthy stack is right. Keyed by label, the values as the chart's and the dashboard's matchers spell them.
CONDITIONS = {"status_code": {"5.."}, "degraded": {"true"}}

# `name{matchers}`: every query armed ships names its metrics this way (a bare name would be missed by the checks,
# so `selectors` refuses an expression that names a ray_ metric outside one).
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_METRIC = re.compile(r"\bray_[a-zA-Z0-9_:]+")
_COMPARISON = re.compile(r"^(.*?)\s*(?:>=|<=|==|!=|>|<)\s*[-+0-9.eE]+\s*$", re.S)

Matcher = tuple[str, str, str]


def prometheus_binary() -> str:
    return found_or_skip(shutil.which("prometheus"), HOW_TO_INSTALL)


def promtool_binary() -> str:
    return found_or_skip(shutil.which("promtool"), HOW_TO_INSTALL)


def selectors(expr: str) -> list[tuple[str, list[Matcher]]]:
    """The metric selectors of `expr`: [(metric, [(label, op, value)])]."""
    found = []
    for name, body in _SELECTOR.findall(expr):
        matchers = [(label, op, value) for label, op, value in _MATCHER.findall(body)]
        found.append((name, matchers))
    bare = set(_METRIC.findall(_SELECTOR.sub("", expr)))
    if bare:
        raise ValueError(f"{expr!r} names {sorted(bare)} outside a {{...}} selector: write them with one")
    return found


def selector_text(name: str, matchers: Iterable[Matcher]) -> str:
    return name + "{" + ",".join(f'{label}{op}"{value}"' for label, op, value in matchers) + "}"


def _relaxed(matchers: list[Matcher]) -> tuple[list[Matcher], bool]:
    out, conditional = [], False
    for label, op, value in matchers:
        if value in CONDITIONS.get(label, ()):
            out.append((label, "=~", ".+"))
            conditional = True
        else:
            out.append((label, op, value))
    return out, conditional


def without_comparison(expr: str) -> str:
    """An alert's expression without its trailing `> threshold` (what it compares)."""
    m = _COMPARISON.match(expr.strip())
    return m.group(1) if m else expr.strip()


def problems(prom: Prometheus, expr: str) -> list[str]:
    """What is wrong with `expr` on this Prometheus (empty: it evaluates and its metrics have series)."""
    try:
        prom.query(expr)  # evaluates at all: a PromQL error (bad function, bad matcher) fails here
    except PrometheusError as exc:
        return [f"{expr!r} does not evaluate: {exc}"]
    try:
        sels = selectors(expr)
    except ValueError as exc:
        return [str(exc)]
    if not sels:
        return [f"{expr!r} names no metric"]
    out, conditional = [], False
    for name, matchers in sels:
        relaxed, cond = _relaxed(matchers)
        conditional |= cond
        sel = selector_text(name, relaxed)
        if not prom.query(sel):
            out.append(f"no series for {sel} (in {expr!r})")
    if not out and not conditional:
        inner = without_comparison(expr)
        if not prom.query(inner):
            out.append(f"no series for {inner!r} although each of its metrics has some")
    return out


class LocalPrometheus:
    """Prometheus scraping `targets` (host:port, path /metrics) every second, `labels` on every series."""

    def __init__(self, workdir: Path, targets: list[str], labels: dict[str, str],
                 rule_files: Iterable[Path] = ()) -> None:
        self.workdir = Path(workdir)
        self.targets = targets
        self.labels = labels
        self.rule_files = [str(p) for p in rule_files]
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": self.targets,
                                                                        "labels": self.labels}]}],
        }

    def start(self, timeout_s: float = 30.0) -> LocalPrometheus:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        log = open(self.workdir / "prometheus.log", "wb")  # kept open for the process's life
        # One Go thread: the machine's two cores are shared with Ray and the load.
        env = {**os.environ, "GOMAXPROCS": "1"}
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"prometheus not ready in {timeout_s:g} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def client(self) -> Prometheus:
        return Prometheus(self.url)

    def wait_for(self, expr: str, timeout_s: float = 60.0) -> list[tuple[dict[str, str], float]]:
        """Poll until `expr` returns series (scrapes are every second; Ray reports every second)."""
        prom = self.client()
        deadline = time.monotonic() + timeout_s
        while True:
            found = prom.query(expr)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(1)

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule as /api/v1/rules reports it (name, query, health, lastError, state)."""
        return [r for g in self._get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]

    def targets_health(self) -> list[tuple[str, str, str]]:
        """(scrape URL, health, last error) of every target: why a metric is missing when the scrape fails."""
        return [(t["scrapeUrl"], t["health"], t.get("lastError", ""))
                for t in self._get("/api/v1/targets")["data"]["activeTargets"]]


def rule_groups_file(prometheus_rule: dict[str, Any], path: Path) -> Path:
    """A PrometheusRule's spec.groups as a Prometheus rule file (what prometheus-operator hands Prometheus)."""
    path.write_text(yaml.safe_dump({"groups": prometheus_rule["spec"]["groups"]}, sort_keys=False),
                    encoding="utf-8")
    return path


def promtool_check_rules(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_binary(), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
