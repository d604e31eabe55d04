"""`armed bench` over several sets and knowledge bases at once: one run per (knowledge base, set), side by side.

Each run is an ordinary bench run (resumable, its own metrics.json, report.md and plots) in
`OUT/<kb>/<set>/`, and with `--ablation` the Table 5 ladder in `OUT/<kb>/<set>-ablation/`. `OUT/SUMMARY.md` (and
`summary.json`) puts them side by side: per set and knowledge base the headline figures (accuracy, macro-F1, the
three classes' F1, highly-relevant recall, loss, seconds per pair); per query type where the set has them (the
pharmacy benchmark); the ladder where it ran. Knowledge bases are named as `armed bench --kb` takes them: `seed` (the
packaged seed alone), `current` (the installed artefact, `make kb`) or a folder; each run records the version it
judged with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from armed.eval.bench import BenchOptions, PipelineFactory, run_ablation, run_bench
from armed.eval.datasets import parse_spec
from armed.settings import ArmedSettings, overlay

HEADLINE = (("accuracy_all", "acc"), ("macro_f1", "macro-F1"), ("highly_f1", "highly F1"),
            ("highly_recall", "highly R"), ("less_f1", "less F1"), ("irrelevant_f1", "irrel. F1"),
            ("loss_rate", "loss"))


def kb_settings(settings: ArmedSettings, kb: str) -> ArmedSettings:
    """The settings judging with knowledge base `kb`: seed / none (the packaged seed alone), current, or a folder."""
    artefact = "none" if kb in ("seed", "none") else kb
    if artefact == "current":
        from armed.knowledge.artefact import default_root

        artefact = str(default_root() / "current")
    return overlay(settings, {"knowledge": {"artefact": artefact, "seed": None, "sources": []}})


def slug(spec: str) -> str:
    fmt, path = parse_spec(spec)
    return re.sub(r"[^\w.-]+", "-", f"{fmt}-{path.stem}")


async def run_side_by_side(opts: BenchOptions, datasets: list[str], kbs: list[str], settings: ArmedSettings,
                           baseline_train: dict[str, str], ablation: bool = False,
                           ablation_limit: int | None = None,
                           factories: Callable[[str], PipelineFactory | None] | None = None) -> dict[str, Any]:
    """Every (knowledge base, set) run, then the summary. `baseline_train`: a training set per format;
    `factories`: the pipeline factory of a knowledge base (default: bench's own, which loads what settings name)."""
    runs: list[dict[str, Any]] = []
    for kb in kbs:
        s = kb_settings(settings, kb)
        factory = factories(kb) if factories else None
        for spec in datasets:
            fmt, _ = parse_spec(spec)
            out = opts.out / kb_label(kb) / slug(spec)
            result = await run_bench(replace(opts, dataset=spec, out=out, baseline_train=baseline_train.get(fmt)), s,
                                     factory)
            row: dict[str, Any] = {"kb": kb_label(kb), "dataset": spec, "format": fmt, "dir": str(out),
                                   "result": result}
            if ablation:
                ladder = await run_ablation(replace(opts, dataset=spec, out=out.with_name(out.name + "-ablation"),
                                                    limit=ablation_limit), s, factory)
                row["ladder"] = [(name, m) for name, m in ladder]
            runs.append(row)
    summary = summarise(runs)
    (opts.out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    (opts.out / "SUMMARY.md").write_text(render(summary, opts.command), encoding="utf-8")
    return summary


def kb_label(kb: str) -> str:
    return "seed" if kb in ("seed", "none") else "artefact" if kb == "current" else re.sub(r"[^\w.-]+", "-", kb)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = []
    for r in runs:
        res, a = r["result"], r["result"]["armed"]
        kb_version = ((res.get("versions") or {}).get("judgment") or {}).get("knowledge_base")
        item: dict[str, Any] = {
            "kb": r["kb"], "kb_version": kb_version, "dataset": r["dataset"], "format": r["format"],
            "dir": r["dir"], "n": a["n"], "mapping": res["dataset"]["label_mapping_text"],
            **{k: a.get(k) for k, _ in HEADLINE},
            "seconds_per_pair": res["timing"]["seconds_per_pair_mean"],
            "branches": res.get("branches"),
            "per_query_type": {k: {"n": v["n"], "accuracy_all": v["accuracy_all"]}
                               for k, v in (a.get("per_query_type") or {}).items()},
        }
        if "ladder" in r:
            item["ladder"] = [{"rung": name, "n": m["n"], "accuracy_all": m["accuracy_all"],
                               "macro_f1": m["macro_f1"]} for name, m in r["ladder"]]
        out.append(item)
    return {"runs": out}


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


def render(summary: dict[str, Any], command: str = "") -> str:
    runs = summary["runs"]
    lines = ["# armed bench, side by side", ""]
    if command:
        lines += [f"- command: `{command}`", ""]
    lines += ["Every figure is a percent over the whole set (no tuning split: nothing is fitted on these sets); each "
              "run's own report.md has the confusion matrix, per-category table and plots.", "",
              "| set | knowledge base | n | " + " | ".join(label for _, label in HEADLINE) + " | s / pair | mapping |",
              "|---|---|---|" + "---|" * len(HEADLINE) + "---|---|"]
    for r in runs:
        lines.append(f"| {Path(r['dataset'].split(':', 1)[1]).name} | {r['kb']} ({r['kb_version']}) | {r['n']} | "
                     + " | ".join(_pct(r[k]) for k, _ in HEADLINE)
                     + f" | {r['seconds_per_pair']:.3f} | {r['mapping']} |")
    typed = [r for r in runs if r["per_query_type"]]
    if typed:
        kinds = list(dict.fromkeys(k for r in typed for k in r["per_query_type"]))
        lines += ["", "## Per query type (accuracy, n)", "",
                  "| query type | " + " | ".join(f"{Path(r['dataset'].split(':', 1)[1]).name} / {r['kb']}"
                                                 for r in typed) + " |",
                  "|---|" + "---|" * len(typed)]
        for k in kinds:
            cells = []
            for r in typed:
                v = r["per_query_type"].get(k)
                cells.append(f"{_pct(v['accuracy_all'])} ({v['n']})" if v else "–")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    laddered = [r for r in runs if r.get("ladder")]
    if laddered:
        rungs = list(dict.fromkeys(x["rung"] for r in laddered for x in r["ladder"]))
        lines += ["", "## Ablation ladder (Table 5, product search, student; macro-F1 / accuracy, a seeded sample)",
                  "",
                  "| rung | " + " | ".join(f"{Path(r['dataset'].split(':', 1)[1]).name} / {r['kb']} "
                                           f"(n={r['ladder'][0]['n']})" for r in laddered) + " |",
                  "|---|" + "---|" * len(laddered)]
        for rung in rungs:
            cells = []
            for r in laddered:
                x = next((y for y in r["ladder"] if y["rung"] == rung), None)
                cells.append(f"{_pct(x['macro_f1'])} / {_pct(x['accuracy_all'])}" if x else "–")
            lines.append(f"| {rung} | " + " | ".join(cells) + " |")
    lines += ["", "## Deciding branch per run", ""]
    for r in runs:
        lines.append(f"- {Path(r['dataset'].split(':', 1)[1]).name} / {r['kb']}: {r['branches']}")
    return "\n".join(lines) + "\n"
