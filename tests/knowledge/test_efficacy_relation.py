"""Efficacy agreement with terms outside the curated groups: unknown is not evidence of difference.

Public sources bring thousands of disease and symptom words the seed's efficacy groups do not cover. Two such
words that differ as strings may name one thing (胃痛 / 胃疼), so the `efficacy_entirely_different` veto must not
fire on them; the curated groups still give a definite "entirely different".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from armed.knowledge import KnowledgeBase, recall


def fire(kb: KnowledgeBase, query: str, product: str) -> set[str]:
    q, p = kb.extract(query), kb.extract(product)
    return {h.id for h in recall(kb, q, p, kb.query_specificity(q, query))}


@pytest.fixture(scope="module")
def dicts_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    d = tmp_path_factory.mktemp("dicts")
    (d / "symptom.txt").write_text("胃痛\n胃疼\n脱发\n脂溢性脱发\n治疗\n预防\n", encoding="utf-8")
    (d / "disease.txt").write_text("心律失常\n心率失常\n", encoding="utf-8")
    return KnowledgeBase.load(sources=[f"drug-dicts:{d}"])


def test_curated_groups_still_give_a_definite_zero(kb: KnowledgeBase) -> None:
    assert kb.efficacy_relation(["发烧"], ["止咳"]) == 0.0
    assert kb.efficacy_relation(["发烧"], ["退热"]) == 1.0
    assert kb.efficacy_relation([], ["止咳"]) is None
    assert "efficacy_entirely_different" in fire(kb, "布洛芬", "奥美拉唑肠溶胶囊")


def test_the_seed_alone_never_answers_unknown(kb: KnowledgeBase) -> None:
    """Every efficacy term the seed can produce (lexicon surfaces, drug-record efficacy) is in a curated group, so
    with the seed alone `efficacy_relation` is the old group overlap whenever both sides have efficacy: the packaged
    student's seed-KB features did not move when "unknown" was introduced."""
    surfaces = [s for s, ps in kb.lexicon_entries() if any(p.field == "efficacy" for p in ps)]
    records = [t for rec in kb.records().values() for t in rec.efficacy]
    assert surfaces and records
    for term in (*surfaces, *records):
        assert all(grouped for _, grouped in kb.efficacy_keys([term])), term
        assert kb.efficacy_relation([term], [term]) == 1.0


def test_free_terms_that_differ_are_unknown_not_different(dicts_kb: KnowledgeBase) -> None:
    assert dicts_kb.efficacy_relation(["心率失常"], ["心律失常"]) is None
    # the number a score needs; the rule asks the relation
    assert dicts_kb.efficacy_overlap(["心率失常"], ["心律失常"]) == 0.0
    assert "efficacy_entirely_different" not in fire(dicts_kb, "心率失常吃什么药", "心律失常的治疗")


def test_the_spoken_spelling_of_a_pain_is_the_pain(dicts_kb: KnowledgeBase) -> None:
    """疼 is how 痛 is said (牙疼 = 牙痛, 胃疼 = 胃痛): a 疼 term is keyed as its 痛 spelling, so it meets the curated
    group that spelling is in (牙痛 is in 解热镇痛: the toothache a pain reliever's insert names) or the free term
    (胃痛 / 胃疼, which had been two unknown terms). 疼痛 is a term of its own, not respelt."""
    assert dicts_kb.efficacy_relation(["胃痛"], ["胃疼"]) == 1.0
    assert dicts_kb.efficacy_relation(["牙疼"], ["解热镇痛"]) == 1.0
    assert dicts_kb.efficacy_keys(["牙疼"]) == {("解热镇痛", True)}
    assert dicts_kb.efficacy_keys(["肩部疼痛"]) == dicts_kb.efficacy_keys(["疼痛"]) == {("解热镇痛", True)}
    assert dicts_kb.efficacy_relation(["发烧"], ["胃疼"]) is None  # a group against a free term: still unknown


def test_a_curated_group_against_a_free_term_is_unknown(dicts_kb: KnowledgeBase) -> None:
    assert dicts_kb.efficacy_relation(["发烧"], ["胃疼"]) is None
    assert "efficacy_entirely_different" not in fire(dicts_kb, "发烧", "胃疼怎么办")


def test_a_free_term_meets_the_term_it_contains(dicts_kb: KnowledgeBase) -> None:
    assert dicts_kb.efficacy_relation(["脱发"], ["脂溢性脱发"]) == 1.0
    assert dicts_kb.efficacy_relation(["脂溢性脱发", "胃痛"], ["脱发"]) == 1.0
    assert dicts_kb.efficacy_relation(["胃痛"], ["胃痛"]) == 1.0


def test_generic_words_never_become_efficacy_terms(dicts_kb: KnowledgeBase) -> None:
    ents = dicts_kb.extract("怎样治疗脱发")
    assert ents.efficacy == ["脱发"]
    assert not [p for p in dicts_kb.lexicon_lookup("预防") if p.field == "efficacy"]


def test_not_efficacy_is_part_of_the_seed_and_the_version(tmp_path: Path) -> None:
    seed = (Path(__file__).resolve().parents[2] / "armed/knowledge/seed/kb.yaml").read_text(encoding="utf-8")
    changed = tmp_path / "kb.yaml"
    changed.write_text(seed.replace("not_efficacy: [治疗,", "not_efficacy: [治疗, 脱发,"), encoding="utf-8")
    d = tmp_path / "dicts"
    d.mkdir()
    (d / "symptom.txt").write_text("脱发\n", encoding="utf-8")
    base = KnowledgeBase.load(sources=[f"drug-dicts:{d}"])
    other = KnowledgeBase.load(changed, sources=[f"drug-dicts:{d}"])
    assert base.extract("脱发").efficacy == ["脱发"] and other.extract("脱发").efficacy == []
    assert base.version != other.version
