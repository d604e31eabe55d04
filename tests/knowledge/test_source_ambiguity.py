"""What the public sources must not make of a population or a drug: a person group that is no population (an
insert's PERSON_GROUP is mostly who must not take a drug: 过敏体质者, 感冒发热病人; as populations they made every
query holding them a population query, 感冒药 read as for the population 感冒), and a trade name two generics share."""

from __future__ import annotations

from pathlib import Path

from armed.knowledge.base import KnowledgeBase


def _insert(folder: Path, groups: list[str]) -> Path:
    folder.mkdir(parents=True)
    text = "示例安神丸 用于失眠。" + "、".join(groups) + "慎用。"
    lines = ["T1\tDRUG 0 5\t示例安神丸"]
    for k, g in enumerate(groups, 2):
        at = text.index(g)
        lines.append(f"T{k}\tPERSON_GROUP {at} {at + len(g)}\t{g}")
    (folder / "0.txt").write_text(text, encoding="utf-8")
    (folder / "0.ann").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_person_groups_map_to_seed_populations_or_none(tmp_path: Path) -> None:
    groups = ["感冒发热病人", "过敏体质者", "更年期妇女", "孕期妇女", "年老体弱者", "感冒"]
    kb = KnowledgeBase.load(sources=[f"tcm-insert-ner:{_insert(tmp_path / 'train', groups)}@all"])
    assert kb.extract("感冒发热病人").population == []
    assert kb.extract("过敏体质者").population == []
    assert kb.extract("感冒药").population == []
    assert kb.extract("更年期妇女").population == ["女性"]
    assert kb.extract("孕期妇女").population == ["孕妇"]  # 孕期 and 妇女: the narrower population
    assert kb.extract("儿童感冒药").population == ["儿童"]  # the seed's own terms as before


def test_a_trade_name_of_two_generics_merges_neither(tmp_path: Path) -> None:
    """originator-drugs lists 美林 for 强生's 布洛芬混悬液 and for its 布洛伪麻混悬液 (ibuprofen + pseudoephedrine,
    a cold medicine); as one group the second became plain ibuprofen (efficacy 解热镇痛, so 感冒药 vetoed it)."""
    folder = tmp_path / "originator"
    folder.mkdir()
    rows = [("01-解热镇痛", "布洛芬混悬液"), ("02-感冒咳嗽", "布洛伪麻混悬液")]
    for group, generic in rows:
        (folder / f"{group}.json").write_text(
            '{"data": [{"company_name": "上海强生制药有限公司", "company_abbreviation": "强生", '
            f'"drug_generic_name": "{generic}", "trade_name": "美林"}}]}}', encoding="utf-8")
    kb = KnowledgeBase.load(sources=[f"originator-drugs:{folder}"])
    assert kb.common_name_of("布洛伪麻混悬液") == "布洛伪麻"
    assert kb.common_name_of("布洛芬混悬液") == "布洛芬" and kb.common_name_of("美林") == "布洛芬"  # the first row's
