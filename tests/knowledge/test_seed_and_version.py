"""The seed is validated strictly and the knowledge-base version is a faithful content hash."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from armed.knowledge import KnowledgeBase, KnowledgeError


def seed_text() -> str:
    return resources.files("armed.knowledge.seed").joinpath("kb.yaml").read_text(encoding="utf-8")


def write_seed(tmp_path: Path, data: dict, name: str = "kb.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def seed_data() -> dict:
    return yaml.safe_load(seed_text())


def test_packaged_seed_loads_with_rules_and_note(kb: KnowledgeBase) -> None:
    assert kb.seed.version_note
    ids = {r.id for r in kb.rules}
    assert {
        "brand_differs_similar_efficacy",
        "generic_query_deemphasise_brand",
        "specific_query_dosage_form_differs",
        "efficacy_entirely_different",
        "population_conflict",
        "category_mismatch",
    } <= ids
    assert len(kb.version) == 12 and len(kb.rules_version) == 12


def test_unknown_key_is_rejected_naming_the_field(tmp_path: Path) -> None:
    data = seed_data()
    data["lexicons"]["brands"][0]["slogan"] = "x"
    with pytest.raises(KnowledgeError, match=r"lexicons\.brands\.0\.slogan"):
        KnowledgeBase.load(write_seed(tmp_path, data))


def test_bad_effect_is_rejected(tmp_path: Path) -> None:
    data = seed_data()
    data["rules"][0]["effect"] = "cap:somewhat_relevant"
    with pytest.raises(KnowledgeError, match=r"rules\.0\.effect"):
        KnowledgeBase.load(write_seed(tmp_path, data))


def test_dangling_reference_is_rejected(tmp_path: Path) -> None:
    data = seed_data()
    data["lexicons"]["common_names"][0]["categories"] = ["不存在的类别"]
    with pytest.raises(KnowledgeError, match=r"common_names\[对乙酰氨基酚\]\.categories.*不存在的类别"):
        KnowledgeBase.load(write_seed(tmp_path, data))


def test_condition_shape_is_checked(tmp_path: Path) -> None:
    data = seed_data()
    data["rules"][0]["when"]["all"] = [{"field": "brand", "test": "conflict"}]
    with pytest.raises(KnowledgeError, match="population field only"):
        KnowledgeBase.load(write_seed(tmp_path, data))
    data["rules"][0]["when"]["all"] = [{"field": "efficacy", "test": "overlap_gte"}]
    with pytest.raises(KnowledgeError, match="needs a value"):
        KnowledgeBase.load(write_seed(tmp_path, data))


def test_bad_spec_regex_and_bad_yaml_are_rejected(tmp_path: Path) -> None:
    data = seed_data()
    data["specification_patterns"] = ["(unclosed"]
    with pytest.raises(KnowledgeError, match="specification_patterns"):
        KnowledgeBase.load(write_seed(tmp_path, data))
    broken = tmp_path / "broken.yaml"
    broken.write_text("lexicons: [unclosed", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"broken\.yaml"):
        KnowledgeBase.load(broken)
    with pytest.raises(KnowledgeError, match=r"missing\.yaml"):
        KnowledgeBase.load(tmp_path / "missing.yaml")


def test_version_is_stable_and_follows_content(tmp_path: Path, kb: KnowledgeBase) -> None:
    same = tmp_path / "same.yaml"
    same.write_text(seed_text(), encoding="utf-8")
    again = KnowledgeBase.load(same)
    assert again.version == kb.version == KnowledgeBase.load().version
    assert again.rules_version == kb.rules_version

    lexicon_edit = seed_data()
    lexicon_edit["lexicons"]["brands"].append({"name": "测试品牌"})
    edited = KnowledgeBase.load(write_seed(tmp_path, lexicon_edit, "lex.yaml"))
    assert edited.version != kb.version
    assert edited.rules_version == kb.rules_version  # the rule set did not change

    rule_edit = seed_data()
    rule_edit["rules"][0]["effect"] = "cap:weakly_relevant"
    edited_rules = KnowledgeBase.load(write_seed(tmp_path, rule_edit, "rules.yaml"))
    assert edited_rules.rules_version != kb.rules_version
    assert edited_rules.version != kb.version


def test_version_includes_sources(tmp_path: Path, kb: KnowledgeBase) -> None:
    dicts = tmp_path / "dicts"
    dicts.mkdir()
    (dicts / "drug.txt").write_text("测试宁片\n", encoding="utf-8")
    with_source = KnowledgeBase.load(sources=[f"drug-dicts:{dicts}"])
    assert with_source.version != kb.version
    assert KnowledgeBase.load(sources=[f"drug-dicts:{dicts}"]).version == with_source.version
    (dicts / "drug.txt").write_text("测试宁胶囊\n", encoding="utf-8")
    assert KnowledgeBase.load(sources=[f"drug-dicts:{dicts}"]).version != with_source.version
