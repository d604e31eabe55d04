"""The sanitiser's cost on real text, measured on ../shared/data/train only (never eval/):

1. how many real "product" texts (KUAKE-QTR titles, KUAKE-QQR second queries) and queries it changes, and how;
2. the packaged student on each of those changed pairs, as written and as sanitised, against the human label;
3. the packaged student's scores on train/'s tuning split (the split `armed distill` holds out, seed 0, 10 % of the
   query groups) with and without the sanitiser in front of it.

    python -m tests.security.accuracy_guard [--train ../shared/data/train] [--sample N]

Only pairs whose text the sanitiser changes can score differently, so the student classifies the split once as
written and then only the changed pairs again (exact, and minutes cheaper than two full passes).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from armed.knowledge.base import KnowledgeBase
from armed.pipeline.merchant_text import clean_merchant_text
from armed.student import data as D
from armed.student.distill import evaluate
from armed.student.engine import QUERY_PAIR_PREFIX, MLPStudent, student_text
from armed.text import escape_markup


def _domain_clean(text: str) -> str:
    """What armed.domain does to a name before the sanitiser sees it (controls out, stripped)."""
    return "".join(ch for ch in text if ch >= " " or ch in "\t\n").strip()


def changes(train: Path, kb: KnowledgeBase) -> dict:
    out: dict = {}
    for fname, qk, pk in (("kuake-qtr-train.json", "query", "title"), ("kuake-qqr-train.json", "query1", "query2")):
        rows = json.loads((train / fname).read_text(encoding="utf-8"))
        kinds: Counter = Counter()
        changed = q_changed = 0
        examples = []
        for r in rows:
            name = _domain_clean(r[pk])
            c = clean_merchant_text(name, query=r[qk], kb=kb)
            if c.text != name:
                changed += 1
                kinds.update(c.removed)
                examples.append({"label": r["label"], "query": _domain_clean(r[qk]), "text": name,
                                 "sanitised": c.text, "removed": list(c.removed),
                                 "kind": "query" if fname.startswith("kuake-qqr") else "title", "format": fname})
            # The query is the user's, not merchant text; measured anyway: what the rules would do to it as a name.
            q = _domain_clean(r[qk])
            if clean_merchant_text(q).text != q:
                q_changed += 1
        out[fname] = {"rows": len(rows), "texts_changed": changed, "by_kind": dict(kinds),
                      "queries_changed_if_sanitised_as_names": q_changed, "examples": examples}
    return out


def changed_pairs_scores(examples: list[dict]) -> dict:
    """The student on every train pair whose text the sanitiser changes, as written and as sanitised, against the
    human label (benchmark bands). The student was trained on these rows: the point is the difference."""
    from armed.domain import RelevanceLevel
    from armed.pipeline.levels import decide_level
    from armed.student.data import KUAKE_FOUR_LEVELS

    if not examples:
        return {"pairs": 0}
    student = MLPStudent()
    fmt = {"kuake-qtr-train.json": "kuake-qtr", "kuake-qqr-train.json": "kuake-qqr"}
    gold = [KUAKE_FOUR_LEVELS[fmt[e["format"]]][e["label"]].to_benchmark() for e in examples]
    out = {}
    for arm, key in (("as_written", "text"), ("sanitised", "sanitised")):
        dists = student.classify_sync([(escape_markup(e["query"]) if arm == "sanitised" else e["query"],
                                        student_text(escape_markup(e[key]) if arm == "sanitised" else e[key],
                                                     e["kind"])) for e in examples])
        pred = [decide_level([d[lvl.value] for lvl in RelevanceLevel]).to_benchmark() for d in dists]
        out[arm] = {"band_correct": sum(p == g for p, g in zip(pred, gold, strict=True)),
                    "bands": [p.value for p in pred]}
    out["pairs"] = len(examples)
    out["band_changed"] = sum(a != b for a, b in zip(out["as_written"]["bands"], out["sanitised"]["bands"],
                                                      strict=True))
    return out


def tuning_split_scores(train: Path, kb: KnowledgeBase, sample: int | None) -> dict:
    specs = [f"kuake-qtr:{train / 'kuake-qtr-train.json'}", f"kuake-qqr:{train / 'kuake-qqr-train.json'}"]
    pairs = [p for spec in specs for p in D.load_human(spec, None, 0)]
    _, tune_idx = D.group_split(pairs, 0.1, 0)  # armed distill's defaults: --tune-fraction 0.1 --seed 0
    tune = [pairs[i] for i in tune_idx]
    if sample is not None and sample < len(tune):
        tune = [tune[i] for i in np.random.default_rng(0).choice(len(tune), sample, replace=False)]
    student = MLPStudent()
    # Without: the texts as the domain's validators hand them on (controls out, stripped), as before the sanitiser.
    raw = [(_domain_clean(p.query), student_text(_domain_clean(p.product), p.kind)) for p in tune]
    # With: what serving does now: the product's text sanitised against its query, both sides escaped for a template.
    clean = [(escape_markup(q), student_text(escape_markup(clean_merchant_text(n[len(QUERY_PAIR_PREFIX):]
              if n.startswith(QUERY_PAIR_PREFIX) else n, query=q, kb=kb).text), p.kind))
             for (q, n), p in zip(raw, tune, strict=True)]
    started = time.perf_counter()
    probs = np.asarray([[d[lab] for lab in d] for d in student.classify_sync(raw)], dtype=np.float32)
    changed = [i for i, (a, b) in enumerate(zip(raw, clean, strict=True)) if a != b]
    probs_clean = probs.copy()
    if changed:
        redo = student.classify_sync([clean[i] for i in changed])
        probs_clean[changed] = np.asarray([[d[lab] for lab in d] for d in redo], dtype=np.float32)
    y = D.targets(tune)
    return {"pairs": len(tune), "pairs_changed": len(changed), "student": student.model_id,
            "without_sanitiser": evaluate(probs, y), "with_sanitiser": evaluate(probs_clean, y),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "train")
    ap.add_argument("--sample", type=int, default=None, help="score a seeded sample of the tuning split")
    ap.add_argument("--skip-student", action="store_true")
    args = ap.parse_args()
    kb = KnowledgeBase.load()
    report = {"changes": changes(args.train, kb)}
    if not args.skip_student:
        examples = [e for c in report["changes"].values() for e in c["examples"]]
        report["changed_train_pairs"] = changed_pairs_scores(examples)
        report["tuning_split"] = tuning_split_scores(args.train, kb, args.sample)
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
