"""The alerts, the Grafana dashboard and `armed-ops tune` against a REAL Prometheus scraping a real local stack.

A local Ray (tests/serve/conftest.py: metrics exported on a free port, reported every second) serves the judge app
and every model role on zero-work engines (armed's own deployments; the Serve / armed exporters are the real ones),
and Debian's `prometheus` scrapes the node every second with the `namespace` label prometheus-operator adds in a
cluster. The PrometheusRule is rendered by `helm template` for this very profile (`armed-ops render-values`), passed
through `promtool check rules` and loaded into that Prometheus. Then, under load:

- every alert expression, every dashboard panel query and every query `armed-ops tune` sends must evaluate and
  return series (tests/prom_real.py `problems`: a metric or label name that Ray does not export fails);
- `armed-ops tune` (the real CLI; a fake Kubernetes API holds the RayService, built from the same profile) sees the
  load: idle it raises no max_replicas; loaded, the judge at its max of 1 replica is told to go to 2.

vLLM's metrics (ops/metrics.py VLLM) need a real vLLM engine: tests/serve/test_ray_llm.py checks those queries.
Runtime ~90 s on two cores (most of it Ray and the deployments).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from armed_testing.zero_work import ZeroWork
from ops import metrics as m
from tests.prom_real import (
    HOW_TO_INSTALL,
    LocalPrometheus,
    problems,
    promtool_check_rules,
    rule_groups_file,
    selectors,
)
from tests.serve.conftest import RAY_PORTS, REPO, deploy_roles

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster,
              pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                 reason=HOW_TO_INSTALL)]
NS = "armed"  # the release namespace the chart renders into, and the label Prometheus puts on every series
ROLES = ("llm", "embedder", "consistency", "vl", "ocr", "student")
DASHBOARD = REPO / "helm" / "armed" / "files" / "dashboard.json"  # what the chart ships (ops/dashboard.py writes it)
LOAD_CLIENTS = 8  # concurrent judgments: the judge (max 1 replica, target 2 ongoing) is well over its target
ENGINE_DELAY_S = 0.2  # each zero-work model call: judgments last long enough to overlap


def _is_vllm(expr: str) -> bool:
    return any(name in expr for name in m.VLLM)


@pytest.fixture(scope="module")
def stack(serve_port: int, profile_path: str) -> str:
    from serve_apps.judge import build_judge_app

    deploy_roles(profile_path, ROLES, ZeroWork(delay_s=ENGINE_DELAY_S),
                 judge=build_judge_app({"profile": profile_path}))
    return f"http://127.0.0.1:{serve_port}"


@pytest.fixture(scope="module")
def prometheus_rule(helm: str, profile_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The chart's PrometheusRule for this profile, as `helm template` renders it."""
    from armed.serving.profiles import load_profile
    from ops import chart as ch
    from ops.profile_values import values_file

    values = tmp_path_factory.mktemp("chart") / "values.yaml"
    values.write_text(values_file(load_profile(profile_path)), encoding="utf-8")
    objs = ch.template(namespace=NS, values_files=(values,),
                       sets={"monitoring.prometheusRule.enabled": "true", "modelWeights.source": "pvc"})
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    return rule


