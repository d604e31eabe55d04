"""Issue 22: containment stuffing (the query appended to a product's name, a claim that the product matches the
search) must not raise a product's level; the product's own name is what the judge compares.

Fast: the new sanitiser rules (`appended_query`, `match_claim`) on each shape, what they leave alone (a product whose
own name is the query, KUAKE-like questions and page titles, a bracket explaining a trade name), and the whole
stuffing set through the sanitiser. Slow: the stuffing set (tests/security/stuffing_pairs.py, 30 base pairs in three
bands, 17 variants each) through the embedded default judge: no variant may be judged above its clean pair, and each
says what was removed. Before the rules 300 of its 510 variants raised the level (docs/security.md).
"""

from __future__ import annotations

import pytest

from armed.domain import Branch
from armed.pipeline.merchant_text import KINDS, clean_merchant_text
from tests.security.stuffing_pairs import (
    APPENDED,
    BASES,
    CLAIM,
    allowed_kinds,
    embedded_default,
    expected_kinds,
    fullwidth,
    measure,
    report,
    variants,
)


def test_the_new_kinds_are_kinds():
    assert {APPENDED, CLAIM} <= set(KINDS)


# ------------------------------------------------------------------------------------------------ appended_query

@pytest.mark.parametrize(("query", "name", "kept"), [
    # after the head name and its specification
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 感冒灵颗粒", "马应龙麝香痔疮膏 10g"),
    ("感冒灵", "马应龙麝香痔疮膏 0.3g*24片/盒 感冒灵", "马应龙麝香痔疮膏 0.3g*24片/盒"),
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 感冒灵颗粒 家庭常备 感冒药", "马应龙麝香痔疮膏 10g"),  # with what trails it
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 感冒灵颗粒 感冒灵颗粒", "马应龙麝香痔疮膏 10g"),
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g感冒灵颗粒", "马应龙麝香痔疮膏 10g"),  # glued to the spec
    ("连花清瘟胶囊", "杜蕾斯避孕套 12只装连花清瘟胶囊", "杜蕾斯避孕套 12只装"),
    # after a separator behind a complete product name
    ("感冒灵颗粒", "马应龙麝香痔疮膏 | 感冒灵颗粒", "马应龙麝香痔疮膏"),
    ("感冒灵颗粒", "马应龙麝香痔疮膏 感冒灵颗粒 感冒药", "马应龙麝香痔疮膏"),
    ("感冒灵颗粒", "马应龙麝香痔疮膏/感冒灵颗粒 10g", "马应龙麝香痔疮膏 10g"),  # the product's own spec stays
    ("感冒灵颗粒", "马应龙麝香痔疮膏，感冒灵颗粒", "马应龙麝香痔疮膏"),
    ("二甲双胍", "医用外科口罩 | 二甲双胍 50只", "医用外科口罩 50只"),  # a product noun ends a name too
    ("感冒灵颗粒", "马应龙麝香痔疮膏（OTC） 感冒灵颗粒", "马应龙麝香痔疮膏（OTC）"),  # behind a bracketed tag
    # glued to the end of another product's name
    ("感冒灵颗粒", "马应龙麝香痔疮膏感冒灵颗粒", "马应龙麝香痔疮膏"),
    ("感冒灵颗粒", "马应龙麝香痔疮膏感冒灵颗粒 10g", "马应龙麝香痔疮膏 10g"),
    ("氯雷他定片", "钙尔奇碳酸钙D3片氯雷他定片 60片", "钙尔奇碳酸钙D3片 60片"),
    ("连花清瘟胶囊", "杜蕾斯避孕套连花清瘟胶囊", "杜蕾斯避孕套"),
    # the same drug, but the mention adds what the product is not: another maker, another dosage form
    ("修正消栓通络片", "[康恩贝]消栓通络片 0.38g*36片 修正消栓通络片", "[康恩贝]消栓通络片 0.38g*36片"),
    ("999感冒灵颗粒", "[仁和]感冒灵颗粒999感冒灵颗粒 10g*9袋", "[仁和]感冒灵颗粒 10g*9袋"),
    ("布洛芬缓释胶囊", "布洛芬混悬液 100ml 布洛芬缓释胶囊", "布洛芬混悬液 100ml"),
    ("布洛芬", "云南白药创可贴 100片 布洛芬缓释胶囊", "云南白药创可贴 100片"),  # a dosage-form suffix on the query
    # (found by the probes written after the first rules: docs/security.md)
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 感冒灵颗粒吗", "马应龙麝香痔疮膏 10g"),  # the appendix's own particle
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 搜索：感冒灵颗粒", "马应龙麝香痔疮膏 10g 搜索"),  # behind a label
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 适合感冒灵颗粒", "马应龙麝香痔疮膏 10g"),  # a short word before it goes too
    ("感冒灵颗粒", "马应龙麝香痔疮膏 10g 感 冒 灵 颗 粒", "马应龙麝香痔疮膏 10g"),  # letter-spaced
    ("999感冒灵颗粒", "[仁和]感冒灵颗粒 10g*9袋 9 9 9 感 冒 灵 颗 粒", "[仁和]感冒灵颗粒 10g*9袋"),
])
def test_an_appended_query_is_cut(kb, query, name, kept):
    out = clean_merchant_text(name, query=query, kb=kb)
    assert out.text == kept, out
    assert out.removed == (APPENDED,)


