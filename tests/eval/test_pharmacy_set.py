"""The pharmacy benchmark (armed/eval/pharmacy.py): its generator on a tiny knowledge folder written here, the
hand-written part, the `pharmacy` adapter of `armed bench`, per-type reporting, the student's refusal of report
rows, and one build from the real public data when it is present."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from armed.domain import BenchmarkLevel as B
from armed.domain import RelevanceLevel
from armed.errors import InputError
from armed.eval import metrics as M
from armed.eval import pharmacy as P
from armed.eval.datasets import BenchItem, load_dataset
from armed.guideline import CLAUSE, PRODUCT_CATEGORIES, QUERY_TYPES
from armed.student import data as D
from tests.knowledge.conftest import REPO_ROOT, shared_knowledge_dir

DRUGS = ["布洛芬缓释胶囊", "布洛芬混悬液", "布洛芬缓释片", "布洛芬片", "阿卡波糖片", "盐酸二甲双胍片",
         "玻璃酸钠滴眼液", "苯磺酸氨氯地平片", "艾附暖宫丸", "艾附暖宫颗粒", "当归片", "氨酚黄那敏颗粒",
         "小儿氨酚黄那敏颗粒", "益母草颗粒", "氯雷他定片"]
PRODUCERS = ["先声药业布洛芬缓释胶囊", "石药集团布洛芬缓释胶囊", "仁和布洛芬片", "华润双鹤盐酸二甲双胍片",
             "石药集团盐酸二甲双胍片", "同仁堂艾附暖宫丸", "九芝堂艾附暖宫丸", "康芝小儿氨酚黄那敏颗粒",
             "以岭氨酚黄那敏颗粒", "修正益母草颗粒", "太极当归片", "扬子江苯磺酸氨氯地平片", "恒瑞布洛芬混悬液",
             "远大艾附暖宫颗粒", "海南普利氯雷他定片"]
ORIGINATORS = {
    "03-糖尿病.json": [("拜耳医药保健有限公司", "拜耳", "阿卡波糖片", "拜唐苹"),
                     ("默克制药（江苏）有限公司", "默克", "盐酸二甲双胍片", "格华止")],
    "04-高血压.json": [("晖致医药有限公司", "晖致", "苯磺酸氨氯地平片", "络活喜")],
    "15-疼痛缓解.json": [("中美天津史克制药有限公司", "中美史克", "布洛芬缓释胶囊", "芬必得")],
    "18-眼科用药.json": [("参天制药（中国）有限公司", "参天制药", "玻璃酸钠滴眼液", "爱丽")],
    "24-过敏性疾病.json": [("拜耳医药保健有限公司", "拜耳", "氯雷他定片", "开瑞坦")],
}
INSERT_TEXT = ("【药品商品名称】 同仁堂艾附暖宫丸 6g*10袋 【药品名称】 艾附暖宫丸 "
               "【成分】 艾叶（炭）、香附（醋灸）、吴茱萸、肉桂、当归、川芎、白芍、地黄、黄芪、续断。辅料为蜂蜜。 "
               "【规格】 每袋装6g 【功能主治】 理气养血，暖宫调经。"
               "用于血虚气滞、下焦虚寒所致的月经不调、痛经，症见行经后错、经量少。 "
               "【制药公司】 北京同仁堂股份有限公司同仁堂制药厂")


def _ann(text: str, entity: str, label: str) -> dict:
    start = text.index(entity)
    return {"label": label, "start_offset": start, "end_offset": start + len(entity), "entity": entity}


def write_knowledge(root: Path) -> Path:
    """A tiny knowledge folder in the public data's layout (self-written rows)."""
    dd = root / "drug-dicts"
    dd.mkdir(parents=True)
    (dd / "drug.txt").write_text("\n".join(DRUGS) + "\n", encoding="utf-8")
    (dd / "producer.txt").write_text("\n".join(PRODUCERS) + "\n", encoding="utf-8")
    (dd / "symptom.txt").write_text("痛经\n月经不调\n", encoding="utf-8")
    od = root / "originator-drugs"
    od.mkdir()
    for name, rows in ORIGINATORS.items():
        data = [{"company_name": c, "company_abbreviation": a, "drug_generic_id": f"{name}-{i}",
                 "drug_generic_name": g, "trade_name": t} for i, (c, a, g, t) in enumerate(rows)]
        (od / name).write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    di = root / "drug-inserts"
    di.mkdir()
    annotations = [_ann(INSERT_TEXT, e, "药物成分") for e in ("艾叶", "香附", "吴茱萸", "肉桂", "当归", "川芎", "白芍",
                                                             "地黄", "黄芪", "续断", "蜂蜜")]
    annotations += [_ann(INSERT_TEXT, "月经不调", "症状"), _ann(INSERT_TEXT, "痛经", "症状"),
                    _ann(INSERT_TEXT, "血虚气滞", "证候")]
    (di / "val.json").write_text(json.dumps([{"id": 1, "text": INSERT_TEXT, "annotations": annotations}],
                                            ensure_ascii=False), encoding="utf-8")
    return root


