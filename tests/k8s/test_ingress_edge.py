"""The chart's Ingress lets through the bodies the judge accepts (issue 24, item 6: the edge on Kubernetes).

ingress-nginx refuses bodies over 1 MiB unless the Ingress says otherwise (its `proxy-body-size` default), which is
less than one product image in base64; the chart sets it from the profile's `limits.body_bytes`, and a value in
`ingress.annotations` wins.
"""

from __future__ import annotations

import pytest

from armed.serving.profiles import load_profile, profile_names
from tests.k8s.test_chart import by_kind, render

BODY_SIZE = "nginx.ingress.kubernetes.io/proxy-body-size"


@pytest.mark.parametrize("name", profile_names())
def test_the_ingress_allows_the_bodies_the_judge_accepts(helm, name):
    (ing,) = by_kind(render(name, {"ingress.enabled": "true"}), "Ingress")
    assert ing["metadata"]["annotations"][BODY_SIZE] == str(load_profile(name).limits.body_bytes)


def test_an_annotation_in_values_wins_and_other_classes_get_none(helm):
    (ing,) = by_kind(render("cpu", {"ingress.enabled": "true", "ingress.annotations.a": "b"}), "Ingress")
    assert ing["metadata"]["annotations"] == {BODY_SIZE: "16777216", "a": "b"}  # the chart's, beside the user's
    key = "ingress.annotations." + BODY_SIZE.replace(".", "\\.")
    (ing,) = by_kind(render("cpu", {"ingress.enabled": "true", key: "1m", "ingress.annotations.a": "b"}), "Ingress")
    assert ing["metadata"]["annotations"] == {BODY_SIZE: "1m", "a": "b"}
    (ing,) = by_kind(render("cpu", {"ingress.enabled": "true", "ingress.className": "traefik"}), "Ingress")
    assert BODY_SIZE not in (ing["metadata"].get("annotations") or {})


@pytest.mark.parametrize("name", profile_names())
def test_every_ray_container_gives_the_proxy_the_profiles_body_bounds(helm, name):
    """Serve's proxy reads each body before a replica is picked (armed/serving/body_gate.py), bounded by ARMED_EDGE_*;
    on Kubernetes the chart sets them from the profile's limits, as `armed up` does locally (edge.proxy_env): else a
    profile that raises body_bytes would get 413s from the proxy for bodies its judge accepts."""
    from armed.serving.edge import proxy_env

    want = {k: float(v) for k, v in proxy_env(load_profile(name).limits).items()}
    (svc,) = by_kind(render(name), "RayService")
    spec = svc["spec"]["rayClusterConfig"]
    pods = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    for pod in pods:
        (ray,) = [c for c in pod["spec"]["containers"] if c["name"] == "ray"] or pod["spec"]["containers"][:1]
        got = {e["name"]: float(e["value"]) for e in ray["env"] if e["name"].startswith("ARMED_EDGE_")}
        assert got == want, (name, ray["name"])
