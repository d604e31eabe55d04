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
from armed.knowledge import spelling
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.index import normalise
from armed.pipeline.intent import QueryIntent, population_words, query_intent
from armed.pipeline.listing import NameParse, core_key, glued_maker, parse_name, same_maker


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
    # A category word inside a name the knowledge base does not know (钙片 in 米格列奈钙片) says nothing of the product.
    inside = {c for m in p.mentions if m.canonical is None for c in kb.extract(p.text[m.start : m.end]).category}
    if inside:
        outside = text
        for m in p.mentions:
            if m.canonical is None:
                outside = outside[: m.start] + " " * (m.end - m.start) + outside[m.end :]
        kept = set(kb.extract(outside).category)
        ents = ents.model_copy(update={"category": [c for c in ents.category if c not in inside or c in kept]})
    if extra is not None:
        ents = ents.merge(extra)
    ents = kb.enrich(ents)
    # What the product's drug is made of (the records' ingredients: an insert's 成分), for the ingredient clause.
    held = [x for n in ents.common_name if (rec := kb.drug_record(n)) is not None for x in rec.ingredients]
    return ents.merge(Entities(ingredients=held)) if held else ents


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


def _product_query(r: PairReading, kb: KnowledgeBase) -> GuidelineDecision | None:
    qi, q, p, qe, pe = r.intent, r.query, r.product, r.query_entities, r.product_entities
    p_names = p.names
    asked = "、".join(qi.names) or "、".join(qi.brands)
    m = r.match
    if m is not None and _accessory_of(p, m.name):
        return _d("less.related_use", f"the query asks for {m.name}; the product is an accessory of it "
                  f"({'、'.join(w for w in ACCESSORY_WORDS if w in p.text)}), not {m.name} itself")
    if m is not None:
        name = m.name
        q_brands = [*qi.brands, *([m.query_maker] if m.query_maker else [])]
        p_brands = [*p.brands, *([m.product_maker] if m.product_maker else [])]
        if qi.trade_names:
            trade = qi.trade_names[0]
            p_trades = {x.trade for x in p.mentions if x.trade}
            maker = next((x.trade_brand for x in q.mentions if x.trade == trade and x.trade_brand), None)
            if trade in p_trades:
                return _d("exact.trade", f"the product is sold under the trade name {trade} the query asks for")
            if maker and p_brands and same_maker([maker], p_brands, kb) and not _form_differs(qi, p, kb, q):
                return _d("exact.trade", f"{trade} is {maker}'s {name}: the product is {maker}'s {name}")
            return _d("less.brand", f"the query asks for {trade} (a trade name of {name}"
                      f"{f' by {maker}' if maker else ''}); the product is {name} by {_brand_text(p_brands)} "
                      "without that trade name")
        if q_brands:
            if not p_brands:
                return _d("less.brand", f"the query asks for {_brand_text(q_brands)}'s {name}; the product names "
                          "no maker")
            if not same_maker(q_brands, p_brands, kb):
                return _d("less.brand", f"the query asks for {_brand_text(q_brands)}'s {name}; the product is "
                          f"{_brand_text(p_brands)}'s")
        if _form_differs(qi, p, kb, q):
            return _d("less.form", f"the query asks for {name} as {'、'.join(qi.forms)}; the product is "
                      f"{'、'.join(p.forms)}")
        if qi.specifications and p.specifications and not same_spec(qi.specifications, p.specifications):
            return _d("less.spec", f"the query states {'、'.join(qi.specifications)}; the product is "
                      f"{'、'.join(p.specifications)}")
        if m.how == "spelling" or qi.spelled:
            return _d("exact.spelling", f"the query spells {qi.spelled or name} "
                      f"({qi.spelled_how or m.spelled_how}); the product is {name}")
        if q_brands:
            return _d("exact.brand", f"the product is {_brand_text(p_brands)}'s {name}, as asked")
        return _d("exact.generic", f"the query names {name} and no brand; the product is {name}"
                  + (f" by {_brand_text(p_brands)}" if p_brands else ""))
    if not qi.names:  # a brand alone
        if p.brands and same_maker(qi.brands, p.brands, kb):
            return _d("exact.brand", f"the query asks for the brand {_brand_text(qi.brands)}; the product is its")
        return None
    q_keys = {core_key(n) for n in qi.names} | {core_key(x.core) for x in q.mentions if not x.need_word}
    inner = {core_key(x) for mm in p.mentions for x in mm.inner}
    compound = [mm.core for mm in p.mentions if any(k in core_key(mm.core) and k != core_key(mm.core)
                                                    for k in q_keys if len(k) >= 2)]
    ingredients = {core_key(x) for x in pe.ingredients}
    if q_keys & inner or compound or q_keys & ingredients:
        return _d("less.ingredient", f"the product ({'、'.join(compound) or '、'.join(sorted(p_names))}) holds "
                  f"{asked} as one ingredient among others")
    return _by_use(qe, pe, kb, f"the query asks for {asked}; the product is {'、'.join(sorted(p_names))}",
                   met_clause=None)


