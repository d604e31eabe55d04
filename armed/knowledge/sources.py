"""Readers of the public knowledge sources, by path, into neutral rows (the KnowledgeBase interprets them).

The files are never copied into the repository (their licences forbid redistribution); `KnowledgeBase.load`
reads them from wherever settings point. Every reader fails with `KnowledgeSourceError` naming the source
and the file, because a silently empty source would quietly change judgments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from armed.knowledge.register import RegisterRow, read_register
from armed.knowledge.splits import HELDOUT_MODULUS, tcm_split

SOURCE_KINDS = ("drug-inserts", "drug-dicts", "originator-drugs", "tcm-insert-ner", "register")
# tcm-insert-ner is split by file id (armed.knowledge.splits.tcm_split): the NER evaluation reads the held-out
# part, so a KB built for it must never contain it. `tcm-insert-ner:PATH` means PATH@train.
NER_SPLITS = ("train", "heldout", "all")
NER_HELDOUT_PERCENT = 100 // HELDOUT_MODULUS  # tcm_split holds out one file in five
DICT_FILES = ("drug.txt", "producer.txt", "disease.txt", "symptom.txt")


class KnowledgeSourceError(ValueError):
    """A knowledge source (or the seed) is missing or malformed. The message names it."""


@dataclass(frozen=True)
class InsertRow:
    """One drug package insert, reduced to what relevance needs."""

    id: str
    title: str  # 【药品商品名称】, else 【药品名称】
    name: str  # 【药品名称】, else the title
    spec: str
    efficacy_text: str  # 【功能主治】, else 【功效】 / 【适应症】
    maker: str
    efficacy_terms: tuple[str, ...]  # annotated 中药功效 / 症状 / 疾病 / 证候 spans inside the efficacy section
    ingredients: tuple[str, ...]


@dataclass(frozen=True)
class OriginatorRow:
    id: str
    company: str
    abbreviation: str
    generic: str
    trade: str
    group: str  # the file's therapeutic category, e.g. 疼痛缓解


@dataclass
class DictRows:
    drugs: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)
    diseases: list[str] = field(default_factory=list)
    symptoms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NerSpan:
    label: str  # brat type: DRUG, DRUG_INGREDIENT, DRUG_EFFICACY, PERSON_GROUP, ...
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class NerDoc:
    """One annotated insert of tcm-insert-ner (brat N.txt + N.ann)."""

    id: str
    text: str
    spans: tuple[NerSpan, ...]


@dataclass
class LoadedSource:
    """A parsed source plus the exact files read (their bytes go into the knowledge-base version)."""

    kind: str
    spec: str
    files: list[Path]
    inserts: list[InsertRow] = field(default_factory=list)
    originators: list[OriginatorRow] = field(default_factory=list)
    dicts: DictRows | None = None
    ner: list[NerDoc] = field(default_factory=list)
    register: list[RegisterRow] = field(default_factory=list)


def parse_source_spec(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS or not path:
        raise KnowledgeSourceError(
            f"knowledge source {spec!r} is not KIND:PATH with KIND one of {', '.join(SOURCE_KINDS)}"
        )
    return kind, Path(path).expanduser()


def _section(text: str, header: str) -> tuple[int, int] | None:
    marker = f"【{header}】"
    start = text.find(marker)
    if start < 0:
        return None
    body = start + len(marker)
    nxt = text.find("【", body)
    return body, (nxt if nxt >= 0 else len(text))


def _section_text(text: str, *headers: str) -> tuple[str, tuple[int, int] | None]:
    for h in headers:
        span = _section(text, h)
        if span is not None:
            value = text[span[0] : span[1]].strip()
            if value:
                return value, span
    return "", None


_EFFICACY_LABELS = {"中药功效", "症状", "疾病", "证候"}


def _json_files(path: Path, spec: str, what: str) -> list[Path]:
    """The JSON files of a source: the folder's *.json in name order, or the one file named; an error naming the
    source when there is none."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise KnowledgeSourceError(f"knowledge source {spec!r}: no {what} JSON file at {path}")
    return files


