"""The student's features, training, calibration, artefact and distillation from a teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from armed.domain import RelevanceLevel
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.levels import decide_level
from armed.student import data as D
from armed.student import model as M
from armed.student.distill import build_mlp_student
from armed.student.features import LEXICAL, lexical_features
from armed.student.featurizer import EmbeddingCache, Featurizer
from tests.student.conftest import data_file, hash_encoder


def test_feature_row_matches_its_names(kb: KnowledgeBase) -> None:
    mid, dim, enc = hash_encoder()
    fz = Featurizer(kb, EmbeddingCache(mid, dim, enc))
    x = fz.matrix([("布洛芬", "芬必得 布洛芬缓释胶囊 0.3g*20粒", "title"), ("头痛怎么办", "头痛吃什么药", "query")])
    assert x.shape == (2, fz.spec.dim) == (2, len(fz.spec.names))
    names = fz.spec.names
    assert x[0, names.index("query_in_product")] == 1.0 and x[1, names.index("query_in_product")] == 0.0
    assert x[0, names.index("pair_is_query")] == 0.0 and x[1, names.index("pair_is_query")] == 1.0
    assert x[0, names.index("shared_common_name")] == 1.0  # 布洛芬 on both sides (the knowledge base's reading)
    u, v = enc(["布洛芬", "芬必得 布洛芬缓释胶囊 0.3g*20粒"])
    assert abs(x[0, names.index("cosine")] - float(np.dot(u, v))) < 1e-6


def test_lexical_features_see_stuffing_and_questions() -> None:
    f = dict(zip(LEXICAL, lexical_features("布洛芬", "榴莲千层蛋糕 6寸（不含布洛芬）"), strict=True))
    assert f["query_in_product"] == 1.0 and f["negation_p"] >= 1.0
    g = dict(zip(LEXICAL, lexical_features("感冒吃什么药", "感冒是什么原因"), strict=True))
    assert g["qwords_differ"] > 0


def test_band_first_decision() -> None:
    # A plurality for "highly" loses to the less band's combined mass: the benchmark band decides first.
    assert decide_level([0.4, 0.3, 0.3, 0.0]) is RelevanceLevel.moderately
    assert decide_level([0.5, 0.2, 0.1, 0.2]) is RelevanceLevel.highly
    assert decide_level([0.1, 0.1, 0.3, 0.5]) is RelevanceLevel.irrelevant


def test_numpy_inference_matches_torch() -> None:
    import torch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 64)]
    state, _ = M.train(x, y, np.ones(64, np.float32), list(range(48)), list(range(48, 64)),
                       M.TrainConfig(hidden=8, max_epochs=2))
    net = M.StudentNet(state, 1.0)
    torch_net = M._net(12, 8, 0.0)
    torch_net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items() if not k.startswith("feature_")})
    with torch.no_grad():
        ref = torch_net(torch.from_numpy((x - state["feature_mean"]) / state["feature_scale"])).numpy()
    assert np.allclose(net.logits(x), ref, atol=1e-4)


def test_temperature_fits_overconfident_logits() -> None:
    rng = np.random.default_rng(1)
    gold = np.eye(4)[rng.integers(0, 4, 2000)]
    # logits that point at the gold class 60% of the time but with huge margins: the fitted T must soften them
    right = rng.random(2000) < 0.6
    cls = np.where(right, gold.argmax(1), rng.integers(0, 4, 2000))
    logits = np.eye(4)[cls] * 12.0
    t = M.fit_temperature(logits, gold)
    assert t > 3.0
    assert M.expected_calibration_error(M.softmax(logits, t), gold) < M.expected_calibration_error(
        M.softmax(logits), gold)


def _teacher_file(path: Path, pairs: list[D.StudentPair], level: RelevanceLevel) -> Path:
    """A tiny 'teacher' that calls every pair `level` (0.9), in `armed bench` predictions format."""
    with path.open("w", encoding="utf-8") as fh:
        for p in pairs:
            probs = {lvl.value: (0.9 if lvl is level else 0.1 / 3) for lvl in RelevanceLevel}
            fh.write(json.dumps({"id": p.id, "query": p.query, "product_name": p.product,
                                 "probabilities": probs}, ensure_ascii=False) + "\n")
    return path


def test_teacher_labels_move_the_student_toward_the_teacher(tmp_path: Path) -> None:
    spec = f"kuake-qtr:{data_file('train/kuake-qtr-train.json')}"
    pairs = D.load_human(spec, limit=600, seed=3)
    teacher = _teacher_file(tmp_path / "teacher.jsonl", pairs, RelevanceLevel.irrelevant)
    kw = {"limit": 600, "seed": 3, "encoder": hash_encoder(), "log": None,
          "config": M.TrainConfig(hidden=32, max_epochs=8, patience=8, seed=3)}
    build_mlp_student([spec], tmp_path / "human", **kw)
    distilled = build_mlp_student([spec], tmp_path / "distilled", teacher_files=[teacher], teacher_weight=0.8, **kw)
    assert distilled["training"]["pairs"]["by_source"] == {"human:kuake-qtr": 600, "teacher:teacher.jsonl": 600}

    def irrelevant_share(folder: Path) -> float:
        net, _ = M.load(folder)
        fz = Featurizer(KnowledgeBase.load(), EmbeddingCache(*hash_encoder()))
        x = fz.pairs_matrix(pairs[:200])
        return float((D.to_benchmark(net.probabilities(x)).argmax(1) == 2).mean())

    before, after = irrelevant_share(tmp_path / "human"), irrelevant_share(tmp_path / "distilled")
    assert after > before + 0.3, (before, after)
    card = (tmp_path / "distilled" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "teacher weight 0.8" in card and "sha256" in card


def test_bad_training_input_names_the_field(tmp_path: Path) -> None:
    from armed.errors import InputError

    with pytest.raises(InputError, match="--train"):
        build_mlp_student([], tmp_path / "x", log=None, encoder=hash_encoder())
    with pytest.raises(InputError, match="--train"):
        build_mlp_student(["kuake-qtr:/no/such/file.json"], tmp_path / "x", log=None, encoder=hash_encoder())
    with pytest.raises(InputError, match="--teacher-weight"):
        D.mix(D.load_human(f"kuake-qqr:{data_file('train/kuake-qqr-train.json')}", limit=5), [], 1.5)


def test_small_student_beats_character_overlap_on_dev(tmp_path: Path) -> None:
    """Trained on a slice of train/ only, scored on a slice of dev: above the lexical baseline tuned on the same
    training slice (both tasks, macro-F1 over the three benchmark levels)."""
    from armed.domain import BenchmarkLevel
    from armed.eval.baseline import LexicalBaseline
    from armed.eval.metrics import compute

    specs = [f"kuake-qtr:{data_file('train/kuake-qtr-train.json')}",
             f"kuake-qqr:{data_file('train/kuake-qqr-train.json')}"]
    enc = hash_encoder(32)
    build_mlp_student(specs, tmp_path / "s", limit=1500, seed=0, encoder=enc, log=None,
                      config=M.TrainConfig(hidden=64, max_epochs=30, seed=0))
    net, _ = M.load(tmp_path / "s")
    fz = Featurizer(KnowledgeBase.load(), EmbeddingCache(*enc))
    train = [p for s in specs for p in D.load_human(s, limit=1500, seed=0)]
    bands = [BenchmarkLevel.highly, BenchmarkLevel.less, BenchmarkLevel.irrelevant]

    def band(target) -> BenchmarkLevel:
        return bands[int(D.to_benchmark(np.asarray([target])).argmax(1)[0])]

    for fmt in ("qtr", "qqr"):
        dev = D.load_human(f"kuake-{fmt}:{data_file(f'eval/kuake-{fmt}-dev.json')}", limit=400, seed=1)
        gold = [band(p.target) for p in dev]
        student = [bands[i] for i in D.to_benchmark(net.probabilities(fz.pairs_matrix(dev))).argmax(1)]
        same_task = [p for p in train if p.kind == dev[0].kind]
        base = LexicalBaseline.tune([(p.query, p.product) for p in same_task], [band(p.target) for p in same_task])
        lexical = [base.predict(p.query, p.product) for p in dev]
        s, b = compute(gold, student)["macro_f1"], compute(gold, lexical)["macro_f1"]
        assert s > b + 0.02, (fmt, s, b)


def test_tree_arrays_predict_what_scikit_learn_predicts() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from armed.student import trees as T

    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 6))
    bands = (x[:, 0] + 0.5 * x[:, 3] > 0).astype(int) + (x[:, 1] > 0.8).astype(int)
    arrays, info = T.fit(x, bands, [0, 1, 3, 5], seed=0)
    ref = HistGradientBoostingClassifier(max_iter=500, learning_rate=0.05, max_leaf_nodes=31, early_stopping=True,
                                         validation_fraction=0.1, random_state=0).fit(x[:, [0, 1, 3, 5]], bands)
    assert info["iterations"] == ref.n_iter_
    assert np.allclose(T.TreeEnsemble(arrays).probabilities(x), ref.predict_proba(x[:, [0, 1, 3, 5]]), atol=1e-9)


def test_serving_cache_keeps_nothing_between_calls() -> None:
    """A replica sees unbounded distinct texts: its embedder cache must not grow with them."""
    mid, dim, enc = hash_encoder()
    serving, training = EmbeddingCache(mid, dim, enc, remember=False), EmbeddingCache(mid, dim, enc)
    texts = ["布洛芬", "头痛", "布洛芬"]
    assert np.array_equal(serving.get_many(texts), training.get_many(texts))
    assert not serving._vectors and len(training._vectors) == 2


def test_guideline_defaults_follow_the_packaged_audit() -> None:
    """judge.guideline_clauses is what the packaged student's guideline audit kept (a clause it never saw stays on:
    the guideline is the contract)."""
    import json

    from armed.guideline import CLAUSE
    from armed.settings import JudgeSettings
    from armed.student.engine import PACKAGED

    audit = json.loads((PACKAGED / "student.json").read_text(encoding="utf-8"))["guideline_audit"]
    dropped = {c for c, row in audit["clauses"].items() if not row["keep"]}
    assert set(JudgeSettings().guideline_clauses) == set(CLAUSE) - dropped - {"irrelevant.cheating"}
    assert audit["by_domain_n"]["pharmacy"] > 0 and audit["by_domain_n"]["default"] > 0


def test_mcnemar_and_the_audit_keep_rule() -> None:
    from armed.student.distill import _mcnemar_one_sided

    assert _mcnemar_one_sided(0, 0) == 1.0
    assert _mcnemar_one_sided(5, 0) == 1 / 32  # five pairs only the student gets right: significant
    assert _mcnemar_one_sided(1, 0) == 0.5 and _mcnemar_one_sided(3, 3) > 0.5


def test_tuning_split_per_domain_keeps_kuake_as_it_was() -> None:
    from armed.student.data import PHARMACY_TUNE_FRACTION, StudentPair, group_split

    kuake = [StudentPair(f"k{i}", f"q{i % 40}", "t", "title", (1.0, 0, 0, 0), "human:kuake-qtr") for i in range(200)]
    pharmacy = [StudentPair(f"p{i}", f"药{i % 30}", "t", "title", (1.0, 0, 0, 0), "human:pharmacy")
                for i in range(90)]
    alone = group_split(kuake, 0.1, 0)
    _, tune = group_split(kuake + pharmacy, 0.1, 0)
    assert [i for i in tune if i < 200] == alone[1]  # KUAKE's tuning split does not move
    tuned_pharmacy = {pharmacy[i - 200].group for i in tune if i >= 200}
    assert len(tuned_pharmacy) == round(30 * PHARMACY_TUNE_FRACTION)
