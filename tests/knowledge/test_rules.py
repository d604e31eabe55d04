"""Every required expert rule fires where the paper says it should, and not where it should not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from armed.domain import Entities, RelevanceLevel, RuleHit
from armed.knowledge import KnowledgeBase, apply_caps, prompt_hints, recall

H, M, W, IRR = (RelevanceLevel.highly, RelevanceLevel.moderately, RelevanceLevel.weakly, RelevanceLevel.irrelevant)


def fire(kb: KnowledgeBase, query: str, product: str, query_extra: Entities | None = None) -> dict[str, RuleHit]:
    q = kb.extract(query)
    if query_extra is not None:
        q = q.merge(query_extra)
    hits = recall(kb, q, kb.extract(product), kb.query_specificity(q, query))
    return {h.id: h for h in hits}


def test_table10_brand_differs_caps_at_moderately(kb: KnowledgeBase) -> None:
    hits = fire(kb, "修正消栓通络片", "[德济]消栓通络片1.8g*12片*3板/盒")
    hit = hits["brand_differs_similar_efficacy"]
    assert hit.effect == "cap:moderately_relevant"
    assert "修正" in hit.because and "德济" in hit.because
    assert "品牌" in hit.description and "Brands differ" in hit.description
    assert apply_caps(H, list(hits.values())) is M
    assert M.to_benchmark().value == "less_relevant"


def test_same_brand_same_form_gets_no_cap(kb: KnowledgeBase) -> None:
    hits = fire(kb, "修正消栓通络片", "修正 消栓通络片 0.38g*36片")
    assert not [h for h in hits.values() if h.effect.startswith(("cap:", "set:"))]
    assert apply_caps(H, list(hits.values())) is H


def test_brand_differs_needs_similar_efficacy(kb: KnowledgeBase) -> None:
    # different brand AND different drug: the brand cap is not what decides; the efficacy veto is
    hits = fire(kb, "修正消栓通络片", "同仁堂六味地黄丸")
    assert "brand_differs_similar_efficacy" not in hits
    assert "efficacy_entirely_different" in hits


def test_generic_query_deemphasises_brand_and_never_caps_it(kb: KnowledgeBase) -> None:
    for query, product in [("布洛芬", "芬必得布洛芬缓释胶囊"), ("头痛", "中美史克 芬必得"), ("001", "杜蕾斯避孕套")]:
        hits = fire(kb, query, product)
        assert hits["generic_query_deemphasise_brand"].effect == "deemphasise:brand", query
        assert "brand_differs_similar_efficacy" not in hits
        assert "specific_query_emphasise_brand" not in hits
    assert "generic_query_deemphasise_brand" not in fire(kb, "修正消栓通络片", "德济消栓通络片")
    assert prompt_hints(list(fire(kb, "布洛芬", "美林").values()))["deemphasise"] == ["brand"]


def test_specific_query_dosage_form_differs_caps(kb: KnowledgeBase) -> None:
    hits = fire(kb, "云南白药气雾剂", "云南白药膏")
    assert hits["specific_query_dosage_form_differs"].effect == "cap:moderately_relevant"
    assert "emphasise:dosage_form" in {h.effect for h in hits.values()}
    assert apply_caps(H, list(hits.values())) is M
    same = fire(kb, "云南白药气雾剂", "云南白药气雾剂85g+30g")
    assert "specific_query_dosage_form_differs" not in same
    assert apply_caps(H, list(same.values())) is H
    # a generic query (common name alone) does not make the form decisive
    assert "specific_query_dosage_form_differs" not in fire(kb, "布洛芬", "布洛芬混悬液")


def test_entirely_different_efficacy_is_irrelevant(kb: KnowledgeBase) -> None:
    hits = fire(kb, "布洛芬", "奥美拉唑肠溶胶囊")
    assert hits["efficacy_entirely_different"].effect == "set:irrelevant"
    assert apply_caps(H, list(hits.values())) is IRR
    assert "efficacy_entirely_different" not in fire(kb, "退烧", "对乙酰氨基酚片")
    assert "efficacy_entirely_different" not in fire(kb, "布洛芬", "不知名商品")  # product efficacy unknown


def test_population_conflict_is_irrelevant(kb: KnowledgeBase) -> None:
    hits = fire(kb, "小儿氨酚黄那敏颗粒", "成人感冒药")
    assert hits["population_conflict"].effect == "set:irrelevant"
    assert "population_conflict" not in fire(kb, "小儿氨酚黄那敏颗粒", "小儿感冒颗粒")
    assert "population_conflict" not in fire(kb, "感冒灵颗粒", "儿童感冒药")  # query states no population
    assert "query_only_population" in fire(kb, "儿童感冒药", "感冒灵颗粒")


def test_category_mismatch_caps_weakly(kb: KnowledgeBase) -> None:
    hits = fire(kb, "001", "布洛芬缓释胶囊", Entities(category=["成人用品", "计生用品"]))
    assert hits["category_mismatch"].effect == "cap:weakly_relevant"
    related = fire(kb, "感冒药", "布洛芬片")  # 感冒用药 ~ 解热镇痛药 are related categories
    assert "category_mismatch" not in related
    assert "category_mismatch" not in fire(kb, "001", "杜蕾斯", Entities(category=["成人用品"]))


def test_apply_caps_semantics() -> None:
    def hit(effect: str) -> RuleHit:
        return RuleHit(id="x", description="d", effect=effect, because="b")

    assert apply_caps(H, []) is H
    assert apply_caps(H, [hit("cap:weakly_relevant"), hit("cap:moderately_relevant")]) is W
    assert apply_caps(W, [hit("cap:moderately_relevant")]) is W  # a cap never raises
    assert apply_caps(H, [hit("set:irrelevant"), hit("cap:moderately_relevant")]) is IRR
    assert apply_caps(W, [hit("set:moderately_relevant")]) is M  # set forces, both ways
    assert apply_caps(H, [hit("emphasise:brand")]) is H


def test_rules_are_data(tmp_path: Path) -> None:
    """A rule added to the seed is evaluated without code changes."""
    from importlib import resources

    data = yaml.safe_load(resources.files("armed.knowledge.seed").joinpath("kb.yaml").read_text(encoding="utf-8"))
    data["rules"] = [
        {
            "id": "spec_differs",
            "description": {"zh": "规格不同", "en": "pack size differs"},
            "when": {"specificity": "specific", "all": [{"field": "specification", "test": "differs"}]},
            "effect": "cap:weakly_relevant",
        }
    ]
    path = tmp_path / "kb.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    kb2 = KnowledgeBase.load(path)
    q = kb2.extract("布洛芬缓释胶囊0.3g*24粒")
    hits = recall(kb2, q, kb2.extract("布洛芬缓释胶囊0.4g*24粒"), kb2.query_specificity(q, "x"))
    assert [h.id for h in hits] == ["spec_differs"]
    assert recall(kb2, q, kb2.extract("布洛芬缓释胶囊0.3g*24粒"), "specific") == []


@pytest.mark.parametrize("specificity", ["generic", "specific"])
def test_empty_entities_fire_nothing_decisive(kb: KnowledgeBase, specificity: str) -> None:
    hits = recall(kb, Entities(), Entities(), specificity)  # type: ignore[arg-type]
    assert apply_caps(H, hits) is H
