"""Algorithm 1, as armed implements it: the hierarchy that turns both sides' understanding into a level.

The hierarchy is a table of branches (`HIERARCHY`, in the order below): each branch is an object with a name and
one method, `try_decide(ctx) -> Decision | None`, that either decides the pair (its Decision's `reason` says why it
fired) or passes it on. `decide` builds the context once (rule caps, the student's and the LLM's readings, run at
most once each) and walks the table; the first decision stands.

Order (first that applies decides; expert-rule caps apply to every branch but the vetoes):
1. `cheating` — the name lies about the product (images, traffic hijacking) → irrelevant.
2. `rule_veto` — an expert rule sets the level (efficacy entirely different, population divergent).
2b. `guideline` — product search: a product or need query (QI intent) against a product listing: the annotation
   guideline's clause decides (armed/pipeline/product_search.py, clauses in armed/guideline.py; which ones:
   judge.guideline_clauses),
   capped by the rules; a pair it leaves open goes on.
3. deterministic branches, each → highly relevant before caps (the first that holds is the pair's reading):
   a. `name_containment`: the normalised query stands inside the (standardised) product name;
   b. `all_characters`: every character of the query appears in the product name;
   c. `core_match`: a query common name is the product's, and efficacy and category (where both known) agree.
   With a student, only the branches in `judge.branches` decide here (none by default: each lost accuracy
   against the student on train/'s tuning split; the student sees the same signals as features).
4. `student` — the student (armed.student): a calibrated four-level distribution; it answers when its confidence
   (the probability of its benchmark band) is at least `judge.escalate_below`, capped by the rules.
5. `llm_judge` — the LLM judge, constrained to the four labels, for pairs the student escalates (or every undecided
   pair when there is no student); its distribution is blended with the student's (or, without one, the
   knowledge-base prior's) by `judge.llm_weight`, then capped.
5b. `student_stands` — the LLM judge failed on a pair the student escalated: the student's answer stands
   (degraded; the decision's branch is `student`).
6. `fallback` — no judge (switched off, failed or timed out): the knowledge-base prior alone, capped.
Because steps 1-3 and 6 are deterministic and steps 4-5 can only answer a label, no judgment is ever lost.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from armed.domain import Branch, LLMOpinion, RelevanceLevel, RuleHit, StudentOpinion
from armed.engines.base import ChoiceResult, ModelClients
from armed.guideline import CHEATING_CLAUSE, RULE_CLAUSES
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.rules import ceiling, veto
from armed.pipeline import product_search, prompts
from armed.pipeline.levels import core_match, decide_level, knowledge_prior_of, query_chars_in_name, query_in_name
from armed.pipeline.product_side import ProductUnderstanding
from armed.pipeline.query_side import QueryUnderstanding
from armed.pipeline.stages import Detailed, StageRecorder
from armed.settings import ArmedSettings
from armed.student.engine import classify_one
from armed.text import escape_markup

LEVELS = list(RelevanceLevel)


@dataclass(frozen=True)
class Decision:
    level: RelevanceLevel
    probabilities: dict[RelevanceLevel, float]
    branch: Branch
    reason: str
    student: StudentOpinion | None = None
    llm: LLMOpinion | None = None
    guideline: str | None = None


def one_hot(level: RelevanceLevel) -> dict[RelevanceLevel, float]:
    return {lvl: (1.0 if lvl is level else 0.0) for lvl in LEVELS}


def fold_above(probs: dict[RelevanceLevel, float], cap: RelevanceLevel | None) -> dict[RelevanceLevel, float]:
    """Move the probability of levels above the cap onto the cap, so the level is still the argmax."""
    if cap is None:
        return probs
    out = dict(probs)
    for lvl in LEVELS:
        if lvl.rank > cap.rank:
            out[cap] += out[lvl]
            out[lvl] = 0.0
    return out


def argmax(probs: dict[RelevanceLevel, float]) -> RelevanceLevel:
    # Ties go to the lower level: when evidence is balanced armed does not promise more relevance.
    return max(LEVELS, key=lambda lvl: (probs[lvl], -lvl.rank))


def knowledge_prior(q: QueryUnderstanding, p: ProductUnderstanding, kb: KnowledgeBase) -> dict[RelevanceLevel, float]:
    """A distribution from knowledge-base evidence alone: common names, efficacy, category, characters.

    Hand-set from the level definitions (not fitted to any evaluation set); the student and the LLM judge refine it.
    """
    return knowledge_prior_of(q.side.entities, p.side.entities, q.side.original, p.standard_name, kb)


def deterministic_branch(
    q: QueryUnderstanding, p: ProductUnderstanding, kb: KnowledgeBase, min_chars: int
) -> tuple[Branch, str] | None:
    names = [p.standard_name, p.side.original]
    if query_in_name(q.side.original, names):
        return Branch.name_containment, f"the query {q.side.original!r} stands inside the product name"
    if query_chars_in_name(q.side.original, names, min_chars):
        return Branch.all_characters, "every character of the query appears in the product name"
    shared = core_match(q.side.entities, p.side.entities, kb)
    if shared:
        return Branch.core_match, f"same common name {shared}, efficacy and category agree"
    return None


def blend(
    llm: dict[RelevanceLevel, float], prior: dict[RelevanceLevel, float], weight: float
) -> dict[RelevanceLevel, float]:
    logs = {
        lvl: weight * math.log(max(llm.get(lvl, 0.0), 1e-6)) + (1 - weight) * math.log(max(prior[lvl], 1e-6))
        for lvl in LEVELS
    }
    top = max(logs.values())
    exp = {lvl: math.exp(v - top) for lvl, v in logs.items()}
    total = sum(exp.values())
    return {lvl: v / total for lvl, v in exp.items()}


def student_band_confidence(probs: dict[RelevanceLevel, float]) -> tuple[RelevanceLevel, float]:
    """(level, confidence): the student's level (band first, see armed.pipeline.levels.decide_level) and the
    probability of its benchmark band."""
    level = decide_level([probs[lvl] for lvl in LEVELS])
    band = level.to_benchmark()
    return level, sum(v for lvl, v in probs.items() if lvl.to_benchmark() is band)


def band_argmax(probs: dict[RelevanceLevel, float]) -> RelevanceLevel:
    return decide_level([probs[lvl] for lvl in LEVELS])


@dataclass(frozen=True)
class StudentReading:
    """What the student said of the pair: its distribution, its level (band first) and the opinion the judgment
    reports (with whether it escalates to the LLM judge)."""

    probabilities: dict[RelevanceLevel, float]
    level: RelevanceLevel
    opinion: StudentOpinion


_NOT_RUN = object()  # a model reading not asked for yet (None is a reading: the stage failed or timed out)


@dataclass
class DecisionContext:
    """What `decide` computes once per pair and every branch reads: the pair's understanding, the rule hits and
    the caps they set, the settings and clients. The model readings (student, LLM judge) are run on first ask and
    kept, so each model runs at most once per judgment, in table order, whichever branches ask."""

    q: QueryUnderstanding
    p: ProductUnderstanding
    hits: list[RuleHit]
    clients: ModelClients
    settings: ArmedSettings
    kb: KnowledgeBase
    rec: StageRecorder
    product_text: str  # what the student reads (decide's `product_text`, else the product name)
    product_kind: str
    cap: RelevanceLevel | None  # the expert rules' ceiling (None: no cap, or judge.rule_caps off)
    cap_note: str  # "; capped at … by [...]" appended to every capped branch's reason, "" without a cap
    student_on: bool  # the student stage is switched on and a student is configured
    llm_on: bool  # the LLM judge stage is switched on and an LLM is configured
    _student: object = field(default=_NOT_RUN, repr=False)
    _llm: object = field(default=_NOT_RUN, repr=False)

    @classmethod
    def of(
        cls,
        q: QueryUnderstanding,
        p: ProductUnderstanding,
        hits: list[RuleHit],
        clients: ModelClients,
        settings: ArmedSettings,
        kb: KnowledgeBase,
        rec: StageRecorder,
        product_text: str | None = None,
        product_kind: str = "title",
    ) -> DecisionContext:
        cap = ceiling(hits) if settings.judge.rule_caps else None
        cap_note = f"; capped at {cap.value} by {[h.id for h in hits if h.effect.startswith('cap:')]}" if cap else ""
        return cls(
            q=q, p=p, hits=hits, clients=clients, settings=settings, kb=kb, rec=rec,
            product_text=product_text if product_text is not None else p.side.original,
            product_kind=product_kind,
            cap=cap,
            cap_note=cap_note,
            student_on=settings.stages.student and clients.student is not None,
            llm_on=settings.stages.llm_judge and clients.llm is not None,
        )

    def capped(self, level: RelevanceLevel) -> RelevanceLevel:
        return level.cap(self.cap) if self.cap else level

    @cached_property
    def prior(self) -> dict[RelevanceLevel, float]:
        return knowledge_prior(self.q, self.p, self.kb)

    @cached_property
    def deterministic(self) -> tuple[Branch, str] | None:
        """The pair's deterministic reading: the first of name containment, all characters, core match that holds
        (None with stages.deterministic_branches off). Only that one may decide: a reading judge.branches does not
        trust leaves the pair to the student, not to the next deterministic branch."""
        if not self.settings.stages.deterministic_branches:
            return None
        return deterministic_branch(self.q, self.p, self.kb, self.settings.judge.min_query_chars)

    @property
    def student_so_far(self) -> StudentReading | None:
        """The student's reading if it has run; never runs it."""
        return None if self._student is _NOT_RUN else self._student  # type: ignore[return-value]

    async def student_reading(self) -> StudentReading | None:
        """The student's reading (run on first ask); None without a student or when it failed or timed out."""
        if self._student is _NOT_RUN:
            self._student = await self._run_student() if self.student_on else None
        return self._student  # type: ignore[return-value]

    async def llm_result(self) -> ChoiceResult | None:
        """The LLM judge's answer (run on first ask); None without one or when it failed or timed out."""
        if self._llm is _NOT_RUN:
            self._llm = await self._run_llm() if self.llm_on else None
        return self._llm  # type: ignore[return-value]

    async def _run_student(self) -> StudentReading | None:
        student = self.clients.student
        assert student is not None
        q_text = self.q.side.original

        async def run_student() -> Detailed[dict[RelevanceLevel, float]]:
            # The pair may be rendered into a template (the Qwen student's <query>…</query><product>…</product>):
            # neither side can close or open its tags (the product is sanitised already; the query is escaped too).
            probs = await classify_one(student, escape_markup(q_text), escape_markup(self.product_text))
            return Detailed(probs, f"{student.model_id}: " + ", ".join(f"{k.name} {v:.2f}" for k, v in probs.items()))

        probs: dict[RelevanceLevel, float] | None = await self.rec.run("student", run_student, self.settings,
                                                                      default=None)
        if probs is None:
            return None
        level, confidence = student_band_confidence(probs)
        threshold = self.settings.judge.escalate_below
        escalate = self.llm_on and confidence < threshold
        opinion = StudentOpinion(model=student.model_id, probabilities=probs, confidence=confidence,
                                 threshold=threshold, escalated=escalate)
        return StudentReading(probs, level, opinion)

    async def _run_llm(self) -> ChoiceResult | None:
        llm = self.clients.llm
        assert llm is not None
        q, p = self.q, self.p

        async def run_judge() -> Detailed[ChoiceResult]:
            messages = prompts.judge(
                q.effective_text,
                q.side.entities,
                p.standard_name,
                p.side.entities,
                self.hits,
                q.documents,
                q.side.notes + p.side.notes,
                q.intent.kind if q.intent is not None else None,
            )
            res = await llm.choose(messages, prompts.JUDGE_CHOICES)
            return Detailed(res, f"{res.model}: {res.label}")

        return await self.rec.run("llm_judge", run_judge, self.settings, default=None)


