"""Lexicon NER, CN resolution, query expansion, specificity, name hygiene and comparison helpers."""

from __future__ import annotations

from armed.domain import Entities
from armed.knowledge import KnowledgeBase


def test_table10_pair_same_common_name_different_brand(kb: KnowledgeBase) -> None:
    q = kb.extract("修正消栓通络片")
    p = kb.extract("[德济]消栓通络片1.8g*12片*3板/盒")
    assert q.brand == ["修正"] and p.brand == ["德济"]
    assert q.common_name == p.common_name == ["消栓通络"]
    assert q.dosage_form == p.dosage_form == ["片剂"]
    assert p.specification == ["1.8g*12片*3板/盒"]  # 12片 inside the pack size is not a dosage form


def test_yunnan_baiyao_pair_differs_in_form_only(kb: KnowledgeBase) -> None:
    a = kb.extract("云南白药气雾剂")
    b = kb.extract("云南白药膏")
    assert a.brand == b.brand == ["云南白药"]
    assert a.common_name == b.common_name == ["云南白药"]
    assert a.dosage_form == ["气雾剂"] and b.dosage_form == ["膏剂"]
    assert not kb.dosage_forms_equal(a.dosage_form, b.dosage_form)


def test_english_synonyms_case_insensitive(kb: KnowledgeBase) -> None:
    assert kb.extract("Paracetamol 500mg").common_name == ["对乙酰氨基酚"]
    assert kb.extract("ACETAMINOPHEN tablets").common_name == ["对乙酰氨基酚"]
    assert kb.extract("Sildenafil").common_name == ["西地那非"]
    # a Latin surface must not match inside a longer word / number
    assert kb.extract("edible").efficacy == []
    assert kb.extract("1999年").brand == []


def test_trade_names_and_synonyms_canonicalised(kb: KnowledgeBase) -> None:
    assert kb.extract("扑热息痛片").common_name == ["对乙酰氨基酚"]
    e = kb.extract("芬必得布洛芬缓释胶囊0.3g×24粒")
    assert e.common_name == ["布洛芬"] and e.dosage_form == ["胶囊"] and e.specification == ["0.3g×24粒"]
    assert kb.extract("三九感冒灵颗粒").brand == ["999"]


def test_single_character_form_needs_a_word_end(kb: KnowledgeBase) -> None:
    assert kb.extract("片仔癀").dosage_form == []
    assert kb.extract("小儿氨酚黄那敏颗粒").population == []  # 小儿 is part of the common name here
    assert kb.enrich(kb.extract("小儿氨酚黄那敏颗粒")).population == ["儿童"]
    assert kb.extract("云南白药牙膏").dosage_form == []  # 牙膏 (category) is longer than 膏


def test_other_fields(kb: KnowledgeBase) -> None:
    e = kb.extract("儿童退烧 眼睛干涩 成人用品 玻璃酸钠滴眼液")
    assert "儿童" in e.population and "退烧" in e.efficacy and "眼" in e.region
    assert "成人用品" in e.category and "成人" not in e.population  # longest match wins
    assert e.dosage_form == ["滴眼液"] and e.common_name == ["玻璃酸钠"]


def test_resolve_common_names(kb: KnowledgeBase) -> None:
    got = kb.resolve_common_names(["芬必得", "泰诺林", "ibuprofen", "布洛芬缓释胶囊", "万艾可", "没有这个药"])
    assert got == {
        "芬必得": "布洛芬",
        "泰诺林": "对乙酰氨基酚",
        "ibuprofen": "布洛芬",
        "布洛芬缓释胶囊": "布洛芬",
        "万艾可": "西地那非",
    }


def test_query_expansion(kb: KnowledgeBase) -> None:
    x = kb.expand_query("001")
    assert x is not None and "成人用品" in x.categories and "001" in x.expanded and x.note
    assert kb.expand_query("退烧药") is not None
    assert kb.expand_query("紧急避孕药哪种好") is not None  # a `contains` entry
    assert kb.expand_query("修正消栓通络片") is None


def test_query_specificity(kb: KnowledgeBase) -> None:
    def spec(q: str) -> str:
        return kb.query_specificity(kb.extract(q), q)

    assert spec("修正消栓通络片") == "specific"  # brand + common name
    assert spec("云南白药气雾剂") == "specific"
    assert spec("布洛芬缓释胶囊") == "specific"  # common name + dosage form
    assert spec("布洛芬") == "generic"  # common name alone
    assert spec("头痛") == "generic"  # symptom
    assert spec("001") == "generic"  # listed slang
    assert kb.query_specificity(Entities(), "随便") == "generic"


def test_drug_record(kb: KnowledgeBase) -> None:
    rec = kb.drug_record("芬必得")  # a trade name resolves to the record of its common name
    assert rec is not None and rec.common_name == "布洛芬" and "解热镇痛" in rec.efficacy
    assert kb.drug_record("消栓通络片").common_name == "消栓通络"  # type: ignore[union-attr]
    assert kb.drug_record("没有这个药") is None


def test_comparison_helpers(kb: KnowledgeBase) -> None:
    assert kb.same_brand(["北京同仁堂"], ["同仁堂"]) and kb.same_brand(["三九"], ["999"])
    assert not kb.same_brand(["修正"], ["德济"])
    assert kb.dosage_forms_equal(["片"], ["薄膜衣片"]) and kb.dosage_forms_equal(["冲剂"], ["颗粒"])
    assert not kb.dosage_forms_equal(["片剂"], []) and not kb.dosage_forms_equal(["气雾剂"], ["膏"])
    assert kb.efficacy_overlap(["退烧"], ["发热", "头痛"]) == 1.0
    assert kb.efficacy_overlap(["活血止痛"], ["化瘀"]) == 1.0  # free text mapped through the groups
    assert kb.efficacy_overlap(["止咳"], ["降压"]) == 0.0
    assert kb.efficacy_overlap([], ["降压"]) == 0.0
    assert 0 < kb.efficacy_overlap(["止咳", "退烧"], ["止咳", "降压", "降糖"]) < 1
    assert kb.population_conflict(["小儿"], ["成人"]) and kb.population_conflict(["男士"], ["女性"])
    assert not kb.population_conflict(["儿童", "成人"], ["儿童"])  # shared population
    assert not kb.population_conflict(["儿童"], [])


def test_strip_noise_and_hijack(kb: KnowledgeBase) -> None:
    assert kb.strip_noise("【包邮】正品 同仁堂六味地黄丸 官方旗舰店") == "同仁堂六味地黄丸"
    assert kb.strip_noise("[德济]消栓通络片") == "德济 消栓通络片"  # a bracketed brand is kept
    assert kb.hijack_terms("某某牌 同仁堂配方 乌鸡白凤丸 平替") == ["平替", "同仁堂配方"]
    assert kb.hijack_terms("同仁堂 乌鸡白凤丸 同仁堂配方") == []  # the maker citing its own formula
    assert kb.hijack_terms("修正消栓通络片") == []