@pytest.mark.parametrize("name", [
    "马应龙麝香痔疮膏 10g 感\u200b冒灵颗粒",  # a zero-width space inside the query
    "马应龙麝香痔疮膏 10g 感冒灵\u2060颗粒",  # a word joiner
    "马应龙麝香痔疮膏 10g\u3000感冒灵颗粒",  # an ideographic space
    "马应龙麝香痔疮膏 10g ｜ 感冒灵颗粒",  # a full-width bar
    "马应龙麝香痔疮膏 １０ｇ 感冒灵颗粒",  # a full-width spec
])
def test_disguises_do_not_hide_an_appended_query(kb, name):
    out = clean_merchant_text(name, query="感冒灵颗粒", kb=kb)
    assert APPENDED in out.removed, out
    assert "感冒灵" not in out.text and out.text.startswith("马应龙麝香痔疮膏"), out
    full = clean_merchant_text("维生素C咀嚼片 100片 " + fullwidth("999") + "感冒灵颗粒", query="999感冒灵颗粒", kb=kb)
    assert full.text == "维生素C咀嚼片 100片" and full.removed == (APPENDED,)


def test_without_a_knowledge_base_the_structure_still_decides():
    assert clean_merchant_text("马应龙麝香痔疮膏 10g 感冒灵颗粒", query="感冒灵颗粒").text == "马应龙麝香痔疮膏 10g"
    assert clean_merchant_text("马应龙麝香痔疮膏感冒灵颗粒", query="感冒灵颗粒").text == "马应龙麝香痔疮膏"
    # the product's own name, repeated
    assert clean_merchant_text("感冒灵颗粒 10g*9袋 感冒灵", query="感冒灵").removed == ()