class HierarchyBranch(ABC):
    """One branch of the hierarchy. `name` is its place in the table (a `Branch` value where one exists);
    `branch` is the `Branch` its decisions report."""

    name: str
    branch: Branch

    @abstractmethod
    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        """The decision, its `reason` saying why this branch fired; None to leave the pair to the next branch."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Cheating(HierarchyBranch):
    name = Branch.cheating.value
    branch = Branch.cheating

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        if not ctx.p.cheating:
            return None
        return Decision(
            RelevanceLevel.irrelevant,
            one_hot(RelevanceLevel.irrelevant),
            self.branch,
            f"cheating product: {ctx.p.cheating_reason}",
            guideline=CHEATING_CLAUSE,
        )


class RuleVeto(HierarchyBranch):
    name = Branch.rule_veto.value
    branch = Branch.rule_veto

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        settings, p = ctx.settings, ctx.p
        vetoes_on = settings.judge.rule_vetoes and product_search.vetoes_decide(p.side.original, ctx.kb,
                                                                                ctx.product_kind)
        forced = veto(ctx.hits) if vetoes_on else None
        if forced is None:
            return None
        level, hit = forced
        return Decision(level, one_hot(level), self.branch, f"expert rule {hit.id}: {hit.because}",
                        guideline=RULE_CLAUSES.get(hit.id))


class Guideline(HierarchyBranch):
    """Product search: the annotation guideline's clause decides a product or need query against a listing."""

    name = Branch.guideline.value
    branch = Branch.guideline

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        q = ctx.q
        # A second query (KUAKE-QQR's pairs, product.kind "query") is never a product listing.
        if not (ctx.settings.stages.product_search and q.intent is not None and ctx.product_kind != "query"):
            return None
        found = product_search.decide(q.side.original, ctx.p.side.original, ctx.kb, intent=q.intent)
        if found is None or found.clause not in ctx.settings.judge.guideline_clauses:
            return None
        level = ctx.capped(found.level)
        why = f"{found.clause}: {found.why} ({q.intent.kind} query)"
        return Decision(level, one_hot(level), self.branch, why + ctx.cap_note, guideline=found.clause)


