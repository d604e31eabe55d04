"""The cpu profile's student as Serve deploys it: the real packaged artefact behind its own deployment, answering
on its route and through a handle (the path the judge uses). No doubles."""

from __future__ import annotations

import math

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

LEVELS = {"highly_relevant", "moderately_relevant", "weakly_relevant", "irrelevant"}


def test_real_student_deployment_answers(serve_port: int) -> None:
    from ray import serve

    from armed.serving.config import route_prefix
    from serve_apps.models import build_student_app

    serve.run(build_student_app({"profile": "cpu"}), name="student", route_prefix=route_prefix("student"))
    r = httpx.post(f"http://127.0.0.1:{serve_port}/models/student/v1/classify", timeout=60,
                   json={"model": "armed-student", "pairs": [["布洛芬", "布洛芬缓释胶囊 0.3g*20粒"],
                                                             ["布洛芬", "榴莲千层蛋糕 6寸"]]})
    assert r.status_code == 200, r.text
    dists = [d["probabilities"] for d in r.json()["data"]]
    for d in dists:
        assert set(d) == LEVELS and math.isclose(sum(d.values()), 1.0, rel_tol=1e-5)
    # the drug itself outranks a cake for a drug query (a trained model, not a constant)
    assert dists[0]["irrelevant"] < dists[1]["irrelevant"]
    h = serve.get_deployment_handle("student", "student")
    try:
        via_handle = h.classify.remote([("布洛芬", "布洛芬缓释胶囊 0.3g*20粒")]).result(timeout_s=60)[0]
    finally:
        h.shutdown()  # a live handle's metrics pusher would outlive this module's Ray and restart one
    assert via_handle == pytest.approx(dists[0], abs=1e-6)
    r = httpx.post(f"http://127.0.0.1:{serve_port}/models/student/v1/classify", timeout=60,
                   json={"model": "armed-student", "pairs": []})
    assert r.status_code == 422 and "empty" in r.text


def test_student_model_id_is_the_artefacts_digest() -> None:
    """The judge names the student without contacting it; the name is the one the engine reports."""
    from armed.settings import EngineSpec
    from armed.student.engine import PACKAGED, artefact_digest
    from deployments.engines import spec_model_id

    assert spec_model_id(EngineSpec(kind="mlp")) == f"armed-student-mlp@{artefact_digest(PACKAGED)}"