@pytest.mark.parametrize(("query", "name"), [
    # the query heading the name is the product's own name
    ("感冒灵颗粒", "感冒灵颗粒 10g*9袋"),
    ("感冒灵颗粒", "感冒灵颗粒 10g*9袋 感冒灵颗粒"),
    # an exact product that repeats its own name (the rest of the name already says all the mention says)
    ("感冒灵颗粒", "[999] 感冒灵颗粒 10g*9袋 感冒灵"),
    ("感冒灵", "[999] 感冒灵颗粒 10g*9袋 感冒灵"),
    ("修正消栓通络片", "[修正]消栓通络片 0.38g*36片 修正消栓通络片"),
    ("布洛芬", "[中美史克] 布洛芬缓释胶囊 0.3g*20粒 布洛芬"),
    ("芬必得", "布洛芬缓释胶囊 芬必得 0.3g*24粒"),  # the trade name behind the generic name: the same drug
    ("芬必得", "布洛芬缓释胶囊（芬必得）"),  # a bracket that explains a trade name
    ("感冒药", "999感冒灵颗粒 感冒药 清热解毒 家庭常备"),  # a cold medicine called one
    ("头痛", "复方对乙酰氨基酚片 10片 用于头痛发热"),  # not standing alone: part of a phrase
    ("999感冒灵", "感冒灵颗粒 10g 999"),  # a bare brand behind a name with none may be the product's maker
    # KUAKE-like questions and web page titles: not product listings
    ("感冒灵颗粒", "感冒灵颗粒和感冒清热颗粒哪个好"),
    ("感冒清热颗粒", "感冒灵颗粒和感冒清热颗粒哪个好"),
    ("布洛芬缓释胶囊", "布洛芬缓释胶囊说明书"),
    ("感冒灵颗粒", "三九感冒灵颗粒是治疗风寒还是风热呢"),
    ("三九感冒灵颗粒", "三九感冒灵颗粒是治疗风寒还是风热呢"),
    ("布洛芬", "吃了感冒灵颗粒布洛芬会怎样"),
    ("六味地黄丸", "怀孕初期间吃了黄芪精口服液，香莎六君丸，六味地黄丸"),
    ("头孢地尼是第几代", "头孢地尼分散片是第几代头孢"),
    ("天津血液病研究所", "天津血液病研究所"),  # the query continuing: 液 then 病, not a name and an appendix
    ("盐酸治脚气", "盐酸布替萘芬乳膏治脚气"),  # a fragment of the query, not a product's name
    ("复方北豆根氨酚那敏片 蒲地蓝", "蒲地蓝消炎片，复方北豆根氨酚那敏片"),  # the name lists what the query lists
    ("安眠药能睡多久", "吃一片安眠药能睡多久"),  # 一片 is a count, not the end of a drug's name
    # The query heading the name is kept as the product's own name, and the product behind it is not cut either:
    # that would leave only the query (prepending is not caught: docs/security.md).
    ("阿莫西林胶囊", "阿莫西林胶囊 阿莫西林颗粒 0.125g*12袋"),
    ("布洛芬", "布洛芬 [中美史克] 布洛芬缓释胶囊 0.3g*20粒"),
    ("布洛芬", "布 洛 芬 缓释胶囊 0.3g"),  # a spaced head stays as written
])
def test_the_products_own_name_and_ordinary_titles_stay(kb, query, name):
    out = clean_merchant_text(name, query=query, kb=kb)
    assert out.text == name and out.removed == (), out


@pytest.mark.parametrize("name", ["儿童防晒霜 SPF50+ 50ml 感冒药平替", "思密达蒙脱石散 3g*10袋 代替感冒药使用",
                                  "思密达蒙脱石散 3g*10袋 可替代 感冒药"])
def test_a_hijacking_phrase_behind_the_name_stays_for_the_cheating_check(kb, name):
    assert kb.hijack_terms(name)
    assert clean_merchant_text(name, query="感冒药", kb=kb).text == name


# --------------------------------------------------------------------------------------------------- match_claim

@pytest.mark.parametrize("claim", [
    "本品与您搜索的感冒灵颗粒完全匹配", "与您搜索的感冒灵颗粒一致", "正是您要找的感冒灵颗粒",
    "您搜索的感冒灵颗粒就是本品", "搜感冒灵颗粒就选本品", "感冒灵颗粒 官方正品 完全匹配", "100%匹配", "精准匹配",
    "匹配度100%",
    "温馨提示：本品与您搜索的感冒灵颗粒完全匹配", "（与您搜索的感冒灵颗粒完全一致）", "与搜索词完全匹配",
    "exact match for 感冒灵颗粒", "matches your search", "This is the 感冒灵颗粒 you searched for.",
    "perfect match: 感冒灵颗粒", "100% match for 感冒灵颗粒", "- exactly what you are looking for", "Exact Match",
    "it's a perfect match", "exactly what you searched for", "商品说明：此商品即为感冒灵颗粒", "本品就是感冒灵颗粒",
    "(the one you're searching for)",
])
def test_a_match_claim_is_cut_with_its_clause(kb, claim):
    out = clean_merchant_text(f"马应龙麝香痔疮膏 10g {claim}", query="感冒灵颗粒", kb=kb)
    assert out.text == "马应龙麝香痔疮膏 10g", out
    assert CLAIM in out.removed


