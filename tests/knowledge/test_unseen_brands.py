"""Brands the knowledge base has never seen: the brand rule fires for them, and no brand is invented from an
ordinary word (issue 14). The big pair set is built from ../shared/data by path and skips without it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from armed.domain import BenchmarkLevel
from armed.eval.brands import (
    ORDINARY_NAMES,
    SELF_WRITTEN_PAIRS,
    build_unseen_pairs,
    guessed_rate,
    judge_pairs,
    qtr_titles,
)
from armed.knowledge import KnowledgeBase
from tests.pipeline.conftest import make_pipeline


@pytest.mark.parametrize(
    ("name", "brand", "how"),
    [
        ("[康恩贝]消栓通络片", "康恩贝", "bracket"),
        ("【康恩贝】消栓通络片 1.8g*12片", "康恩贝", "bracket"),
        ("【康恩贝旗舰店】消栓通络片", "康恩贝", "bracket"),
        ("[Blackmores]维生素C片", "blackmores", "bracket"),
        ("康恩贝制药 消栓通络片", "康恩贝", "maker"),
        ("浙江康恩贝制药股份有限公司消栓通络片", "康恩贝", "maker"),
        ("康恩贝消栓通络片", "康恩贝", "prefix"),
        ("浙江康恩贝消栓通络片", "康恩贝", "prefix"),
        ("葛洪牌感冒灵颗粒", "葛洪", "prefix"),
    ],
)
def test_unknown_brand_is_found_where_makers_stand(kb: KnowledgeBase, name: str, brand: str, how: str) -> None:
    assert not kb.knows_brand(brand)
    guesses = kb.guess_brands(name)
    assert [(g.brand, g.how) for g in guesses] == [(brand, how)]
    assert kb.extract(name).brand == [brand]


@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_no_brand_invented_from_an_ordinary_word(kb: KnowledgeBase, name: str) -> None:
    assert kb.guess_brands(name) == []
    assert kb.extract(name).brand == []


def test_a_known_brand_is_not_guessed_over(kb: KnowledgeBase) -> None:
    assert kb.guess_brands("修正消栓通络片") == []
    assert kb.extract("[修正药业]消栓通络片").brand == ["修正"]  # an alias in a bracket resolves to the brand


def test_table10_with_a_brand_the_seed_does_not_know(kb: KnowledgeBase) -> None:
    """The issue's failure: with [康恩贝] instead of [德济] the pair came out highly relevant."""
    j = asyncio.run(make_pipeline(kb).judge("修正消栓通络片", "[康恩贝]消栓通络片1.8g*12片*3板/盒"))
    assert j.evidence.product.entities.brand == ["康恩贝"]
    assert any(r.id == "brand_differs_similar_efficacy" for r in j.rules_fired)
    assert j.benchmark_level is BenchmarkLevel.less


def test_self_written_unseen_brand_pairs_all_get_the_brand_rule(kb: KnowledgeBase) -> None:
    for p in SELF_WRITTEN_PAIRS:
        assert not kb.knows_brand(p.query_brand) and not kb.knows_brand(p.product_brand), p
    results = judge_pairs(kb, SELF_WRITTEN_PAIRS)
    missed = [(r.pair.query, r.pair.product, r.query_brands, r.product_brands) for r in results if not r.hit]
    assert not missed


def test_unseen_brand_pairs_from_the_public_sets(kb: KnowledgeBase, knowledge_dir: Path) -> None:
    """≥ 30 pairs of originator-drugs / drug-dicts makers, none known to the (seed) KB: ≥ 90 % get the rule."""
    pairs = build_unseen_pairs(knowledge_dir, kb)
    assert len(pairs) >= 30
    assert {p.origin for p in pairs} == {"originator-drugs", "drug-dicts"}
    for p in pairs:
        assert not kb.knows_brand(p.query_brand) and not kb.knows_brand(p.product_brand)
    results = judge_pairs(kb, pairs)
    rate = sum(r.hit for r in results) / len(results)
    assert rate >= 0.9, [(r.pair.query, r.pair.product) for r in results if not r.hit]


def test_few_brands_guessed_in_qtr_train_titles(kb: KnowledgeBase, knowledge_dir: Path) -> None:
    qtr = knowledge_dir.parent / "train" / "kuake-qtr-train.json"
    if not qtr.exists():
        pytest.skip("kuake-qtr-train.json not found")
    rate, n, hits = guessed_rate(kb, qtr_titles(qtr))
    assert n > 20000
    assert rate <= 0.001, hits[:20]


def test_source_brands_count_only_where_a_maker_stands(full_kb: KnowledgeBase) -> None:
    """长红制药 / 第一生化 / 希望制药 are makers in producer.txt; inside a sentence those words are not brands."""
    assert full_kb.knows_brand("长红")
    assert full_kb.extract("长红制药 双氯芬酸钠肠溶片").brand == ["长红"]
    for sentence in ("头上长红疙瘩什么原因", "第一次吃避孕药有什么危害吗", "腿疼，希望医生帮忙看下"):
        assert full_kb.extract(sentence).brand == [], sentence
