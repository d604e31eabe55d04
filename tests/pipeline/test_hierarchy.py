"""Algorithm 1 end to end over the real knowledge base: every branch of the hierarchy, and the rule recall cases
the AR-Med paper names. No model is configured here, so only deterministic parts decide (the LLM judge has its
own tests with a scripted engine and with real engines)."""

from __future__ import annotations

import pytest

from armed.domain import BenchmarkLevel, Branch, RelevanceLevel
from tests.pipeline.conftest import make_pipeline


async def test_table10_brand_differs_is_less_relevant(kb):
    """Paper Table 10: 修正消栓通络片 vs [德济]消栓通络片 → less relevant (brand differs, same drug and efficacy)."""
    j = await make_pipeline(kb).judge("修正消栓通络片", "[德济]消栓通络片1.8g*12片*3板/盒")
    assert j.benchmark_level is BenchmarkLevel.less
    assert j.level is RelevanceLevel.moderately
    assert (j.branch, j.guideline) == (Branch.guideline, "less.brand")
    caps = {r.id: r.effect for r in j.rules_fired if r.effect.startswith("cap:")}
    assert caps == {"brand_differs_similar_efficacy": "cap:moderately_relevant"}, "the brand rule caps it"
    assert (j.evidence.query.entities.brand, j.evidence.product.entities.brand) == (["修正"], ["德济"])
    assert j.evidence.query.entities.common_name == j.evidence.product.entities.common_name == ["消栓通络"]
    assert j.versions.knowledge_base == kb.version and j.versions.rules == kb.rules_version


async def test_specific_query_dosage_form_decides(kb):
    """云南白药气雾剂 vs 云南白药膏: a specific product query makes the dosage form decisive: not highly."""
    j = await make_pipeline(kb).judge("云南白药气雾剂", "云南白药膏 10贴")
    assert j.level is RelevanceLevel.moderately
    assert (j.branch, j.guideline) == (Branch.guideline, "less.form")
    caps = {r.id: r.effect for r in j.rules_fired if r.effect.startswith("cap:")}
    assert caps == {"specific_query_dosage_form_differs": "cap:moderately_relevant"}


# The paper's Algorithm 1 branches, as they decide with the product-search branches off (stages.product_search): the
# guideline's clauses otherwise decide these product-search pairs first (tests/pipeline/test_guideline.py).
ALGORITHM_1 = {"product_search": False}


async def test_same_product_other_pack_is_highly(kb):
    j = await make_pipeline(kb).judge("云南白药气雾剂", "云南白药气雾剂 85g+30g 大瓶装")
    assert j.level is RelevanceLevel.highly
    assert (j.branch, j.guideline, j.intent) == (Branch.guideline, "exact.generic", "product")
    j = await make_pipeline(kb, stages=ALGORITHM_1).judge("云南白药气雾剂", "云南白药气雾剂 85g+30g 大瓶装")
    assert j.branch is Branch.name_containment and j.guideline is None
    assert j.probabilities[RelevanceLevel.highly] == 1.0


async def test_all_characters_branch(kb):
    j = await make_pipeline(kb, stages=ALGORITHM_1).judge("白云山板蓝根", "板蓝根颗粒 10g*20袋 白云山")
    assert j.branch is Branch.all_characters
    assert j.level is RelevanceLevel.highly


async def test_core_match_through_common_name_resolution(kb):
    """芬必得 is a trade name of 布洛芬: CN resolution makes the core names meet."""
    j = await make_pipeline(kb, stages=ALGORITHM_1).judge("芬必得", "布洛芬缓释胶囊 0.3g*20粒")
    assert j.evidence.query.entities.common_name == ["布洛芬"]
    assert j.branch is Branch.core_match
    assert j.level is RelevanceLevel.highly  # same common name, efficacy and category agree: no rule caps it


async def test_efficacy_entirely_different_is_vetoed(kb):
    j = await make_pipeline(kb).judge("布洛芬", "氯雷他定片 10mg*6片")
    assert j.level is RelevanceLevel.irrelevant
    assert j.branch is Branch.rule_veto


async def test_hijacking_name_is_cheating(kb):
    j = await make_pipeline(kb).judge("同仁堂乌鸡白凤丸", "同仁堂同款 乌鸡白凤丸 滋补调理")
    assert j.cheating is True
    assert j.branch is Branch.cheating and j.level is RelevanceLevel.irrelevant
    assert j.cheating_reason == "traffic hijacking: the name borrows another product with ['同款', '同仁堂同款']"


async def test_undecided_pair_falls_back_without_llm(kb):
    """No LLM configured: the knowledge-base prior decides, and the judgment says so (not degraded)."""
    j = await make_pipeline(kb, stages={"llm_judge": False, **ALGORITHM_1}).judge("头痛", "复方对乙酰氨基酚片")
    assert j.branch is Branch.fallback
    assert abs(sum(j.probabilities.values()) - 1.0) < 1e-9
    assert j.level is max(j.probabilities, key=lambda k: j.probabilities[k])
    assert j.benchmark_level is BenchmarkLevel.less  # efficacy agrees (头痛 ∈ 解热镇痛), no common name asked
    assert j.degraded == []


@pytest.mark.parametrize(
    ("switch", "stage"),
    [("search", "search"), ("query_rewrite", "query_rewrite"), ("extend", "extend"), ("rules", "rules")],
)
async def test_every_stage_can_be_switched_off(kb, switch, stage):
    j = await make_pipeline(kb, stages={switch: False}).judge("修正消栓通络片", "[德济]消栓通络片")
    report = {s.name: s for s in j.stages}
    assert report[stage].status == "disabled"


async def test_rules_off_lets_the_core_match_stand(kb):
    """Ablation check: without rule recall the Table 10 pair is (wrongly) highly relevant — the rule is what
    makes it less relevant."""
    j = await make_pipeline(kb, stages={"rules": False, **ALGORITHM_1}).judge("修正消栓通络片",
                                                                             "[德济]消栓通络片1.8g*12片*3板/盒")
    assert j.level is RelevanceLevel.highly


async def test_compound_cold_medicine_is_not_read_as_vitamin_c(kb):
    """维C银翘片 is a cold medicine; reading its 维C as 维生素C once vetoed it for cold queries."""
    j = await make_pipeline(kb, stages={"llm_judge": False}).judge("感冒药", "维C银翘片 12片")
    assert j.evidence.product.entities.common_name == ["维C银翘"]
    assert (j.branch, j.guideline) == (Branch.guideline, "need.met")  # a cold medicine meets a cold query's need
    assert j.level is RelevanceLevel.highly