class Deterministic(HierarchyBranch):
    """One deterministic branch: it decides (highly, capped) when the pair's deterministic reading is its own and,
    with a student, judge.branches trusts it."""

    def __init__(self, branch: Branch) -> None:
        self.name = branch.value
        self.branch = branch

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        found = ctx.deterministic
        if found is None or found[0] is not self.branch:
            return None
        # With a student, only the branches that held up on train/'s tuning split decide (judge.branches).
        if ctx.student_on and self.branch.value not in ctx.settings.judge.branches:
            return None
        level = ctx.capped(RelevanceLevel.highly)
        return Decision(level, one_hot(level), self.branch, found[1] + ctx.cap_note)


class Student(HierarchyBranch):
    """The student answers when it is confident enough (or there is no LLM judge to escalate to)."""

    name = Branch.student.value
    branch = Branch.student

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        reading = await ctx.student_reading()
        if reading is None or reading.opinion.escalated:
            return None
        opinion = reading.opinion
        probs = fold_above(reading.probabilities, ctx.cap)
        why = f"student {opinion.model} said {reading.level.value} with confidence {opinion.confidence:.2f}"
        if ctx.llm_on:
            why += f" (≥ {opinion.threshold:.2f}: not escalated)"
        return Decision(band_argmax(probs), probs, self.branch, why + ctx.cap_note, opinion)