@pytest.fixture(scope="module")
def rule_file(prometheus_rule: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rule_groups_file(prometheus_rule, tmp_path_factory.mktemp("rules") / "armed-rules.yaml")


@pytest.fixture(scope="module")
def prometheus(stack: str, rule_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    prom = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{RAY_PORTS['metrics']}"],
                           {"namespace": NS}, rule_files=[rule_file]).start()
    try:
        # every replica reported healthy (the judge app's two deployments and one per model role)
        healthy = f'{m.REPLICA_HEALTHY}{{namespace="{NS}"}}'
        deadline = time.monotonic() + 60
        while len(prom.client().query(healthy)) < len(ROLES) + 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(prom.client().query(healthy)) == len(ROLES) + 2, (prom.targets_health(), prom.log_tail())
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def kube(profile_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Kubernetes API (a test double at that boundary) holding the RayService of this profile. tune only reads
    it here (no --apply), so no CRD schema is needed to validate writes."""
    from tests.ops.fake_kube import FakeKube
    from tests.ops.test_armed_ops import rayservice

    fake = FakeKube()
    fake.start()
    fake.put(rayservice(profile_path), "rayservices")
    fake.kc = fake.kubeconfig(str(tmp_path_factory.mktemp("kube") / "kubeconfig"))
    try:
        yield fake
    finally:
        fake.stop()


TUNE_QUERIES: list[str] = []  # every query `armed-ops tune` sent in this module


def _tune(kube: Any, prom: LocalPrometheus, window: str) -> str:
    """`armed-ops tune` (the CLI) against the real Prometheus; what it prints. Records the queries it sends."""
    from ops.cli import main
    from ops.prom import Prometheus
    from tests.ops.test_armed_ops import NAME

    real_query = Prometheus.query

    def recording(self: Prometheus, expr: str) -> list[tuple[dict[str, str], float]]:
        TUNE_QUERIES.append(expr)
        return real_query(self, expr)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(Prometheus, "query", recording)
        assert main(["tune", "--kubeconfig", kube.kc, "-n", NS, "--name", NAME, "--prometheus", prom.url,
                     "--window", window]) == 0
    return out.getvalue()


def _judge(client: httpx.Client, url: str, i: int) -> int:
    body = {"query": "维生素C", "product": {"id": f"p{i}", "name": f"维生素C片 {i}片"}}
    return client.post(url + "/v1/judge", json=body, timeout=120).status_code


@pytest.fixture(scope="module")
def idle_tune(stack: str, prometheus: LocalPrometheus, kube: Any) -> str:
    """tune with the stack idle: a few judgments (a cache hit among them, one refused) then nothing for the window."""
    with httpx.Client() as c:
        assert [_judge(c, stack, i) for i in (0, 0, 1)] == [200, 200, 200]
        assert c.post(stack + "/v1/judge", json={"query": ""}, timeout=60).status_code == 422  # an HTTP error
    assert prometheus.wait_for(f'{m.JUDGMENTS}{{namespace="{NS}"}}', 30), "the judge's metrics never arrived"
    time.sleep(6)  # a quiet 5 s window
    return _tune(kube, prometheus, "5s")


@pytest.fixture(scope="module")
def load(idle_tune: str, stack: str) -> Iterator[dict[str, int]]:
    """LOAD_CLIENTS judgments at a time, each of a new product (no cache hit), until the module ends."""
    stop = threading.Event()
    done: dict[str, int] = {"ok": 0, "other": 0}
    counter = iter(range(10_000, 10**9))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                with lock:
                    i = next(counter)
                code = _judge(c, stack, i)
                with lock:
                    done["ok" if code == 200 else "other"] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(LOAD_CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(12)  # the 10 s tune window and the dashboard's rates fill with load
    try:
        yield done
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=150)


def _section(out: str, head: str) -> str:
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return "\n".join(lines[start:end])


# ---- the checks can fail -----------------------------------------------------------------------------------------

def test_a_metric_or_label_that_is_not_exported_is_reported(idle_tune: str, prometheus: LocalPrometheus) -> None:
    prom = prometheus.client()
    ok = f'sum(rate({m.HTTP_REQUESTS}{{namespace="{NS}"}}[1m]))'
    assert prometheus.wait_for(ok, 30) and problems(prom, ok) == []
    assert problems(prom, ok.replace(m.HTTP_REQUESTS, "ray_serve_num_http_request_total"))  # a renamed metric
    assert problems(prom, f'sum by (deployment) ({m.QUEUED}{{namespace="{NS}",deploymnet="Judge"}})')  # a label typo
    # a condition (a 5xx) that does not hold is not a problem; a label the metric lacks is
    cond = f'sum(rate({m.HTTP_REQUESTS}{{namespace="{NS}",status_code=~"5.."}}[5m])) > 0'
    assert problems(prom, cond) == []
    assert problems(prom, cond.replace("status_code", "status"))
    assert problems(prom, "sum(rate(") and problems(prom, "ray_serve_deployment_queued_queries > 1")  # bad; bare


# ---- promtool and the rules Prometheus evaluates -----------------------------------------------------------------

def test_promtool_accepts_the_rendered_rules(rule_file: Path) -> None:
    proc = promtool_check_rules(rule_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"SUCCESS: \d+ rules found", proc.stdout), proc.stdout


# ---- tune follows the load ---------------------------------------------------------------------------------------

def test_tune_follows_the_load(idle_tune: str, load: dict[str, int], kube: Any, prometheus: LocalPrometheus) -> None:
    from armed.serving.config import JUDGE_DEPLOYMENT

    loaded = _tune(kube, prometheus, "10s")
    assert load["ok"] > LOAD_CLIENTS, load
    judge_head = f"judge/{JUDGE_DEPLOYMENT}:"
    # idle: the judge's availability floor only (R7), nothing at max, no max_replicas raised anywhere
    assert "R7 min_replicas 1 < availability floor 2" in _section(idle_tune, judge_head), idle_tune
    assert "R1 " not in idle_tune and "max_replicas:" not in idle_tune, idle_tune
    # loaded: the judge at its max of 1 replica with more ongoing than its target 2 → max_replicas 1 -> 2
    judge = _section(loaded, judge_head)
    assert "R1 at max 1 replicas" in judge and "autoscaling_config.max_replicas: 1 -> 2" in judge, loaded
    held = re.search(r"R1 at max 1 replicas holding [0-9]+ requests \(([0-9.]+)/replica", judge)
    assert held is not None, judge
    ongoing = float(held.group(1))
    assert ongoing >= 2, judge


# ---- every query has series --------------------------------------------------------------------------------------

def test_every_tune_query_has_series(idle_tune: str, load: dict[str, int], prometheus: LocalPrometheus) -> None:
    assert TUNE_QUERIES, "tune sent no query"
    prom = prometheus.client()
    queries = sorted(set(TUNE_QUERIES))
    assert not [q for q in queries if _is_vllm(q)]  # this profile has no ray.serve.llm deployment
    bad = [p for q in queries for p in problems(prom, q)]
    assert bad == [], "\n".join(bad)
    names = {name for q in queries for name, _ in selectors(q)}
    assert {m.REPLICA_HEALTHY, m.ONGOING_AT_REPLICA, m.QUEUED, m.DEPLOYMENT_LATENCY_BUCKET} <= names


def test_every_dashboard_query_has_series(load: dict[str, int], prometheus: LocalPrometheus) -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    prom = prometheus.client()
    exprs = [t["expr"].replace("$namespace", NS) for p in dash["panels"] for t in p["targets"]]
    checked = [e for e in exprs if not _is_vllm(e)]
    assert len(checked) >= 12 and len(exprs) - len(checked) == 3, exprs  # the vLLM panels: test_ray_llm.py
    bad = [p for e in checked for p in problems(prom, e)]
    assert bad == [], "\n".join(bad)
    # the namespace variable: label_values(<metric>, namespace) lists this namespace
    (var,) = [v for v in dash["templating"]["list"] if v["name"] == "namespace"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]).groups()
    assert (NS,) in prom.by(f"count by ({label}) ({metric})", label)


def test_every_alert_has_series_and_prometheus_evaluates_it(load: dict[str, int], prometheus: LocalPrometheus,
                                                            prometheus_rule: dict[str, Any]) -> None:
    prom = prometheus.client()
    alerts = [r for g in prometheus_rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) == len(ROLES) + 4  # 3 app-wide alerts, one ArmedReplicasAtMax per role and the judge
    bad = [p for a in alerts for p in problems(prom, a["expr"])]
    assert bad == [], "\n".join(bad)
    # Prometheus itself loaded the rule file and evaluates every rule without an error
    deadline = time.monotonic() + 15
    while True:
        rules = prometheus.rules()
        if all(r["health"] != "unknown" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(rules) == len(alerts)
    assert [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    # every model runs at its max of 1 replica: those alerts fire (pending: `for` has not passed), the rest do not
    firing = sorted(r["labels"].get("role", "") for r in rules if r["state"] != "inactive")
    assert firing == sorted([*ROLES, "judge"]), [(r["name"], r["state"]) for r in rules]
