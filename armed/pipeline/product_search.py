"""Algorithm 1's branches for product search, decided by the guideline's clauses (armed/guideline.py).

Asked only of a pair whose product reads as a listing (armed/pipeline/listing.py) and whose query names a product
or states a need (armed/pipeline/intent.py); everything else is the student's. The product's own name is compared —
its head, never a name trailing it — so containment, appended search terms and stuffing cannot lift it.

Product query (names a drug, a product type, a trade name, a brand; spelled or not):
- the same drug or product (canonical name, or the same structural core):
  - a trade name asked: the product states it, or is its maker's same drug → exact.trade; else less.brand;
  - a brand asked: the product's brand is it → exact.brand; another brand, or none shown → less.brand;
  - a dosage form asked that the product does not have → less.form; a specification asked that differs → less.spec;
  - otherwise → exact.generic (exact.spelling when the query was pinyin or a homophone typo);
- a brand alone asked and the product is that brand's → exact.brand;
- another drug: the product holds the asked one as an ingredient of a compound → less.ingredient; the uses overlap
  (efficacy, complementary use, related category) → less.related_use; the knowledge base knows both uses and they
  share nothing → irrelevant.efficacy; it cannot tell → open (the student).
Need query (symptom, disease, efficacy, category): the product's own indication or category is the need →
need.met; overlapping → less.related_use; entirely different → irrelevant.efficacy; unknown → open.
Expert rules still veto before these branches and cap after them (armed/pipeline/hierarchy.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from armed.domain import Entities, RelevanceLevel
from armed.guideline import CLAUSE
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.intent import QueryIntent, query_intent
from armed.pipeline.listing import NameParse, core_key, parse_name


@dataclass(frozen=True)
class GuidelineDecision:
    """A clause applied: the level it gives, its id, and why, in words built from the evidence."""

    clause: str
    why: str

    @property
    def level(self) -> RelevanceLevel:
        return CLAUSE[self.clause].level


def _d(clause: str, why: str) -> GuidelineDecision:
    return GuidelineDecision(clause, why)


def head_entities(p: NameParse, kb: KnowledgeBase, extra: Entities | None = None) -> Entities:
    """The product's entities from its own (head) name only, enriched from the drug records: a trailing name must
    not lend the product its efficacy."""
    text = p.text
    for m in p.appended:  # blank the trailing names, keep the rest of the listing (its words may state a use)
        text = text[: m.start] + " " * (m.end - m.start) + text[m.end :]
    ents = kb.extract(text)
    if extra is not None:
        ents = ents.merge(extra)
    return kb.enrich(ents)


def same_spec(a: tuple[str, ...] | list[str], b: tuple[str, ...] | list[str]) -> bool:
    norm = {s.replace(" ", "").lower() for s in a}
    return bool(norm & {s.replace(" ", "").lower() for s in b}) or any(x in y or y in x for x in norm for y in b)


def _brand_text(brands: list[str] | tuple[str, ...]) -> str:
    return "、".join(brands) if brands else "no maker"


def _uses(qe: Entities, pe: Entities, kb: KnowledgeBase) -> tuple[float | None, float | None]:
    """(efficacy relation, category overlap) of the two sides; None where the knowledge base cannot tell."""
    eff = kb.efficacy_relation(qe.efficacy, pe.efficacy)
    cat = kb.category_overlap(qe.category, pe.category) if qe.category and pe.category else None
    return eff, cat


def _product_query(qi: QueryIntent, q: NameParse, p: NameParse, qe: Entities, pe: Entities,
                   kb: KnowledgeBase) -> GuidelineDecision | None:
    p_names = p.names
    shared = PairReading(qi, q, p, qe, pe).shared
    asked = "、".join(qi.names) or "、".join(qi.brands)
    if shared:
        name = sorted(shared)[0]
        if qi.trade_names:
            trade = qi.trade_names[0]
            p_trades = {m.trade for m in p.mentions if m.trade}
            maker = next((m.trade_brand for m in q.mentions if m.trade == trade and m.trade_brand), None)
            if trade in p_trades:
                return _d("exact.trade", f"the product is sold under the trade name {trade} the query asks for")
            if maker and p.brands and kb.same_brand([maker], list(p.brands)) and not _form_differs(qi, p, kb):
                return _d("exact.trade", f"{trade} is {maker}'s {name}: the product is {maker}'s {name}")
            return _d("less.brand", f"the query asks for {trade} (a trade name of {name}"
                      f"{f' by {maker}' if maker else ''}); the product is {name} by {_brand_text(p.brands)} "
                      "without that trade name")
        if qi.brands:
            if not p.brands:
                return _d("less.brand", f"the query asks for {_brand_text(qi.brands)}'s {name}; the product names "
                          "no maker")
            if not kb.same_brand(list(qi.brands), list(p.brands)):
                return _d("less.brand", f"the query asks for {_brand_text(qi.brands)}'s {name}; the product is "
                          f"{_brand_text(p.brands)}'s")
        if _form_differs(qi, p, kb):
            return _d("less.form", f"the query asks for {name} as {'、'.join(qi.forms)}; the product is "
                      f"{'、'.join(p.forms)}")
        if qi.specifications and p.specifications and not same_spec(qi.specifications, p.specifications):
            return _d("less.spec", f"the query states {'、'.join(qi.specifications)}; the product is "
                      f"{'、'.join(p.specifications)}")
        if qi.spelled:
            return _d("exact.spelling", f"the query spells {qi.spelled} ({qi.spelled_how}); the product is {name}")
        if qi.brands:
            return _d("exact.brand", f"the product is {_brand_text(p.brands)}'s {name}, as asked")
        return _d("exact.generic", f"the query names {name} and no brand; the product is {name}"
                  + (f" by {_brand_text(p.brands)}" if p.brands else ""))
    if not qi.names:  # a brand alone
        if p.brands and kb.same_brand(list(qi.brands), list(p.brands)):
            return _d("exact.brand", f"the query asks for the brand {_brand_text(qi.brands)}; the product is its")
        return None
    q_keys = {core_key(n) for n in qi.names}
    inner = {core_key(x) for m in p.mentions for x in m.inner}
    compound = [m.core for m in p.mentions if any(k in core_key(m.core) and k != core_key(m.core) for k in q_keys)]
    ingredients = {core_key(x) for x in pe.ingredients}
    if q_keys & inner or compound or q_keys & ingredients:
        return _d("less.ingredient", f"the product ({'、'.join(compound) or '、'.join(sorted(p_names))}) holds "
                  f"{asked} as one ingredient among others")
    return _by_use(qe, pe, kb, f"the query asks for {asked}; the product is {'、'.join(sorted(p_names))}",
                   met_clause=None)


def _form_differs(qi: QueryIntent, p: NameParse, kb: KnowledgeBase) -> bool:
    return bool(qi.forms and p.forms and not kb.dosage_forms_equal(list(qi.forms), list(p.forms)))


def _by_use(qe: Entities, pe: Entities, kb: KnowledgeBase, what: str,
            met_clause: str | None) -> GuidelineDecision | None:
    """Decide on the sides' uses: `met_clause` when the product's use is the query's (need queries only)."""
    eff, cat = _uses(qe, pe, kb)
    if met_clause and eff == 1.0 and (cat is None or cat > 0):
        return _d(met_clause, f"{what}: its indication covers {'、'.join(qe.efficacy[:3])}")
    if met_clause and eff is None and cat is not None and set(qe.category) <= set(pe.category):
        return _d(met_clause, f"{what}: its category is {'、'.join(qe.category)}")
    # A known disagreement of uses outweighs a shared broad category (血压计 and 血糖仪 are both 医疗器械).
    if eff == 0.0 or (eff is None and cat == 0.0):
        shown = (f"{'、'.join(qe.efficacy[:3])} vs {'、'.join(pe.efficacy[:3])}" if eff == 0.0 else
                 f"{'、'.join(qe.category)} vs {'、'.join(pe.category)}")
        return _d("irrelevant.efficacy", f"{what}: entirely different uses ({shown})")
    if eff is not None and eff > 0:
        return _d("less.related_use", f"{what}: their uses overlap ({'、'.join(qe.efficacy[:3])} / "
                  f"{'、'.join(pe.efficacy[:3])})")
    if cat is not None and cat > 0:
        return _d("less.related_use", f"{what}: related categories ({'、'.join(qe.category)} / "
                  f"{'、'.join(pe.category)})")
    return None


