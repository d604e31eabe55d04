"""`armed distill --task consistency --student classifier:` on a tiny Qwen3 generated in the test: the folder it
saves is what every GPU profile's `models.consistency` loads (the vLLM side of the same folder is in
tests/engines/test_vllm_engine.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from armed.engines.base import CONSISTENCY_LABELS, CONSISTENCY_TEMPLATE, consistency_pair
from armed.engines.factory import build_engine
from armed.errors import InputError
from armed.serving.profiles import load_profile, profile_names
from armed.student import data as D
from armed.student import model as M
from armed.student.consistency import evaluate, load_human, load_teacher, render, train_consistency_classifier

DRUGS = ["布洛芬", "阿莫西林", "维生素C", "玻璃酸钠", "氯雷他定", "奥美拉唑", "头孢克肟", "板蓝根", "感冒灵",
         "藿香正气"]
SYMPTOMS = ["头痛", "发热", "咳嗽"]


def _doc(i: int, consistent: bool) -> tuple[str, str, str]:
    """(query, title, text): a retrieved document about the query's drug, or about another one."""
    q = DRUGS[i % len(DRUGS)]
    if consistent:
        return q, f"{q}片", f"主治 {SYMPTOMS[i % 3]}"
    other = DRUGS[(i + 3) % len(DRUGS)]
    return q, f"{other}胶囊", f"说明 {SYMPTOMS[i % 3]}"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _human_file(path: Path, n: int = 24) -> Path:
    rows = []
    for i in range(n):
        q, title, text = _doc(i, i % 2 == 0)
        _, doc = consistency_pair(q, title, text)
        rows.append({"id": f"h{i}", "query": q, "text": doc, "label": CONSISTENCY_LABELS[i % 2]})
    return _write_jsonl(path, rows)


def _votes_file(path: Path, n: int = 32) -> Path:
    """`armed vote` votes.jsonl rows whose teacher says highly relevant exactly for the documents about the query's
    drug; every fifth consistent pair is a 2-1 split (a soft label)."""
    rows = []
    for i in range(n):
        q, title, text = _doc(i, i % 2 == 0)
        hi = 3 if i % 2 == 0 else 0
        if hi and i % 5 == 0:
            hi = 2
        counts = {k: v for k, v in {"highly_relevant": hi, "irrelevant": 3 - hi}.items() if v}
        rows.append({"id": f"v{i}", "query": q, "product": {"name": consistency_pair(q, title, text)[1]},
                     "gold": None, "category": "drug", "hard": False,
                     "label": "highly_relevant" if hi >= 2 else "irrelevant",
                     "agreement": "unanimous" if hi in (0, 3) else "split", "counts": counts, "votes": {}})
    return _write_jsonl(path, rows)


def test_loaders_read_human_labels_votes_and_probabilities(tmp_path: Path) -> None:
    human = load_human(f"consistency:{_human_file(tmp_path / 'h.jsonl', 4)}")
    assert [p.target for p in human] == [(1.0, 0.0), (0.0, 1.0)] * 2
    assert human[0].product == "布洛芬片 主治 头痛" and human[0].query == "布洛芬"
    votes = load_teacher(_votes_file(tmp_path / "votes.jsonl", 12))
    by_id = {p.id: p.target for p in votes}
    assert by_id["teacher:v0"] == pytest.approx((2 / 3, 1 / 3))  # a 2-1 vote is a soft label
    assert by_id["teacher:v2"] == (1.0, 0.0) and by_id["teacher:v1"] == (0.0, 1.0)
    # bench / voter predictions: P(consistent) = the judgment's P(highly_relevant)
    pred = {"id": "p1", "query": "布洛芬", "product_name": "布洛芬片", "pred": "highly_relevant",
            "probabilities": {"highly_relevant": 0.6, "moderately_relevant": 0.2, "weakly_relevant": 0.1,
                              "irrelevant": 0.1}}
    [p] = load_teacher(_write_jsonl(tmp_path / "pred.jsonl", [pred]))
    assert p.target == pytest.approx((0.6, 0.4))
    # the rendered pair is what the serving engines send
    assert render(p) == CONSISTENCY_TEMPLATE.format(query="布洛芬", document="布洛芬片")


@pytest.mark.parametrize("row, why", [
    ({"query": "布洛芬", "text": "布洛芬片", "label": "relevant"}, "is not one of"),
    ({"query": "布洛芬", "label": "consistent"}, "non-empty strings"),
    (["布洛芬", "布洛芬片", "consistent"], "expected an object"),
])
def test_a_bad_human_row_is_an_error_that_names_its_line(tmp_path: Path, row: object, why: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"query": "a", "text": "b", "label": "consistent"}) + "\n" + json.dumps(row) + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match=f"h.jsonl:2: .*{why}"):
        load_human(f"consistency:{path}")
    with pytest.raises(InputError, match="FORMAT:PATH"):
        load_human(f"jsonl:{path}")


def test_every_gpu_profile_serves_consistency_with_the_labels_training_writes() -> None:
    for name in profile_names():
        engine = load_profile(name).models["consistency"].engine
        if engine.kind in ("vllm", "transformers"):
            assert engine.labels == CONSISTENCY_LABELS, name


