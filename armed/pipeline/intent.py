"""Query intent (the method's QI step): does the query name a product, state a need, or ask a question?

- `product`: it names what it wants: a drug's common or trade name, a device or product type (血压计, 牙膏), a brand
  with or without a name, a structural drug name the knowledge base does not know (头孢克肟分散片), or a name spelled in
  pinyin or with a homophone typo (ganmaoling, 感冒零颗粒).
- `need`: it states a symptom, disease, efficacy or category (头痛, 退烧药, 儿童感冒药) and no product.
- `question`: it asks for information (怎么, 吗, 原因 ...): KUAKE's kind of query, which the student judges.
- `other`: none of these can be told from the knowledge base.

Product and need queries of a product listing are decided by the guideline's branches (armed/pipeline/
product_search.py); the rest by the student. Computed from the query as typed, never from a rewrite: a rewrite that
expands 退烧药 into drug names must not turn a need into a product query.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from armed.knowledge.base import KnowledgeBase
from armed.knowledge.index import Match, normalise
from armed.pipeline.listing import NameParse, parse_name

IntentKind = Literal["product", "need", "question", "other"]


class QueryIntent(BaseModel):
    """What the query asks for, as the product-search branches read it (part of the cached query understanding)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IntentKind
    names: list[str] = Field(default_factory=list, description="Drugs / products it names (canonical or core).")
    trade_names: list[str] = Field(default_factory=list, description="Trade names it states (芬必得).")
    brands: list[str] = Field(default_factory=list, description="Brands it asks for (not counting a name that is "
                              "its own brand, 云南白药).")
    forms: list[str] = Field(default_factory=list)
    specifications: list[str] = Field(default_factory=list)
    spelled: str | None = Field(default=None, description="The name a pinyin / homophone query spells.")
    spelled_how: str | None = None
    spelled_whole: bool = Field(default=False, description="The spelled name is the whole query (感冒零颗粒, "
                                "ganmaoling): nothing typed beside it is a brand, a form or anything else.")
    reason: str = ""


def _whole_need_term(text: str, kb: KnowledgeBase) -> str | None:
    """The efficacy / category term the whole query is (胃痛, 遗精, 退烧药), or None."""
    text = text.strip()
    for m in kb.lexicon_matches(text):
        if m.start == 0 and m.end == len(text) and {x.field for x in m.payloads} & {"efficacy", "category"}:
            return m.surface
    return None


def _spells_whole(query: str, surface: str, how: str) -> bool:
    """Is the spelled name the whole query: pinyin letters only, or a homophone typo as long as the name?"""
    typed = normalise(query).replace(" ", "").replace("'", "")
    if how == "pinyin":
        return typed.isascii() and typed.isalpha()
    return len(typed) == len(normalise(surface).replace(" ", ""))


