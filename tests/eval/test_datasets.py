"""Adapters and their label mappings, seeded sampling, splits and the HARD subset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from armed.domain import BenchmarkLevel as B
from armed.errors import InputError
from armed.eval.datasets import derive_category, hard_subset, load_dataset, split_ids
from tests.eval.conftest import shared_data


def _kuake(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_kuake_qtr_mapping(tmp_path: Path) -> None:
    p = _kuake(tmp_path / "qtr.json", [
        {"id": f"s{i}", "query": "感冒", "title": f"感冒怎么办{i}", "label": str(lab)}
        for i, lab in enumerate([3, 2, 1, 0])
    ])
    ds = load_dataset(f"kuake-qtr:{p}")
    assert [it.label for it in ds.items] == [B.highly, B.less, B.less, B.irrelevant]
    assert ds.items[0].product == {"name": "感冒怎么办0"}
    assert ds.mapping == {"3": "highly_relevant", "2": "less_relevant", "1": "less_relevant", "0": "irrelevant"}


def test_kuake_qqr_mapping(tmp_path: Path) -> None:
    p = _kuake(tmp_path / "qqr.json", [
        {"id": f"s{i}", "query1": "头痛", "query2": f"头疼{i}", "label": str(lab)} for i, lab in enumerate([2, 1, 0])
    ])
    ds = load_dataset(f"kuake-qqr:{p}")
    assert [it.label for it in ds.items] == [B.highly, B.less, B.irrelevant]
    with pytest.raises(InputError):
        load_dataset(f"kuake-qqr:{_kuake(tmp_path / 'bad.json', [{'query1': 'a', 'query2': 'b', 'label': '3'}])}")


def test_armed_format(armed_set: Path, tmp_path: Path) -> None:
    ds = load_dataset(f"armed:{armed_set}")
    assert len(ds.items) == 18 and ds.items[0].id == "r0" and ds.items[0].label is B.highly
    four = tmp_path / "four.jsonl"
    four.write_text(json.dumps({"query": "q", "product_name": "n", "label": "weakly_relevant", "category": "c"}) + "\n")
    item = load_dataset(f"armed:{four}").items[0]
    assert item.label is B.less and item.category == "c" and item.id == "line:1"
    with pytest.raises(InputError, match="FORMAT:PATH"):
        load_dataset(f"nope:{four}")


def test_seeded_sample_and_split(armed_set: Path) -> None:
    a = load_dataset(f"armed:{armed_set}", limit=7, seed=3)
    b = load_dataset(f"armed:{armed_set}", limit=7, seed=3)
    c = load_dataset(f"armed:{armed_set}", limit=7, seed=4)
    assert [i.id for i in a.items] == [i.id for i in b.items] != [i.id for i in c.items]
    ids = [f"x{i}" for i in range(100)]
    tune, test = split_ids(ids, 0.5, seed=1)
    assert len(tune) == 50 and not tune & test and tune | test == set(ids)
    assert split_ids(list(reversed(ids)), 0.5, seed=1) == (tune, test)


def test_hard_subset_balanced_and_reproducible(armed_set: Path) -> None:
    items = load_dataset(f"armed:{armed_set}").items
    hard = hard_subset(items, seed=0)
    assert hard == hard_subset(items, seed=0)
    by_id = {it.id: it for it in items}
    counts = Counter(by_id[h].label for h in hard)
    assert len(set(counts.values())) == 1 and len(counts) == 3
    q_med = sorted(len(it.query) for it in items)[len(items) // 2]
    assert all(len(by_id[h].query) <= q_med for h in hard)


def test_category_from_kb(kb) -> None:
    from armed.eval.datasets import BenchItem

    assert derive_category(kb, BenchItem("a", "避孕套", {"name": "x"}, B.highly)) != "unknown"
    assert derive_category(kb, BenchItem("b", "今天天气", {"name": "x"}, B.highly)) == "unknown"
    assert derive_category(kb, BenchItem("c", "x", {"name": "x"}, B.highly, category="感冒用药")) == "感冒用药"


def test_real_dev_sets_load() -> None:
    d = shared_data()
    if d is None:
        pytest.skip("../shared/data/eval not found (set ARMED_SHARED_DATA): the public dev sets are not here")
    qtr = load_dataset(f"kuake-qtr:{d / 'kuake-qtr-dev.json'}")
    assert len(qtr.items) == 2913
    assert Counter(i.raw_label for i in qtr.items) == {"3": 1113, "2": 653, "1": 652, "0": 495}
    assert Counter(i.label for i in qtr.items) == {B.highly: 1113, B.less: 1305, B.irrelevant: 495}
    qqr = load_dataset(f"kuake-qqr:{d / 'kuake-qqr-dev.json'}")
    assert Counter(i.label for i in qqr.items) == {B.highly: 334, B.less: 260, B.irrelevant: 1006}
