"""The annotation guideline for product-search pairs, as data: one source for the judge, the benchmark and the prompt.

`../shared/notes/relevance-guideline.md` (AR-Med's annotation guideline and Algorithm 1) is the contract for pairs of
an online pharmacy's search (a short query, a merchant's product). Each clause below is one sentence of it that gives
a level; the product-search branches of the hierarchy (armed/pipeline/product_search.py) name the clause they applied
in the judgment (`Judgment.guideline`), every label of the pharmacy benchmark (armed/eval/pharmacy.py) names the
clause that gives it, and the LLM judge's prompt states the same clauses (armed/pipeline/prompts.py). KUAKE's
labels come from its own annotators (general medical Q&A): no clause is claimed for them.

`QUERY_TYPES` are the kinds of pharmacy pair the benchmark covers (its per-type report), `PRODUCT_CATEGORIES` the
first categories of LocalQSMed's mix (the benchmark's hand-written part fills those the drug lists lack).
"""

from __future__ import annotations

from dataclasses import dataclass

from armed.domain import RelevanceLevel


@dataclass(frozen=True)
class Clause:
    """One clause of the guideline: the level it gives and what it says (Chinese for the prompt, English for docs)."""

    id: str
    level: RelevanceLevel
    en: str
    zh: str


_H, _M, _W, _I = (RelevanceLevel.highly, RelevanceLevel.moderately, RelevanceLevel.weakly,
                  RelevanceLevel.irrelevant)

CLAUSES: tuple[Clause, ...] = (
    # --- highly relevant: the product is what the query asks for
    Clause("exact.generic", _H,
           "A query that names a product without a brand (a generic drug name, a device) is answered by any "
           "maker's product of that name; a dosage form the query names must agree.",
           "查询只给出通用名（药品通用名、器械名）而未指定品牌：任何厂家的该名称商品都完全满足；查询指定剂型时剂型须一致。"),
    Clause("exact.trade", _H,
           "A trade-name query (芬必得) is answered by the product sold under that trade name.",
           "商品名查询（如芬必得）：以该商品名销售的商品完全满足。"),
    Clause("exact.brand", _H,
           "A brand + name query is answered by that brand's product of that name; a brand-only query by that "
           "brand's products.",
           "品牌+名称查询：该品牌的该名称商品完全满足；只有品牌的查询：该品牌的商品满足。"),
    Clause("exact.spelling", _H,
           "A misspelt or pinyin query means the name it spells: the product of that name answers it.",
           "错别字或拼音查询指其拼写的名称：该名称的商品完全满足。"),
    Clause("need.met", _H,
           "A symptom, disease, efficacy or category query (头痛, 退烧药) is answered by a product whose own "
           "indication or category is that need, for the population the query names.",
           "症状、疾病、功效或品类查询（头痛、退烧药）：功能主治或品类正是该需求（且适用查询所指人群）的商品完全满足。"),
    # --- less relevant (the hierarchy's moderately + weakly)
    Clause("less.brand", _M,
           "The query names a brand or a trade name and the product is another maker's product of the same drug, "
           "efficacy and population alike (the paper's Table 10: 修正消栓通络片 vs [德济]消栓通络片).",
           "查询指定了品牌或商品名，商品是其他厂家的同一药品，功效与人群相近：较相关（如修正消栓通络片与德济消栓通络片）。"),
    Clause("less.form", _M,
           "The query names a dosage form and the product is the same drug in another form "
           "(云南白药气雾剂 vs 云南白药膏).",
           "查询指定了剂型，商品是同一药品的其他剂型：较相关（如云南白药气雾剂与云南白药膏）。"),
    Clause("less.spec", _M,
           "The query states a specification (strength or pack) and the product's differs; a specification the "
           "query does not state never lowers the level.",
           "查询写明了规格而商品规格不同：较相关；查询未写规格时，规格差异不降低相关性。"),
    Clause("less.ingredient", _W,
           "The product contains what the query names as one ingredient among others (a compound preparation).",
           "商品含有查询所指成分，但只是复方中的一种成分：较相关。"),
    Clause("less.related_use", _W,
           "A different product whose use overlaps the query's (a similar efficacy, a related category).",
           "不同的商品，但功效相近或品类相关、用途有重叠：较相关。"),
    # --- irrelevant
    Clause("irrelevant.efficacy", _I,
           "The product's efficacy is entirely different from what the query asks for.",
           "商品功效与查询需求完全不同：不相关。"),
    Clause("irrelevant.population", _I,
           "The target population diverges entirely (a children's query and an adults-only product).",
           "适用人群完全不符（如儿童查询与仅限成人的商品）：不相关。"),
    Clause("irrelevant.cheating", _I,
           "The name lies about the product: it borrows another product's name or brand (同款, 平替) or the images "
           "show something else.",
           "商品名称作弊：借用其他商品或品牌的名称（同款、平替），或与图片不符：不相关。"),
)
CLAUSE: dict[str, Clause] = {c.id: c for c in CLAUSES}
# Expert rules (seed `rules`) and hierarchy steps that decide by a clause of the guideline: a judgment they decide
# names that clause too (the rules are how the knowledge base applies it).
RULE_CLAUSES: dict[str, str] = {
    "efficacy_entirely_different": "irrelevant.efficacy",
    "population_conflict": "irrelevant.population",
}
CHEATING_CLAUSE = "irrelevant.cheating"

# The kinds of pharmacy pair the benchmark covers (named by what the query is, or how the pair was made).
QUERY_TYPES: tuple[str, ...] = (
    "generic_name", "trade_name", "maker_name", "other_maker", "other_form", "symptom", "category", "ingredient",
    "device", "population", "unrelated", "cheating", "typo", "pinyin",
)
# LocalQSMed's first categories (the guideline note's mix).
PRODUCT_CATEGORIES: tuple[str, ...] = (
    "中西药品", "医疗器械", "美妆个护", "营养保健", "成人用品", "健康养生", "其他",
)


def clause(clause_id: str) -> Clause:
    """The clause of that id; a KeyError names the known ones."""
    try:
        return CLAUSE[clause_id]
    except KeyError:
        raise KeyError(f"unknown guideline clause {clause_id!r}; known: {', '.join(CLAUSE)}") from None