def read_inserts(path: Path, spec: str) -> LoadedSource:
    files = _json_files(path, spec, "insert")
    rows: list[InsertRow] = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ValueError("top level is not a list")
            for item in data:
                text = str(item["text"])
                title, _ = _section_text(text, "药品商品名称", "药品名称")
                name, _ = _section_text(text, "药品名称", "药品商品名称")
                if not title:
                    continue  # an insert with no name cannot be looked up or cited
                efficacy_text, span = _section_text(text, "功能主治", "功效", "适应症")
                terms: list[str] = []
                ingredients: list[str] = []
                for ann in item.get("annotations", []):
                    label, entity = ann.get("label"), str(ann.get("entity", "")).strip()
                    if not entity:
                        continue
                    if label == "药物成分":
                        ingredients.append(entity)
                    elif label in _EFFICACY_LABELS and span and span[0] <= ann["start_offset"] < span[1]:
                        terms.append(entity)
                rows.append(
                    InsertRow(
                        id=str(item["id"]),
                        title=re.sub(r"\s+", " ", title),
                        name=re.sub(r"\s+", " ", name or title),
                        spec=_section_text(text, "规格")[0],
                        efficacy_text=efficacy_text,
                        maker=_section_text(text, "制药公司")[0],
                        efficacy_terms=tuple(dict.fromkeys(terms)),
                        ingredients=tuple(dict.fromkeys(ingredients)),
                    )
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KnowledgeSourceError(f"knowledge source {spec!r}: cannot read {f}: {exc}") from exc
    return LoadedSource("drug-inserts", spec, files, inserts=rows)


def _lines(f: Path, spec: str) -> list[str]:
    try:
        return [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeSourceError(f"knowledge source {spec!r}: cannot read {f}: {exc}") from exc


def read_dicts(path: Path, spec: str) -> LoadedSource:
    if path.is_dir():
        files = [path / n for n in DICT_FILES if (path / n).is_file()]
        if not files:
            raise KnowledgeSourceError(f"knowledge source {spec!r}: none of {', '.join(DICT_FILES)} in {path}")
    elif path.is_file():
        if path.name not in DICT_FILES:
            raise KnowledgeSourceError(f"knowledge source {spec!r}: {path.name} is not one of {', '.join(DICT_FILES)}")
        files = [path]
    else:
        raise KnowledgeSourceError(f"knowledge source {spec!r}: {path} does not exist")
    rows = DictRows()
    for f in files:
        getattr(
            rows,
            {"drug.txt": "drugs", "producer.txt": "producers", "disease.txt": "diseases", "symptom.txt": "symptoms"}[
                f.name
            ],
        ).extend(_lines(f, spec))
    return LoadedSource("drug-dicts", spec, files, dicts=rows)


def read_originators(path: Path, spec: str) -> LoadedSource:
    files = _json_files(path, spec, "originator")
    rows: list[OriginatorRow] = []
    for f in files:
        group = re.sub(r"^\d+-", "", f.stem)
        try:
            data = json.loads(f.read_text(encoding="utf-8"))["data"]
            for i, r in enumerate(data):
                rows.append(
                    OriginatorRow(
                        id=str(r.get("drug_generic_id") or f"{f.stem}-{i}"),
                        company=str(r.get("company_name") or "").strip(),
                        abbreviation=str(r.get("company_abbreviation") or "").strip(),
                        generic=str(r["drug_generic_name"]).strip(),
                        trade=str(r.get("trade_name") or "").strip(),
                        group=group,
                    )
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KnowledgeSourceError(f"knowledge source {spec!r}: cannot read {f}: {exc}") from exc
    return LoadedSource("originator-drugs", spec, files, originators=rows)


def _ner_path_and_split(raw: Path, spec: str) -> tuple[Path, str]:
    text = str(raw)
    head, sep, split = text.rpartition("@")
    if sep and split in NER_SPLITS:
        return Path(head), split
    if sep and "/" not in split:
        raise KnowledgeSourceError(f"knowledge source {spec!r}: split {split!r} is not one of {', '.join(NER_SPLITS)}")
    return raw, "train"


def _read_ann(f: Path, text: str) -> tuple[NerSpan, ...]:
    spans: list[NerSpan] = []
    for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("T"):
            continue  # relations, events, notes: not entities
        try:
            _, middle, surface = line.split("\t", 2)
            label, *offsets = middle.replace(";", " ").split(" ")
            start, end = int(offsets[0]), int(offsets[-1])
        except (ValueError, IndexError) as exc:
            raise ValueError(f"line {n} is not a brat entity (T#\\tTYPE START END\\tTEXT): {line[:80]!r}") from exc
        surface = surface.strip()
        if surface:
            spans.append(NerSpan(label, start, end, surface))
    return tuple(spans)


def read_ner(path: Path, spec: str) -> LoadedSource:
    """tcm-insert-ner brat pairs in a folder (N.txt + N.ann); only the files of the requested split."""
    path, split = _ner_path_and_split(path, spec)
    if not path.is_dir():
        raise KnowledgeSourceError(f"knowledge source {spec!r}: {path} is not a folder of brat .txt/.ann pairs")
    texts = sorted(path.glob("*.txt"), key=lambda f: (len(f.stem), f.stem))
    if not texts:
        raise KnowledgeSourceError(f"knowledge source {spec!r}: no .txt files in {path}")
    docs: list[NerDoc] = []
    files: list[Path] = []
    for t in texts:
        if split != "all" and tcm_split(t.stem) != split:
            continue
        ann = t.with_suffix(".ann")
        try:
            text = t.read_text(encoding="utf-8")
            docs.append(NerDoc(t.stem, text, _read_ann(ann, text)))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise KnowledgeSourceError(f"knowledge source {spec!r}: cannot read {ann}: {exc}") from exc
        files.extend([t, ann])
    return LoadedSource("tcm-insert-ner", spec, files, ner=docs)


def read_source(spec: str) -> LoadedSource:
    """Parse one KIND:PATH source; raise KnowledgeSourceError naming it if it is missing or broken."""
    kind, path = parse_source_spec(spec)
    if kind == "tcm-insert-ner":
        return read_ner(path, spec)
    if not path.exists():
        raise KnowledgeSourceError(f"knowledge source {spec!r}: {path} does not exist")
    if kind == "drug-inserts":
        return read_inserts(path, spec)
    if kind == "drug-dicts":
        return read_dicts(path, spec)
    if kind == "register":
        try:
            rows = read_register(path)
        except ValueError as exc:
            raise KnowledgeSourceError(f"knowledge source {spec!r}: {exc}") from exc
        return LoadedSource("register", spec, [path], register=rows)
    return read_originators(path, spec)