def query_intent(query: str, kb: KnowledgeBase, parsed: NameParse | None = None) -> QueryIntent:
    """Classify the query (see the module doc). `parsed`: its `parse_name`, when the caller has it."""
    p = parsed or parse_name(query, kb, query=True)
    if p.question:
        return QueryIntent(kind="question", reason="the query asks a question")
    ents = kb.extract(query)
    names = sorted(p.query_names)
    trades = [m.trade for m in p.mentions if m.trade]
    spelled_name = None
    # A name the knowledge base does not know may be a known one misspelt (感冒零颗粒): read it as that name.
    unknown = [m for m in p.mentions if m.canonical is None and not m.need_word and not m.inner]
    if unknown and len(unknown) == len(names):
        spelled_name = kb.spelled(unknown[0].core)
    whole_spelt = False
    term = _whole_need_term(p.text, kb)
    if term and not p.forms and not p.brands and set(names) <= {term}:
        # A symptom typed alone that is also a drug's bare core (胃痛: a 胃痛片 exists) states the need, and a need word
        # is not a misspelt name (遗精 is not 益精 mistyped).
        names, trades, spelled_name = [], [], None
    if spelled_name is None and not names and not p.mentions and not term:
        spelled_name = kb.spelled(query)
    elif spelled_name is None and p.mentions and not term:
        # A known name inside a misspelt one (止泻 in 小儿辅脐止泻散, 消肿 in 竹瘀消肿) is not what the query asks for
        # when the whole query spells a longer known name that holds it (小儿敷脐止泻散, 逐瘀消肿).
        # So is a name read around a known piece (奥美沙坦滞片: 奥美 is a trade name) that spells a known name as long.
        whole = kb.spelled(query)
        spelt_core = kb.split_form(whole.surface)[0] if whole is not None else ""
        if whole is not None and all((m.core in whole.surface and len(m.core) < len(whole.surface))
                                     or (m.canonical is None and len(normalise(m.core)) == len(spelt_core))
                                     for m in p.mentions):
            spelled_name, whole_spelt = whole, True
    if spelled_name is not None:
        spelt = parse_name(spelled_name.surface, kb, query=True)
        found = sorted(spelt.names) or [spelled_name.surface]
        # The whole query misspelt (紫补生发片, 比亚粉 for 比亚芬): a piece of it read as a maker (紫补) or a form
        # (粉) is part of the name; the spelled name says what the query holds.
        whole_spelt = whole_spelt or _spells_whole(query, spelled_name.surface, spelled_name.how)
        # A spelled drug name that ends in a form word (肝浸膏, 十一味甘露) asks for no form: the word is its name's.
        named = kb.common_name_of(spelled_name.surface) == normalise(spelled_name.surface)
        return QueryIntent(kind="product", names=found, trade_names=[m.trade for m in spelt.mentions if m.trade],
                           brands=[] if whole_spelt else [b for b in p.brands if b not in found],
                           forms=([] if named else list(spelt.forms)) if whole_spelt else list(p.forms),
                           specifications=list(p.specifications), spelled=spelled_name.surface,
                           spelled_how=spelled_name.how, spelled_whole=whole_spelt,
                           reason=f"spells {spelled_name.surface} ({spelled_name.how})")
    # A brand that is also the name asked for (云南白药 in 云南白药气雾剂) asks for that product, not a maker.
    brands = [b for b in p.brands if b not in names and not any(b == m.core for m in p.mentions)]
    common = dict(forms=list(p.forms), specifications=list(p.specifications))
    if names and all(_is_population_word(n, kb) for n in names):
        # A population word read as the name (儿童 in 儿童钙片: 钙 is cut off as a salt, 阿托伐他汀钙's) names no drug:
        # what is asked is the rest, for that population.
        found = _for_population(_without_population(p.text, kb), kb)
        if found is not None:
            return found
    if names:
        return QueryIntent(kind="product", names=names, trade_names=trades, brands=brands,
                           reason=f"names {'、'.join(names)}", **common)
    if brands:  # a brand's own categories (汤臣倍健 → 营养补充) are not a need the query states
        rest = p.text
        for b in sorted(kb.brand_surfaces(p.text), key=len, reverse=True):
            rest = rest.replace(b, " ")
        ents = kb.extract(rest)
    if not names and ents.ingredients and not ents.efficacy and not ents.category:
        # An ingredient alone (川楝子, 维生素D3) asks for products of it: compared as a name.
        return QueryIntent(kind="product", names=sorted(set(ents.ingredients)), brands=brands,
                           reason=f"names the ingredient {'、'.join(ents.ingredients)}", **common)
    needs = ents.efficacy + ents.category + [m.core for m in p.mentions if m.need_word]
    latin = p.text.replace(" ", "").replace("'", "")
    if not needs and not brands and latin.isascii() and latin.isalpha() and len(latin) >= 4:
        # Letters alone: pinyin or an English name the knowledge base does not know; compared with the product's
        # own name by its spelling (armed/pipeline/product_search.py).
        return QueryIntent(kind="product", reason="a name in Latin letters (pinyin or English)", **common)
    if brands and not needs:
        return QueryIntent(kind="product", brands=brands, reason=f"names the brand {'、'.join(brands)}", **common)
    if needs:
        return QueryIntent(kind="need", brands=brands, reason=f"states a need: {'、'.join(needs[:4])}", **common)
    if p.forms or ents.dosage_form:  # a dosage form alone (眼药水, 喷雾剂): any product of that form
        forms = list(p.forms) or list(ents.dosage_form)
        return QueryIntent(kind="need", brands=brands, forms=forms, specifications=list(p.specifications),
                           reason=f"asks for a dosage form: {'、'.join(forms)}")
    rest = _without_population(p.text, kb)
    if rest is not None and len(rest) == 1:
        # One character left: the population word is part of a name (暖宝宝 is a heat pad, not a baby's 暖).
        return QueryIntent(kind="product", names=[normalise(p.text).replace(" ", "")],
                           reason=f"names {p.text.strip()} (a population word inside a name)", **common)
    # A population word glued to what is asked (男士维生素, 男士洗面奶) hides the product from the reading.
    return _for_population(rest, kb) or QueryIntent(
        kind="other", reason="no product, need or question the knowledge base can read")


def _for_population(rest: str | None, kb: KnowledgeBase) -> QueryIntent | None:
    """What the query asks without its population words (`rest`, `_without_population`'s), when that is a product
    or a need (男士维生素 → 维生素); the population itself stays the query's entity, checked against the product's."""
    if rest is None or len(rest) < 2:
        return None
    inner = query_intent(rest, kb)
    if inner.kind not in ("product", "need"):
        return None
    return inner.model_copy(update={"reason": f"{inner.reason}; for the population it names"})


def population_words(text: str, kb: KnowledgeBase, *, whole: bool = False) -> list[Match]:
    """The lexicon's population words in `text` (儿童, 男士, 孕期 ...); `whole`: only one that is the whole text."""
    found = [m for m in kb.lexicon_matches(text) if any(x.field == "population" for x in m.payloads)]
    return [m for m in found if m.start == 0 and m.end == len(text)] if whole else found


def _is_population_word(text: str, kb: KnowledgeBase) -> bool:
    return bool(population_words(text, kb, whole=True))


def _without_population(text: str, kb: KnowledgeBase) -> str | None:
    """The query with its population words taken out (男士维生素 → 维生素), or None when it has none or nothing else."""
    spans = [(m.start, m.end) for m in population_words(text, kb)]
    if not spans:
        return None
    rest = text
    for a, b in sorted(spans, reverse=True):
        rest = rest[:a] + " " + rest[b:]
    rest = " ".join(rest.split())
    return rest or None
