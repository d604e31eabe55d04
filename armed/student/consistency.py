"""`armed distill --task consistency --student classifier:BASE`: the GPU profiles' consistency classifier.

Filter stage 2 (armed/pipeline/query_side.py) asks `models.consistency` whether each retrieved document is about
what the user meant. The pair is `consistency_pair(query, title, text)` = (the query searched with, the document's
title, a space, its text), read as `CONSISTENCY_TEMPLATE` with nothing escaped or cut (the engines truncate to
their token limit), and P(`CONSISTENCY_LABELS[0]`) is compared with `filter.consistency_threshold`. Training here
renders every pair the same way and gives the head those labels in that order (armed/engines/base.py holds both).

Training data (`--train`, repeatable; `--teacher-predictions`, repeatable):
- `consistency:FILE.jsonl`: human labels, one JSON object a line, `{"query": str, "text": str, "label":
  "consistent" | "inconsistent"}` (an optional "id"); `text` is the retrieved document as the filter sends it
  (title, a space, text). A row that breaks this is an error that names its line.
- `kuake-qtr:FILE` / `kuake-qqr:FILE`: the student's human sets, read as consistent exactly when highly relevant.
- teacher files, soft labels: `armed vote` votes.jsonl (P(consistent) = the share of valid votes saying
  highly_relevant), `armed bench` / a voter's predictions.jsonl or `armed judge-batch` output (P(consistent) = the
  judgment's P(highly_relevant)). These are (query, product name) pairs: the relevance task's, not retrieved
  documents; human labels of (query, retrieved text) pairs are the in-domain data.
"consistent exactly when highly relevant" is one rule (`consistency_of_level`), the one the chat-SFT path of
`armed distill --task consistency` uses too.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from armed.domain import RelevanceLevel
from armed.engines.base import CONSISTENCY_LABELS, CONSISTENCY_TEMPLATE
from armed.errors import InputError
from armed.eval.datasets import json_rows
from armed.student import data as D
from armed.student import metrics as SM
from armed.student import model as M
from armed.student.classifier import ClassifierTask, train_classifier

HUMAN_FORMAT = "consistency"  # --train consistency:FILE.jsonl
# The one relevance level that counts as "about what the user meant"; every other level is inconsistent.
CONSISTENT_LEVEL = RelevanceLevel.highly


def consistency_of_level(level: str) -> str:
    """A relevance level (four-level or benchmark scale: both spell 'highly_relevant' alike) as a consistency
    label."""
    return CONSISTENCY_LABELS[0] if level == CONSISTENT_LEVEL.value else CONSISTENCY_LABELS[1]


def from_levels(pair: D.StudentPair) -> D.StudentPair:
    """A pair with a four-level target as the same pair with a (consistent, inconsistent) target."""
    assert pair.target is not None
    p = float(pair.target[D.LEVELS.index(CONSISTENT_LEVEL)])
    return dataclasses.replace(pair, target=(p, 1.0 - p))


def render(pair: D.StudentPair) -> str:
    """The pair exactly as both serving engines render it for the consistency role."""
    return CONSISTENCY_TEMPLATE.format(query=pair.query, document=pair.product)


def evaluate(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {
        "n": len(y),
        "accuracy": float((probs.argmax(1) == y.argmax(1)).mean()),
        "macro_f1": SM.macro_f1(probs, y),
        "ece": M.expected_calibration_error(probs, y),
        "nll": float(-np.mean(np.sum(y * np.log(np.clip(probs, 1e-9, 1)), axis=1))),
        "mean_p_consistent": float(probs[:, 0].mean()),
    }


# 512 tokens: where TransformersPairClassifier cuts a pair at serving time.
def parse_spec(spec: str) -> tuple[str, Path]:
    fmt, sep, path = spec.partition(":")
    if sep and fmt == HUMAN_FORMAT and path:
        p = Path(path)
        if not p.is_file():
            raise InputError("--train", f"no such file: {p}")
        return fmt, p
    if fmt in D.HUMAN_FORMATS:
        return D.parse_spec(spec)
    raise InputError("--train", f"{spec!r} is not FORMAT:PATH with FORMAT one of "
                                f"{[HUMAN_FORMAT, *sorted(D.HUMAN_FORMATS)]}")


def load_human(spec: str, limit: int | None = None, seed: int = 0) -> list[D.StudentPair]:
    """Human-labelled pairs with one-hot (consistent, inconsistent) targets (see the module docstring)."""
    fmt, path = parse_spec(spec)
    if fmt != HUMAN_FORMAT:
        return [from_levels(p) for p in D.load_human(spec, limit, seed)]
    out = []
    for n, where, row in json_rows(path, "{path}:{n}", field="--train"):
        query, text, label = row.get("query"), row.get("text"), row.get("label")
        if not isinstance(query, str) or not query.strip() or not isinstance(text, str) or not text.strip():
            raise InputError("--train", f"{where}: query and text must be non-empty strings")
        if label not in CONSISTENCY_LABELS:
            raise InputError("--train", f"{where}: label {label!r} is not one of {list(CONSISTENCY_LABELS)}")
        target = tuple(1.0 if lab == label else 0.0 for lab in CONSISTENCY_LABELS)
        out.append(D.StudentPair(f"{HUMAN_FORMAT}:{row.get('id', n)}", query, text, "title", target,
                                 f"human:{path.name}"))
    if limit is not None and limit < len(out):
        out = random.Random(seed).sample(out, limit)
    return out


def load_teacher(path: Path) -> list[D.StudentPair]:
    """Teacher judgments (any file `armed distill --student` takes as a teacher) as consistency soft labels."""
    return [from_levels(p) for p in D.load_teacher(path)]


CONSISTENCY = ClassifierTask(role="consistency", title="armed consistency check (Qwen3 sequence classifier)",
                             labels=CONSISTENCY_LABELS, template=CONSISTENCY_TEMPLATE, render=render,
                             evaluate=evaluate, max_length=512, load_human=load_human,
                             spec_path=lambda spec: parse_spec(spec)[1], load_teacher=load_teacher,
                             data_hint="human labels (consistency:FILE.jsonl, kuake-qtr:FILE, kuake-qqr:FILE)")


def train_consistency_classifier(base: str, train_specs: Sequence[str], out: Path, **kw: Any) -> dict[str, Any]:
    """Fine-tune `base` (a Qwen3 checkpoint folder, or "tiny") into the folder `models.consistency` loads."""
    return train_classifier(CONSISTENCY, base, train_specs, out, **kw)
