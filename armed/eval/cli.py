"""`armed bench`, `armed vote`, `armed distill`: the evaluation subcommands (wired in by `add_eval_commands`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path

from armed.cli_common import load_settings
from armed.errors import InputError
from armed.eval.bench import BenchOptions, run_ablation, run_bench
from armed.eval.datasets import parse_spec
from armed.eval.metrics import table4
from armed.eval.vote import DEFAULT_VOTERS, run_vote
from armed.log import configure_logging


def _command() -> str:
    return "armed " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _settings():
    settings = load_settings()
    configure_logging(settings.logging)
    return settings


def cmd_bench(args: argparse.Namespace) -> int:
    datasets, kbs = args.dataset, args.kb or []
    opts = BenchOptions(
        dataset=datasets[0], out=Path(args.out), limit=args.limit, seed=args.seed, endpoint=args.endpoint,
        concurrency=args.concurrency, progress=not args.quiet, tune_fraction=args.tune_fraction,
        hard_per_label=args.hard_per_label, timeout_s=args.timeout, command=_command(),
        report_only=args.report_only, baseline_train=(args.baseline_train or [None])[0],
        teacher_predictions=Path(args.teacher_predictions) if args.teacher_predictions else None,
    )
    settings = _settings()
    if len(datasets) > 1 or len(kbs) > 1:  # side by side: one run per (knowledge base, set), then SUMMARY.md
        from armed.eval.side_by_side import run_side_by_side

        try:
            by_format = {parse_spec(spec)[0]: spec for spec in args.baseline_train or []}
            summary = asyncio.run(run_side_by_side(opts, datasets, kbs or ["auto"], settings, by_format,
                                                   ablation=args.ablation, ablation_limit=args.ablation_limit))
        except ValueError as exc:
            print(f"armed bench: {exc}", file=sys.stderr)
            return 2
        print((Path(args.out) / "SUMMARY.md").read_text(encoding="utf-8"))
        print(f"wrote {Path(args.out) / 'SUMMARY.md'} ({len(summary['runs'])} runs)", file=sys.stderr)
        return 0
    if kbs:  # the same as ARMED_KNOWLEDGE__ARTEFACT=PATH: judge with that artefact (its version is recorded)
        from armed.eval.side_by_side import kb_settings

        settings = kb_settings(settings, kbs[0])
    try:
        if args.ablation:
            rows = asyncio.run(run_ablation(opts, settings))
            print(table4(rows))
            print(f"wrote {opts.out / 'ablation.md'}", file=sys.stderr)
            return 0
        result = asyncio.run(run_bench(opts, settings))
    except ValueError as exc:  # bad options, or an --out holding another judge's predictions
        print(f"armed bench: {exc}", file=sys.stderr)
        return 2
    h = result["heldout"]
    if h["split"].get("tuned_on_training_set"):
        rows = [("armed (all)", result["armed"]), ("lexical baseline tuned on train (all)", h["lexical_baseline"])]
    else:
        rows = [("armed (all)", result["armed"]), ("armed (held-out)", h["armed"]),
                ("lexical baseline (held-out)", h["lexical_baseline"])]
    print(table4(rows))
    print(f"wrote {opts.out / 'metrics.json'}, report.md and plots", file=sys.stderr)
    return 0


def cmd_vote(args: argparse.Namespace) -> int:
    summary = asyncio.run(run_vote(
        args.dataset, Path(args.out), args.voter or DEFAULT_VOTERS, settings=_settings(), limit=args.limit,
        seed=args.seed, concurrency=args.concurrency, progress=not args.quiet, command=_command(),
    ))
    print(json.dumps({k: summary[k] for k in ("n", "agreement", "unanimous_share")}, ensure_ascii=False))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    if args.task == "consistency" and args.student in ("mlp", "cross-encoder-pack"):
        print(f"armed distill: --student {args.student} trains the relevance student; the consistency classifier is "
              "--student classifier:BASE", file=sys.stderr)
        return 2
    if args.student == "mlp":
        return _distill_mlp(args)
    if args.student == "cross-encoder-pack":
        return _distill_pack(args)
    if args.student.startswith("classifier:"):
        return _distill_classifier(args)
    if not args.dataset:
        raise SystemExit("armed distill: --dataset is required for a chat-model student (votes → SFT)")
    from armed.eval.distill import run_distill

    summary = asyncio.run(run_distill(
        args.dataset, Path(args.out), args.student, task=args.task, teachers=args.teacher or DEFAULT_VOTERS,
        include_split=args.include_split, eval_fraction=args.eval_fraction, steps=args.steps, lr=args.lr,
        batch_size=args.batch_size, lora=args.lora, device=args.device, limit=args.limit, seed=args.seed,
        concurrency=args.concurrency, progress=not args.quiet, settings=_settings(), command=_command(),
    ))
    print(json.dumps(summary["evaluation"], ensure_ascii=False, default=str)[:2000])
    return 0


def _distill_mlp(args: argparse.Namespace) -> int:
    from armed.engines.cache import cache_dir
    from armed.student.distill import build_mlp_student
    from armed.student.model import TrainConfig

    cache = Path(args.cache_dir) if args.cache_dir else cache_dir() / "student"
    try:
        meta = build_mlp_student(
            args.train or [], Path(args.out), teacher_files=[Path(f) for f in args.teacher_predictions or []],
            teacher_weight=args.teacher_weight, tune_fraction=args.tune_fraction, seed=args.seed, limit=args.limit,
            cache_dir=cache, config=TrainConfig(seed=args.seed, hidden=args.hidden, max_epochs=args.epochs),
            command=_command(), log=None if args.quiet else (lambda m: print(m, file=sys.stderr)),
            cross_encoder_runs=[Path(r) for r in args.cross_encoder or []],
        )
    except InputError as exc:
        print(f"armed distill: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta["tuning_split"]["student"], ensure_ascii=False))
    return 0


def _distill_pack(args: argparse.Namespace) -> int:
    from armed.student.distill import write_cross_encoder_pack

    try:
        info = write_cross_encoder_pack(
            args.train or [], Path(args.out), teacher_files=[Path(f) for f in args.teacher_predictions or []],
            teacher_weight=args.teacher_weight, tune_fraction=args.tune_fraction, seed=args.seed, limit=args.limit)
    except InputError as exc:
        print(f"armed distill: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, ensure_ascii=False))
    return 0


def _distill_classifier(args: argparse.Namespace) -> int:
    if args.task == "consistency":  # the profiles' models.consistency (armed/student/consistency.py)
        from armed.student.consistency import train_consistency_classifier as train
    else:  # the profiles' models.student
        from armed.student.classifier import train_classifier_student as train
    base = args.student.split(":", 1)[1]
    try:
        summary = train(
            base, args.train or [], Path(args.out), teacher_files=[Path(f) for f in args.teacher_predictions or []],
            teacher_weight=args.teacher_weight, tune_fraction=args.tune_fraction, seed=args.seed, limit=args.limit,
            steps=args.steps, lr=args.lr, batch_size=args.batch_size, device=args.device, command=_command(),
            log=None if args.quiet else (lambda m: print(m, file=sys.stderr)),
        )
    except InputError as exc:
        print(f"armed distill: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary["tuning_split"], ensure_ascii=False))
    return 0


def _common(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, metavar="FORMAT:PATH",
                   **({"action": "append"} if p.prog.endswith(" bench") else {}),
                   help="armed:FILE.jsonl, kuake-qtr:FILE.json, kuake-qqr:FILE.json or pharmacy:FILE.jsonl"
                   + (" (repeat: the sets side by side, SUMMARY.md in --out)" if p.prog.endswith(" bench") else ""))
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rerun the command to resume)")
    p.add_argument("--limit", type=int, help="a seeded random sample of N rows (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, the splits and the HARD draw")
    p.add_argument("--concurrency", type=int, default=4, help="judgments in flight at once")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _kb(sources: list[str] | None):
    from armed.knowledge import KnowledgeBase, KnowledgeError

    try:
        return KnowledgeBase.load(sources=sources or [])
    except KnowledgeError as exc:
        raise SystemExit(f"armed eval: {exc}") from None


def _ner_kb(sources: list[str], docs: list) -> object:
    """The KB scored by `eval ner`: the seed plus the sources, less any drug-inserts row that is an evaluated insert
    (armed.eval.ner.drop_leaked_inserts; the count is printed so a reader knows the KB differs from a build)."""
    from armed.eval.ner import drop_leaked_inserts
    from armed.knowledge import KnowledgeBase
    from armed.knowledge.sources import KnowledgeSourceError, read_source

    try:
        loaded = [read_source(s) for s in sources]
    except KnowledgeSourceError as exc:
        raise SystemExit(f"armed eval: {exc}") from None
    loaded, dropped = drop_leaked_inserts(loaded, docs)
    if dropped:
        print(f"armed eval ner: {len(dropped)} drug-inserts rows are evaluated inserts and were left out of the KB",
              file=sys.stderr)
    return KnowledgeBase.from_sources(loaded)


def cmd_eval_ner(args: argparse.Namespace) -> int:
    from armed.eval.ner import evaluate, markdown, read_brat

    data = Path(args.data)
    if not data.is_dir():
        print(f"armed eval ner: {data} is not a folder of brat .txt/.ann pairs", file=sys.stderr)
        return 2
    docs = read_brat(data, None if args.split == "all" else args.split)
    if not docs:
        print(f"armed eval ner: no .txt files in the {args.split} part of {data}", file=sys.stderr)
        return 2
    result = evaluate(_ner_kb(args.source or [], docs), docs)
    result["split"] = args.split
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else markdown(result))
    return 0


def cmd_eval_brands(args: argparse.Namespace) -> int:
    from armed.eval.brands import report

    knowledge = Path(args.knowledge) if args.knowledge else None
    qtr = Path(args.qtr_train) if args.qtr_train else None
    for what, path in (("--knowledge", knowledge), ("--qtr-train", qtr)):
        if path is not None and not path.exists():
            print(f"armed eval brands: {what} {path} does not exist", file=sys.stderr)
            return 2
    result = report(_kb(args.source), knowledge, qtr)
    if not args.json:
        for key, value in result.items():
            if isinstance(value, dict):
                shown = {k: v for k, v in value.items() if k not in ("misses", "examples")}
                print(f"{key}: {json.dumps(shown, ensure_ascii=False)}")
                for item in value.get("misses", [])[:10]:
                    print(f"  miss: {item['pair']['query']} | {item['pair']['product']} → {item['level']}")
                for name, brand in value.get("examples", [])[:20]:
                    print(f"  guessed {brand!r} in {name!r}")
            else:
                print(f"{key}: {value}")
    else:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


def cmd_eval_pharmacy(args: argparse.Namespace) -> int:
    from armed.eval import pharmacy
    from armed.knowledge.sources import KnowledgeSourceError

    knowledge = Path(args.knowledge)
    if not knowledge.is_dir():
        print(f"armed eval pharmacy: --knowledge {knowledge} is not a folder (../shared/data/knowledge)",
              file=sys.stderr)
        return 2
    hand = None if args.hand == "none" else Path(args.hand)
    if hand is not None and not hand.is_file():
        print(f"armed eval pharmacy: --hand {hand} is not a file", file=sys.stderr)
        return 2
    try:
        built = pharmacy.build(knowledge, seed=args.seed, hand=hand, command=_command())
    except (KnowledgeSourceError, ValueError) as exc:
        print(f"armed eval pharmacy: {exc}", file=sys.stderr)
        return 2
    paths = pharmacy.write(built, Path(args.out))
    halves = built.manifest["halves"]
    print(json.dumps({s: {k: halves[s][k] for k in ("pairs", "common_names", "generated", "hand")} for s in halves},
                     ensure_ascii=False))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="measure parts of armed: NER on tcm-insert-ner, brands it has never seen; "
                        "build the pharmacy benchmark")
    evsub = ev.add_subparsers(dest="eval_command", required=True)
    n = evsub.add_parser("ner", help="span-level P/R/F1 per type of the lexicon NER on held-out tcm-insert-ner")
    n.add_argument("--data", required=True, metavar="DIR", help="tcm-insert-ner/train (brat N.txt + N.ann pairs)")
    n.add_argument("--split", choices=("heldout", "train", "all"), default="heldout",
                   help="which part by armed.knowledge.splits.tcm_split (report heldout; never tune on it)")
    n.add_argument("--source", action="append", metavar="KIND:PATH", help="knowledge source to load (repeat)")
    n.add_argument("--json", action="store_true", help="print the full result as JSON")
    n.set_defaults(func=cmd_eval_ner)
    br = evsub.add_parser(
        "brands", help="brand rule hit rate on pairs of unseen brands; brands guessed in ordinary names")
    br.add_argument("--knowledge", metavar="DIR",
                    help="../shared/data/knowledge: build the unseen-brand pairs from originator-drugs and drug-dicts")
    br.add_argument("--qtr-train", metavar="FILE", help="kuake-qtr-train.json: measure guessed brands in its titles")
    br.add_argument("--source", action="append", metavar="KIND:PATH",
                    help="knowledge source to load (repeat); pairs use only brands this KB does not know")
    br.add_argument("--json", action="store_true")
    br.set_defaults(func=cmd_eval_brands)
    ph = evsub.add_parser(
        "pharmacy", help="build the pharmacy benchmark (tune.jsonl, report.jsonl, manifest.json) from the public "
                         "drug lists and the hand-written pairs")
    ph.add_argument("--knowledge", required=True, metavar="DIR", help="../shared/data/knowledge (read, never copied)")
    ph.add_argument("--out", default="benchmarks/pharmacy/generated", metavar="DIR",
                    help="output folder (default benchmarks/pharmacy/generated, git-ignored)")
    ph.add_argument("--seed", type=int, default=0, help="seed of every draw (the same seed and inputs give the same "
                                                          "files)")
    ph.add_argument("--hand", default=str(Path(__file__).resolve().parents[2] / "benchmarks/pharmacy/hand.jsonl"),
                    metavar="FILE|none", help="the hand-written pairs (default benchmarks/pharmacy/hand.jsonl)")
    ph.set_defaults(func=cmd_eval_pharmacy)

    b = sub.add_parser("bench", help="score armed on a labelled set (Table 4, baseline, plots); resumable")
    _common(b)
    b.add_argument("--endpoint", metavar="URL", help="judge through a running service: POST URL/v1/judge")
    b.add_argument("--ablation", action="store_true", help="run the Table 5 module ladder instead")
    b.add_argument("--tune-fraction", type=float, default=0.5,
                   help="share of the items the lexical baseline's thresholds are tuned on (the rest is held out)")
    b.add_argument("--baseline-train", metavar="FORMAT:PATH", action="append",
                   help="tune the lexical baseline on this training set (same task) and compare on every item "
                        "(repeat with several --dataset: each set takes the one of its format)")
    b.add_argument("--teacher-predictions", metavar="FILE",
                   help="a teacher run's predictions.jsonl over the same ids: the cascade curve's escalated pairs")
    b.add_argument("--hard-per-label", type=int, help="cap the HARD subset at N items per level")
    b.add_argument("--timeout", type=float, help="seconds per judgment before it counts as FAILED")
    b.add_argument("--kb", metavar="PATH|current|seed", action="append",
                   help="knowledge base: a built artefact folder (`armed kb build`), current (the installed one), or "
                        "seed (none) for the seed alone; repeat to run every set with each, side by side (default: "
                        "the knowledge.artefact setting, auto)")
    b.add_argument("--ablation-limit", type=int, metavar="N",
                   help="side by side with --ablation: the ladder runs on a seeded sample of N pairs per set")
    b.add_argument("--report-only", action="store_true",
                   help="judge nothing: score and report the rows already in DIR/predictions.jsonl")
    b.set_defaults(func=cmd_bench)

    v = sub.add_parser("vote", help="several models / prompt variants judge a set; majority, agreement, review")
    _common(v)
    v.add_argument("--voter", action="append", metavar="SPEC",
                   help=f"prompt=NAME, weight=W, llm=PATH or endpoint=URL, comma-joined (repeat; default "
                        f"{' '.join(DEFAULT_VOTERS)})")
    v.set_defaults(func=cmd_vote)

    d = sub.add_parser("distill", help="train the student judge: mlp (embedded default), classifier:BASE (Qwen3 "
                       "sequence classifier, GPU profiles; with --task consistency the profiles' consistency "
                       "classifier) or a chat checkpoint (votes → SFT → Table 8)")
    _common(d, dataset_required=False)
    d.add_argument("--student", required=True,
                   help="mlp: the embedded default's student; cross-encoder-pack: the inputs of "
                        "ops/train_cross_encoder_gpu.py (--out is the pack folder); classifier:PATH: a Qwen3 "
                        "sequence classifier "
                        "fine-tuned from the checkpoint at PATH ('classifier:tiny' for a tiny random Qwen3): the "
                        "profiles' models.student, or models.consistency with --task consistency; "
                        "otherwise a chat checkpoint folder (or 'tiny') trained on `armed vote` labels")
    d.add_argument("--train", action="append", metavar="FORMAT:PATH",
                   help="mlp / classifier: human-labelled training set, kuake-qtr:FILE, kuake-qqr:FILE or "
                        "pharmacy:DIR/tune.jsonl (the pharmacy benchmark's tune half; a report row is refused) "
                        "(repeat); "
                        "classifier with --task consistency also consistency:FILE.jsonl, one "
                        '{"query": ..., "text": ..., "label": "consistent"|"inconsistent"} a line, text = the '
                        "retrieved document as the filter sends it (title, a space, text); KUAKE rows count as "
                        "consistent exactly when highly relevant")
    d.add_argument("--teacher-predictions", action="append", metavar="FILE",
                   help="mlp / classifier: teacher judgments with probabilities as soft labels (armed judge-batch "
                        "output, armed bench predictions.jsonl or armed vote votes.jsonl; repeat); with --task "
                        "consistency, P(consistent) = the share of votes (or the probability) for highly_relevant")
    d.add_argument("--teacher-weight", type=float, default=0.5,
                   help="share of the training loss on teacher pairs when both kinds are given (0..1)")
    d.add_argument("--tune-fraction", type=float, default=0.1,
                   help="mlp / classifier: share of training queries held out for early stopping and calibration")
    d.add_argument("--hidden", type=int, default=256, help="mlp: hidden units")
    d.add_argument("--epochs", type=int, default=40, help="mlp: most epochs (early stopping on the tuning split)")
    d.add_argument("--cache-dir", metavar="DIR", help="mlp: embedding cache (default $ARMED_CACHE_DIR/student)")
    d.add_argument("--cross-encoder", metavar="RUN_DIR", action="append",
                   help="mlp: blend in the cross-encoder that ops/train_cross_encoder_gpu.py wrote to RUN_DIR (its "
                        "pack from `--student cross-encoder-pack` with the same --train, --seed, --tune-fraction), "
                        "or the cross-encoders of a student artefact; repeat to average several")
    d.add_argument("--task", choices=("relevance", "consistency"), default="relevance",
                   help="classifier: relevance trains the student, consistency the filter's consistency check "
                        "(labels consistent, inconsistent); chat checkpoint: the SFT task")
    d.add_argument("--teacher", action="append", metavar="SPEC", help="a teacher voter spec (repeatable)")
    d.add_argument("--include-split", action="store_true", help="train on majority labels of split votes too")
    d.add_argument("--eval-fraction", type=float, default=0.3, help="share of items held out for evaluation")
    d.add_argument("--steps", type=int, default=20)
    d.add_argument("--lr", type=float, default=2e-4)
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) and merge them")
    d.add_argument("--device", default="cpu", help="torch device for the student: cpu, cuda, cuda:1")
    d.set_defaults(func=cmd_distill)
