"""Algorithm 1, as armed implements it: the hierarchy that turns both sides' understanding into a level.

Order (first that applies decides; expert-rule caps apply to every branch but the vetoes):
1. cheating — the name lies about the product (images, traffic hijacking) → irrelevant.
2. rule veto — an expert rule sets the level (efficacy entirely different, population divergent).
3. deterministic branches, each → highly relevant before caps:
   a. name containment: the normalised query stands inside the (standardised) product name;
   b. all characters: every character of the query appears in the product name;
   c. core match: a query common name is the product's, and efficacy and category (where both known) agree.
4. the LLM judge, constrained to the four labels; its distribution is blended with the knowledge-base prior
   (`judge.llm_weight`), then capped.
5. fallback — no judge (switched off, failed or timed out): the knowledge-base prior alone, capped.
Because steps 1-3 and 5 are deterministic and step 4 can only answer a label, no judgment is ever lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from armed.domain import Branch, RelevanceLevel, RuleHit
from armed.engines.base import ChoiceResult, ModelClients
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.rules import ceiling, veto
from armed.pipeline import prompts
from armed.pipeline.product_side import ProductUnderstanding
from armed.pipeline.query_side import QueryUnderstanding
from armed.pipeline.stages import Detailed, StageRecorder
from armed.settings import ArmedSettings
from armed.text import char_overlap, char_set, normalise

LEVELS = list(RelevanceLevel)


@dataclass(frozen=True)
class Decision:
    level: RelevanceLevel
    probabilities: dict[RelevanceLevel, float]
    branch: Branch
    reason: str


def one_hot(level: RelevanceLevel) -> dict[RelevanceLevel, float]:
    return {lvl: (1.0 if lvl is level else 0.0) for lvl in LEVELS}


def _dist(hi: float, mod: float, weak: float, irr: float) -> dict[RelevanceLevel, float]:
    total = hi + mod + weak + irr
    return dict(zip(LEVELS, (hi / total, mod / total, weak / total, irr / total), strict=True))


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

    Hand-set from the level definitions (not fitted to any evaluation set); the LLM judge refines it.
    """
    qe, pe = q.side.entities, p.side.entities
    q_cn, p_cn = set(qe.common_name), set(pe.common_name)
    eff = kb.efficacy_overlap(qe.efficacy, pe.efficacy) if qe.efficacy and pe.efficacy else None
    cat = bool(set(qe.category) & set(pe.category)) if qe.category and pe.category else None
    if q_cn and p_cn:
        if q_cn & p_cn:
            return _dist(0.55, 0.3, 0.1, 0.05)
        if eff:
            return _dist(0.05, 0.25, 0.5, 0.2)
        return _dist(0.02, 0.08, 0.3, 0.6)
    if eff is not None:
        if eff > 0:
            return _dist(0.2, 0.35, 0.3, 0.15) if cat is not False else _dist(0.05, 0.2, 0.45, 0.3)
        return _dist(0.03, 0.07, 0.25, 0.65)
    if cat is True:
        return _dist(0.1, 0.3, 0.4, 0.2)
    overlap = char_overlap(q.side.original, p.standard_name)
    if overlap >= 0.8:
        return _dist(0.4, 0.3, 0.2, 0.1)
    if overlap >= 0.5:
        return _dist(0.15, 0.3, 0.35, 0.2)
    return _dist(0.05, 0.15, 0.3, 0.5)


def deterministic_branch(
    q: QueryUnderstanding, p: ProductUnderstanding, kb: KnowledgeBase, min_chars: int
) -> tuple[Branch, str] | None:
    query = normalise(q.side.original)
    names = [normalise(p.standard_name), normalise(p.side.original)]
    if query and any(query in n for n in names):
        return Branch.name_containment, f"the query {q.side.original!r} stands inside the product name"
    if len(query) >= min_chars and any(char_set(q.side.original) <= set(n) for n in names):
        return Branch.all_characters, "every character of the query appears in the product name"
    qe, pe = q.side.entities, p.side.entities
    shared = set(qe.common_name) & set(pe.common_name)
    if shared:
        eff_ok = not (qe.efficacy and pe.efficacy) or kb.efficacy_overlap(qe.efficacy, pe.efficacy) > 0
        cat_ok = not (qe.category and pe.category) or bool(set(qe.category) & set(pe.category))
        if eff_ok and cat_ok:
            return Branch.core_match, f"same common name {sorted(shared)}, efficacy and category agree"
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


async def decide(
    q: QueryUnderstanding,
    p: ProductUnderstanding,
    hits: list[RuleHit],
    clients: ModelClients,
    settings: ArmedSettings,
    kb: KnowledgeBase,
    rec: StageRecorder,
) -> Decision:
    cap = ceiling(hits)
    cap_note = f"; capped at {cap.value} by {[h.id for h in hits if h.effect.startswith('cap:')]}" if cap else ""

    if p.cheating:
        return Decision(
            RelevanceLevel.irrelevant,
            one_hot(RelevanceLevel.irrelevant),
            Branch.cheating,
            f"cheating product: {p.cheating_reason}",
        )
    forced = veto(hits)
    if forced is not None:
        level, hit = forced
        return Decision(level, one_hot(level), Branch.rule_veto, f"expert rule {hit.id}: {hit.because}")

    if settings.stages.deterministic_branches:
        found = deterministic_branch(q, p, kb, settings.judge.min_query_chars)
        if found is not None:
            branch, why = found
            level = RelevanceLevel.highly.cap(cap) if cap else RelevanceLevel.highly
            return Decision(level, one_hot(level), branch, why + cap_note)

    prior = knowledge_prior(q, p, kb)
    if settings.stages.llm_judge and clients.llm is not None:
        llm = clients.llm

        async def run_judge() -> Detailed[ChoiceResult]:
            messages = prompts.judge(
                q.effective_text,
                q.side.entities,
                p.standard_name,
                p.side.entities,
                hits,
                q.documents,
                q.side.notes + p.side.notes,
            )
            res = await llm.choose(messages, prompts.JUDGE_CHOICES)
            return Detailed(res, f"{res.model}: {res.label}")

        result: ChoiceResult | None = await rec.run(
            "llm_judge", run_judge, enabled=True, timeout=settings.timeouts.judge, default=None
        )
        if result is not None:
            llm_probs = {RelevanceLevel(k): v for k, v in result.probabilities.items()}
            probs = fold_above(blend(llm_probs, prior, settings.judge.llm_weight), cap)
            level = argmax(probs)
            return Decision(
                level,
                probs,
                Branch.llm_judge,
                f"LLM judge {result.model} said {result.label} (weight {settings.judge.llm_weight})" + cap_note,
            )
    probs = fold_above(prior, cap)
    level = argmax(probs)
    why = "no LLM judge" if not settings.stages.llm_judge or clients.llm is None else "the LLM judge failed"
    return Decision(level, probs, Branch.fallback, f"{why}: knowledge-base evidence decided" + cap_note)
