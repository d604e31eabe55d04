"""Reading names the way listings and shoppers write them: a route word before the dosage form, a drug name ending
in a sentence particle, a negation word inside a drug name, a query misspelt as a whole, and a trade name the
sources list for several drugs. Found on pairs of the pharmacy benchmark's tuning half drawn with other seeds
(`armed eval pharmacy --seed N`, tune.jsonl); none of the pairs below is in the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armed.domain import Branch, RelevanceLevel
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.intent import query_intent
from armed.pipeline.listing import parse_name
from armed.pipeline.merchant_text import clean_merchant_text
from armed.pipeline.product_search import decide, trade_as_sold
from tests.pipeline.conftest import kb_with_drugs, make_pipeline


def _originators(tmp_path: Path, trade: str, company: str, brand: str, rows: list[tuple[str, str]]) -> KnowledgeBase:
    """An originator-drugs folder: one file per (therapeutic group, generic), every row under `trade`."""
    folder = tmp_path / "originator"
    folder.mkdir()
    for group, generic in rows:
        row = {"company_name": company, "company_abbreviation": brand, "drug_generic_name": generic,
               "trade_name": trade}
        (folder / f"{group}.json").write_text(json.dumps({"data": [row]}, ensure_ascii=False), encoding="utf-8")
    return KnowledgeBase.load(sources=[f"originator-drugs:{folder}"])


# ----------------------------------------------------------------------------------------- route words and forms

@pytest.mark.parametrize(("name", "core", "form"), [
    ("布洛芬口服混悬液", "布洛芬", "混悬液"),
    ("对乙酰氨基酚混悬滴剂", "对乙酰氨基酚", "滴剂"),
    ("糠酸莫米松鼻喷雾剂", "糠酸莫米松", "喷雾剂"),
    ("丙酸倍氯米松吸入气雾剂", "丙酸倍氯米松", "气雾剂"),
    ("芬太尼透皮贴剂", "芬太尼", "贴剂"),
    ("甲硝唑阴道泡腾片", "甲硝唑", "阴道片"),
])
def test_a_route_word_belongs_to_the_form(kb: KnowledgeBase, name: str, core: str, form: str) -> None:
    """布地奈德鼻喷雾剂 was the drug 布地奈德鼻: a query for 布地奈德 then read the product as a compound holding it."""
    assert kb.split_form(name) == (core, form)


def test_a_route_that_changes_the_use_is_its_own_form(kb: KnowledgeBase) -> None:
    assert not kb.dosage_forms_equal(["阴道泡腾片"], ["片"])
    assert not kb.dosage_forms_equal(["眼用凝胶"], ["凝胶"])
    assert kb.dosage_forms_equal(["口服混悬液"], ["混悬液"])


def test_a_generic_query_meets_its_drug_in_a_route_form(kb: KnowledgeBase) -> None:
    verdict = decide("布洛芬", "[某某药业] 布洛芬口服混悬液 100ml", kb)
    assert verdict is not None and verdict.clause == "exact.generic", verdict


# --------------------------------------------------------------------------------------- particles inside names

def test_a_name_ending_in_a_particle_is_no_question(tmp_path: Path) -> None:
    """拉坦噻吗 (latanoprost + timolol) ends in 吗: it was read as a question and left to the student."""
    kb = kb_with_drugs(tmp_path, "拉坦噻吗滴眼液")
    assert query_intent("拉坦噻吗", kb).kind == "product"
    assert query_intent("拉坦噻吗有用吗", kb).kind == "question"  # the particle after the name still asks
    verdict = decide("拉坦噻吗", "[某某眼药] 拉坦噻吗滴眼液 2.5ml", kb)
    assert verdict is not None and verdict.clause == "exact.generic", verdict


# ----------------------------------------------------------------------------------- negation words inside names

def test_a_negation_word_inside_a_drug_name_cuts_nothing(tmp_path: Path) -> None:
    """非 in 盐酸安非他酮: the negation rule cut 非他酮缓释片 from the product (the piece after 非 was most of a
    misspelt query), and the student judged what was left, 盐酸安."""
    kb = kb_with_drugs(tmp_path, "盐酸安非他酮缓释片")
    name = "[某某] 盐酸安非他酮缓释片 10片*3板/盒"
    assert clean_merchant_text(name, query="盐酸安飞他酮缓释片", kb=kb).text == name
    # A negation before the query is still one (不含布洛芬 says the product is not 布洛芬).
    cut = clean_merchant_text("对乙酰氨基酚片 不含布洛芬", query="布洛芬", kb=kb)
    assert "negated_query" in cut.removed and "布洛芬" not in cut.text


# ------------------------------------------------------------------------------------ a query misspelt as a whole

def test_a_misspelt_query_has_no_maker_or_form_of_its_pieces(tmp_path: Path) -> None:
    """盐蒜二甲双胍缓释片 (蒜 for 酸): 盐蒜 was read as a maker, so the expert rules capped the exact product at
    less relevant (brand differs); the whole query spells 盐酸二甲双胍缓释片, so it names no maker."""
    kb = kb_with_drugs(tmp_path, "盐酸二甲双胍缓释片")
    qi = query_intent("盐蒜二甲双胍缓释片", kb)
    assert qi.spelled_whole and qi.brands == [] and qi.spelled == "盐酸二甲双胍缓释片"
    assert decide("盐蒜二甲双胍缓释片", "[某某] 盐酸二甲双胍缓释片 0.5g*30片", kb).clause == "exact.spelling"


async def test_the_rules_read_the_spelled_name(tmp_path: Path) -> None:
    kb = kb_with_drugs(tmp_path, "盐酸二甲双胍缓释片")
    j = await make_pipeline(kb).judge("盐蒜二甲双胍缓释片", "[某某] 盐酸二甲双胍缓释片 0.5g*30片")
    assert j.level is RelevanceLevel.highly and j.guideline == "exact.spelling", j.reason
    assert not any(r.id.startswith("brand_differs") for r in j.rules_fired)


def test_a_misspelt_piece_beside_a_typed_maker_keeps_the_maker(kb: KnowledgeBase) -> None:
    """Only a whole-query spelling drops what the typed text says beside the name (修正 is a maker here)."""
    qi = query_intent("修正 板兰根颗粒", kb)
    assert qi.spelled is not None and not qi.spelled_whole


# ------------------------------------------------------------------------ a trade name listed for several drugs

@pytest.fixture
def meilin(tmp_path: Path) -> KnowledgeBase:
    """美林 resolves to 布洛芬 (the first row); the sources list it for 布洛伪麻混悬液 too."""
    return _originators(tmp_path, "美林", "上海强生制药有限公司", "强生",
                        [("01-解热镇痛", "布洛芬混悬液"), ("02-感冒咳嗽", "布洛伪麻混悬液")])


def test_a_trade_name_beside_its_other_drug_means_that_drug(meilin: KnowledgeBase) -> None:
    assert meilin.extract("美林 布洛伪麻混悬液 100ml").common_name == ["布洛伪麻"]
    assert meilin.extract("美林 布洛芬混悬液 100ml").common_name == ["布洛芬"]
    assert meilin.extract("美林").common_name == ["布洛芬"]  # alone it resolves as before


async def test_a_cold_medicine_sold_under_a_painkillers_trade_name(meilin: KnowledgeBase) -> None:
    """感冒药 vs 美林 布洛伪麻混悬液 was vetoed (efficacy entirely different): the listing was read as 布洛芬 too."""
    j = await make_pipeline(meilin).judge("感冒药", "强生 美林 布洛伪麻混悬液 100ml")
    assert j.level is RelevanceLevel.highly and j.branch is Branch.guideline, j.reason


async def test_the_trade_name_asked_is_the_drug_the_product_sells_under_it(meilin: KnowledgeBase) -> None:
    assert trade_as_sold("美林", "[美林]布洛伪麻混悬液 100ml", meilin) == ("布洛芬", "布洛伪麻")
    # The bracketed trade name is the product's own, not the query stuffed in: the source lists it for this drug.
    assert clean_merchant_text("[美林]布洛伪麻混悬液 100ml", query="美林", kb=meilin).removed == ()
    j = await make_pipeline(meilin).judge("美林", "[美林]布洛伪麻混悬液 100ml")
    assert j.guideline == "exact.trade" and j.level is RelevanceLevel.highly, j.reason


def test_a_trade_name_the_sources_do_not_list_for_the_drug_is_still_stuffing(meilin: KnowledgeBase) -> None:
    cut = clean_merchant_text("[美林]对乙酰氨基酚片 12片", query="美林", kb=meilin)
    assert "stuffed_query" in cut.removed


# ------------------------------------------------------------------------- question words inside a maker's name

def test_a_question_word_inside_a_makers_name_asks_nothing(tmp_path: Path) -> None:
    """好医生 and 海力医生 are makers; 医生 is a question marker (a page about a doctor's advice), so their listings
    were read as questions and left to the student."""
    (tmp_path / "producer.txt").write_text("好医生氨苄西林胶囊\n", encoding="utf-8")
    kb = kb_with_drugs(tmp_path, "氨苄西林胶囊")
    listing = parse_name("【好医生】氨苄西林胶囊 20粒/盒", kb)
    assert not listing.question and listing.is_listing
    assert decide("氨苄西林", "【好医生】氨苄西林胶囊 20粒/盒", kb).clause == "exact.generic"
    assert parse_name("氨苄西林胶囊 医生怎么说", kb).question  # outside the maker's name it still asks


# ------------------------------------------------------------------- a spelled name that ends in a form word

async def test_a_spelled_name_ending_in_a_form_word_asks_for_no_form(tmp_path: Path) -> None:
    """ganjingao spells 肝浸膏 (the drug of 肝浸膏片): its 膏 is the name's, not an ointment asked for, so the tablets
    are what was asked (the spelled name's form had capped them at less relevant)."""
    kb = kb_with_drugs(tmp_path, "肝浸膏片")
    qi = query_intent("ganjingao", kb)
    assert qi.spelled == "肝浸膏" and qi.spelled_whole and qi.forms == []
    j = await make_pipeline(kb).judge("ganjingao", "【某某】肝浸膏片 100片")
    assert j.level is RelevanceLevel.highly and j.guideline == "exact.spelling", j.reason