class LLMJudge(HierarchyBranch):
    """The LLM judge, blended with the student's distribution (escalated pairs) or the knowledge-base prior."""

    name = Branch.llm_judge.value
    branch = Branch.llm_judge

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        if not ctx.llm_on:
            return None
        reading = await ctx.student_reading()  # first: the student runs before the LLM, whatever asks first
        result = await ctx.llm_result()
        if result is None:
            return None
        weight = ctx.settings.judge.llm_weight
        llm_probs = {RelevanceLevel(k): v for k, v in result.probabilities.items()}
        said = LLMOpinion(model=result.model, label=RelevanceLevel(result.label), probabilities=llm_probs)
        # Escalated from the student: the LLM refines the student's distribution; otherwise the KB prior's.
        base, base_name = (reading.probabilities, "student") if reading is not None else (ctx.prior, "knowledge prior")
        probs = fold_above(blend(llm_probs, base, weight), ctx.cap)
        level = band_argmax(probs) if reading is not None else argmax(probs)
        why = f"LLM judge {result.model} said {result.label} (weight {weight} against the {base_name})"
        opinion = reading.opinion if reading is not None else None
        if opinion is not None:
            why = f"escalated (student confidence {opinion.confidence:.2f} < {opinion.threshold:.2f}); " + why
        return Decision(level, probs, self.branch, why + ctx.cap_note, opinion, said)


