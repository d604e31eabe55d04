"""The expert-rule engine: rules are data (seed YAML), evaluated over query and product entities.

A rule is `when` (a query specificity plus a list of field conditions, all of which must hold) and one
`effect`:
- `cap:<level>`   the judged level may not exceed <level>;
- `set:<level>`   the level is forced to <level> (a veto; used for irrelevant);
- `emphasise:<field>` / `deemphasise:<field>`  hints for the LLM judge's prompt.

Conditions compare one field between the sides with the knowledge base's helpers (aliases, dosage-form
variants, efficacy groups and related categories resolved). Both sides are first enriched with the drug
records of their common names (`KnowledgeBase.enrich`), because names rarely state efficacy or category.

Field tests (see schema.ConditionTest):
  both_present / query_only / query_absent          presence
  same / not_same / differs (= disjoint)            share at least one canonical value / do not
  overlap_gte x / overlap_lt x                      overlap score (both present) against x
  disjoint                                          both present, overlap 0
  conflict / no_conflict                            population only: exclusive populations (儿童 vs 成人)
"""

from __future__ import annotations

from collections.abc import Sequence

from armed.domain import Entities, EntityField, RelevanceLevel, RuleHit
from armed.knowledge.base import KnowledgeBase, Specificity
from armed.knowledge.schema import Condition, Rule


def field_overlap(kb: KnowledgeBase, field: EntityField, a: Sequence[str], b: Sequence[str]) -> float | None:
    """How much two sides agree on one field, in [0, 1], with that field's notion of equality; None when the
    knowledge base cannot tell (efficacy terms outside its curated groups that do not meet: see
    `KnowledgeBase.efficacy_relation`). Unknown is never evidence: no overlap test and no disjoint test holds."""
    if not a or not b:
        return 0.0
    if field is EntityField.brand:
        return 1.0 if kb.same_brand(a, b) else 0.0
    if field is EntityField.dosage_form:
        return 1.0 if kb.dosage_forms_equal(a, b) else 0.0
    if field is EntityField.efficacy:
        return kb.efficacy_relation(a, b)
    if field is EntityField.category:
        return kb.category_overlap(a, b)
    if field is EntityField.common_name:
        sa, sb = kb.canonical_common_names(a), kb.canonical_common_names(b)
    elif field is EntityField.population:
        sa, sb = kb.canonical_populations(a), kb.canonical_populations(b)
    else:
        sa = {x.strip().lower() for x in a if x.strip()}
        sb = {x.strip().lower() for x in b if x.strip()}
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))


def _check(kb: KnowledgeBase, cond: Condition, query: Entities, product: Entities) -> tuple[bool, str]:
    """Evaluate one condition; return whether it holds and the comparison in words."""
    f = cond.field
    qa, pa = query.get(f), product.get(f)
    shown = f"{f.value}: query {qa or '—'} vs product {pa or '—'}"
    both = bool(qa) and bool(pa)
    test = cond.test
    if test == "both_present":
        return both, shown
    if test == "query_only":
        return bool(qa) and not pa, shown
    if test == "query_absent":
        return not qa, f"{f.value}: the query names none"
    if test in ("conflict", "no_conflict"):
        conflict = kb.population_conflict(qa, pa)
        return conflict == (test == "conflict"), f"{shown} ({'conflict' if conflict else 'no conflict'})"
    score = field_overlap(kb, f, qa, pa) if both else 0.0
    if score is None:
        return test == "not_same", f"{shown} (relation unknown to the knowledge base)"
    detail = f"{shown} (overlap {score:.2f})"
    if test == "same":
        return both and score > 0, detail
    if test == "not_same":
        return not (both and score > 0), detail
    if test in ("differs", "disjoint"):
        return both and score == 0, detail
    if test == "overlap_gte":
        return both and score >= (cond.value or 0.0), detail
    if test == "overlap_lt":
        return both and score < (cond.value or 0.0), detail
    raise ValueError(f"unknown condition test {test!r}")  # unreachable: the schema validates tests


def evaluate(kb: KnowledgeBase, rule: Rule, query: Entities, product: Entities, specificity: Specificity) -> str | None:
    """The rule's `because` if it fires on these (already enriched) entities, else None."""
    if rule.when.specificity not in ("any", specificity):
        return None
    reasons = [f"query is {specificity}"] if rule.when.specificity != "any" else []
    for cond in rule.when.all:
        ok, why = _check(kb, cond, query, product)
        if not ok:
            return None
        reasons.append(why)
    return "; ".join(reasons) or "always"


def recall(kb: KnowledgeBase, query: Entities, product: Entities, specificity: Specificity) -> list[RuleHit]:
    """Every rule of the knowledge base that fires for this pair, in rule order.

    Both sides are enriched from the drug records first (same common name ⇒ same efficacy), so
    "修正消栓通络片" vs "德济消栓通络片" compares efficacy even though neither name states it.
    """
    q, p = kb.enrich(query), kb.enrich(product)
    hits: list[RuleHit] = []
    for rule in kb.rules:
        because = evaluate(kb, rule, q, p, specificity)
        if because is not None:
            description = f"{rule.description.zh} / {rule.description.en}"
            hits.append(RuleHit(id=rule.id, description=description, effect=rule.effect, because=because))
    return hits


def ceiling(hits: Sequence[RuleHit]) -> RelevanceLevel | None:
    """The lowest level any fired `cap` rule allows (None when no rule caps)."""
    caps = [RelevanceLevel(h.effect.split(":", 1)[1]) for h in hits if h.effect.startswith("cap:")]
    return min(caps, key=lambda lv: lv.rank) if caps else None


def veto(hits: Sequence[RuleHit]) -> tuple[RelevanceLevel, RuleHit] | None:
    """The strongest fired `set` rule (the lowest level it forces) and the rule, or None."""
    sets = [(RelevanceLevel(h.effect.split(":", 1)[1]), h) for h in hits if h.effect.startswith("set:")]
    return min(sets, key=lambda s: s[0].rank) if sets else None


def apply_caps(level: RelevanceLevel, hits: Sequence[RuleHit]) -> RelevanceLevel:
    """The level after the rules: any `set` forces the lowest level set (the strongest veto wins); otherwise
    the level is lowered to the lowest `cap`. Emphasis hints do not change the level."""
    forced = veto(hits)
    if forced is not None:
        level = forced[0]
    cap = ceiling(hits)
    return level.cap(cap) if cap is not None else level


def prompt_hints(hits: Sequence[RuleHit]) -> dict[str, list[str]]:
    """Fields the judge should weigh more ("emphasise") or ignore ("deemphasise"), from the fired rules."""
    out: dict[str, list[str]] = {"emphasise": [], "deemphasise": []}
    for h in hits:
        kind, _, value = h.effect.partition(":")
        if kind in out and value not in out[kind]:
            out[kind].append(value)
    return out