@pytest.fixture
def knowledge(tmp_path: Path) -> Path:
    return write_knowledge(tmp_path / "knowledge")


@pytest.fixture
def built(knowledge: Path) -> P.Built:
    return P.build(knowledge, seed=0, hand=None, command="test")


# ------------------------------------------------------------------------------------------------ the generator

def test_every_row_is_its_clauses_level_and_well_formed(built: P.Built) -> None:
    rows = built.rows
    assert len(rows) > 40
    for r in rows:
        assert set(P.ROW_FIELDS) <= set(r), r
        assert r["label"] == CLAUSE[r["clause"]].level.value, r
        assert r["query_type"] in QUERY_TYPES and r["product_category"] in PRODUCT_CATEGORIES
        assert r["source"].startswith("generated:")
        assert r["query"].strip() and r["product"]["name"].strip() and r["common_name"].strip()
        assert r["query"] != r["product"]["name"] or r["clause"].startswith("exact")
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["id"].startswith("ph-") for r in rows)


def test_split_is_by_common_name(built: P.Built) -> None:
    halves: dict[str, set[str]] = {s: set() for s in P.SPLITS}
    for r in built.rows:
        assert r["split"] == P.split_of(r["common_name"])
        halves[r["split"]].add(r["common_name"])
    assert not halves["tune"] & halves["report"]
    # the documented rule, written out
    import hashlib

    key = "布洛芬"
    assert P.split_of(key) == ("tune", "report")[int(hashlib.sha1(b"pharmacy:" + key.encode()).hexdigest(), 16) % 2]


def test_constructions_on_the_tiny_set(built: P.Built, knowledge: Path) -> None:
    by = Counter((r["query_type"], r["clause"]) for r in built.rows)
    for key in [("generic_name", "exact.generic"), ("trade_name", "exact.trade"), ("maker_name", "exact.brand"),
                ("other_maker", "less.brand"), ("other_form", "less.form"), ("symptom", "need.met"),
                ("category", "need.met"), ("category", "irrelevant.efficacy"), ("ingredient", "less.ingredient"),
                ("cheating", "irrelevant.cheating"), ("pinyin", "exact.spelling")]:
        assert by[key] > 0, key
    gen = P.Generator(P.read_sources(knowledge), 0)
    forms = [(r["query"], r["product"]["name"]) for _, r in gen.other_form(random.Random(0))]
    # a different canonical form of the same core; 缓释片 and 片 are one form, never an other_form pair
    assert any(q == "布洛芬缓释胶囊" and "混悬液" in name for q, name in forms)
    assert any(q == "艾附暖宫丸" and "颗粒" in name for q, name in forms)
    assert not any(q in ("布洛芬片", "布洛芬缓释片") and ("缓释片" in name or "布洛芬片" in name) for q, name in forms)
    trade = [r for r in built.rows if r["clause"] == "exact.trade"]
    assert any(r["query"] == "芬必得" and "芬必得" in r["product"]["name"] for r in trade)
    for r in built.rows:
        if r["clause"] == "less.brand" and r["query"] == "芬必得":
            assert "芬必得" not in r["product"]["name"] and "中美" not in r["product"]["name"]
        if r["clause"] == "irrelevant.cheating":
            assert any(w in r["product"]["name"] for w in ("同款", "平替", "代替", "替代"))
    symptoms = [r for r in built.rows if r["query_type"] == "symptom" and r["clause"] == "need.met"]
    assert {r["query"] for r in symptoms} <= {"月经不调", "痛经"}
    ingredient = [r for r in built.rows if r["clause"] == "less.ingredient"]
    assert ingredient and all(r["query"] not in r["product"]["name"] and r["query"] != "蜂蜜" for r in ingredient)


def test_typo_and_pinyin_spell_the_name() -> None:
    assert P.confident_pinyin("感冒灵") == ["gan", "mao", "ling"]
    assert P.confident_pinyin("芬必得") is None  # fen bi dei in context, de alone: not confident, left out


