"""Span-level precision / recall / F1 of armed's entity extraction on the held-out tcm-insert-ner inserts.

armed's NER is the knowledge base's lexicon matching (`KnowledgeBase.extract`, which the query side and the product
side both run; the LLM NER stage only adds strings an LLM finds and is off without one). Here the same matcher runs
over each insert's text with its offsets kept (`entity_spans`), and its spans are scored against the brat
annotations of the files `tcm_split` holds out. Nothing is tuned on them: the split is a hash of the file id.

The corpus has 13 types, armed 9 fields; `TYPE_MAP` says which field answers for which type, and a type no field
answers for is reported as "not extracted", never dropped. armed's efficacy field holds efficacy, symptom, syndrome
and disease terms alike (the expert rules compare them as one), so those four types share its predictions:
precision is the field's (a prediction is right when it is exactly some gold span of the four), recall is per type.
A drug mention is armed's run of adjacent brand / common-name / dosage-form matches holding a common name
(消栓通络片 = common name + form), the way the corpus marks DRUG. Matching is exact (same start and end);
overlap scores (any shared character, same type) are given beside them.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from armed.knowledge.base import KnowledgeBase
from armed.knowledge.sources import LoadedSource, read_ner
from armed.knowledge.splits import Split

# corpus type → armed field (None: armed does not extract it)
TYPE_MAP: dict[str, str | None] = {
    "DRUG": "drug",
    "DRUG_INGREDIENT": "ingredients",
    "DRUG_DOSAGE": "dosage_form",
    "DRUG_EFFICACY": "efficacy",
    "SYMPTOM": "efficacy",
    "SYNDROME": "efficacy",
    "DISEASE": "efficacy",
    "PERSON_GROUP": "population",
    "DRUG_GROUP": "category",
    "DRUG_TASTE": None,
    "FOOD": None,
    "FOOD_GROUP": None,
    "DISEASE_GROUP": None,
}
# armed fields with no corpus type (not scored here): brand, specification, region.
UNSCORED_FIELDS = ("brand", "specification", "region")

@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    spans: tuple[Span, ...]


def read_brat(folder: Path, split: Split | None = "heldout") -> list[Doc]:
    """The brat pairs (N.txt, N.ann) of `folder` in the given part (None: all), in id order: read by the knowledge
    source loader (armed.knowledge.sources.read_ner), so the evaluation and the KB build read the corpus one way."""
    spec = f"tcm-insert-ner:{folder}@{split or 'all'}"
    loaded = read_ner(Path(f"{folder}@{split or 'all'}"), spec)
    return [Doc(d.id, d.text, tuple(Span(s.start, s.end, s.label) for s in d.spans)) for d in loaded.ner]


LEAK_GRAM = 8  # characters per shingle when looking for an evaluated insert inside a knowledge source
LEAK_SHARE = 0.5  # an insert whose shingles are at least this share inside one evaluated text is that text


def _shingles(text: str) -> set[str]:
    clean = "".join(ch for ch in unicodedata.normalize("NFKC", text) if not ch.isspace())
    return {clean[i : i + LEAK_GRAM] for i in range(len(clean) - LEAK_GRAM + 1)}


def drop_leaked_inserts(sources: list[LoadedSource], docs: list[Doc]) -> tuple[list[LoadedSource], list[str]]:
    """drug-inserts rows that are one of the evaluated inserts (drug-inserts and tcm-insert-ner both derive from the
    Tianchi 2020 inserts), removed so the KB scored holds no evaluated text: an insert is dropped when at least
    LEAK_SHARE of its efficacy text's 8-character shingles lie inside one evaluated text. Returns the sources
    without them and the dropped insert ids."""
    gram_docs: dict[str, set[int]] = defaultdict(set)
    for k, d in enumerate(docs):
        for g in _shingles(d.text):
            gram_docs[g].add(k)
    dropped: list[str] = []
    out: list[LoadedSource] = []
    for src in sources:
        if src.kind != "drug-inserts":
            out.append(src)
            continue
        kept = []
        for row in src.inserts:
            grams = _shingles(row.efficacy_text or row.title)
            hits: dict[int, int] = defaultdict(int)
            for g in grams:
                for k in gram_docs.get(g, ()):
                    hits[k] += 1
            if grams and max(hits.values(), default=0) >= LEAK_SHARE * len(grams):
                dropped.append(row.id)
            else:
                kept.append(row)
        out.append(dataclasses.replace(src, inserts=kept))
    return out, dropped


def entity_spans(kb: KnowledgeBase, text: str) -> list[Span]:
    """armed's entities in `text` with their character offsets in it, labelled by armed field (plus "drug")."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):  # per character, so every normalised character knows where it came from
        for c in unicodedata.normalize("NFKC", ch).lower():
            chars.append(c)
            origin.append(i)
    norm = "".join(chars)
    matches = kb.lexicon_matches(norm)
    out: list[Span] = []

    def span(s: int, e: int, label: str) -> Span:
        return Span(origin[s], origin[e - 1] + 1, label)

    in_drug: set[int] = set()
    k = 0
    while k < len(matches):  # drug mentions: adjacent brand / common name / dosage form matches with a common name
        j = k
        fields: set[str] = set()
        while j < len(matches) and (j == k or matches[j].start == matches[j - 1].end):
            f = {p.field for p in matches[j].payloads}
            if not f & {"brand", "common_name", "dosage_form"} or (j > k and "dosage_form" in fields):
                break
            fields |= f
            j += 1
        if "common_name" in fields:
            out.append(span(matches[k].start, matches[j - 1].end, "drug"))
            in_drug.update(range(k, j))
            k = j
        else:
            k += 1
    for idx, m in enumerate(matches):
        for field in {p.field for p in m.payloads}:
            if field in ("common_name", "brand"):
                continue
            if field == "dosage_form" and idx in in_drug:
                continue  # the form of a drug mention is part of that mention, as the corpus marks it
            out.append(span(m.start, m.end, field))
    return out