# Words after a product's name that make the listing a part for it, not the product (雾化器配件: a nebuliser's mask).
ACCESSORY_WORDS = ("配件", "附件", "耗材", "替换")


def _accessory_of(p: NameParse, name: str) -> bool:
    """Is the listing an accessory of the product `name` (the name followed by an accessory word)?"""
    return any(pm.key == name and p.text[pm.end :].lstrip().startswith(ACCESSORY_WORDS) for pm in p.mentions)


def _forms_in_name(q: NameParse, p: NameParse) -> list[str]:
    """The query's dosage forms whose words are part of a name, not a form asked for: the query's name, form word
    and all, stands inside the product's own name (复方肝浸膏 in 复方肝浸膏片, 十一味甘露 in 十一味甘露胶囊)."""
    heads = [p.text[m.start : m.end].replace(" ", "") for m in p.mentions]
    return [m.form for m in q.mentions
            if m.form and any(q.text[m.start : m.end].replace(" ", "") in h for h in heads)]


def _form_differs(qi: QueryIntent, p: NameParse, kb: KnowledgeBase, q: NameParse | None = None) -> bool:
    """The query names a dosage form the product does not have. Not when every form word of the query is part of a
    name (`_forms_in_name`)."""
    if not (qi.forms and p.forms) or kb.dosage_forms_equal(list(qi.forms), list(p.forms)):
        return False
    if q is not None:
        asked = [m for m in q.mentions if m.form]
        if asked and len(_forms_in_name(q, p)) == len(asked):
            return False
    return True


def trade_as_sold(query: str, product_name: str, kb: KnowledgeBase) -> tuple[str, str] | None:
    """(the drug the query's trade name resolves to, the drug the product sells under it) when they differ: the
    product states the trade name beside another drug the sources list it for (贝尔严清 resolves to 氨咖黄敏; 贝尔严清
    胰酶肠溶片 is 胰酶). The expert rules then compare the drug the pair is about, not the trade name's first one."""
    p = parse_name(product_name, kb)
    if not p.is_listing:
        return None
    asked = {t.surface: t.common_name for t in kb.trade_names_in(query)}
    for m in p.mentions:
        if m.trade in asked and asked[m.trade] != m.key:
            return asked[m.trade], m.key
    return None


def forms_in_name(query: str, product_name: str, kb: KnowledgeBase) -> list[str]:
    """The query's dosage forms (canonical) that are part of the product's own name rather than asked for (see
    `_forms_in_name`): the expert rules must not read them as a form the product lacks."""
    p = parse_name(product_name, kb)
    if not p.is_listing:
        return []
    q = parse_name(query, kb, query=True)
    return [f for f in _forms_in_name(q, p) if not kb.dosage_forms_equal([f], list(p.forms))]


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
    if eff is None and cat is None and (areas := _disjoint_areas(qe, pe, kb)) is not None:
        return _d("irrelevant.efficacy", f"{what}: entirely different uses ({'、'.join(sorted(areas[0]))} vs "
                  f"{'、'.join(sorted(areas[1]))}, therapeutic areas the knowledge base holds apart)")
    if eff is not None and eff > 0:
        return _d("less.related_use", f"{what}: their uses overlap ({'、'.join(qe.efficacy[:3])} / "
                  f"{'、'.join(pe.efficacy[:3])})")
    if cat is not None and cat > 0:
        return _d("less.related_use", f"{what}: related categories ({'、'.join(qe.category)} / "
                  f"{'、'.join(pe.category)})")
    return None


