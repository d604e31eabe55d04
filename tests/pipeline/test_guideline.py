"""The annotation guideline, clause by clause, on product-search pairs of our own (none of them in the pharmacy
benchmark, armed/eval/pharmacy.py): each pair goes through the whole pipeline on the seed knowledge base, with no
model, so what decides is the guideline's branches (or the expert rule / cheating check that applies the clause)."""

from __future__ import annotations

import pytest

from armed.domain import Branch, RelevanceLevel
from armed.guideline import CLAUSE, CLAUSES, RULE_CLAUSES
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.intent import query_intent
from armed.pipeline.listing import parse_name
from armed.pipeline.product_search import decide
from tests.pipeline.conftest import make_pipeline

# (clause, query, product): one or more pairs a clause decides, none of them in the benchmark.
CASES = [
    ("exact.generic", "布洛芬", "[石药] 布洛芬缓释胶囊 0.3g*24粒"),
    ("exact.generic", "体温计", "[可孚] 电子体温计 KF-MT-101"),
    ("exact.generic", "维生素C", "维生素C片 100mg*100片 家庭装"),  # a pack size the query does not state
    ("exact.trade", "泰诺林", "[强生] 泰诺林 对乙酰氨基酚缓释片 0.65g*18片"),
    ("exact.brand", "江中健胃消食片", "[江中] 健胃消食片 0.8g*32片"),
    ("exact.brand", "杜蕾斯", "杜蕾斯 避孕套 12只"),  # a brand alone
    ("exact.spelling", "buluofen", "[石药] 布洛芬缓释胶囊 0.3g*24粒"),
    ("exact.spelling", "板兰根颗粒", "[白云山] 板蓝根颗粒 10g*20袋"),  # 兰 for 蓝: a homophone
    ("need.met", "咳嗽", "急支糖浆 200ml"),
    ("need.met", "降压药", "[拜耳] 拜新同 硝苯地平控释片 30mg*7片"),
    ("less.brand", "江中健胃消食片", "[修正] 健胃消食片 0.5g*36片"),
    ("less.brand", "芬必得", "[石药] 布洛芬缓释胶囊 0.3g*20粒"),  # a trade name is one maker's product
    ("less.form", "板蓝根颗粒", "[白云山] 板蓝根片 0.3g*100片"),
    ("less.spec", "布洛芬缓释胶囊 0.3g", "[中美史克] 布洛芬缓释胶囊 0.4g*24粒"),
    ("less.ingredient", "阿莫西林", "阿莫西林克拉维酸钾片 0.375g*12片"),
    ("less.related_use", "布洛芬", "[强生] 对乙酰氨基酚片 0.5g*12片"),
    ("less.related_use", "高血压", "[欧姆龙] 电子血压计 HEM-7124"),  # complementary use
    ("irrelevant.efficacy", "血压计", "[三诺] 血糖仪 安稳+"),
    ("irrelevant.efficacy", "氯雷他定", "[江中] 健胃消食片 0.8g*32片"),
    ("irrelevant.population", "儿童维生素D", "中老年 维生素D3 软胶囊 60粒"),
    ("irrelevant.cheating", "连花清瘟", "[某某制药] 清瘟胶囊 连花清瘟同款"),
]


def test_every_clause_has_a_case() -> None:
    assert {c.id for c in CLAUSES} == {clause for clause, _, _ in CASES}
    assert all(c.level is CLAUSE[c.id].level for c in CLAUSES)


def test_rule_clauses_name_seed_rules(kb: KnowledgeBase) -> None:
    rules = {r.id for r in kb.rules}
    assert set(RULE_CLAUSES) <= rules and set(RULE_CLAUSES.values()) <= set(CLAUSE)


@pytest.mark.parametrize(("clause", "query", "product"), CASES)
async def test_clause_decides(kb: KnowledgeBase, clause: str, query: str, product: str) -> None:
    j = await make_pipeline(kb).judge(query, product)
    assert j.guideline == clause, j.reason
    assert j.level is CLAUSE[clause].level
    if clause == "irrelevant.cheating":
        assert j.branch is Branch.cheating
    elif j.branch is Branch.rule_veto:  # the knowledge base's expert rule applies the same clause first
        assert any(RULE_CLAUSES.get(r.id) == clause for r in j.rules_fired)
    else:
        assert j.branch is Branch.guideline and clause in j.reason


@pytest.mark.parametrize(("query", "product", "level"), [
    ("感冒灵颗粒", "[999] 感冒灵颗粒 10g*9袋", RelevanceLevel.highly),
    ("修正消栓通络片", "[德济]消栓通络片", RelevanceLevel.moderately),
    ("云南白药气雾剂", "云南白药膏", RelevanceLevel.moderately),
])
async def test_readme_demo_pairs(kb: KnowledgeBase, query: str, product: str, level: RelevanceLevel) -> None:
    """The README's demo pairs (the embedded default with its student: tests/test_embedded_default.py)."""
    j = await make_pipeline(kb).judge(query, product)
    assert j.level is level and j.branch is Branch.guideline