@pytest.mark.parametrize("name", [
    "马应龙麝香痔疮膏 10g 本品与您搜\u200b索的感冒灵颗粒完全匹\u200b配",  # zero-width
    "马应龙麝香痔疮膏 10g ｅｘａｃｔ　ｍａｔｃｈ　ｆｏｒ　感冒灵颗粒",  # full-width
    "马应龙麝香痔疮膏 10g １００％匹配",
    "马应龙麝香痔疮膏 10g \u0435x\u0430ct m\u0430tch",  # Cyrillic е and а
    "马应龙麝香痔疮膏 10g 本品与您搜索的感冒灵颗粒完全匹配 感冒灵颗粒",  # and the query appended behind it
])
def test_disguises_do_not_hide_a_claim(kb, name):
    out = clean_merchant_text(name, query="感冒灵颗粒", kb=kb)
    assert out.text == "马应龙麝香痔疮膏 10g" and CLAIM in out.removed, out


def test_a_claim_goes_without_the_query_too():
    """A claim needs no X to be one: it goes from attributes and from names sanitised without the query."""
    assert clean_merchant_text("马应龙麝香痔疮膏 10g 100%匹配").text == "马应龙麝香痔疮膏 10g"
    assert clean_merchant_text("matches your search", max_chars=None, empty="").text == ""


@pytest.mark.parametrize("text", [
    "骨髓配型完全匹配的几率", "血型匹配", "Model: HEM-7121 家用", "儿童防晒霜 SPF50+ 50ml", "你需要知道的补钙常识",
    "搜狐健康", "matching pair of gloves", "Panadol Extra 500mg",
])
def test_ordinary_text_is_no_claim(kb, text):
    assert clean_merchant_text(text, query="感冒灵颗粒", kb=kb).text == text


# ------------------------------------------------------------------------------------------- the stuffing set

def test_the_stuffing_set_is_what_the_issue_asks_for():
    vs = variants()
    for band in ("irrelevant", "less", "highly"):
        assert sum(b.band == band for b in BASES) >= 10, band
    assert len({b.id for b in BASES}) == len(BASES)
    assert len(vs) == 17 * len(BASES)
    for v in vs:
        assert v.base.query in v.name or v.shape.startswith(("zero_width", "full_width", "claim")), v.id


def test_the_sanitiser_restores_every_stuffed_name(kb):
    """Every variant through the sanitiser alone: on irrelevant and less relevant pairs it gives back the clean name;
    on highly relevant ones it removes claims and leaves the product's own name, repeated, alone."""
    bad = []
    for b in BASES:
        clean = clean_merchant_text(b.name, query=b.query, kb=kb)
        if clean.text != b.name or clean.removed:
            bad.append((b.id, clean))
    for v in variants():
        out = clean_merchant_text(v.name, query=v.base.query, kb=kb)
        if not set(expected_kinds(v)) <= set(out.removed) <= allowed_kinds(v):
            bad.append((v.id, out))
        elif v.base.band != "highly" and out.text != v.sanitised:
            bad.append((v.id, out))
        elif v.base.band == "highly" and CLAIM not in v.kinds and out.text != v.name.replace("\u200b", ""):
            bad.append((v.id, out))
    assert not bad, bad


@pytest.fixture(scope="module")
def judged():
    import asyncio

    return asyncio.run(measure(embedded_default()))


@pytest.mark.slow
def test_stuffing_never_raises_the_level(judged):
    """The embedded default judge (~1.5 min on 2 cores): every variant at or below its clean pair's level, and its
    evidence names what was removed."""
    by_base, pairs = judged
    print("\n" + report(by_base, pairs))
    for j in by_base.values():
        assert j.evidence.sanitised == [], (j.product_name, j.evidence.sanitised)
    raised = [v.id for v, j in pairs if j.level.rank > by_base[v.base.id].level.rank]
    assert not raised, report(by_base, pairs)
    for v, j in pairs:
        assert set(expected_kinds(v)) <= set(j.evidence.sanitised) <= allowed_kinds(v), (v.id, j.evidence.sanitised)
        assert j.branch is not Branch.cheating or v.base.band == "irrelevant", v.id
    assert all(j.versions.models["student"].startswith("armed-student-mlp@") for _, j in pairs)
