"""Training pairs for the student: human labels from the KUAKE training splits, and teacher judgments as soft
labels (from `armed judge-batch` output or `armed bench` / `armed vote` predictions).

Four-level targets (Algorithm 1's levels, best first: highly, moderately, weakly, irrelevant):
- KUAKE-QTR: 3 → highly, 2 → moderately, 1 → weakly, 0 → irrelevant (the benchmark maps 2 and 1 to "less");
- KUAKE-QQR: 2 → highly, 1 → moderately (query2 narrower: a detail differs), 0 → irrelevant;
- pharmacy (armed/eval/pharmacy.py): the rows' own four-level labels (each its guideline clause's level). Only the
  tune half trains: a file holding any `split: report` row is refused, so the report half cannot be trained on by
  accident.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from armed.domain import BenchmarkLevel, RelevanceLevel
from armed.errors import InputError
from armed.student.features import PairKind
from armed.student.metrics import to_benchmark  # noqa: F401 (re-exported)
from armed.text import normalise

LEVELS = list(RelevanceLevel)
KUAKE_FOUR_LEVELS: dict[str, dict[str, RelevanceLevel]] = {
    "kuake-qtr": {"3": RelevanceLevel.highly, "2": RelevanceLevel.moderately, "1": RelevanceLevel.weakly,
                  "0": RelevanceLevel.irrelevant},
    "kuake-qqr": {"2": RelevanceLevel.highly, "1": RelevanceLevel.moderately, "0": RelevanceLevel.irrelevant},
}
PAIR_KIND_OF_FORMAT: dict[str, PairKind] = {"kuake-qtr": "title", "kuake-qqr": "query", "armed": "title",
                                             "pharmacy": "title"}
# The human-labelled formats `--train` accepts.
HUMAN_FORMATS: tuple[str, ...] = (*KUAKE_FOUR_LEVELS, "pharmacy")


@dataclass(frozen=True)
class StudentPair:
    """One training (or evaluation) pair: `target` is a distribution over the task's labels (one-hot for human
    labels): the four levels for the student, consistent / inconsistent for the consistency check, whose `product`
    is the retrieved document's text."""

    id: str
    query: str
    product: str
    kind: PairKind
    target: tuple[float, ...] | None
    source: str  # "human:<set>" or "teacher:<file>"

    @property
    def group(self) -> str:
        """Pairs of one query share a group, so a tuning split never sees a training query (as dev does not)."""
        return normalise(self.query)


def one_hot(level: RelevanceLevel) -> tuple[float, float, float, float]:
    return tuple(1.0 if lvl is level else 0.0 for lvl in LEVELS)  # type: ignore[return-value]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_spec(spec: str) -> tuple[str, Path]:
    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in HUMAN_FORMATS or not path:
        raise InputError("--train", f"{spec!r} is not FORMAT:PATH with FORMAT one of {sorted(HUMAN_FORMATS)}")
    p = Path(path)
    if not p.is_file():
        raise InputError("--train", f"no such file: {p}")
    return fmt, p


def load_pharmacy(path: Path) -> list[StudentPair]:
    """A pharmacy benchmark file's rows as four-level one-hot pairs; refuses a file with any report-half row."""
    from armed.eval.datasets import read_pharmacy

    try:
        rows = read_pharmacy(path)
    except InputError as exc:
        raise InputError("--train", f"{path}: {exc}") from None
    report = [r["id"] for r in rows if r["split"] != "tune"]
    if report:
        raise InputError("--train", f"{path}: {len(report)} rows are from the report half (split: report, e.g. "
                                    f"{report[0]}); train on the tune half only (tune.jsonl)")
    return [StudentPair(f"pharmacy:{r['id']}", r["query"], r["product"]["name"], PAIR_KIND_OF_FORMAT["pharmacy"],
                        one_hot(RelevanceLevel(r["label"])), "human:pharmacy") for r in rows]


def load_human(spec: str, limit: int | None = None, seed: int = 0) -> list[StudentPair]:
    """A KUAKE JSON array (rows with an unknown label are skipped) or a pharmacy tune file as four-level one-hot
    pairs."""
    fmt, path = parse_spec(spec)
    if fmt == "pharmacy":
        out = load_pharmacy(path)
        return random.Random(seed).sample(out, limit) if limit is not None and limit < len(out) else out
    rows = json.loads(path.read_text(encoding="utf-8"))
    mapping = KUAKE_FOUR_LEVELS[fmt]
    kind = PAIR_KIND_OF_FORMAT[fmt]
    out = []
    for r in rows:
        level = mapping.get(str(r.get("label")))
        if level is None:
            continue
        query, product = (r["query"], r["title"]) if fmt == "kuake-qtr" else (r["query1"], r["query2"])
        out.append(StudentPair(f"{fmt}:{r['id']}", str(query), str(product), kind, one_hot(level), f"human:{fmt}"))
    if limit is not None and limit < len(out):
        out = random.Random(seed).sample(out, limit)
    return out