@pytest.mark.parametrize(("query", "kind"), [
    ("感冒灵颗粒", "product"), ("芬必得", "product"), ("汤臣倍健", "product"), ("血压计", "product"),
    ("头孢克肟分散片", "product"), ("ganmaoling", "product"), ("退烧药", "need"), ("头痛", "need"),
    ("儿童感冒药", "need"), ("布洛芬能和感冒灵一起吃吗", "question"), ("宝宝拉肚子吃什么好的最快", "question"),
])
def test_query_intent(kb: KnowledgeBase, query: str, kind: str) -> None:
    assert query_intent(query, kb).kind == kind


def test_the_products_own_name_is_compared(kb: KnowledgeBase) -> None:
    """A name trailing the product's own (an appended search term) is set aside, so it lends the product nothing."""
    p = parse_name("马应龙麝香痔疮膏 10g 感冒灵颗粒", kb)
    assert [m.core for m in p.mentions] == ["麝香痔疮"] and [m.key for m in p.appended] == ["感冒灵"]
    assert decide("感冒灵颗粒", "马应龙麝香痔疮膏 10g 感冒灵颗粒", kb) is None  # never the exact match it claims
    compound = parse_name("复方对乙酰氨基酚片", kb).mentions[0]
    assert compound.canonical is None and compound.inner == ("对乙酰氨基酚",)


@pytest.mark.parametrize(("query", "product"), [
    ("感冒灵颗粒的功效", "感冒灵颗粒和感冒清热颗粒哪个好"),  # KUAKE's kind: a question and a page title
    ("布洛芬", "布洛芬缓释胶囊说明书"),
    ("头痛怎么办", "[石药] 布洛芬缓释胶囊 0.3g*24粒"),
])
def test_questions_and_pages_are_left_to_the_student(kb: KnowledgeBase, query: str, product: str) -> None:
    assert decide(query, product, kb) is None


async def test_product_search_switch_and_clause_list(kb: KnowledgeBase) -> None:
    pair = ("感冒灵颗粒", "[999] 感冒灵颗粒 10g*9袋")
    j = await make_pipeline(kb, stages={"product_search": False}).judge(*pair)
    assert j.branch is not Branch.guideline and j.guideline is None and j.intent is None
    j = await make_pipeline(kb, judge={"guideline_clauses": ["less.brand"]}).judge(*pair)
    assert j.branch is not Branch.guideline and j.intent == "product"
    with pytest.raises(ValueError, match="unknown guideline clauses"):
        make_pipeline(kb, judge={"guideline_clauses": ["exact.nothing"]})


async def test_a_second_query_is_not_a_listing(kb: KnowledgeBase) -> None:
    j = await make_pipeline(kb).judge("感冒灵颗粒", {"name": "感冒灵颗粒", "kind": "query"})
    assert j.branch is not Branch.guideline


def test_a_misspelt_name_holding_a_shorter_known_one_means_the_longer(tmp_path) -> None:
    """With the public lists a short name is known inside a longer one (消肿 in 逐瘀消肿): the query 竹瘀消肿 spells
    逐瘀消肿 as a whole, and 竹瘀 is part of the misspelt name, not a maker (it was read as 竹瘀's 消肿: less.brand)."""
    (tmp_path / "drug.txt").write_text("消肿片\n逐瘀消肿膏\n", encoding="utf-8")
    kb = KnowledgeBase.load(sources=[f"drug-dicts:{tmp_path}"])
    assert kb.common_name_of("消肿") and kb.common_name_of("逐瘀消肿")
    qi = query_intent("竹瘀消肿", kb)
    assert (qi.kind, qi.spelled, qi.brands) == ("product", "逐瘀消肿", [])
    assert query_intent("消肿", kb).spelled is None  # a known name itself is not re-spelt
    verdict = decide("竹瘀消肿", "逐瘀消肿膏 1盒装 朱养心", kb)
    assert verdict is not None and verdict.clause == "exact.spelling", verdict


def test_expert_rule_vetoes_decide_listings_only(kb: KnowledgeBase) -> None:
    """Vetoes are product rules (docs/relevance.md: on KUAKE-QTR train they misfired on questions and page titles)."""
    from armed.pipeline.product_search import vetoes_decide

    assert vetoes_decide("[江中] 健胃消食片 0.8g*32片", kb)
    assert not vetoes_decide("[江中] 健胃消食片 0.8g*32片", kb, "query")  # KUAKE-QQR's second query
    assert not vetoes_decide("排卵期白带出血是什么原因引起的？", kb)  # a question