def test_names_makers_and_areas() -> None:
    assert P.core_of("布洛芬缓释胶囊") == "布洛芬"
    assert P.parse_form("布洛芬缓释片").family == P.parse_form("布洛芬片").family == "片"  # type: ignore[union-attr]
    assert P.common_name("盐酸二甲双胍缓释片") == "二甲双胍"
    assert P.common_name("双氯芬酸钠缓释胶囊") == "双氯芬酸"
    assert P.common_name("氯化钠滴眼液") == "氯化钠"
    assert not P.usable_name("注射用头孢曲松钠") and not P.usable_name("多维元素片(29)")
    assert P.maker_short("北京同仁堂股份有限公司同仁堂制药厂") == "同仁堂"
    assert P.maker_short("先声药业") == "先声"
    assert P.same_maker(P.Maker("同仁堂", "北京同仁堂"), P.Maker("同仁", "同仁"))
    assert not P.same_maker(P.Maker("修正", "修正药业"), P.Maker("德济", "德济"))
    for a, b in P.DISJOINT_AREA_PAIRS:
        assert P.areas_disjoint({a}, {b}) and P.areas_disjoint({b}, {a})
    assert not P.areas_disjoint({"妇科"}, {"泌尿"}) and not P.areas_disjoint({"糖尿病"}, set())
    assert P.Product("苯磺酸美洛加巴林片", groups={"糖尿病"}).areas() is None  # its group does not say its use
    assert P.Product("阿卡波糖片", groups={"糖尿病", "热门药品"}).areas() == {"糖尿病"}
    assert P.tidy_spec("15g*10s", "袋") == ["15g*10袋"] and P.tidy_spec("每粒装0.4g") == ["0.4g*24粒", "0.4g*36粒"]
    assert P.tidy_spec("大蜜丸:每丸重9g;小蜜丸:每45丸重9g") == []


def test_deterministic_for_a_seed(knowledge: Path, tmp_path: Path) -> None:
    a = P.build(knowledge, seed=0, hand=None, command="x")
    b = P.build(knowledge, seed=0, hand=None, command="x")
    assert a.rows == b.rows and a.manifest == b.manifest
    pa, pb = P.write(a, tmp_path / "a"), P.write(b, tmp_path / "b")
    for key in ("tune", "report", "manifest"):
        assert pa[key].read_bytes() == pb[key].read_bytes()
    assert P.build(knowledge, seed=1, hand=None).rows != a.rows


def test_manifest_counts_and_sources(built: P.Built, knowledge: Path) -> None:
    m = built.manifest
    assert m["generator_version"] == P.GENERATOR_VERSION and m["seed"] == 0 and m["command"] == "test"
    assert sum(c["n"] for c in m["counts"]) == len(built.rows) == m["pairs"]
    assert Counter((c["split"], c["query_type"], c["label"], c["clause"], c["product_category"])
                   for c in m["counts"] for _ in range(c["n"])) == \
        Counter((r["split"], r["query_type"], r["label"], r["clause"], r["product_category"]) for r in built.rows)
    for s in P.SPLITS:
        mine = [r for r in built.rows if r["split"] == s]
        assert m["halves"][s]["pairs"] == len(mine)
        assert m["halves"][s]["common_names"] == len({r["common_name"] for r in mine})
    import hashlib

    files = m["source_files_sha256"]
    assert files["knowledge/drug-dicts/drug.txt"] == hashlib.sha256(
        (knowledge / "drug-dicts" / "drug.txt").read_bytes()).hexdigest()
    assert {"knowledge/drug-dicts/producer.txt", "knowledge/drug-inserts/val.json",
            "knowledge/originator-drugs/03-糖尿病.json"} <= set(files)


