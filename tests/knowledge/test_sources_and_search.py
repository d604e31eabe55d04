"""Loaders over the real public files (skipped when absent) and BM25 retrieval."""

from __future__ import annotations

from pathlib import Path

import pytest

from armed.knowledge import KnowledgeBase, KnowledgeError
from armed.settings import KnowledgeSettings


def test_seed_search_finds_the_right_record_first(kb: KnowledgeBase) -> None:
    for query, expected in [
        ("消栓通络片", "seed:消栓通络"),
        ("扑热息痛 退烧", "seed:对乙酰氨基酚"),
        ("sildenafil", "seed:西地那非"),
        ("思密达 腹泻", "seed:蒙脱石"),
    ]:
        docs = kb.search(query, top_k=3)
        assert docs and docs[0].id == expected, (query, [d.id for d in docs])
        assert docs[0].source == "kb:seed" and docs[0].score > 0
    assert kb.search("", top_k=3) == [] and kb.search("布洛芬", top_k=0) == []
    assert [d.id for d in kb.search("布洛芬", 5)] == [d.id for d in kb.search("布洛芬", 5)]  # stable


def test_missing_or_malformed_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="drug-inserts:/nonexistent"):
        KnowledgeBase.load(sources=["drug-inserts:/nonexistent/x.json"])
    with pytest.raises(KnowledgeError, match="not KIND:PATH"):
        KnowledgeBase.load(sources=["wiki:/tmp"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"bad\.json"):
        KnowledgeBase.load(sources=[f"originator-drugs:{bad}"])
    odd = tmp_path / "notes.txt"
    odd.write_text("x\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"notes\.txt is not one of"):
        KnowledgeBase.load(sources=[f"drug-dicts:{odd}"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KnowledgeError, match="none of"):
        KnowledgeBase.load(sources=[f"drug-dicts:{empty}"])


def test_settings_sources_are_accepted(full_sources: list[str]) -> None:
    settings = KnowledgeSettings(sources=full_sources)
    assert KnowledgeBase.load(settings.seed, settings.sources).documents > 1000


def test_all_sources_load_deterministically(full_sources: list[str], full_kb: KnowledgeBase) -> None:
    # Load time (~1.7 s for every source here) is a measurement, not an assertion: timed tests flake under load.
    again = KnowledgeBase.load(sources=full_sources)
    assert again.version == full_kb.version != KnowledgeBase.load().version
    assert again.rules_version == full_kb.rules_version == KnowledgeBase.load().rules_version


def test_sources_extend_the_matcher(full_kb: KnowledgeBase) -> None:
    # the Table 10 convention still holds with every source loaded
    q = full_kb.extract("修正消栓通络片")
    p = full_kb.extract("[德济]消栓通络片1.8g*12片*3板/盒")
    assert q.common_name == p.common_name == ["消栓通络"] and q.dosage_form == p.dosage_form == ["片剂"]
    assert q.brand == ["修正"] and p.brand == ["德济"]
    # originator-drugs: trade name → generic, company abbreviation → brand
    assert full_kb.resolve_common_names(["拜新同", "立普妥"]) == {"拜新同": "硝苯地平", "立普妥": "阿托伐他汀"}
    assert full_kb.extract("拜耳 拜唐苹").common_name == ["阿卡波糖"]
    assert full_kb.extract("辉瑞 希舒美").brand == ["辉瑞"]
    # drug-dicts: producer.txt maker prefixes become brands; drug.txt generic names become common names
    assert full_kb.extract("信谊 某某片").brand == ["信谊"]
    assert full_kb.extract("骨痛灵酊").common_name == ["骨痛灵"]
    assert full_kb.drug_record("骨痛灵") is not None
    # a seed trade name is not turned into a brand by a source
    assert full_kb.extract("芬必得").brand == [] and full_kb.extract("芬必得").common_name == ["布洛芬"]


def test_inserts_give_records_and_search_hits(full_kb: KnowledgeBase) -> None:
    docs = full_kb.search("艾附暖宫丸 月经不调", top_k=3)
    assert docs[0].source == "kb:drug-inserts" and "艾附暖宫丸" in docs[0].title
    assert "功能主治" in docs[0].text and len(docs[0].text) <= 600
    rec = full_kb.drug_record("艾附暖宫丸")
    assert rec is not None and "drug-inserts" in rec.sources and "月经不调" in rec.efficacy
    assert full_kb.efficacy_overlap(rec.efficacy, ["痛经"]) > 0
    top = full_kb.search("芬必得 布洛芬", top_k=5)
    assert any(d.source == "kb:originator-drugs" and "芬必得" in d.title for d in top)
    ids = [d.id for d in full_kb.search("布洛芬", top_k=50)]
    assert len(ids) == len(set(ids))


def test_a_class_of_drugs_annotated_as_drug_is_no_common_name(tmp_path: Path) -> None:
    """tcm-insert-ner labels 感冒药 DRUG where an insert says 不宜与感冒药同时服用: a class, not a drug (it had become a
    common name carrying one insert's efficacy, and turned the need query 儿童感冒药 into a product query)."""
    text = "不宜与感冒药同时服用。忌与四环素类抗生素合用。艾附暖宫丸用于月经不调。"
    spans = [("DRUG", "感冒药"), ("DRUG", "四环素类抗生素"), ("DRUG", "艾附暖宫丸"), ("SYMPTOM", "月经不调")]
    ann = "\n".join(f"T{k}\t{label} {text.index(s)} {text.index(s) + len(s)}\t{s}"
                    for k, (label, s) in enumerate(spans, 1))
    for stem in ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"):  # some stems fall in the train split
        (tmp_path / f"{stem}.txt").write_text(text, encoding="utf-8")
        (tmp_path / f"{stem}.ann").write_text(ann + "\n", encoding="utf-8")
    kb = KnowledgeBase.load(sources=[f"tcm-insert-ner:{tmp_path}@all"])
    assert kb.extract("艾附暖宫丸").common_name == ["艾附暖宫"]
    assert kb.drug_record("感冒药") is None and kb.drug_record("四环素类抗生素") is None
    assert kb.extract("儿童感冒药").common_name == [] and kb.extract("儿童感冒药").category == ["感冒用药"]
