"""`armed eval ner`: the split, brat reading, offsets of armed's spans, and the scores on the real held-out part."""

from __future__ import annotations

from pathlib import Path

import pytest

from armed import cli
from armed.eval.ner import TYPE_MAP, entity_spans, evaluate, read_brat
from armed.knowledge import KnowledgeBase
from armed.knowledge.splits import tcm_split
from tests.knowledge.conftest import shared_knowledge_dir


def test_split_is_a_stable_fifth() -> None:
    ids = [str(i) for i in range(2000)]
    held = [i for i in ids if tcm_split(i) == "heldout"]
    assert 0.17 < len(held) / len(ids) < 0.23
    assert tcm_split("0") == tcm_split("0") and {tcm_split(i) for i in ids} == {"train", "heldout"}


def _write(folder: Path, stem: str, text: str, ann: str) -> None:
    (folder / f"{stem}.txt").write_text(text, encoding="utf-8")
    (folder / f"{stem}.ann").write_text(ann, encoding="utf-8")


def test_spans_are_offsets_in_the_original_text(kb: KnowledgeBase) -> None:
    text = "　口服。儿童用消栓通络片，每次３片（０.３ｇ）。用于感冒发热。"  # full-width characters change under NFKC
    spans = {(text[s.start : s.end], s.label) for s in entity_spans(kb, text)}
    assert ("消栓通络片", "drug") in spans
    assert ("儿童", "population") in spans
    assert not any(label == "dosage_form" and surface == "片" for surface, label in spans)


def test_scores_on_a_written_corpus(tmp_path: Path, kb: KnowledgeBase) -> None:
    text = "儿童用消栓通络片，口味微苦。"
    ann = "T1\tPERSON_GROUP 0 2\t儿童\nT2\tDRUG 3 8\t消栓通络片\nT3\tDRUG_TASTE 11 13\t微苦\n"
    _write(tmp_path, "a", text, ann)
    docs = read_brat(tmp_path, None)
    r = evaluate(kb, docs)
    by_type = {row["type"]: row for row in r["types"]}
    assert by_type["PERSON_GROUP"]["recall"] == 1.0 and by_type["DRUG"]["recall"] == 1.0
    assert by_type["DRUG_TASTE"]["armed_field"] == "not extracted" and by_type["DRUG_TASTE"]["gold"] == 1
    assert set(by_type) == set(TYPE_MAP)
    assert cli.main(["eval", "ner", "--data", str(tmp_path), "--split", "all"]) == 0


def test_held_out_scores_on_the_real_corpus(kb: KnowledgeBase) -> None:
    d = shared_knowledge_dir()
    folder = d / "tcm-insert-ner" / "train" if d else None
    if folder is None or not folder.is_dir():
        pytest.skip("tcm-insert-ner not found")
    docs = read_brat(folder)
    assert 150 < len(docs) < 250 and all(tcm_split(doc.id) == "heldout" for doc in docs)
    r = evaluate(kb, docs)
    f = r["fields"]
    # Measured with the seed alone (docs/knowledge.md): dosage form F1 0.59, population 0.55; a regression shows here.
    assert f["dosage_form"]["f1"] > 0.5 and f["population"]["f1"] > 0.45


def test_drug_inserts_that_are_evaluated_inserts_are_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from armed.eval.ner import drop_leaked_inserts
    from armed.knowledge.sources import read_source

    text = "【药品名称】示例调经丸【功能主治】活血调经，用于气血两虚所致月经不调、行经量少。【规格】每丸9克"
    (tmp_path / "ner").mkdir()
    start = text.index("月经不调")
    _write(tmp_path / "ner", "7", text, f"T1\tDISEASE {start} {start + 4}\t月经不调\n")
    leaked = "【药品名称】示例调经丸\n【功能主治】活血调经，用于气血两虚所致月经不调、行经量少。\n【制药公司】某药业"
    other = "【药品名称】示例止咳糖浆\n【功能主治】清肺止咳，用于风热咳嗽、痰多色黄。\n【制药公司】某药业"
    rows = [{"id": i, "text": t, "annotations": []} for i, t in (("1", leaked), ("2", other))]
    (tmp_path / "inserts.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    docs = read_brat(tmp_path / "ner", None)
    src = read_source(f"drug-inserts:{tmp_path / 'inserts.json'}")
    kept, dropped = drop_leaked_inserts([src], docs)
    assert dropped == ["1"] and [r.id for r in kept[0].inserts] == ["2"]
    assert cli.main(["eval", "ner", "--data", str(tmp_path / "ner"), "--split", "all",
                     "--source", f"drug-inserts:{tmp_path / 'inserts.json'}"]) == 0
    assert "1 drug-inserts rows are evaluated inserts" in capsys.readouterr().err
