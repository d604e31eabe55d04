"""Benchmark metrics: the paper's Table 4 columns, plus macro-F1, the confusion matrix and per-category results.

Definitions (every figure armed reports uses exactly these):

- FAILED: a sample with no valid prediction — the judgment raised, timed out, or its answer could not be
  parsed into one of the three levels. A FAILED sample is recorded with prediction `None`.
- loss rate = FAILED / n, the share of samples without a valid prediction.
- accuracy (ALL) = correct / n: FAILED samples count as wrong.
- accuracy (w/o FAILED) = correct / (n − FAILED): FAILED samples are left out (0.0 when every sample failed).
- accuracy (HARD) = correct / n over the HARD subset only (FAILED counted as wrong, as in ALL).
- per class c (highly / less / irrelevant): precision = TP / (samples predicted c); recall = TP / (samples whose
  gold is c), so a FAILED sample lowers the recall of its gold class but no class's precision; F1 the harmonic
  mean. Any 0/0 is reported as 0.0 (no prediction of a class means precision 0 for it).
- macro-F1 = the unweighted mean of the three per-class F1 scores.
- confusion matrix: rows are gold levels, columns are predicted levels plus a last FAILED column.
- per category: the same accuracy / macro-F1 / loss rate within each category (the paper's Figure 2).
- per query type / per clause (sets that carry them, the pharmacy benchmark): n, accuracy (ALL and w/o FAILED),
  loss rate, and each level's precision / recall / F1 where the group holds at least MIN_CLASS_SUPPORT gold
  items of that level (else None: a recall over two items says nothing); macro-F1 only where all three levels
  reach it. A clause's group has a single gold level, so only that level's figures (and accuracy) are shown.
Unlabelled samples (gold `None`) are ignored by every metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from armed.domain import BenchmarkLevel

LEVELS: tuple[BenchmarkLevel, ...] = tuple(BenchmarkLevel)
FAILED = "FAILED"
COLUMNS: tuple[str, ...] = (*(lvl.value for lvl in LEVELS), FAILED)
SHORT = {BenchmarkLevel.highly: "highly", BenchmarkLevel.less: "less", BenchmarkLevel.irrelevant: "irrelevant"}


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def confusion(gold: Sequence[BenchmarkLevel], pred: Sequence[BenchmarkLevel | None]) -> list[list[int]]:
    """Rows gold (highly, less, irrelevant); columns predicted (highly, less, irrelevant, FAILED)."""
    if len(gold) != len(pred):
        raise ValueError("gold and pred differ in length")
    m = [[0] * len(COLUMNS) for _ in LEVELS]
    for g, p in zip(gold, pred, strict=True):
        col = len(LEVELS) if p is None else LEVELS.index(BenchmarkLevel(p))
        m[LEVELS.index(BenchmarkLevel(g))][col] += 1
    return m


def from_confusion(m: Sequence[Sequence[int]]) -> dict[str, float | int]:
    """Every Table 4 figure from a gold × (predicted + FAILED) confusion matrix."""
    n = sum(sum(row) for row in m)
    failed = sum(row[len(LEVELS)] for row in m)
    correct = sum(m[i][i] for i in range(len(LEVELS)))
    out: dict[str, float | int] = {
        "n": n,
        "failed": failed,
        "loss_rate": _div(failed, n),
        "accuracy_all": _div(correct, n),
        "accuracy_wo_failed": _div(correct, n - failed),
    }
    f1s = []
    for i, lvl in enumerate(LEVELS):
        tp = m[i][i]
        predicted = sum(m[r][i] for r in range(len(LEVELS)))
        actual = sum(m[i])
        p, r = _div(tp, predicted), _div(tp, actual)
        f1 = _div(2 * p * r, p + r)
        f1s.append(f1)
        out[f"{SHORT[lvl]}_precision"] = p
        out[f"{SHORT[lvl]}_recall"] = r
        out[f"{SHORT[lvl]}_f1"] = f1
        out[f"{SHORT[lvl]}_support"] = actual
    out["macro_f1"] = sum(f1s) / len(f1s)
    return out


def _labelled(
    gold: Sequence[BenchmarkLevel | None], pred: Sequence[BenchmarkLevel | None]
) -> tuple[list[BenchmarkLevel], list[BenchmarkLevel | None]]:
    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if g is not None]
    return [g for g, _ in pairs], [p for _, p in pairs]


def compute(
    gold: Sequence[BenchmarkLevel | None],
    pred: Sequence[BenchmarkLevel | None],
    *,
    hard: Sequence[bool] | None = None,
    categories: Sequence[str] | None = None,
) -> dict[str, object]:
    """Table 4 figures (+ HARD accuracy, confusion matrix, per-category) for aligned gold / pred lists."""
    g, p = _labelled(gold, pred)
    m = confusion(g, p)
    out: dict[str, object] = dict(from_confusion(m))
    out["confusion"] = {"rows_gold": [lvl.value for lvl in LEVELS], "columns_pred": list(COLUMNS), "matrix": m}
    if hard is not None:
        hg, hp = _labelled(
            [x for x, h in zip(gold, hard, strict=True) if h], [x for x, h in zip(pred, hard, strict=True) if h]
        )
        hm = from_confusion(confusion(hg, hp))
        out["accuracy_hard"] = hm["accuracy_all"]
        out["n_hard"] = hm["n"]
    if categories is not None:
        out["per_category"] = per_category(gold, pred, categories)
    return out


def per_category(
    gold: Sequence[BenchmarkLevel | None], pred: Sequence[BenchmarkLevel | None], categories: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """accuracy (ALL), accuracy w/o FAILED, macro-F1 and loss rate per category, largest category first."""
    groups: dict[str, tuple[list, list]] = {}
    for g, p, c in zip(gold, pred, categories, strict=True):
        if g is None:
            continue
        gs, ps = groups.setdefault(c, ([], []))
        gs.append(g)
        ps.append(p)
    out = {}
    for cat, (gs, ps) in sorted(groups.items(), key=lambda kv: (-len(kv[1][0]), kv[0])):
        full = from_confusion(confusion(gs, ps))
        out[cat] = {
            k: full[k] for k in ("n", "accuracy_all", "accuracy_wo_failed", "macro_f1", "loss_rate", "failed")
        }
    return out


MIN_CLASS_SUPPORT = 5


def per_group(
    gold: Sequence[BenchmarkLevel | None], pred: Sequence[BenchmarkLevel | None], groups: Sequence[str | None],
    min_support: int = MIN_CLASS_SUPPORT,
) -> dict[str, dict[str, object]]:
    """`compute` within each group (largest first): n, accuracies, loss rate, and per-class precision / recall / F1
    of the levels with at least `min_support` gold items (None otherwise); macro-F1 only where every level has."""
    members: dict[str, list[int]] = {}
    for i, (g, key) in enumerate(zip(gold, groups, strict=True)):
        if g is not None and key is not None:
            members.setdefault(key, []).append(i)
    out: dict[str, dict[str, object]] = {}
    for key, idx in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        full = compute([gold[i] for i in idx], [pred[i] for i in idx])
        row: dict[str, object] = {k: full[k] for k in ("n", "accuracy_all", "accuracy_wo_failed", "loss_rate",
                                                       "failed")}
        enough = True
        for lvl in LEVELS:
            name = SHORT[lvl]
            ok = int(full[f"{name}_support"]) >= min_support  # type: ignore[call-overload]
            enough = enough and ok
            row[f"{name}_support"] = full[f"{name}_support"]
            for metric in ("precision", "recall", "f1"):
                row[f"{name}_{metric}"] = full[f"{name}_{metric}"] if ok else None
        row["macro_f1"] = full["macro_f1"] if enough else None
        out[key] = row
    return out


TABLE4_COLUMNS: tuple[tuple[str, str], ...] = (
    ("loss_rate", "loss rate"),
    ("highly_precision", "highly P"),
    ("highly_recall", "highly R"),
    ("highly_f1", "highly F1"),
    ("less_precision", "less P"),
    ("less_recall", "less R"),
    ("less_f1", "less F1"),
    ("irrelevant_precision", "irrel. P"),
    ("irrelevant_recall", "irrel. R"),
    ("irrelevant_f1", "irrel. F1"),
    ("accuracy_all", "acc ALL"),
    ("accuracy_wo_failed", "acc w/o FAILED"),
    ("accuracy_hard", "acc HARD"),
    ("macro_f1", "macro-F1"),
    ("n", "n"),
)


def table4_row(name: str, m: Mapping[str, object]) -> str:
    cells = [name]
    for key, _ in TABLE4_COLUMNS:
        v = m.get(key)
        if v is None:
            cells.append("–")
        elif key == "n":
            cells.append(str(v))
        else:
            cells.append(f"{100 * float(v):.1f}")  # type: ignore[arg-type]
    return "| " + " | ".join(cells) + " |"


def table4(rows: Sequence[tuple[str, Mapping[str, object]]]) -> str:
    """A markdown Table 4 (percentages, one decimal) for named metric dicts."""
    head = "| system | " + " | ".join(label for _, label in TABLE4_COLUMNS) + " |"
    sep = "|" + "---|" * (len(TABLE4_COLUMNS) + 1)
    return "\n".join([head, sep, *(table4_row(n, m) for n, m in rows)])


def percent(v: object) -> str:
    """A share as a percentage for reports ('–' when undefined)."""
    return "–" if v is None else f"{100 * float(v):.1f}%"  # type: ignore[arg-type]
