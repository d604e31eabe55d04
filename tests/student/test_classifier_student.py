"""`armed distill --student classifier:` on a tiny Qwen3: trained, saved, loaded by the student role as a GPU
profile loads it (the vLLM side of the same folder is in tests/engines/test_vllm_engine.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from armed.engines.factory import build_engine
from armed.settings import EngineSpec, ModelsSettings
from armed.student import model as M
from armed.student.classifier import render, train_classifier_student
from armed.student.data import load_human
from armed.student.engine import LABELS, STUDENT_TEMPLATE
from tests.student.conftest import data_file


def test_classifier_student_round_trip(tiny_checkpoints, tmp_path: Path) -> None:
    spec = f"kuake-qqr:{data_file('train/kuake-qqr-train.json')}"
    out = tmp_path / "student"
    summary = train_classifier_student(str(tiny_checkpoints.causal), [spec], out, limit=48, steps=4, batch_size=8,
                                       lr=1e-3, log=None, tune_fraction=0.25)
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(4)] == list(LABELS)
    assert (out / "MODEL_CARD.md").is_file() and summary["template"] == STUDENT_TEMPLATE
    # The role loads it with the four levels and the student template (what a profile's models.student says).
    models = ModelsSettings(student=EngineSpec(kind="transformers", model=str(out)))
    engine = build_engine("student", models.student)
    assert engine.labels == LABELS and engine.template == STUDENT_TEMPLATE
    pairs = load_human(spec, limit=48)[:3]
    import asyncio

    got = asyncio.run(engine.classify([(p.query, p.product) for p in pairs]))
    for dist in got:
        assert set(dist) == set(LABELS) and math.isclose(sum(dist.values()), 1.0, rel_tol=1e-5)
    # The temperature lives in the saved head: the model's own logits are the calibrated ones.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    with torch.no_grad():
        logits = model(**tok([render(p) for p in pairs], return_tensors="pt", padding=True)).logits.numpy()
    want = M.softmax(logits)
    for dist, row in zip(got, want, strict=True):
        assert np.allclose([dist[lab] for lab in LABELS], row, atol=1e-4)