@dataclass
class Score:
    tp: int = 0
    pred: int = 0
    gold: int = 0

    def p(self) -> float | None:
        return self.tp / self.pred if self.pred else None

    def r(self) -> float | None:
        return self.tp / self.gold if self.gold else None

    def f1(self) -> float | None:
        p, r = self.p(), self.r()
        return 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)


def evaluate(kb: KnowledgeBase, docs: list[Doc]) -> dict:
    """Per armed field and per corpus type: exact and overlap P / R / F1 (see the module docstring)."""
    field_types: dict[str, set[str]] = defaultdict(set)
    for t, f in TYPE_MAP.items():
        if f is not None:
            field_types[f].add(t)
    exact_f: dict[str, Score] = defaultdict(Score)
    overlap_f: dict[str, Score] = defaultdict(Score)
    type_gold: dict[str, int] = defaultdict(int)
    type_tp: dict[str, int] = defaultdict(int)
    type_tp_overlap: dict[str, int] = defaultdict(int)
    for doc in docs:
        preds = entity_spans(kb, doc.text)
        gold = [g for g in doc.spans if g.label in TYPE_MAP]
        for g in gold:
            type_gold[g.label] += 1
            f = TYPE_MAP[g.label]
            if f is None:
                continue
            same = [p for p in preds if p.label == f]
            if any(p.start == g.start and p.end == g.end for p in same):
                type_tp[g.label] += 1
            if any(p.start < g.end and g.start < p.end for p in same):
                type_tp_overlap[g.label] += 1
        for f, types in field_types.items():
            gf = {(g.start, g.end) for g in gold if g.label in types}
            pf = {(p.start, p.end) for p in preds if p.label == f}
            exact_f[f].tp += len(gf & pf)
            exact_f[f].pred += len(pf)
            exact_f[f].gold += len(gf)
            overlap_f[f].pred += len(pf)
            overlap_f[f].gold += len(gf)
            overlap_f[f].tp += sum(1 for a, b in pf if any(a < e and s < b for s, e in gf))
    rows = []
    for t, f in TYPE_MAP.items():
        row: dict = {"type": t, "armed_field": f or "not extracted", "gold": type_gold[t]}
        if f is not None:
            sc = Score(type_tp[t], exact_f[f].pred, type_gold[t])
            shared = len(field_types[f]) > 1
            row.update({"precision": exact_f[f].p(), "precision_shared": shared, "recall": sc.r(),
                        "f1": _f1(exact_f[f].p(), sc.r()),
                        "recall_overlap": type_tp_overlap[t] / type_gold[t] if type_gold[t] else None})
        rows.append(row)
    fields = {f: {"precision": exact_f[f].p(), "recall": exact_f[f].r(), "f1": exact_f[f].f1(),
                  "precision_overlap": overlap_f[f].p(), "recall_overlap": overlap_f[f].r(),
                  "predicted": exact_f[f].pred, "gold": exact_f[f].gold, "types": sorted(field_types[f])}
              for f in sorted(field_types)}
    return {"documents": len(docs), "kb_version": kb.version, "kb_sources": kb.source_names, "types": rows,
            "fields": fields, "unscored_fields": list(UNSCORED_FIELDS)}


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def markdown(result: dict) -> str:
    """The per-type table docs/knowledge.md shows."""

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}"

    lines = [
        f"{result['documents']} held-out inserts; KB {result['kb_version']} ({', '.join(result['kb_sources'])}); "
        "exact span match (overlap recall in the last column)",
        "",
        "| corpus type | armed field | gold spans | P | R | F1 | R (overlap) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["types"]:
        if r["armed_field"] == "not extracted":
            lines.append(f"| {r['type']} | not extracted | {r['gold']} | – | – | – | – |")
            continue
        p = pct(r["precision"]) + ("*" if r["precision_shared"] else "")
        lines.append(f"| {r['type']} | {r['armed_field']} | {r['gold']} | {p} | {pct(r['recall'])} | "
                     f"{pct(r['f1'])} | {pct(r['recall_overlap'])} |")
    lines.append("")
    lines.append("\\* precision of the whole efficacy field, whose predictions these four types share.")
    lines.append("")
    lines.append("| armed field | predicted | gold | P | R | F1 | P (overlap) | R (overlap) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for f, s in result["fields"].items():
        lines.append(f"| {f} ({'+'.join(s['types'])}) | {s['predicted']} | {s['gold']} | {pct(s['precision'])} | "
                     f"{pct(s['recall'])} | {pct(s['f1'])} | {pct(s['precision_overlap'])} | "
                     f"{pct(s['recall_overlap'])} |")
    lines.append("")
    lines.append(f"Not scored (no corpus type): {', '.join(result['unscored_fields'])}.")
    return "\n".join(lines)
