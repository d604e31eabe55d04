"""The level logic that Algorithm 1's hierarchy (armed/pipeline/hierarchy.py) and the student's features
(armed/student/features.py) both read: the deterministic string branches, the knowledge-base prior and the band rule
that turns a four-level distribution into a level.

One module below both, so the hierarchy (which runs the student) and the student's features (which read the
hierarchy's signals) do not import each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from armed.domain import Entities, RelevanceLevel
from armed.knowledge.base import KnowledgeBase
from armed.text import char_overlap, char_set, normalise

LEVELS = list(RelevanceLevel)


def _dist(hi: float, mod: float, weak: float, irr: float) -> dict[RelevanceLevel, float]:
    total = hi + mod + weak + irr
    return dict(zip(LEVELS, (hi / total, mod / total, weak / total, irr / total), strict=True))


def knowledge_prior_of(
    qe: Entities, pe: Entities, query: str, product_name: str, kb: KnowledgeBase
) -> dict[RelevanceLevel, float]:
    """`knowledge_prior` on bare entities and texts (the student's features use it without a pipeline)."""
    q_cn, p_cn = set(qe.common_name), set(pe.common_name)
    eff = kb.efficacy_relation(qe.efficacy, pe.efficacy)  # None: a side has none, or the KB cannot tell
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
    overlap = char_overlap(query, product_name)
    if overlap >= 0.8:
        return _dist(0.4, 0.3, 0.2, 0.1)
    if overlap >= 0.5:
        return _dist(0.15, 0.3, 0.35, 0.2)
    return _dist(0.05, 0.15, 0.3, 0.5)


def query_in_name(query: str, names: list[str]) -> bool:
    """Branch (a): the normalised query stands inside one of the names."""
    q = normalise(query)
    return bool(q) and any(q in normalise(n) for n in names)


def query_chars_in_name(query: str, names: list[str], min_chars: int) -> bool:
    """Branch (b): every character of a query of at least `min_chars` characters appears in one of the names."""
    return len(normalise(query)) >= min_chars and any(char_set(query) <= set(normalise(n)) for n in names)


def core_match(qe: Entities, pe: Entities, kb: KnowledgeBase) -> list[str] | None:
    """Branch (c): the shared common names when efficacy and category agree where both are known, else None."""
    shared = set(qe.common_name) & set(pe.common_name)
    if not shared:
        return None
    eff_ok = kb.efficacy_relation(qe.efficacy, pe.efficacy) != 0.0  # only a known disagreement blocks
    cat_ok = not (qe.category and pe.category) or bool(set(qe.category) & set(pe.category))
    return sorted(shared) if eff_ok and cat_ok else None


def decide_level(probs: Sequence[float]) -> RelevanceLevel:
    """The level from a four-level distribution: first the benchmark band with the most mass (moderately and
    weakly together are one band), then, inside "less", the likelier of the two. Deciding on the band first keeps
    a pair whose mass is split between moderately and weakly from being called highly relevant by a plurality."""
    hi, mod, weak, irr = probs
    band = max(((hi, 2), (mod + weak, 1), (irr, 0)), key=lambda t: (t[0], -t[1]))[1]
    if band == 2:
        return RelevanceLevel.highly
    if band == 0:
        return RelevanceLevel.irrelevant
    return RelevanceLevel.moderately if mod >= weak else RelevanceLevel.weakly