def test_consistency_classifier_round_trip(tiny_checkpoints, tmp_path: Path, monkeypatch) -> None:
    from armed import cli

    human, votes, out = _human_file(tmp_path / "human.jsonl"), _votes_file(tmp_path / "votes.jsonl"), tmp_path / "c"
    argv = ["distill", "--task", "consistency", "--student", f"classifier:{tiny_checkpoints.causal}",
            "--train", f"consistency:{human}", "--teacher-predictions", str(votes), "--steps", "4",
            "--batch-size", "8", "--lr", "1e-3", "--tune-fraction", "0.25", "--seed", "3", "--quiet", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["armed", *argv])  # the command the summary records
    assert cli.main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForSequenceClassification"]
    assert [config["id2label"][str(i)] for i in range(2)] == list(CONSISTENCY_LABELS)
    assert config["label2id"] == {lab: i for i, lab in enumerate(CONSISTENCY_LABELS)}
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    summary = json.loads((out / "consistency.json").read_text())
    assert summary["role"] == "consistency" and summary["labels"] == list(CONSISTENCY_LABELS)
    assert summary["template"] == CONSISTENCY_TEMPLATE
    t = summary["training"]
    assert t["files_sha256"] == {f"consistency:{human}": hashlib.sha256(human.read_bytes()).hexdigest(),
                                 str(votes): hashlib.sha256(votes.read_bytes()).hexdigest()}
    assert "--task consistency" in t["command"] and t["seed"] == 3 and t["pairs"]["n"] == 24 + 32
    card = (out / "MODEL_CARD.md").read_text()
    assert "models.consistency" in card and hashlib.sha256(votes.read_bytes()).hexdigest() in card

    # Every GPU profile's consistency engine, pointed at the folder (kind transformers on this CPU), loads it with
    # the labels in the head's order and the template training rendered.
    for name in profile_names():
        spec = load_profile(name).models["consistency"].engine
        engine = build_engine("consistency", spec.model_copy(update={"kind": "transformers", "model": str(out),
                                                                     "dtype": "float32"}))
        assert engine.labels == CONSISTENCY_LABELS and engine.template == CONSISTENCY_TEMPLATE, name
    pairs = load_human(f"consistency:{human}")[:4]
    got = asyncio.run(engine.classify([(p.query, p.product) for p in pairs]))
    for dist in got:
        assert list(dist) == list(CONSISTENCY_LABELS) and math.isclose(sum(dist.values()), 1.0, rel_tol=1e-5)

    # The serving engine reads exactly the text training rendered, and the temperature lives in the saved head:
    # the saved model's own probabilities on the tuning split score what training reported after calibration.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()

    def probs(ps: list[D.StudentPair]) -> np.ndarray:
        with torch.no_grad():
            return M.softmax(model(**tok([render(p) for p in ps], return_tensors="pt", padding=True)).logits.numpy())

    for dist, row in zip(got, probs(pairs), strict=True):
        assert np.allclose([dist[lab] for lab in CONSISTENCY_LABELS], row, atol=1e-5)
    all_pairs, _ = D.mix(load_human(f"consistency:{human}"), load_teacher(votes), 0.5)
    _, tune = D.group_split(all_pairs, 0.25, 3)
    tune_pairs = [all_pairs[i] for i in tune]
    saved = evaluate(probs(tune_pairs), D.targets(tune_pairs))
    calibrated, uncalibrated = summary["tuning_split"]["calibrated"], summary["tuning_split"]["uncalibrated"]
    # (here T ≈ 0.93: the calibrated and uncalibrated NLL differ by ~5e-4, the saved head matches to ~1e-7)
    assert saved["nll"] == pytest.approx(calibrated["nll"], abs=1e-5)
    assert abs(saved["nll"] - uncalibrated["nll"]) > 1e-4


def test_a_teachers_labels_move_the_student_toward_it(tiny_checkpoints, tmp_path: Path) -> None:
    """Trained on a tiny teacher's votes alone, the student agrees with the teacher on its pairs far more than the
    same start (the same seed, no steps) did."""
    votes = _votes_file(tmp_path / "votes.jsonl")
    pairs = load_teacher(votes)
    target = D.targets(pairs)[:, 0]
    seen = {}
    for steps in (0, 60):
        out = tmp_path / f"steps{steps}"
        train_consistency_classifier(str(tiny_checkpoints.causal), [], out, teacher_files=[votes], steps=steps,
                                     lr=3e-3, batch_size=8, tune_fraction=0.2, log=None)
        engine = build_engine("consistency", load_profile("l4").models["consistency"].engine.model_copy(
            update={"kind": "transformers", "model": str(out), "dtype": "float32"}))
        p = np.clip([d[CONSISTENCY_LABELS[0]] for d in asyncio.run(engine.classify(
            [(x.query, x.product) for x in pairs]))], 1e-9, 1 - 1e-9)
        seen[steps] = {
            "agreement": float(((p > 0.5) == (target > 0.5)).mean()),
            "cross_entropy": float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))),
            "gap": float(p[target > 0.5].mean() - p[target < 0.5].mean()),
        }
    before, after = seen[0], seen[60]
    assert abs(before["gap"]) < 0.1, seen  # the untrained head does not already know the teacher
    assert after["agreement"] >= 0.85 and after["gap"] > 0.3, seen
    assert after["cross_entropy"] < before["cross_entropy"] - 0.2, seen