def _need_query(qi: QueryIntent, p: NameParse, qe: Entities, pe: Entities,
                kb: KnowledgeBase) -> GuidelineDecision | None:
    if qe.population and not pe.population:
        return None  # the need is for a population the product does not state: the student weighs it
    return _by_use(qe, pe, kb, f"the query states a need ({qi.reason.removeprefix('states a need: ')}); the "
                   f"product is {'、'.join(sorted(p.names))}", met_clause="need.met")


@dataclass(frozen=True)
class PairReading:
    """Both sides of a pair read for product search: the student's features and `decide` read the same object."""

    intent: QueryIntent
    query: NameParse
    product: NameParse
    query_entities: Entities
    product_entities: Entities

    @property
    def shared(self) -> set[str]:
        """The drugs / products both name (canonical names, or structural cores that agree)."""
        shared = set(self.intent.names) & self.product.names
        if not shared and self.intent.names:
            p_cores = {core_key(m.core) for m in self.product.mentions} | {core_key(n) for n in self.product.names}
            shared = {n for n in self.intent.names if core_key(n) in p_cores}
        return shared


def read_pair(query: str, product_name: str, kb: KnowledgeBase, *, intent: QueryIntent | None = None,
              query_entities: Entities | None = None, product_extra: Entities | None = None) -> PairReading:
    """`query_entities`: the query's entities as understood (defaults to the knowledge base's reading of the query as
    typed); `product_extra`: entities the product's attributes or images add (CPV, image text)."""
    p = parse_name(product_name, kb)
    q = parse_name(query, kb)
    qi = intent or query_intent(query, kb, q)
    qe = query_entities if query_entities is not None else kb.enrich(kb.extract(query))
    return PairReading(qi, q, p, qe, head_entities(p, kb, product_extra))


def decide_reading(r: PairReading, kb: KnowledgeBase) -> GuidelineDecision | None:
    """The clause that decides this pair, or None when the branches leave it open (see the module doc)."""
    if not r.product.is_listing or r.intent.kind not in ("product", "need"):
        return None
    qe, pe = r.query_entities, r.product_entities
    if kb.population_conflict(qe.population, pe.population):
        return _d("irrelevant.population", f"the query is for {'、'.join(qe.population)}, the product for "
                  f"{'、'.join(pe.population)}")
    if r.intent.kind == "product":
        return _product_query(r.intent, r.query, r.product, qe, pe, kb)
    return _need_query(r.intent, r.product, qe, pe, kb)


def decide(query: str, product_name: str, kb: KnowledgeBase, *, intent: QueryIntent | None = None,
           query_entities: Entities | None = None, product_extra: Entities | None = None
           ) -> GuidelineDecision | None:
    """`decide_reading(read_pair(...))`: the clause that decides the pair, or None (open)."""
    return decide_reading(read_pair(query, product_name, kb, intent=intent, query_entities=query_entities,
                                    product_extra=product_extra), kb)