def _disjoint_areas(qe: Entities, pe: Entities, kb: KnowledgeBase) -> tuple[set[str], set[str]] | None:
    """(the query's areas, the product's) when the knowledge base's therapeutic areas hold them apart
    (armed/knowledge/areas.py): the evidence for "entirely different" where the efficacy lexicon cannot tell."""
    if qe.common_name:
        qa = kb.record_areas(qe.common_name, qe.efficacy, qe.category)
    else:
        qa = kb.need_areas([*qe.efficacy, *qe.category]) or None
    pa = kb.record_areas(pe.common_name, pe.efficacy, pe.category)
    return (qa, pa) if qa and pa and kb.areas.disjoint_areas(qa, pa) else None


def _named_for_the_need(qi: QueryIntent, q: NameParse, p: NameParse) -> str | None:
    """The product's own name when it is the need the whole query states, and nothing more (口腔炎 and
    口腔炎喷雾剂, 胃痛 and 胃痛片): a medicine named for a condition is sold for it, whatever its record holds. The
    product's own name is its parsed core (`NameParse.names`), so a query appended to another product's name
    (马应龙麝香痔疮膏 口腔炎) is no such name."""
    if qi.forms or qi.brands or not q.text.strip():
        return None
    text = normalise(q.text)
    return text if text in p.names else None


def _need_query(qi: QueryIntent, q: NameParse, p: NameParse, qe: Entities, pe: Entities,
                kb: KnowledgeBase) -> GuidelineDecision | None:
    if qe.population and not pe.population:
        # need.met is for the population the query names; a product that states none is not shown to be for it,
        # nor to exclude it (the guideline's irrelevant): the student weighs it.
        return None
    what = f"the query states a need ({qi.reason.removeprefix('states a need: ')}); the product is " \
           f"{'、'.join(sorted(p.names))}"
    if (named := _named_for_the_need(qi, q, p)) is not None:
        return _d("need.met", f"{what}: a medicine named for {named}")
    form_differs = _form_differs(qi, p, kb)
    if qi.forms and not (qe.efficacy or qe.category):  # a dosage form alone
        if p.forms and not form_differs:
            return _d("need.met", f"{what}: a {'、'.join(p.forms)} as asked")
        return None
    d = _by_use(qe, pe, kb, what, met_clause="need.met")
    if d is not None and d.clause == "need.met" and form_differs:
        return _d("less.form", f"{what}: the use is the one asked, the dosage form ({'、'.join(p.forms)}) is not "
                  f"the one asked ({'、'.join(qi.forms)})")
    return d


@dataclass(frozen=True)
class DrugMatch:
    """How the query's name meets the product's: the same name (`name`), one side's name with a maker's name glued
    before it (`maker`: 信邦木瓜丸 for 木瓜丸, 紫光辰济磁朱丸 for 【紫光辰济】磁朱丸), a spelling of it (`spelling`:
    pinyin or a homophone typo of the product's name), or the name the product is sold under (`brand`: the
    query names what the listing tags as its maker or trade name)."""

    name: str
    how: str
    query_maker: str | None = None
    product_maker: str | None = None
    spelled_how: str | None = None


def _maker_prefix(longer: str, shorter: str, kb: KnowledgeBase) -> str | None:
    """The maker's brand when `longer` is a maker's name glued before `shorter` (the name itself; '' for a place
    alone), else None."""
    if len(shorter) < 2 or longer == shorter or not longer.endswith(shorter):
        return None
    return glued_maker(longer[: -len(shorter)], kb)


