"""`armed bench`, `armed vote`, `armed distill`: the evaluation subcommands (wired in by `add_eval_commands`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path

from armed.eval.vote import DEFAULT_VOTERS


def _command() -> str:
    return "armed " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _settings():
    from armed.cli import load_settings
    from armed.log import configure_logging

    settings = load_settings()
    configure_logging(settings.logging)
    return settings


def cmd_bench(args: argparse.Namespace) -> int:
    from armed.eval.bench import BenchOptions, run_ablation, run_bench
    from armed.eval.metrics import table4

    opts = BenchOptions(
        dataset=args.dataset, out=Path(args.out), limit=args.limit, seed=args.seed, endpoint=args.endpoint,
        concurrency=args.concurrency, progress=not args.quiet, tune_fraction=args.tune_fraction,
        hard_per_label=args.hard_per_label, timeout_s=args.timeout, command=_command(),
        report_only=args.report_only,
    )
    settings = _settings()
    if args.ablation:
        rows = asyncio.run(run_ablation(opts, settings))
        print(table4(rows))
        print(f"wrote {opts.out / 'ablation.md'}", file=sys.stderr)
        return 0
    result = asyncio.run(run_bench(opts, settings))
    h = result["heldout"]
    print(table4([("armed (all)", result["armed"]), ("armed (held-out)", h["armed"]),
                  ("lexical baseline (held-out)", h["lexical_baseline"])]))
    print(f"wrote {opts.out / 'metrics.json'}, report.md and plots", file=sys.stderr)
    return 0


def cmd_vote(args: argparse.Namespace) -> int:
    from armed.eval.vote import run_vote

    summary = asyncio.run(run_vote(
        args.dataset, Path(args.out), args.voter or DEFAULT_VOTERS, settings=_settings(), limit=args.limit,
        seed=args.seed, concurrency=args.concurrency, progress=not args.quiet, command=_command(),
    ))
    print(json.dumps({k: summary[k] for k in ("n", "agreement", "unanimous_share")}, ensure_ascii=False))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from armed.eval.distill import run_distill

    summary = asyncio.run(run_distill(
        args.dataset, Path(args.out), args.student, task=args.task, teachers=args.teacher or DEFAULT_VOTERS,
        include_split=args.include_split, eval_fraction=args.eval_fraction, steps=args.steps, lr=args.lr,
        batch_size=args.batch_size, lora=args.lora, device=args.device, limit=args.limit, seed=args.seed,
        concurrency=args.concurrency, progress=not args.quiet, settings=_settings(), command=_command(),
    ))
    print(json.dumps(summary["evaluation"], ensure_ascii=False, default=str)[:2000])
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, metavar="FORMAT:PATH",
                   help="armed:FILE.jsonl, kuake-qtr:FILE.json or kuake-qqr:FILE.json")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rerun the command to resume)")
    p.add_argument("--limit", type=int, help="a seeded random sample of N rows (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, the splits and the HARD draw")
    p.add_argument("--concurrency", type=int, default=4, help="judgments in flight at once")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="score armed on a labelled set (Table 4, baseline, plots); resumable")
    _common(b)
    b.add_argument("--endpoint", metavar="URL", help="judge through a running service: POST URL/v1/judge")
    b.add_argument("--ablation", action="store_true", help="run the Table 5 module ladder instead")
    b.add_argument("--tune-fraction", type=float, default=0.5,
                   help="share of the items the lexical baseline's thresholds are tuned on (the rest is held out)")
    b.add_argument("--hard-per-label", type=int, help="cap the HARD subset at N items per level")
    b.add_argument("--timeout", type=float, help="seconds per judgment before it counts as FAILED")
    b.add_argument("--report-only", action="store_true",
                   help="judge nothing: score and report the rows already in DIR/predictions.jsonl")
    b.set_defaults(func=cmd_bench)

    v = sub.add_parser("vote", help="several models / prompt variants judge a set; majority, agreement, review")
    _common(v)
    v.add_argument("--voter", action="append", metavar="SPEC",
                   help=f"prompt=NAME, weight=W, llm=PATH or endpoint=URL, comma-joined (repeat; default "
                        f"{' '.join(DEFAULT_VOTERS)})")
    v.set_defaults(func=cmd_vote)

    d = sub.add_parser("distill", help="teacher votes → SFT data → fine-tuned student → Table 8")
    _common(d)
    d.add_argument("--student", required=True, help="student checkpoint folder, or 'tiny' for a tiny random Qwen3")
    d.add_argument("--task", choices=("relevance", "consistency"), default="relevance")
    d.add_argument("--teacher", action="append", metavar="SPEC", help="a teacher voter spec (repeatable)")
    d.add_argument("--include-split", action="store_true", help="train on majority labels of split votes too")
    d.add_argument("--eval-fraction", type=float, default=0.3, help="share of items held out for evaluation")
    d.add_argument("--steps", type=int, default=20)
    d.add_argument("--lr", type=float, default=2e-4)
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) and merge them")
    d.add_argument("--device", default="cpu", help="torch device for the student: cpu, cuda, cuda:1")
    d.set_defaults(func=cmd_distill)
