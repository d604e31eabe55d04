"""The cascade curve and the student's calibration, from one bench run's predictions.

Each judgment records the student's opinion (probabilities, band confidence) wherever the student ran. For a
threshold t the student answers the pairs whose confidence is ≥ t and escalates the rest to the LLM judge, so one
run gives the whole curve: escalation rate (what the GPUs must judge) against accuracy. The LLM's answers for the
escalated pairs come from a teacher run's predictions (`armed bench` of a GPU profile with
`judge.escalate_below=1`, or any predictions file over the same ids); without one, the curve reports the student's
accuracy on the pairs it keeps (selective accuracy) and the escalation rate, which is what sizes the GPU pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from armed.domain import BenchmarkLevel, RelevanceLevel
from armed.eval import metrics as M

THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(15))  # 0.30 … 1.00


def _student(row: dict[str, Any]) -> tuple[BenchmarkLevel, float] | None:
    s = row.get("student")
    if not isinstance(s, dict) or not isinstance(s.get("probabilities"), dict):
        return None
    from armed.pipeline.levels import decide_level

    probs = [float(s["probabilities"].get(lvl.value, 0.0)) for lvl in RelevanceLevel]
    return decide_level(probs).to_benchmark(), float(s.get("confidence", 0.0))


def _gold(row: dict[str, Any]) -> BenchmarkLevel | None:
    return BenchmarkLevel(row["gold"]) if row.get("gold") else None


def cascade_curve(
    rows: Sequence[dict[str, Any]],
    teacher: dict[str, dict[str, Any]] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, Any]:
    """Per threshold: escalation rate, the student's accuracy / macro-F1 on what it keeps, and (with teacher
    predictions) the cascade's accuracy / macro-F1 over every pair the student saw."""
    seen = [(r, s) for r in rows if (s := _student(r)) is not None and _gold(r) is not None]
    points = []
    for t in thresholds:
        kept = [(r, s) for r, s in seen if s[1] >= t]
        point: dict[str, Any] = {
            "threshold": t,
            "n": len(seen),
            "escalation_rate": 1 - len(kept) / len(seen) if seen else None,
            "kept_accuracy": (sum(s[0] is _gold(r) for r, s in kept) / len(kept)) if kept else None,
            "kept_macro_f1": M.compute([_gold(r) for r, _ in kept], [s[0] for _, s in kept])["macro_f1"]
            if kept else None,
        }
        if teacher is not None:
            preds = []
            for r, s in seen:
                if s[1] >= t:
                    preds.append(s[0])
                else:
                    tr = teacher.get(str(r["id"]))
                    preds.append(BenchmarkLevel(tr["pred"]) if tr and tr.get("pred") else None)
            m = M.compute([_gold(r) for r, _ in seen], preds)
            point["cascade_accuracy"] = m["accuracy_all"]
            point["cascade_macro_f1"] = m["macro_f1"]
        points.append(point)
    return {"n_with_student": len(seen), "teacher": teacher is not None, "points": points}


def calibration(rows: Sequence[dict[str, Any]], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the student's band confidence against gold bands, with the reliability
    table (confidence bins: mean confidence, accuracy, n)."""
    seen = [(s, _gold(r)) for r in rows if (s := _student(r)) is not None and _gold(r) is not None]
    table = []
    ece = 0.0
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        inside = [(s, g) for s, g in seen if lo < s[1] <= hi or (i == 0 and s[1] == 0)]
        if not inside:
            continue
        conf = sum(s[1] for s, _ in inside) / len(inside)
        acc = sum(s[0] is g for s, g in inside) / len(inside)
        ece += len(inside) / len(seen) * abs(conf - acc)
        table.append({"bin": f"({lo:.1f}, {hi:.1f}]", "n": len(inside), "confidence": conf, "accuracy": acc})
    return {"n": len(seen), "ece": ece if seen else None, "bins": table}


def render(curve: dict[str, Any], calib: dict[str, Any]) -> str:
    lines = [
        "## Cascade (student → LLM) and calibration",
        "",
        f"Pairs the student judged: {curve['n_with_student']}. A pair escalates when the student's band confidence "
        "is below the threshold (`judge.escalate_below`)." + (
            " Escalated pairs take the teacher run's prediction." if curve["teacher"] else
            " No teacher predictions were given: `kept` columns are the student's accuracy on the pairs it keeps."),
        "",
    ]
    head = "| threshold | escalation rate | kept accuracy | kept macro-F1 |"
    sep = "|---|---|---|---|"
    if curve["teacher"]:
        head += " cascade accuracy | cascade macro-F1 |"
        sep += "---|---|"
    lines += [head, sep]
    for p in curve["points"]:
        line = (f"| {p['threshold']:.2f} | {_pct(p['escalation_rate'])} | {_pct(p['kept_accuracy'])} | "
                f"{_pct(p['kept_macro_f1'])} |")
        if curve["teacher"]:
            line += f" {_pct(p.get('cascade_accuracy'))} | {_pct(p.get('cascade_macro_f1'))} |"
        lines.append(line)
    lines += [
        "",
        "![cascade curve](cascade.png)",
        "",
        f"Student calibration on this set (not fitted here: the temperature was fitted on train/'s tuning split): "
        f"ECE {calib['ece']:.3f} over {calib['n']} pairs." if calib["ece"] is not None else "No student calibration.",
        "",
        "| confidence bin | n | mean confidence | accuracy |",
        "|---|---|---|---|",
        *(f"| {b['bin']} | {b['n']} | {b['confidence']:.3f} | {b['accuracy']:.3f} |" for b in calib["bins"]),
        "",
    ]
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"
