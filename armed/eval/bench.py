"""`armed bench`: judge a labelled set, score it (Table 4), compare with the lexical baseline, report and plot.

Outputs in the run's folder: predictions.jsonl (resumable), metrics.json, report.md, confusion.png,
per_class.png, per_category.png; with the ablation ladder (Table 5): ablation.json, ablation.md, ablation.png
and one predictions file per rung under ablation/.

Comparisons are honest by construction: with `--baseline-train` (a training set of the same task) the lexical
baseline's two thresholds are tuned there and both it and armed are reported on every evaluated item; without
one, they are tuned on a seeded tuning split (`tune_fraction` of the evaluated items) and both are reported on the
disjoint held-out split. armed tunes nothing on the evaluated set.

Where the student judged, the run also reports the cascade curve (escalation rate and accuracy per threshold) and
the student's calibration (armed/eval/cascade.py); `--teacher-predictions` adds the cascade's own accuracy.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import armed
from armed.domain import BenchmarkLevel
from armed.eval import cascade
from armed.eval import metrics as M
from armed.eval.baseline import LexicalBaseline
from armed.eval.datasets import BenchItem, Dataset, derive_category, hard_subset, load_dataset, split_ids
from armed.eval.runner import EndpointJudge, LocalJudge, pred_of, run_predictions
from armed.eval.runner import read_predictions as read_predictions_file
from armed.settings import ArmedSettings
from armed.stages import ABLATION_LADDER, LADDER_SWITCHES  # Table 5, in the stage table

PipelineFactory = Callable[[ArmedSettings], Any]

HARD_RULE = (
    "HARD (paper's rule): query length ≤ the median query length and product-name length ≥ the median name "
    "length of the evaluated items, then balanced 1:1:1 over the three gold levels by a seeded draw"
)

@dataclass
class BenchOptions:
    dataset: str
    out: Path
    limit: int | None = None
    seed: int = 0
    endpoint: str | None = None
    concurrency: int = 4
    progress: bool = True
    tune_fraction: float = 0.5
    hard_per_label: int | None = None
    timeout_s: float | None = None
    command: str = ""
    report_only: bool = False  # score the rows already in predictions.jsonl; judge nothing (interrupted runs)
    baseline_train: str | None = None  # FORMAT:PATH of a training set: tune the lexical baseline there
    teacher_predictions: Path | None = None  # a teacher run's predictions.jsonl over the same ids (cascade curve)


def default_factory() -> PipelineFactory:
    """Pipelines over one knowledge base and one set of engines (loaded on first use, shared by every rung)."""
    cache: dict[str, Any] = {}

    def make(settings: ArmedSettings) -> Any:
        from armed.knowledge.artefact import load_knowledge
        from armed.pipeline.dag import Pipeline

        if "kb" not in cache:
            from armed.engines.factory import build_clients

            cache["kb"] = load_knowledge(settings.knowledge)
            cache["clients"] = build_clients(settings.models)
        # the clients are this settings' engines, so the embedder's identity is its spec's
        return Pipeline(settings, cache["kb"], cache["clients"], doc_vectors_model=settings.models.embedder.identity())

    return make


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def software_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"armed": armed.__version__, "git": _git_commit(), "python": platform.python_version()}
    for mod in ("torch", "transformers"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def judgment_versions(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    for r in rows:
        if r.get("versions"):
            return r["versions"]
    return None


def categories_for(items: Sequence[BenchItem], kb: Any) -> dict[str, str]:
    return {it.id: derive_category(kb, it) for it in items}


def _golds(items: Sequence[BenchItem]) -> list[BenchmarkLevel | None]:
    return [it.label for it in items]


def per_type(items: Sequence[BenchItem], pred: Sequence[Any]) -> dict[str, Any]:
    """Per query type and per guideline clause (metrics.per_group), for sets whose items carry them (the pharmacy
    benchmark); nothing for sets that do not (KUAKE), so their metrics and reports stay as they were."""
    if not any(it.query_type or it.clause for it in items):
        return {}
    gold = _golds(items)
    return {"per_query_type": M.per_group(gold, pred, [it.query_type for it in items]),
            "per_clause": M.per_group(gold, pred, [it.clause for it in items])}


def score_rows(
    items: Sequence[BenchItem], rows: dict[str, dict[str, Any]], hard: set[str], cats: dict[str, str]
) -> dict[str, Any]:
    pred = [pred_of(rows[it.id]) for it in items]
    out = M.compute(_golds(items), pred, hard=[it.id in hard for it in items],
                    categories=[cats[it.id] for it in items])
    out.update(per_type(items, pred))
    return out


def baseline_compare(
    items: Sequence[BenchItem], rows: dict[str, dict[str, Any]], hard: set[str], cats: dict[str, str],
    fraction: float, seed: int, train: Sequence[BenchItem] | None = None,
) -> dict[str, Any]:
    """Tune the lexical baseline on `train` (then score it and armed on every item) or, without a training set, on
    a tuning split of the items (then score both on the held-out rest)."""
    labelled = [it for it in items if it.label is not None]
    if train is not None:
        tune = [it for it in train if it.label is not None]
        test = labelled
        tuned_on = f"training set ({len(tune)} pairs), best macro-F1"
    else:
        tune_ids, test_ids = split_ids([it.id for it in labelled], fraction, seed)
        tune = [it for it in labelled if it.id in tune_ids]
        test = [it for it in labelled if it.id in test_ids]
        tuned_on = "tuning split, best macro-F1"
    base = LexicalBaseline.tune([(it.query, it.product_name) for it in tune], [it.label for it in tune])  # type: ignore[misc]
    base_pred = [base.predict(it.query, it.product_name) for it in test]
    armed_pred = [pred_of(rows[it.id]) for it in test]
    hard_mask = [it.id in hard for it in test]
    test_cats = [cats[it.id] for it in test]
    return {
        "split": {"tune_fraction": None if train is not None else fraction, "seed": seed, "tune_n": len(tune),
                  "test_n": len(test), "tuned_on_training_set": train is not None},
        "baseline_thresholds": {"lo": base.lo, "hi": base.hi, "tuned_on": tuned_on},
        "armed": {**M.compute(_golds(test), armed_pred, hard=hard_mask, categories=test_cats),
                  **per_type(test, armed_pred)},
        "lexical_baseline": {**M.compute(_golds(test), base_pred, hard=hard_mask, categories=test_cats),
                             **per_type(test, base_pred)},
    }


def _kb_for_categories(factory: PipelineFactory | None, settings: ArmedSettings, pipeline: Any) -> Any:
    if pipeline is not None:
        return pipeline.kb
    from armed.knowledge.artefact import load_knowledge

    return load_knowledge(settings.knowledge)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


async def run_bench(
    opts: BenchOptions, settings: ArmedSettings | None = None, factory: PipelineFactory | None = None
) -> dict[str, Any]:
    settings = settings or ArmedSettings()
    ds = load_dataset(opts.dataset, opts.limit, opts.seed)
    opts.out.mkdir(parents=True, exist_ok=True)
    pipeline = None
    if opts.report_only:
        have = read_predictions_file(opts.out / "predictions.jsonl")
        ds.items = [it for it in ds.items if it.id in have]
        ds.sample["scored"] = len(ds.items)
        if not ds.items:
            raise ValueError(f"--report-only: no predictions in {opts.out / 'predictions.jsonl'}")

        async def judge(item: BenchItem) -> dict[str, Any]:
            raise RuntimeError("report-only: nothing is judged")

        system = "armed (report over an interrupted run's predictions)"
        from armed.knowledge.artefact import load_knowledge

        kb = load_knowledge(settings.knowledge)
    elif opts.endpoint:
        judge: Any = EndpointJudge(opts.endpoint)
        system = f"armed endpoint {opts.endpoint}"
    else:
        pipeline = (factory or default_factory())(settings)
        judge = LocalJudge(pipeline)
        system = "armed (local library)"
    if not opts.report_only:
        kb = _kb_for_categories(factory, settings, pipeline)
    cats = categories_for(ds.items, kb)
    hard = set(hard_subset(ds.items, opts.seed, opts.hard_per_label))
    started = time.perf_counter()
    rows = await run_predictions(ds.items, judge, opts.out / "predictions.jsonl", categories=cats,
                                 concurrency=opts.concurrency, progress=opts.progress, timeout_s=opts.timeout_s)
    wall = time.perf_counter() - started
    if isinstance(judge, EndpointJudge):
        await judge.aclose()
    ordered = [rows[it.id] for it in ds.items]
    result = {
        "dataset": _dataset_info(ds),
        "system": system,
        "definitions": "see armed/eval/metrics.py (module docstring): FAILED, loss rate, ALL, w/o FAILED, HARD",
        "hard_rule": HARD_RULE,
        "hard_n": len(hard),
        "armed": score_rows(ds.items, rows, hard, cats),
        "heldout": baseline_compare(ds.items, rows, hard, cats, opts.tune_fraction, opts.seed,
                                    train=load_dataset(opts.baseline_train).items if opts.baseline_train else None),
        "cascade": cascade.cascade_curve(ordered, teacher=(read_predictions_file(opts.teacher_predictions)
                                                           if opts.teacher_predictions else None)),
        "student_calibration": cascade.calibration(ordered),
        "branches": dict(Counter(r.get("branch") or "FAILED" for r in ordered).most_common()),
        "errors": dict(Counter((r.get("error") or "").split(":")[0] for r in ordered if r.get("error"))),
        "timing": {
            "seconds_per_pair_mean": sum(float(r.get("seconds") or 0) for r in ordered) / max(len(ordered), 1),
            "wall_seconds_this_invocation": wall,
            "concurrency": opts.concurrency,
        },
        "versions": {"judgment": judgment_versions(ordered), "software": software_versions(),
                     "llm_weight": settings.judge.llm_weight,
                     "stages": settings.stages.model_dump()},
        "command": opts.command,
    }
    _write_json(opts.out / "metrics.json", result)
    write_plots(result, opts.out)
    (opts.out / "report.md").write_text(render_report(result), encoding="utf-8")
    return result


def _dataset_info(ds: Dataset) -> dict[str, Any]:
    return {
        "spec": f"{ds.format}:{ds.path}",
        "format": ds.format,
        "file": ds.path.name,
        "sha256": ds.sha256,
        "sample": ds.sample,
        "label_mapping": ds.mapping,
        "label_mapping_text": ds.mapping_text,
        "gold_distribution": dict(Counter(it.label.value for it in ds.items if it.label)),
    }


def write_plots(result: dict[str, Any], out: Path) -> None:
    from armed.eval import plots

    a = result["armed"]
    c = a["confusion"]
    ds = result["dataset"]
    tag = f"{ds['file']} (n={a['n']})"
    plots.confusion_png(c["matrix"], c["rows_gold"], c["columns_pred"], out / "confusion.png",
                        f"armed confusion matrix — {tag}\n{ds['label_mapping_text']}")
    h = result["heldout"]
    where = _compared_on(h)
    plots.per_class_png(
        {f"armed ({where})": h["armed"], f"lexical baseline ({where})": h["lexical_baseline"]},
        out / "per_class.png",
        f"per-class precision / recall / F1 on {where} (n={h['split']['test_n']}) — {ds['file']}",
    )
    plots.per_category_png(
        {"armed": h["armed"]["per_category"], "lexical baseline": h["lexical_baseline"]["per_category"]},
        out / "per_category.png",
        f"accuracy per query category ({where}, n={h['split']['test_n']}) — {ds['file']}",
    )
    if result.get("cascade", {}).get("n_with_student"):
        plots.cascade_png(result["cascade"], out / "cascade.png",
                          f"student → LLM cascade — {ds['file']} (n={result['cascade']['n_with_student']})")


def _compared_on(h: dict[str, Any]) -> str:
    return "all evaluated" if h["split"].get("tuned_on_training_set") else "held-out split"


def _baseline_note(h: dict[str, Any]) -> str:
    t, sp = h["baseline_thresholds"], h["split"]
    cuts = f"highly ≥ {t['hi']:.3f}, less ≥ {t['lo']:.3f}"
    what = "The lexical baseline (character overlap: share of the query's characters found in the product name)"
    if sp.get("tuned_on_training_set"):
        return (f"{what} had its thresholds tuned for macro-F1 on the training set given with --baseline-train "
                f"(n={sp['tune_n']}): {cuts}. Both it and armed are scored on every evaluated item; nothing is "
                "tuned on this set.")
    return (f"{what} had its thresholds tuned for macro-F1 on a seeded {sp['tune_fraction']:.0%} tuning split "
            f"(n={sp['tune_n']}, seed {sp['seed']}): {cuts}. Both rows marked held-out are scored on the other "
            f"{sp['test_n']} items; armed tunes nothing on this set.")


def render_report(result: dict[str, Any]) -> str:
    ds = result["dataset"]
    a, h = result["armed"], result["heldout"]
    s = ds["sample"]
    sample = (f"all {s['of']} rows" if s["limit"] is None or s["n"] == s["of"]
              else f"a seeded random sample of {s['n']} of {s['of']} rows (seed {s['seed']})")
    if "scored" in s:
        sample += (f"; the run was interrupted and only the {s['scored']} pairs judged by then are scored "
                   "(pairs are judged in file order)")
    lines = [
        f"# armed bench — {ds['file']}",
        "",
        f"- command: `{result['command']}`" if result.get("command") else "- command: (library call)",
        f"- system: {result['system']}",
        f"- data: `{ds['spec']}` (sha256 {ds['sha256'][:12]}…), {sample}",
        f"- label mapping: {ds['label_mapping_text']}",
        f"- gold distribution: {ds['gold_distribution']}",
        f"- {result['hard_rule']}: n={result['hard_n']}",
        "- definitions: FAILED = no valid prediction (error / timeout / unparseable); loss rate = FAILED/n; "
        "acc ALL counts FAILED as wrong; acc w/o FAILED leaves them out (armed/eval/metrics.py)",
        "",
        "## Table 4 (percent)",
        "",
        M.table4([
            (f"armed, all evaluated (n={a['n']})", a),
            *([] if h["split"].get("tuned_on_training_set") else
              [(f"armed, held-out split (n={h['armed']['n']})", h["armed"])]),
            (f"lexical baseline, {_compared_on(h)} (n={h['lexical_baseline']['n']})", h["lexical_baseline"]),
        ]),
        "",
        _baseline_note(h),
        "",
        "![confusion matrix](confusion.png)",
        "",
        "![per-class precision / recall / F1](per_class.png)",
        "",
        "## Confusion matrix (armed, all evaluated; rows gold, columns predicted)",
        "",
        "| gold \\ pred | " + " | ".join(a["confusion"]["columns_pred"]) + " |",
        "|---|" + "---|" * len(a["confusion"]["columns_pred"]),
    ]
    for name, row in zip(a["confusion"]["rows_gold"], a["confusion"]["matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    where_cat = ("category = the set's product category" if a.get("per_query_type")
                 else "category = the knowledge base's reading of the query")
    lines += [
        "",
        f"## Per category ({_compared_on(h)}; {where_cat})",
        "",
        "![per-category accuracy](per_category.png)",
        "",
        "| category | n | armed acc ALL | armed macro-F1 | baseline acc ALL | baseline macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    base_cat = h["lexical_baseline"]["per_category"]
    for cat, m in list(h["armed"]["per_category"].items())[:15]:
        b = base_cat.get(cat, {})
        lines.append(f"| {cat} | {m['n']} | {_pct(m['accuracy_all'])} | {_pct(m['macro_f1'])} | "
                     f"{_pct(b.get('accuracy_all'))} | {_pct(b.get('macro_f1'))} |")
    if a.get("per_query_type"):
        lines += _per_group_tables(a, h)
    t = result["timing"]
    v = result["versions"]
    lines += [
        "",
        "## Run",
        "",
        f"- deciding branch: {result['branches']}",
        f"- errors: {result['errors'] or 'none'}",
        f"- mean seconds per pair {t['seconds_per_pair_mean']:.3f} (concurrency {t['concurrency']}; wall of the "
        f"last invocation {t['wall_seconds_this_invocation']:.0f}s — a resumed run only times what it judged)",
        f"- versions: {json.dumps(v['judgment'], ensure_ascii=False)}; software {v['software']}; "
        f"llm_weight {v['llm_weight']}",
        "",
    ]
    if result.get("cascade", {}).get("n_with_student"):
        lines.append(cascade.render(result["cascade"], result["student_calibration"]))
    return "\n".join(lines)


_CLASS_COLUMNS = ("highly", "less", "irrelevant")


def _per_group_table(title: str, armed: dict[str, Any], baseline: dict[str, Any] | None, note: str) -> list[str]:
    head = ["| " + title + " | n | acc ALL | " + " | ".join(f"{c} P | {c} R | {c} F1" for c in _CLASS_COLUMNS)
            + (" | baseline acc ALL |" if baseline is not None else " |")]
    head.append("|---" * (3 + 3 * len(_CLASS_COLUMNS) + (1 if baseline is not None else 0)) + "|")
    body = []
    for key, m in armed.items():
        cells = [key, str(m["n"]), _pct(m["accuracy_all"])]
        for c in _CLASS_COLUMNS:
            cells += [_pct(m.get(f"{c}_{x}")) for x in ("precision", "recall", "f1")]
        if baseline is not None:
            cells.append(_pct(baseline.get(key, {}).get("accuracy_all")))
        body.append("| " + " | ".join(cells) + " |")
    return ["", note, "", *head, *body]


def _per_group_tables(a: dict[str, Any], h: dict[str, Any]) -> list[str]:
    """The per-query-type and per-clause tables: armed over all evaluated items; the lexical baseline's accuracy
    beside it when both were scored on the same items (--baseline-train)."""
    same = bool(h["split"].get("tuned_on_training_set"))
    base = h["lexical_baseline"] if same else None
    support = (f"per-class figures need {M.MIN_CLASS_SUPPORT} gold items of the class in the group ('–' otherwise); "
               "a clause gives one level, so its row shows that level's figures")
    extra = "" if same else " (the lexical baseline was scored on a held-out split only: see the per-category table)"
    return [
        "",
        "## Per query type (armed, all evaluated)",
        *_per_group_table("query type", a["per_query_type"], base and base.get("per_query_type", {}),
                          f"How a pair was made (armed/eval/pharmacy.py); {support}{extra}."),
        "",
        "## Per guideline clause (armed, all evaluated)",
        *_per_group_table("clause", a["per_clause"], base and base.get("per_clause", {}),
                          "The clause of armed/guideline.py that gives each gold label."),
    ]


async def run_ablation(
    opts: BenchOptions, settings: ArmedSettings | None = None, factory: PipelineFactory | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Table 5: the module ladder over the same items; one predictions file per rung, one table."""
    if opts.endpoint:
        raise ValueError("the ablation switches stages in this process: it cannot run against --endpoint")
    base = settings or ArmedSettings()
    make = factory or default_factory()
    ds = load_dataset(opts.dataset, opts.limit, opts.seed)
    hard = set(hard_subset(ds.items, opts.seed, opts.hard_per_label))
    opts.out.mkdir(parents=True, exist_ok=True)
    switches = dict.fromkeys(LADDER_SWITCHES, False)
    rows_out: list[tuple[str, dict[str, Any]]] = []
    cats: dict[str, str] | None = None
    for name, switch in ABLATION_LADDER:
        if switch:
            switches[switch] = True
        stages = base.stages.model_copy(update=switches)
        rung_settings = base.model_copy(update={"stages": stages})
        pipeline = make(rung_settings)
        if cats is None:
            cats = categories_for(ds.items, pipeline.kb)
        slug = name.replace("+", "plus_").replace(" ", "_").lower()
        rows = await run_predictions(ds.items, LocalJudge(pipeline), opts.out / "ablation" / slug / "predictions.jsonl",
                                     categories=cats, concurrency=opts.concurrency, progress=opts.progress,
                                     desc=name, timeout_s=opts.timeout_s)
        m = score_rows(ds.items, rows, hard, cats)
        m["switches"] = dict(switches)
        rows_out.append((name, m))
    ds_info = _dataset_info(ds)
    _write_json(opts.out / "ablation.json", {
        "dataset": ds_info, "hard_rule": HARD_RULE, "hard_n": len(hard), "command": opts.command,
        "ladder": [{"rung": n, **{k: v for k, v in m.items() if k != "per_category"}} for n, m in rows_out],
        "versions": software_versions(),
    })
    from armed.eval import plots

    plots.ladder_png(rows_out, opts.out / "ablation.png", f"Table 5 ladder — {ds_info['file']} (n={len(ds.items)})")
    s = ds.sample
    md = [
        f"# armed ablation (Table 5) — {ds_info['file']}",
        "",
        f"- command: `{opts.command}`" if opts.command else "- command: (library call)",
        f"- data: {s['n']} of {s['of']} rows (seed {s['seed']}); {ds_info['label_mapping_text']}",
        "- each rung adds one module to the one above; switches outside the ladder keep their settings",
        f"- {HARD_RULE}: n={len(hard)}",
        "",
        M.table4(rows_out),
        "",
        "![ladder](ablation.png)",
        "",
    ]
    (opts.out / "ablation.md").write_text("\n".join(md), encoding="utf-8")
    return rows_out
