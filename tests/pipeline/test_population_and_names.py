"""Reading a product-search pair right before any clause applies: a population word in the query, a population
prefix in the product's name, a form word that is part of a name, a trade name glued to another product's name.
None of these pairs is in the pharmacy benchmark (armed/eval/pharmacy.py, benchmarks/pharmacy/hand.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from armed.domain import Branch, RelevanceLevel
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.intent import query_intent
from armed.pipeline.listing import parse_name
from armed.pipeline.product_search import decide, forms_in_name
from tests.pipeline.conftest import kb_with_drugs, make_pipeline


@pytest.mark.parametrize(("query", "product", "clause"), [
    ("女士维生素", "女士 多种维生素片 90片", "exact.generic"),  # 女士 + what is asked, the product for women
    ("女士维生素", "男士 多种维生素片 60片", "irrelevant.population"),
])
def test_a_population_word_glued_to_what_is_asked(kb: KnowledgeBase, query: str, product: str, clause: str) -> None:
    """女士维生素 named nothing the knowledge base reads (intent "other": the student guessed); without its population
    word it names a product, and the population is then checked against the product's."""
    qi = query_intent(query, kb)
    assert qi.kind == "product" and qi.names and qi.reason.endswith("for the population it names")
    verdict = decide(query, product, kb)
    assert verdict is not None and verdict.clause == clause, verdict


@pytest.mark.parametrize(("query", "product", "clause"), [
    ("孕妇钙片", "孕妇 钙片 碳酸钙D3 60片", "need.met"),
    ("儿童钙片", "中老年 钙片 碳酸钙D3 60片", "irrelevant.population"),
])
def test_a_population_word_read_as_the_name(kb: KnowledgeBase, query: str, product: str, clause: str) -> None:
    """儿童钙片 was read as asking for a drug named 儿童 (钙 is cut off as a salt, as in 阿托伐他汀钙): a population
    word names no drug, so what is asked is the rest (钙片), for that population."""
    qi = query_intent(query, kb)
    assert qi.kind == "need" and not qi.names and qi.reason.endswith("for the population it names")
    verdict = decide(query, product, kb)
    assert verdict is not None and verdict.clause == clause, verdict


def test_a_population_word_inside_a_name(kb: KnowledgeBase) -> None:
    """One character left without the population word: the word is part of a name (孕妇枕, a pillow; 暖宝宝)."""
    qi = query_intent("孕妇枕", kb)
    assert qi.kind == "product" and qi.names == ["孕妇枕"]
    assert query_intent("宝宝", kb).kind == "other"  # a population alone asks for nothing


@pytest.mark.parametrize("query", ["小孩氨酚黄那敏", "氨酚黄那敏 儿童"])
def test_the_asked_drug_made_for_the_asked_population(kb: KnowledgeBase, query: str) -> None:
    """小儿氨酚黄那敏 is 氨酚黄那敏 for children: for a query that asks for it for children it is the same drug (it
    was read as a compound holding it: less.ingredient)."""
    verdict = decide(query, "[护彤]小儿氨酚黄那敏颗粒 6袋", kb)
    assert verdict is not None and verdict.clause == "exact.generic", verdict
    # Without the population asked for, it stays another preparation.
    assert decide("氨酚黄那敏", "[护彤]小儿氨酚黄那敏颗粒 6袋", kb).clause != "exact.generic"


@pytest.mark.parametrize(("name", "query", "product"), [
    ("陈香露白露片", "陈香露白露", "陈香露白露片 0.3g*100片 [修正]"),
    ("回生甘露丸", "回生甘露", "[国药]回生甘露丸 6g*10袋"),
])
async def test_a_form_word_inside_a_name_is_not_a_form_asked(tmp_path: Path, name: str, query: str,
                                                             product: str) -> None:
    """露 in 回生甘露 reads as 露剂; the product 回生甘露丸 holds the whole query in its name, so the query asked for no
    露剂 and the expert rule "dosage form differs" must not cap the exact match (it did: moderately relevant)."""
    kb = kb_with_drugs(tmp_path, name)
    assert kb.extract(query).dosage_form == ["露剂"] and forms_in_name(query, product, kb) == ["露剂"]
    j = await make_pipeline(kb).judge(query, product)
    assert j.level is RelevanceLevel.highly and j.branch is Branch.guideline, j.reason
    assert not any(h.effect.startswith("cap:") for h in j.rules_fired)
    rules = next(s for s in j.stages if s.name == "rules")
    assert "part of the product's name" in (rules.detail or "")
    # A form the query does ask for still caps: 回生甘露胶囊 against a pill.
    assert forms_in_name(query + "胶囊", product, kb) == []


def test_a_trade_name_glued_to_another_products_name_describes_it(tmp_path: Path) -> None:
    """舒敏 is a trade name of 盐酸曲马多 in the drug lists; in 舒敏保湿面膜 it describes a face mask. Read as a drug it
    made the mask a trailing name of tramadol (the product's own name: an opioid)."""
    tramadol = tmp_path / "originator"
    tramadol.mkdir()
    (tramadol / "01-镇痛.json").write_text(
        '{"data": [{"company_name": "示例药业有限公司", "company_abbreviation": "示例", '
        '"drug_generic_name": "盐酸曲马多缓释片", "trade_name": "舒敏"}]}', encoding="utf-8")
    kb = KnowledgeBase.load(sources=[f"originator-drugs:{tramadol}"])
    assert kb.is_trade_name("舒敏")
    p = parse_name("薇诺娜 舒敏保湿面膜 6片", kb)
    assert [m.core for m in p.mentions] == ["面膜"] and not p.appended
    # Its own product's trade name glued to its own generic name is still that drug.
    assert [m.canonical for m in parse_name("舒敏盐酸曲马多缓释片", kb).mentions][:1] == ["盐酸曲马多"]


@pytest.mark.parametrize(("query", "product", "clause"), [
    ("血压计", "欧姆龙 血压计配件 袖带 22-32cm", "less.related_use"),  # a cuff for a monitor, not a monitor
    ("血压计", "欧姆龙 电子血压计 HEM-7124", "exact.generic"),
])
def test_an_accessory_of_the_asked_product_is_not_it(kb: KnowledgeBase, query: str, product: str,
                                                     clause: str) -> None:
    verdict = decide(query, product, kb)
    assert verdict is not None and verdict.clause == clause, verdict


@pytest.mark.parametrize(("query", "product", "clause"), [
    ("洗面奶", "【旁氏】米粹洁面乳 120g", "exact.generic"),  # 洁面乳 is a 洗面奶
    ("女士洗面奶", "男士 氨基酸洗面奶 100g", "irrelevant.population"),
    ("私处护理液", "男士 私处清洗液 200ml", "exact.generic"),
    ("女士私处护理液", "男士 私处清洗液 200ml", "irrelevant.population"),
])
def test_personal_care_products_the_seed_names(kb: KnowledgeBase, query: str, product: str, clause: str) -> None:
    """A facial cleanser and an intimate wash are product types a pharmacy sells (the seed's pharmacy products):
    unnamed, a listing of one was no listing (nothing read as its name), so even a population conflict went to the
    student."""
    assert parse_name(product, kb).is_listing
    verdict = decide(query, product, kb)
    assert verdict is not None and verdict.clause == clause, verdict
