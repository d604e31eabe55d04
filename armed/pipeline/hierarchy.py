"""Algorithm 1, as armed implements it: the hierarchy that turns both sides' understanding into a level.

Order (first that applies decides; expert-rule caps apply to every branch but the vetoes):
1. cheating — the name lies about the product (images, traffic hijacking) → irrelevant.
2. rule veto — an expert rule sets the level (efficacy entirely different, population divergent).
2b. product search — a product or need query (QI intent) against a product listing: the annotation guideline's
   clause decides (armed/pipeline/product_search.py, clauses in armed/guideline.py; which ones:
   judge.guideline_clauses),
   capped by the rules; a pair it leaves open goes on.
3. deterministic branches, each → highly relevant before caps:
   a. name containment: the normalised query stands inside the (standardised) product name;
   b. all characters: every character of the query appears in the product name;
   c. core match: a query common name is the product's, and efficacy and category (where both known) agree.
   With a student, only the branches in `judge.branches` decide here (none by default: each lost accuracy
   against the student on train/'s tuning split; the student sees the same signals as features).
4. the student (armed.student): a calibrated four-level distribution; it answers when its confidence (the
   probability of its benchmark band) is at least `judge.escalate_below`, capped by the rules.
5. the LLM judge, constrained to the four labels, for pairs the student escalates (or every undecided pair when
   there is no student); its distribution is blended with the student's (or, without one, the knowledge-base
   prior's) by `judge.llm_weight`, then capped. If it fails, the student's answer stands (degraded).
6. fallback — no judge (switched off, failed or timed out): the knowledge-base prior alone, capped.
Because steps 1-3 and 6 are deterministic and steps 4-5 can only answer a label, no judgment is ever lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
) -> Decision:
    """Algorithm 1 with the student cascade. `product_text` is what the student reads (the product name as given;
    the bench passes KUAKE-QQR's second query with its pair-kind prefix)."""
    cap = ceiling(hits) if settings.judge.rule_caps else None
    cap_note = f"; capped at {cap.value} by {[h.id for h in hits if h.effect.startswith('cap:')]}" if cap else ""

    if p.cheating:
        return Decision(
            RelevanceLevel.irrelevant,
            one_hot(RelevanceLevel.irrelevant),
            Branch.cheating,
            f"cheating product: {p.cheating_reason}",
            guideline=CHEATING_CLAUSE,
        )
    vetoes_on = settings.judge.rule_vetoes and product_search.vetoes_decide(p.side.original, kb, product_kind)
    forced = veto(hits) if vetoes_on else None
    if forced is not None:
        level, hit = forced
        return Decision(level, one_hot(level), Branch.rule_veto, f"expert rule {hit.id}: {hit.because}",
                        guideline=RULE_CLAUSES.get(hit.id))

    # A second query (KUAKE-QQR's pairs, product.kind "query") is never a product listing.
    if settings.stages.product_search and q.intent is not None and product_kind != "query":
        found_clause = product_search.decide(q.side.original, p.side.original, kb, intent=q.intent)
        if found_clause is not None and found_clause.clause in settings.judge.guideline_clauses:
            level = found_clause.level.cap(cap) if cap else found_clause.level
            why = f"{found_clause.clause}: {found_clause.why} ({q.intent.kind} query)"
            return Decision(level, one_hot(level), Branch.guideline, why + cap_note, guideline=found_clause.clause)

    student_on = settings.stages.student and clients.student is not None
    if settings.stages.deterministic_branches:
        found = deterministic_branch(q, p, kb, settings.judge.min_query_chars)
        # With a student, only the branches that held up on train/'s tuning split decide (judge.branches).
        if found is not None and (not student_on or found[0].value in settings.judge.branches):
            branch, why = found
            level = RelevanceLevel.highly.cap(cap) if cap else RelevanceLevel.highly
            return Decision(level, one_hot(level), branch, why + cap_note)

    prior = knowledge_prior(q, p, kb)
    opinion: StudentOpinion | None = None
    student_probs: dict[RelevanceLevel, float] | None = None
    llm_on = settings.stages.llm_judge and clients.llm is not None
    if student_on:
        student = clients.student
        text = product_text if product_text is not None else p.side.original

        async def run_student() -> Detailed[dict[RelevanceLevel, float]]:
            # The pair may be rendered into a template (the Qwen student's <query>…</query><product>…</product>):
            # neither side can close or open its tags (the product is sanitised already; the query is escaped too).
            probs = await classify_one(student, escape_markup(q.side.original), escape_markup(text))
            return Detailed(probs, f"{student.model_id}: " + ", ".join(f"{k.name} {v:.2f}" for k, v in probs.items()))

        student_probs = await rec.run("student", run_student, settings, default=None)
        if student_probs is not None:
            s_level, confidence = student_band_confidence(student_probs)
            threshold = settings.judge.escalate_below
            escalate = llm_on and confidence < threshold
            opinion = StudentOpinion(model=student.model_id, probabilities=student_probs, confidence=confidence,
                                     threshold=threshold, escalated=escalate)
            if not escalate:
                probs = fold_above(student_probs, cap)
                level = band_argmax(probs)
                why = f"student {student.model_id} said {s_level.value} with confidence {confidence:.2f}"
                if llm_on:
                    why += f" (≥ {threshold:.2f}: not escalated)"
                return Decision(level, probs, Branch.student, why + cap_note, opinion)
    if llm_on:
        llm = clients.llm
        assert llm is not None

        async def run_judge() -> Detailed[ChoiceResult]:
            messages = prompts.judge(
                q.effective_text,
                q.side.entities,
                p.standard_name,
                p.side.entities,
                hits,
                q.documents,
                q.side.notes + p.side.notes,
                q.intent.kind if q.intent is not None else None,
            )
            res = await llm.choose(messages, prompts.JUDGE_CHOICES)
            return Detailed(res, f"{res.model}: {res.label}")

        result: ChoiceResult | None = await rec.run("llm_judge", run_judge, settings, default=None)
        if result is not None:
            llm_probs = {RelevanceLevel(k): v for k, v in result.probabilities.items()}
            said = LLMOpinion(model=result.model, label=RelevanceLevel(result.label), probabilities=llm_probs)
            # Escalated from the student: the LLM refines the student's distribution; otherwise the KB prior's.
            base, base_name = (student_probs, "student") if student_probs is not None else (prior, "knowledge prior")
            probs = fold_above(blend(llm_probs, base, settings.judge.llm_weight), cap)
            level = band_argmax(probs) if student_probs is not None else argmax(probs)
            why = (f"LLM judge {result.model} said {result.label} (weight {settings.judge.llm_weight} against the "
                   f"{base_name})")
            if opinion is not None:
                why = f"escalated (student confidence {opinion.confidence:.2f} < {opinion.threshold:.2f}); " + why
            return Decision(level, probs, Branch.llm_judge, why + cap_note, opinion, said)
        if student_probs is not None:  # the LLM failed: the student's answer stands, and the judgment says degraded
            probs = fold_above(student_probs, cap)
            return Decision(band_argmax(probs), probs, Branch.student,
                            "the LLM judge failed; the student's answer stands" + cap_note, opinion)
    probs = fold_above(prior, cap)
    level = argmax(probs)
    why = "the student failed" if student_on else "the LLM judge failed" if llm_on else "no judge configured"
    return Decision(level, probs, Branch.fallback, f"{why}: knowledge-base evidence decided" + cap_note, opinion)
