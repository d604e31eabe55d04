"""`armed eval ner`: the split, brat reading, offsets of armed's spans, and the scores on the real held-out part."""

from __future__ import annotations

from pathlib import Path

import pytest

from armed import cli
from armed.eval.ner import TYPE_MAP, entity_spans, evaluate, read_brat
from armed.knowledge import KnowledgeBase
from armed.knowledge.splits import tcm_split
from tests.knowledge.conftest import shared_knowledge_dir


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


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
    # Measured with the seed alone (README): dosage form F1 0.59, population 0.55; a regression shows here.
    assert f["dosage_form"]["f1"] > 0.5 and f["population"]["f1"] > 0.45
