"""The CRD validator itself: KubeRay's own samples are known-good, broken copies of them known-bad."""

from __future__ import annotations

import copy

import pytest
import yaml

from ops.crdvalidate import CrdValidationError, apply_defaults, drop_nulls, find_crd_dir


def _samples() -> list[tuple[str, dict]]:
    crd_dir = find_crd_dir()
    if crd_dir is None:
        return []
    out = []
    for path in sorted((crd_dir / "kuberay-samples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == "RayService":
                out.append((path.name, doc))
    return out


SAMPLES = _samples()


def test_samples_found(crds):
    assert len(SAMPLES) == 15


@pytest.mark.parametrize("name,doc", SAMPLES, ids=[n for n, _ in SAMPLES])
def test_kuberay_samples_are_valid(crds, name, doc):
    assert crds.errors(doc) == []


def _sample(name: str) -> dict:
    return copy.deepcopy(next(d for n, d in SAMPLES if n == name))


BREAKAGES = {
    "unknown field": lambda d: d["spec"]["rayClusterConfig"].__setitem__("workerGroupSpec", []),
    "unknown nested field": lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"].__setitem__("replicas", 1),
    "wrong type": lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].__setitem__("maxReplicas", "five"),
    "missing required": lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
    "bad enum": lambda d: d["spec"]["rayClusterConfig"].__setitem__("autoscalerOptions", {"version": "v3"}),
    "serve config not a string": lambda d: d["spec"].__setitem__("serveConfigV2", {"applications": []}),
    "container without image type": lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
        "containers"][0].__setitem__("image", 7),
    "no name": lambda d: d["metadata"].pop("name"),
}


@pytest.mark.parametrize("what", sorted(BREAKAGES))
def test_broken_copies_are_rejected(crds, what):
    doc = _sample("ray-service.sample.yaml")
    BREAKAGES[what](doc)
    assert crds.errors(doc), what
    with pytest.raises(CrdValidationError):
        crds.validate(doc)


def test_nulls_dropped_and_defaults_applied(crds):
    doc = _sample("ray-service.sample.yaml")
    group = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group.pop("minReplicas", None)
    group["idleTimeoutSeconds"] = None
    assert crds.errors(doc) == []  # minReplicas has a default, the null is dropped
    stored = crds.normalise(doc)
    assert stored["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] == 0
    assert "idleTimeoutSeconds" not in stored["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]


def test_helpers():
    assert drop_nulls({"a": None, "b": [{"c": None, "d": 1}]}) == {"b": [{"d": 1}]}
    item = {"properties": {"z": {"default": 1}}}
    schema = {"properties": {"x": {"default": 3}, "y": {"type": "array", "items": item}}}
    assert apply_defaults({"y": [{}]}, schema) == {"x": 3, "y": [{"z": 1}]}


def test_monitoring_kinds_known(crds):
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert crds.knows("monitoring.coreos.com/v1", kind)
    bad = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
           "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]}}
    assert crds.errors(bad)  # a rule needs expr