def _spelling(q: NameParse, p: NameParse) -> tuple[str, str, str | None] | None:
    """(product name, how, product maker) when the query spells one of the product's names: its pinyin (the query in
    Latin letters) or a homophone typo of it (same length and pinyin, at most MAX_TYPO_CHARS characters differ)."""
    latin = q.text.replace(" ", "").replace("'", "")
    is_latin = latin.isascii() and latin.isalpha()
    for pm in p.mentions:
        span = p.text[pm.start : pm.end].replace(" ", "")
        for target in dict.fromkeys((normalise(pm.core), span)):
            if is_latin:
                if len(latin) >= 4 and latin in spelling.pinyin_keys(target):
                    return pm.key, "pinyin", None
                continue
            for qm in q.mentions:
                # The core, or the core with the word glued before it (粟黄止咳 for 苏黄止咳: not a maker 粟黄).
                for qc in dict.fromkeys((normalise(qm.lead + qm.core), normalise(qm.core))):
                    if (qm.canonical is not None and not qm.lead) or len(qc) < 2 or len(target) < len(qc):
                        continue
                    tail = target[-len(qc) :]
                    differs = sum(a != b for a, b in zip(qc, tail, strict=True))
                    if 0 < differs <= spelling.MAX_TYPO_CHARS and set(spelling.pinyin_keys(qc)) & set(
                            spelling.pinyin_keys(tail)):
                        return pm.key, "homophone", None
    return None


# Words after a name that describe the same preparation, not another ingredient (葡萄籽精华 is 葡萄籽's).
_SAME_PREPARATION = ("精华", "提取物")


def _names_a_use(rest: str, kb: KnowledgeBase) -> bool:
    """Is `rest` wholly an efficacy term (消炎, 清热) or a word for the same preparation (精华)?"""
    if rest in _SAME_PREPARATION:
        return True
    return len(rest) >= 2 and any(m.start == 0 and m.end == len(rest) and any(x.field == "efficacy" for x in m.payloads)
                                  for m in kb.lexicon_matches(rest))


def _populations(text: str, kb: KnowledgeBase, *, whole: bool = False) -> set[str]:
    """The populations (canonical) that `text` names; `whole`: only when the whole text is one population word."""
    return kb.canonical_populations([m.surface for m in population_words(text, kb, whole=whole)])


def match_drug(qi: QueryIntent, q: NameParse, p: NameParse, kb: KnowledgeBase) -> DrugMatch | None:
    """Does the product name what the query names? (see DrugMatch)"""
    shared = set(qi.names) & p.names
    if shared:
        return DrugMatch(sorted(shared)[0], "name")
    # The trade name asked, stated by the product: the drug it is sold as there (贝尔严清 胰酶肠溶片), whichever one
    # the trade name resolves to alone.
    for pm in p.mentions:
        if pm.trade and pm.trade in {normalise(t) for t in qi.trade_names}:
            return DrugMatch(pm.key, "name")
    q_cores = [*(x.core for x in q.mentions if not x.need_word), *qi.names]
    for qc in dict.fromkeys(normalise(c) for c in q_cores):
        for pm in p.mentions:
            if core_key(qc) == core_key(normalise(pm.core)):
                return DrugMatch(pm.key, "name")
    # The asked name made for the population the query names (美敏伪麻 儿童 / 小儿美敏伪麻口服溶液): the same drug.
    asked_for = _populations(q.text, kb)
    if asked_for:
        for qc in dict.fromkeys(core_key(normalise(c)) for c in q_cores):
            for pm in p.mentions:
                pc = core_key(normalise(pm.core))
                lead = pc[: len(pc) - len(qc)]
                if len(qc) >= 2 and pc.endswith(qc) and lead and _populations(lead, kb, whole=True) & asked_for:
                    return DrugMatch(pm.key, "name")
    # The asked name with its use after it is that product's full name (蒲地蓝 / 蒲地蓝消炎口服液), not a compound.
    for qc in dict.fromkeys(core_key(normalise(c)) for c in q_cores):
        for pm in p.mentions:
            pc = core_key(normalise(pm.core))
            if len(qc) >= 2 and pc.startswith(qc) and _names_a_use(pc[len(qc):], kb):
                return DrugMatch(pm.key, "name")
    # A spelling of the product's name comes before reading an unknown word as a maker (粟黄止咳 is 苏黄止咳 misspelt).
    found = _spelling(q, p)
    if found is not None:
        return DrugMatch(found[0], "spelling", spelled_how=found[1])
    for qc in dict.fromkeys(normalise(c) for c in q_cores):
        for pm in p.mentions:
            pc = normalise(pm.core)
            for a, b in ((pc, qc), (core_key(pc), core_key(qc))):
                maker = _maker_prefix(a, b, kb)
                if maker is not None:
                    return DrugMatch(core_key(b), "maker", product_maker=maker or None)
                maker = _maker_prefix(b, a, kb)
                if maker is not None:
                    return DrugMatch(pm.key, "maker", query_maker=maker or None)
    # The name the product is sold under, as its maker tags it ([罗每乐]盐酸阿莫罗芬乳膏 for the query 罗每乐).
    if p.mentions and p.brands:
        for qc in dict.fromkeys(normalise(c) for c in q_cores):
            if len(qc) >= 2 and same_maker([qc], p.brands, kb):
                return DrugMatch(p.mentions[0].key, "brand", query_maker=qc)
    return None