def test_cli_writes_the_three_files(knowledge: Path, tmp_path: Path) -> None:
    from armed.cli import main

    out = tmp_path / "gen"
    assert main(["eval", "pharmacy", "--knowledge", str(knowledge), "--out", str(out), "--seed", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["command"].startswith("armed ") or manifest["command"]
    assert "hand/hand.jsonl" in manifest["source_files_sha256"]
    n = sum(1 for s in P.SPLITS for _ in (out / f"{s}.jsonl").read_text(encoding="utf-8").splitlines())
    assert n == manifest["pairs"]
    assert main(["eval", "pharmacy", "--knowledge", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "/benchmarks/pharmacy/generated/" in (REPO_ROOT / ".gitignore").read_text(encoding="utf-8")


# -------------------------------------------------------------------------------------------------- hand part

def test_hand_rows_are_valid_and_split_like_generated(knowledge: Path) -> None:
    hand = P.read_hand(P.HAND_FILE)
    assert 250 <= len(hand) <= 420
    assert len({r["id"] for r in hand}) == len(hand)
    for r in hand:
        assert r["label"] == CLAUSE[r["clause"]].level.value and r["note"]
        assert (r["query"], r["product"]["name"]) not in P.RESERVED_PAIRS
    built = P.build(knowledge, hand=P.HAND_FILE)
    rows = [r for r in built.rows if r["source"] == "hand"]
    assert len(rows) == len(hand) and all(r["split"] == P.split_of(r["common_name"]) for r in rows)
    # the clauses only the hand part holds are in both halves
    for clause in ("less.spec", "less.related_use", "irrelevant.population"):
        assert {r["split"] for r in rows if r["clause"] == clause} == set(P.SPLITS), clause


def _unit_test_pairs() -> set[tuple[str, str]]:
    """The pairs the pipeline's clause tests own (tests/pipeline/test_guideline.py says none is in the benchmark)."""
    from tests.pipeline import test_guideline

    return {(q, p) for _, q, p in getattr(test_guideline, "CASES", [])} | set(P.RESERVED_PAIRS)


def test_no_unit_test_pair_is_in_the_hand_part() -> None:
    owned = _unit_test_pairs()
    assert len(owned) > len(P.RESERVED_PAIRS)
    assert not [r["id"] for r in P.read_hand(P.HAND_FILE) if (r["query"], r["product"]["name"]) in owned]


def test_hand_rows_are_checked(tmp_path: Path) -> None:
    row = {"id": "h1", "query": "血压计", "product": {"name": "欧姆龙 电子血压计"}, "label": "irrelevant",
           "clause": "exact.generic", "query_type": "device", "product_category": "医疗器械", "common_name": "血压计",
           "note": "x"}
    bad = tmp_path / "hand.jsonl"
    bad.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        P.read_hand(bad)


# -------------------------------------------------------------------------------------- the benchmark adapter

def _row(**over: object) -> dict:
    row = {"id": "ph-000001", "query": "修正消栓通络片", "product": {"name": "[德济]消栓通络片"},
           "label": "moderately_relevant", "clause": "less.brand", "query_type": "other_maker",
           "product_category": "中西药品", "common_name": "消栓通络", "split": "tune", "source": "hand"}
    row.update(over)
    return row


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_adapter_maps_four_levels_and_keeps_the_kind(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.jsonl", [
        _row(),
        _row(id="ph-000002", label="weakly_relevant", clause="less.ingredient", query_type="ingredient"),
        _row(id="ph-000003", label="highly_relevant", clause="exact.brand", query_type="maker_name",
             product={"name": "【修正】消栓通络片"}),
        _row(id="ph-000004", label="irrelevant", clause="irrelevant.cheating", query_type="cheating"),
    ])
    ds = load_dataset(f"pharmacy:{p}")
    assert [it.label for it in ds.items] == [B.less, B.less, B.highly, B.irrelevant]
    it = ds.items[0]
    assert (it.query_type, it.clause, it.category, it.raw_label) == ("other_maker", "less.brand", "中西药品",
                                                                     "moderately_relevant")
    assert ds.mapping["weakly_relevant"] == "less_relevant" and "clause" in ds.mapping_text


@pytest.mark.parametrize(("rows", "field"), [
    ([_row(), _row(id="b", label="less_relevant")], "line 2.label"),
    ([_row(clause="less.nothing")], "line 1.clause"),
    ([_row(label="highly_relevant")], "line 1.label"),  # not the clause's level
    ([{k: v for k, v in _row().items() if k != "query_type"}], "line 1.query_type"),
    ([{k: v for k, v in _row().items() if k != "product"}], "line 1.product"),
    ([_row(split="dev")], "line 1.split"),
    ([_row(product_category="玩具")], "line 1.product_category"),
])
def test_adapter_errors_name_line_and_field(tmp_path: Path, rows: list[dict], field: str) -> None:
    with pytest.raises(InputError) as err:
        load_dataset(f"pharmacy:{_write(tmp_path / 'bad.jsonl', rows)}")
    assert err.value.field == field


# --------------------------------------------------------------------------------------- per-type reporting

def test_per_group_figures_need_support() -> None:
    gold = [B.highly] * 6 + [B.irrelevant] * 2
    pred = [B.highly] * 5 + [None] + [B.highly, B.irrelevant]
    out = M.per_group(gold, pred, ["symptom"] * 8)
    m = out["symptom"]
    assert m["n"] == 8 and m["accuracy_all"] == pytest.approx(6 / 8) and m["failed"] == 1
    assert m["highly_recall"] == pytest.approx(5 / 6)
    assert m["irrelevant_recall"] is None and m["macro_f1"] is None  # two irrelevant items: too few to say


def test_bench_adds_type_tables_only_when_items_carry_them() -> None:
    from armed.eval.bench import per_type

    plain = [BenchItem("a", "q", {"name": "p"}, B.highly), BenchItem("b", "q", {"name": "p"}, B.less)]
    assert per_type(plain, [B.highly, B.less]) == {}
    typed = [BenchItem("a", "q", {"name": "p"}, B.highly, query_type="typo", clause="exact.spelling"),
             BenchItem("b", "q", {"name": "p"}, B.less, query_type="other_form", clause="less.form")]
    out = per_type(typed, [B.highly, B.irrelevant])
    assert out["per_query_type"]["typo"]["accuracy_all"] == 1.0
    assert out["per_clause"]["less.form"]["accuracy_all"] == 0.0


# ------------------------------------------------------------------------------------------ student training

def test_distill_reads_the_tune_half_and_refuses_report_rows(tmp_path: Path) -> None:
    tune = _write(tmp_path / "tune.jsonl", [_row(), _row(id="ph-000002", label="highly_relevant",
                                                          clause="exact.brand", query_type="maker_name")])
    pairs = D.load_human(f"pharmacy:{tune}")
    assert [p.target for p in pairs] == [D.one_hot(RelevanceLevel.moderately), D.one_hot(RelevanceLevel.highly)]
    assert {p.source for p in pairs} == {"human:pharmacy"} and {p.kind for p in pairs} == {"title"}
    mixed = _write(tmp_path / "all.jsonl", [_row(), _row(id="ph-000009", split="report")])
    with pytest.raises(InputError) as err:
        D.load_human(f"pharmacy:{mixed}")
    assert err.value.field == "--train" and "report" in err.value.message
    with pytest.raises(InputError, match="--train"):
        D.load_human(f"pharmacy:{_write(tmp_path / 'bad.jsonl', [_row(clause='nope')])}")


# ----------------------------------------------------------------------------------------- the real public data

def test_real_build_covers_every_type_and_clause_in_both_halves(tmp_path: Path) -> None:
    knowledge = shared_knowledge_dir()
    if knowledge is None:
        pytest.skip("public knowledge data not found (set ARMED_SHARED_DATA or provide ../shared/data/knowledge)")
    built = P.build(knowledge, seed=0)
    paths = P.write(built, tmp_path / "gen")
    rows = [json.loads(line) for s in P.SPLITS for line in paths[s].read_text(encoding="utf-8").splitlines()]
    by_id = sorted(built.rows, key=lambda r: r["id"])
    assert sorted(rows, key=lambda r: r["id"]) == by_id  # every built row written, as built (files go by split)
    generated = [r for r in rows if r["source"] != "hand"]
    assert 2400 <= len(generated) <= 3200
    for s in P.SPLITS:
        half = [r for r in rows if r["split"] == s]
        assert {r["query_type"] for r in half} == set(QUERY_TYPES), s
        assert {r["clause"] for r in half} == set(CLAUSE), s
    per_type = Counter(r["query_type"] for r in rows)
    assert all(n >= 60 for t, n in per_type.items() if t not in ("device", "population")), per_type
    tune_names = {r["common_name"] for r in rows if r["split"] == "tune"}
    assert not tune_names & {r["common_name"] for r in rows if r["split"] == "report"}
    assert all(r["label"] == CLAUSE[r["clause"]].level.value for r in rows)
    manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
    assert Counter((c["split"], c["query_type"], c["label"], c["clause"], c["product_category"])
                   for c in manifest["counts"] for _ in range(c["n"])) == \
        Counter((r["split"], r["query_type"], r["label"], r["clause"], r["product_category"]) for r in rows)
    for s in P.SPLITS:
        assert manifest["halves"][s]["pairs"] == sum(r["split"] == s for r in rows)
    owned = _unit_test_pairs()
    assert not [r["id"] for r in rows if (r["query"], r["product"]["name"]) in owned]
    labels = Counter(r["label"] for r in rows)
    assert labels["highly_relevant"] > len(rows) / 2  # mostly highly relevant, as the method's benchmark is
