"""The chart's `knowledge` value: the judge's pool gets the knowledge base (seed, an artefact in the image, or one on
a claim); no other pool does, and a render that cannot work fails with the value to set."""

from __future__ import annotations

import pytest

from ops import chart as ch
from tests.k8s.test_chart import rayservice, render, with_weights


def _groups(objs: list[dict]) -> dict[str, dict]:
    spec = rayservice(objs)["spec"]["rayClusterConfig"]
    return {g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]}


def _artefact_env(pod: dict) -> str | None:
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    return env.get("ARMED_KNOWLEDGE__ARTEFACT")


def test_default_is_the_seed_on_the_judges_pool_only(helm):
    groups = _groups(render("a100-80g-l4"))
    assert _artefact_env(groups["cpu"]) == "none"  # judge + ocr: rebuild from the seed, explicitly
    assert _artefact_env(groups["a100-80g-x2"]) is None and _artefact_env(groups["l4-x2"]) is None


def test_an_artefact_on_a_claim_is_mounted_read_only_where_the_judge_runs(helm, crds):
    objs = render("a100-80g-l4", {"knowledge.source": "pvc", "knowledge.pvc.claimName": "kb",
                                  "knowledge.pvc.subPath": "76cf27e0c9c0"})
    assert ch.validate_objects(objs, crds) == {}  # CRD schemas and KubeRay's rules
    groups = _groups(objs)
    judge = groups["cpu"]
    assert _artefact_env(judge) == "/kb"
    (mount,) = [m for m in judge["containers"][0]["volumeMounts"] if m["name"] == "knowledge"]
    assert mount == {"name": "knowledge", "mountPath": "/kb", "readOnly": True, "subPath": "76cf27e0c9c0"}
    (vol,) = [v for v in judge["volumes"] if v["name"] == "knowledge"]
    assert vol["persistentVolumeClaim"] == {"claimName": "kb", "readOnly": True}
    for name in ("a100-80g-x2", "l4-x2"):
        assert not [v for v in groups[name]["volumes"] if v["name"] == "knowledge"]


def test_an_artefact_in_the_image_needs_its_path(helm):
    groups = _groups(render("cpu", {"knowledge.source": "image", "knowledge.imagePath": "/opt/kb"}))
    assert _artefact_env(groups["cpu"]) == "/opt/kb"
    with pytest.raises(RuntimeError, match="knowledge"):
        ch.template(profile="cpu", sets=with_weights({"knowledge.source": "image"}))
    with pytest.raises(RuntimeError, match="values don't meet the specifications"):
        ch.template(profile="cpu", sets=with_weights({"knowledge.source": "s3"}))


def test_an_artefact_in_an_object_store_is_synced_on_the_judges_pool_only(helm, crds):
    objs = render("a100-80g-l4", {"knowledge.source": "objectStore", "knowledge.objectStore.uri": ":s3:kb/76cf27e0c9c0",
                                  "modelWeights.source": "objectStore"})
    assert ch.validate_objects(objs, crds) == {}
    groups = _groups(objs)
    judge = groups["cpu"]
    assert _artefact_env(judge) == "/kb"
    (init,) = judge["initContainers"]  # the CPU pool loads no model: only the knowledge base is synced there
    assert init["name"] == "fetch-knowledge" and init["args"][-2:] == [":s3:kb/76cf27e0c9c0", "/kb"]
    (vol,) = [v for v in judge["volumes"] if v["name"] == "knowledge"]
    assert "emptyDir" in vol
    for name in ("a100-80g-x2", "l4-x2"):  # the model pools sync their weights, never the knowledge base
        assert [c["name"] for c in groups[name]["initContainers"]] == ["fetch-models"]