@dataclass(frozen=True)
class PairReading:
    """Both sides of a pair read for product search: the student's features and `decide` read the same object."""

    intent: QueryIntent
    query: NameParse
    product: NameParse
    query_entities: Entities
    product_entities: Entities
    match: DrugMatch | None

    @property
    def shared(self) -> set[str]:
        """The drug / product both name (empty when they name none in common)."""
        return {self.match.name} if self.match else set()


def vetoes_decide(product_text: str, kb: KnowledgeBase, product_kind: str = "title") -> bool:
    """Do expert rules that set a level decide this pair? They are product rules: a listing, never a second query
    (KUAKE-QQR) or a question / page title (on a seeded 4,000-pair sample of KUAKE-QTR train they fired 14 times on
    such texts and were right 4 times: docs/relevance.md, Pharmacy relevance)."""
    return product_kind != "query" and parse_name(product_text, kb).is_listing


def read_pair(query: str, product_name: str, kb: KnowledgeBase, *, intent: QueryIntent | None = None,
              query_entities: Entities | None = None, product_extra: Entities | None = None) -> PairReading:
    """`query_entities`: the query's entities as understood (defaults to the knowledge base's reading of the query as
    typed); `product_extra`: entities the product's attributes or images add (CPV, image text)."""
    p = parse_name(product_name, kb)
    q = parse_name(query, kb, query=True)
    qi = intent or query_intent(query, kb, q)
    qe = query_entities if query_entities is not None else kb.enrich(kb.extract(query))
    match = match_drug(qi, q, p, kb) if qi.kind == "product" else None
    return PairReading(qi, q, p, qe, head_entities(p, kb, product_extra), match)


def decide_reading(r: PairReading, kb: KnowledgeBase) -> GuidelineDecision | None:
    """The clause that decides this pair, or None when the branches leave it open (see the module doc)."""
    if not r.product.is_listing or r.intent.kind not in ("product", "need"):
        return None
    qe, pe = r.query_entities, r.product_entities
    if kb.population_conflict(qe.population, pe.population):
        return _d("irrelevant.population", f"the query is for {'、'.join(qe.population)}, the product for "
                  f"{'、'.join(pe.population)}")
    if r.intent.kind == "product":
        return _product_query(r, kb)
    return _need_query(r.intent, r.query, r.product, qe, pe, kb)


def decide(query: str, product_name: str, kb: KnowledgeBase, *, intent: QueryIntent | None = None,
           query_entities: Entities | None = None, product_extra: Entities | None = None
           ) -> GuidelineDecision | None:
    """`decide_reading(read_pair(...))`: the clause that decides the pair, or None (open)."""
    return decide_reading(read_pair(query, product_name, kb, intent=intent, query_entities=query_entities,
                                    product_extra=product_extra), kb)
