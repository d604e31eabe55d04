"""The chart's PrometheusRule, offline: Prometheus's own `promtool check rules` accepts every profile's rules, and
the rules name only the metrics of ops/metrics.py (shipped to the chart as files/metrics.json, kept current here).
That those metrics exist on a real Ray / Serve / armed exporter is tests/serve/test_prometheus_real.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from armed.serving.profiles import profile_names
from ops import chart as ch
from ops import metrics as m
from ops.profile_values import CHART_DIR
from tests.prom_real import promtool_binary, rule_groups_file, selectors

PROFILES = profile_names()
ALERTS_ON = {"monitoring.prometheusRule.enabled": "true", "modelWeights.source": "pvc"}


def _rule(profile: str, chart=CHART_DIR) -> dict:
    (rule,) = [o for o in ch.template(chart=chart, profile=profile, sets=ALERTS_ON) if o["kind"] == "PrometheusRule"]
    return rule


def test_metrics_file_is_current() -> None:
    assert m.METRICS_FILE.read_text(encoding="utf-8") == m.metrics_json(), "run `armed-ops chart-readme`"
    assert set(m.names().values()) >= {m.HTTP_REQUESTS, m.JUDGMENTS, *m.VLLM}


@pytest.mark.parametrize("profile", PROFILES)
def test_promtool_accepts_the_rules_and_they_name_only_contract_metrics(helm: str, profile: str, tmp_path) -> None:
    promtool = promtool_binary()
    rule = _rule(profile)
    path = rule_groups_file(rule, tmp_path / "rules.yaml")
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    named = {name for e in exprs for name, _ in selectors(e)}
    assert named and named <= set(m.names().values()), named - set(m.names().values())


def test_promtool_refuses_a_broken_rule(tmp_path) -> None:
    """The check above can fail: a rule with a PromQL syntax error is refused."""
    promtool = promtool_binary()
    bad = {"spec": {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(ray_x{a=\"b\"}[5m])"}]}]}}
    proc = subprocess.run([promtool, "check", "rules", str(rule_groups_file(bad, tmp_path / "bad.yaml"))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "parse error" in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def test_a_chart_without_the_metrics_file_fails_clearly(helm: str, tmp_path) -> None:
    chart = tmp_path / "armed"
    shutil.copytree(CHART_DIR, chart)
    (chart / "files" / "metrics.json").unlink()
    with pytest.raises(RuntimeError, match=r"files/metrics.json is missing or empty: run `armed-ops chart-readme`"):
        _rule("l4", chart)
