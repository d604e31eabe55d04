"""`armed` command line: judge one pair, or a JSONL file of pairs (resumable).

Exit codes: 0 done; 2 bad input or settings (the message names the field); 3 a judgment timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from armed.cli_common import CliError, load_settings
from armed.domain import Judgment
from armed.errors import InputError, JudgmentTimeout
from armed.images import ImageError, read_local_image
from armed.log import configure_logging
from armed.settings import ArmedSettings


def _utf8(value: str, flag: str) -> str:
    # argv bytes that are not UTF-8 arrive as lone surrogates (PEP 383): say so instead of judging mojibake.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CliError(f"{flag}: not valid UTF-8 text") from None
    return value


def _read_image(path: str, settings: ArmedSettings) -> dict[str, bytes]:
    # The command line reads local files (as its user), into bytes: the pipeline itself never opens a path.
    try:
        return {"data": read_local_image(path, None, settings.images)}
    except ImageError as exc:
        raise CliError(f"--image {path}: {exc.message}") from None


def _cpv(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--cpv {item!r}: expected PROPERTY=VALUE")
        out[_utf8(key.strip(), "--cpv")] = _utf8(value.strip(), "--cpv")
    return out


def format_judgment(j: Judgment) -> str:
    """A person's view of a judgment: the answer first, then the evidence it rests on."""
    lines = [
        f"query:    {j.query}",
        f"product:  {j.product_name}",
        f"level:    {j.level.value}  (benchmark: {j.benchmark_level.value})",
        f"branch:   {j.branch.value} — {j.reason}",
        *([f"guideline: {j.guideline} (query intent: {j.intent})"] if j.guideline else
          [f"intent:   {j.intent}"] if j.intent else []),
        "probabilities: " + ", ".join(f"{k.value}={v:.2f}" for k, v in j.probabilities.items()),
    ]
    if j.student is not None:
        s = j.student
        lines.append(f"student:  {s.model} confidence {s.confidence:.2f} (escalate below {s.threshold:.2f}: "
                     f"{'escalated to the LLM' if s.escalated else 'answered'}) — "
                     + ", ".join(f"{k.value}={v:.2f}" for k, v in s.probabilities.items()))
    if j.llm is not None:
        lines.append(f"llm:      {j.llm.model} said {j.llm.label.value} — "
                     + ", ".join(f"{k.value}={v:.2f}" for k, v in j.llm.probabilities.items()))
    if j.cheating:
        lines.append(f"cheating: {j.cheating_reason}")
    for r in j.rules_fired:
        lines.append(f"rule:     [{r.id}] {r.effect} — {r.because}")
    for side in (j.evidence.query, j.evidence.product):
        ents = {k: v for k, v in side.entities.model_dump().items() if v}
        label = "query" if side is j.evidence.query else "product"
        lines.append(f"{label} entities: {json.dumps(ents, ensure_ascii=False)}")
        if side.rewritten:
            lines.append(f"{label} rewritten: {side.rewritten}")
        for note in side.notes:
            lines.append(f"  · {note}")
    for d in j.evidence.documents:
        lines.append(f"doc {'kept' if d.kept else 'dropped'}: [{d.doc.source}] {d.doc.title} — {d.reason}")
    for t in j.evidence.image_text[:5]:
        lines.append(f"image text: {t}")
    if j.degraded:
        lines.append(f"DEGRADED: {', '.join(j.degraded)}")
    lines.append("stages:   " + ", ".join(f"{s.name}={s.status}({s.seconds * 1000:.0f}ms)" for s in j.stages))
    lines.append(
        f"versions: kb={j.versions.knowledge_base} rules={j.versions.rules} "
        + " ".join(f"{k}={v}" for k, v in j.versions.models.items())
    )
    return "\n".join(lines)


def cmd_judge(args: argparse.Namespace) -> int:
    from armed.pipeline.dag import Pipeline

    query = _utf8(args.query, "--query")
    product: dict[str, Any] = {"name": _utf8(args.product, "--product")}
    settings = load_settings()
    if args.image:
        product["images"] = [_read_image(p, settings) for p in args.image]
    if args.cpv:
        product["cpv"] = _cpv(args.cpv)
    if args.category:
        product["category"] = _utf8(args.category, "--category")
    configure_logging(settings.logging)
    pipeline = Pipeline.from_settings(settings)
    judgment = asyncio.run(pipeline.judge(query, product))
    if args.json:
        print(judgment.model_dump_json(indent=2))
    else:
        print(format_judgment(judgment))
    return 0


def cmd_judge_batch(args: argparse.Namespace) -> int:
    from armed.batch import run_batch

    settings = load_settings()
    configure_logging(settings.logging)
    summary = asyncio.run(
        run_batch(Path(args.input), Path(args.output), settings, concurrency=args.concurrency, progress=not args.quiet)
    )
    print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armed", description="AR-Med style relevance judgment for pharmacy search.")
    sub = parser.add_subparsers(dest="command", required=True)

    j = sub.add_parser("judge", help="judge one query/product pair and print the judgment with its evidence")
    j.add_argument("--query", required=True, help="the user's search query")
    j.add_argument("--product", required=True, help="the merchant's product name")
    j.add_argument("--image", action="append", default=[], metavar="FILE", help="a product image (repeatable)")
    j.add_argument("--cpv", action="append", default=[], metavar="PROP=VALUE", help="a CPV attribute (repeatable)")
    j.add_argument("--category", help="the product's platform category")
    j.add_argument("--json", action="store_true", help="print the Judgment as JSON")
    j.set_defaults(func=cmd_judge)

    from armed.batch import MAX_ID_CHARS

    b = sub.add_parser(
        "judge-batch", help="judge every row of a JSONL file; resumable",
        description="Every non-blank input line, however broken, gets exactly one output line {id, line, judgment "
        "| error}. Ids are compared as text and written back with their JSON type (7 stays a number). Rows "
        f"without a usable id (none, null, \"\", not a string or integer, invalid Unicode, over {MAX_ID_CHARS} "
        "characters, "
        "the reserved form line:N) are keyed line:N. Duplicates: the first row with an id keeps it; a later row "
        "whose id has the same text (7 after \"7\") is not judged and gets an error record under line:N naming "
        "the first line. A rerun skips keys already in the output, so a killed batch resumes where it stopped.",
    )
    b.add_argument("input", help="JSONL: {id?, query, product: {name, images?, cpv?, category?}} per line")
    b.add_argument("output", help="JSONL of judgments (or error records); keys already there are skipped")
    b.add_argument("--concurrency", type=int, default=4, help="judgments in flight at once")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_judge_batch)

    from armed.eval.cli import add_eval_commands
    from armed.knowledge.cli import add_kb_commands
    from armed.serving.cli import add_serving_commands

    add_serving_commands(sub)
    add_eval_commands(sub)
    add_kb_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"armed: error: {exc}", file=sys.stderr)
        return exc.code
    except InputError as exc:
        print(f"armed: error: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    except JudgmentTimeout as exc:
        print(f"armed: error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
