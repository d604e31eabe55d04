"""The API key: no default key in the chart; without one the chart generates a random key, keeps it across
upgrades (lookup of the release's own Secret) and NOTES says how to read it."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ops import chart as ch
from ops.profile_values import CHART_DIR
from tests.k8s.notes import render_notes
from tests.ops.fake_kube import FakeKube

SECRET = "armed-api-key"


def secret_value(objs: list[dict]) -> str:
    (s,) = [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == SECRET]
    return s["stringData"]["api-key"]


def test_values_carry_no_default_key():
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    assert values["apiKey"]["enabled"] is True and values["apiKey"]["value"] == ""


def test_without_a_key_the_chart_generates_a_random_one(helm):
    first, second = secret_value(ch.template()), secret_value(ch.template())
    assert re.fullmatch(r"[A-Za-z0-9]{32}", first) and first != second  # random per render, never "change-me"


def test_a_given_key_or_an_existing_secret_is_used(helm):
    assert secret_value(ch.template(sets={"apiKey.value": "mine-0123"})) == "mine-0123"
    objs = ch.template(sets={"apiKey.existingSecret": "prod-key"})
    assert not [o for o in objs if o["kind"] == "Secret"]
    (rs,) = [o for o in objs if o["kind"] == "RayService"]
    env = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ARMED_API_KEY", "valueFrom": {"secretKeyRef": {"name": "prod-key", "key": "api-key"}}} in env


def test_an_upgrade_keeps_the_generated_key(helm, tmp_path: Path):
    """`lookup` reads the release's Secret from the API server (the in-repo fake one here): the key stays."""
    kube = FakeKube()
    kube.start()
    try:
        kept = "kept-key-from-the-first-install"
        kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": "armed"},
                  "data": {"api-key": base64.b64encode(kept.encode()).decode()}})
        proc = subprocess.run(
            [helm, "template", "armed", str(CHART_DIR), "-n", "armed", "--dry-run=server", "--kubeconfig",
             kube.kubeconfig(str(tmp_path / "kubeconfig")), "--show-only", "templates/secret.yaml"],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert secret_value([d for d in yaml.safe_load_all(proc.stdout) if d]) == kept
        assert ("GET", "/api/v1/namespaces/armed/secrets/armed-api-key") in [
            (m, p.split("?")[0]) for m, p in kube.requests]
    finally:
        kube.stop()


@pytest.mark.parametrize("sets,says", [
    ({}, "the chart generated a random key into Secret armed-api-key"),
    ({"apiKey.enabled": "false"}, "WARNING: apiKey.enabled is false"),
])
def test_notes_say_where_the_key_is(helm, tmp_path, sets, says):
    text = render_notes(tmp_path, sets=sets)
    assert says in text
    if not sets:
        assert "kubectl -n armed get secret armed-api-key -o jsonpath='{.data.api-key}' | base64 -d" in text