def load_teacher(path: Path, kind: PairKind = "title") -> list[StudentPair]:
    """Teacher judgments with probabilities as soft labels.

    Accepts `armed judge-batch` output rows ({"id", "judgment": {...}} beside the input file's query/product,
    which judgments carry in their evidence) and `armed bench` / `armed vote` prediction rows ({"id", "query",
    "product_name", "probabilities"}). Rows without a four-level distribution are skipped.
    """
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        j = row.get("judgment") if isinstance(row.get("judgment"), dict) else row
        probs = j.get("probabilities")
        query = j.get("query") or row.get("query")
        product = j.get("product_name") or row.get("product_name")
        pair_kind = kind
        if isinstance(row.get("product"), dict):
            product = product or row["product"].get("name")
            pair_kind = "query" if row["product"].get("kind") == "query" else kind
        if not isinstance(probs, dict) and isinstance(row.get("counts"), dict):
            probs = _vote_distribution(row["counts"])
        if not isinstance(probs, dict) or not query or not product:
            continue
        try:
            target = tuple(float(probs.get(lvl.value, 0.0)) for lvl in LEVELS)
        except (TypeError, ValueError):
            continue
        total = sum(target)
        if total <= 0:
            continue
        out.append(StudentPair(f"teacher:{row.get('id')}", str(query), str(product), pair_kind,
                               tuple(t / total for t in target), f"teacher:{path.name}"))  # type: ignore[arg-type]
    return out


def _vote_distribution(counts: dict[str, Any]) -> dict[str, float] | None:
    """`armed vote` counts over the three benchmark levels → a four-level distribution ("less" votes split evenly
    between moderately and weakly: a vote does not say which)."""
    try:
        hi = float(counts.get(BenchmarkLevel.highly.value, 0))
        less = float(counts.get(BenchmarkLevel.less.value, 0))
        irr = float(counts.get(BenchmarkLevel.irrelevant.value, 0))
    except (TypeError, ValueError):
        return None
    return {RelevanceLevel.highly.value: hi, RelevanceLevel.moderately.value: less / 2,
            RelevanceLevel.weakly.value: less / 2, RelevanceLevel.irrelevant.value: irr}


def mix(human: Sequence[StudentPair], teacher: Sequence[StudentPair], teacher_weight: float) -> tuple[
        list[StudentPair], np.ndarray]:
    """Human and teacher pairs with per-pair loss weights: the teacher's pairs together weigh `teacher_weight`
    of the total (0 → human labels only, 1 → teacher only). A pair the teacher also judged keeps both rows."""
    if not 0.0 <= teacher_weight <= 1.0:
        raise InputError("--teacher-weight", "must be between 0 and 1")
    pairs = [*human, *teacher]
    if not teacher or teacher_weight == 0.0:
        return list(human), np.ones(len(human), dtype=np.float32)
    if not human or teacher_weight == 1.0:
        return list(teacher), np.ones(len(teacher), dtype=np.float32)
    n = len(pairs)
    wh = (1 - teacher_weight) * n / len(human)
    wt = teacher_weight * n / len(teacher)
    return pairs, np.asarray([wh] * len(human) + [wt] * len(teacher), dtype=np.float32)


def domain(pair: StudentPair) -> str:
    """The domain a pair's tuning split is drawn within: the pharmacy benchmark's tune half, or everything else
    (KUAKE's training splits and teacher judgments, split as they always were)."""
    return "pharmacy" if pair.source == "human:pharmacy" else "default"


# The pharmacy tune half's share held out for the student's own tuning (early stopping, calibration, the blend and the
# guideline audit): larger than KUAKE's 10 %, since the half is small (~1,500 pairs) and the audit needs pairs.
PHARMACY_TUNE_FRACTION = 0.3


def group_split(pairs: Sequence[StudentPair], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, tuning indices): a seeded share of query groups goes to tuning, drawn per domain, so adding
    pharmacy pairs leaves KUAKE's split exactly as it was (the packaged cross-encoders were trained on it). The
    pharmacy domain holds out at least PHARMACY_TUNE_FRACTION."""
    tune_groups: set[tuple[str, str]] = set()
    for dom in sorted({domain(p) for p in pairs}):
        groups = sorted({p.group for p in pairs if domain(p) == dom})
        rng = random.Random(seed)
        rng.shuffle(groups)
        share = max(fraction, PHARMACY_TUNE_FRACTION) if dom == "pharmacy" else fraction
        tune_groups |= {(dom, g) for g in groups[: round(len(groups) * share)]}
    train = [i for i, p in enumerate(pairs) if (domain(p), p.group) not in tune_groups]
    tune = [i for i, p in enumerate(pairs) if (domain(p), p.group) in tune_groups]
    return train, tune


def targets(pairs: Iterable[StudentPair]) -> np.ndarray:
    return np.asarray([p.target for p in pairs], dtype=np.float32)


def describe(pairs: Sequence[StudentPair]) -> dict[str, Any]:
    from collections import Counter

    return {"n": len(pairs), "by_source": dict(Counter(p.source for p in pairs))}