class StudentStands(HierarchyBranch):
    """The LLM judge failed on a pair the student escalated: the student's answer stands (the judgment says
    degraded, from the LLM stage's report)."""

    name = "student_stands"
    branch = Branch.student

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        if not ctx.llm_on:
            return None
        reading = await ctx.student_reading()
        if reading is None or await ctx.llm_result() is not None:
            return None
        probs = fold_above(reading.probabilities, ctx.cap)
        return Decision(band_argmax(probs), probs, self.branch,
                        "the LLM judge failed; the student's answer stands" + ctx.cap_note, reading.opinion)


class Fallback(HierarchyBranch):
    """No judge answered: the knowledge-base prior alone. Always decides, so it ends the table."""

    name = Branch.fallback.value
    branch = Branch.fallback

    async def try_decide(self, ctx: DecisionContext) -> Decision:
        probs = fold_above(ctx.prior, ctx.cap)
        why = ("the student failed" if ctx.student_on else "the LLM judge failed" if ctx.llm_on
               else "no judge configured")
        reading = ctx.student_so_far
        return Decision(argmax(probs), probs, self.branch, f"{why}: knowledge-base evidence decided" + ctx.cap_note,
                        reading.opinion if reading is not None else None)


# The hierarchy, in the module docstring's order (tests/pipeline/test_branch_table.py holds the two together).
HIERARCHY: tuple[HierarchyBranch, ...] = (
    Cheating(),
    RuleVeto(),
    Guideline(),
    Deterministic(Branch.name_containment),
    Deterministic(Branch.all_characters),
    Deterministic(Branch.core_match),
    Student(),
    LLMJudge(),
    StudentStands(),
    Fallback(),
)


async def decide(
    q: QueryUnderstanding,
    p: ProductUnderstanding,
    hits: list[RuleHit],
    clients: ModelClients,
    settings: ArmedSettings,
    kb: KnowledgeBase,
    rec: StageRecorder,
    product_text: str | None = None,
    product_kind: str = "title",
    table: Sequence[HierarchyBranch] = HIERARCHY,
) -> Decision:
    """Algorithm 1 with the student cascade: the first decision of `table`'s branches, in order. `product_text` is
    what the student reads (the product name as given; the bench passes KUAKE-QQR's second query with its
    pair-kind prefix). LookupError if no branch decides (the default table ends with `fallback`, which always does)."""
    ctx = DecisionContext.of(q, p, hits, clients, settings, kb, rec, product_text, product_kind)
    for branch in table:
        decision = await branch.try_decide(ctx)
        if decision is not None:
            return decision
    raise LookupError(f"no branch of {[b.name for b in table]} decided the pair")
