"""The student's pair features: what a relevance engineer would look at, computed the same way in training and
in serving (one function of the pair text and the knowledge base; no pipeline state that training lacks).

Three groups, concatenated in this order (`FeatureSpec` names every column):
- lexical (`LEXICAL`): lengths, character / n-gram overlap both ways, containment, common substrings and
  subsequences, edit similarity, digits and negation markers, question-word agreement (query-query pairs);
- knowledge (`KNOWLEDGE`): the knowledge base's reading of both sides — common names, brands, dosage forms,
  efficacy and category agreement, population conflicts, which expert rules fire and what they cap, which of
  Algorithm 1's deterministic branches would fire, and the knowledge prior's four probabilities;
- guideline (`GUIDELINE`): the product-search reading of the pair (armed/pipeline/product_search.py): the query's
  intent, whether the product reads as a listing, the brand relation (asked / same / another / none shown), trade-name
  hits, the dosage-form and specification relations, a spelled query, a compound holding the asked drug, and the
  clause the guideline's branches would apply, as its level;
- semantic: frozen sentence embeddings u (query) and v (product text), as [u, v, |u-v|, u*v, cos(u, v)].

The pair kind (a product title, or another query) is one more column: the training sets are query-title
(KUAKE-QTR) and query-query (KUAKE-QQR) pairs whose labels mean slightly different things; a product is a title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

import numpy as np

from armed.domain import Entities, RelevanceLevel
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.rules import ceiling, recall, veto
from armed.pipeline import product_search
from armed.pipeline.levels import core_match, knowledge_prior_of, query_chars_in_name, query_in_name
from armed.text import char_overlap, char_set, jaccard, ngrams, normalise

PairKind = Literal["title", "query"]

# Markers that a merchant name (or a title) says the product is NOT the thing (query stuffing: 不含布洛芬).
NEGATIONS = ("不含", "无", "非", "替代", "代替", "平替", "同款", "不是", "除了")
# Interrogatives and intents: two queries that ask different things about the same subject differ here.
QUESTION_WORDS = (
    "什么", "怎么", "怎样", "如何", "为什么", "吗", "能", "可以", "多少", "哪", "原因", "症状", "治疗", "吃",
    "药", "价格", "多久", "区别", "危害", "作用", "功效", "好", "注意", "禁忌", "副作用", "表现", "偏方", "方法",
)

LEXICAL = (
    "log_len_query", "log_len_product", "len_ratio",
    "char_cover_q_in_p", "char_cover_p_in_q", "char_jaccard",
    "bigram_cover_q_in_p", "bigram_cover_p_in_q", "bigram_jaccard", "trigram_cover_q_in_p", "trigram_jaccard",
    "query_in_product", "product_in_query", "equal",
    "lcsubstr_over_q", "lcsubstr_over_p", "lcsubseq_over_q", "lcsubseq_over_p", "edit_similarity",
    "prefix_over_q", "suffix_over_q", "log_missing_q_chars", "log_extra_p_chars",
    "digits_q", "digits_p", "digits_differ", "negation_p", "negation_q",
    "qwords_q", "qwords_p", "qwords_jaccard", "qwords_differ",
)
_LEVELS = list(RelevanceLevel)
KNOWLEDGE_FIXED = (
    "q_has_common_name", "p_has_common_name", "shared_common_name", "common_names_differ",
    "q_has_brand", "p_has_brand", "brand_differs", "q_has_form", "p_has_form", "forms_differ",
    "q_has_efficacy", "p_has_efficacy", "efficacy_overlap", "efficacy_disjoint",
    "q_has_category", "p_has_category", "category_overlap", "population_conflict", "query_specific",
    "branch_name_containment", "branch_all_characters", "branch_core_match",
    "cap_rank", "capped", "veto_rank", "vetoed",
    *(f"prior_{lvl.name}" for lvl in _LEVELS),
)

GUIDELINE = (
    "intent_product", "intent_need", "intent_question", "product_is_listing", "product_has_trailing_name",
    "same_drug", "brand_asked", "brand_same", "brand_other", "brand_not_shown", "trade_asked", "trade_in_product",
    "form_asked", "form_differs_head", "spec_asked", "spec_differs", "query_spelled", "compound_holds_query",
    "guideline_fired", *(f"guideline_{lvl.name}" for lvl in _LEVELS),
)


@dataclass(frozen=True)
class FeatureSpec:
    """The column layout: saved with a trained student so a mismatched knowledge base or embedder is refused."""

    rules: tuple[str, ...]
    embedding_dim: int

    @property
    def names(self) -> list[str]:
        emb = [f"{part}_{i}" for part in ("u", "v", "absdiff", "prod") for i in range(self.embedding_dim)]
        return [*LEXICAL, *KNOWLEDGE_FIXED, *(f"rule_{r}" for r in self.rules), *GUIDELINE, "pair_is_query",
                *emb, "cosine"]

    @property
    def dim(self) -> int:
        return len(self.names)


def _longest_common_substring(a: str, b: str) -> int:
    if not a or not b:
        return 0
    m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return m.size


def _longest_common_subsequence(a: str, b: str) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _cover(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a) if a else 0.0


def lexical_features(query: str, product: str) -> list[float]:
    q, p = normalise(query), normalise(product[:512])
    lq, lp = len(q), len(p)
    cq, cp = char_set(q), char_set(p)
    bq, bp = ngrams(q, 2), ngrams(p, 2)
    tq, tp = ngrams(q, 3), ngrams(p, 3)
    lcs_sub = _longest_common_substring(q, p)
    lcs_seq = _longest_common_subsequence(q[:64], p[:128])
    prefix = len(_common_prefix(q, p))
    suffix = len(_common_prefix(q[::-1], p[::-1]))
    dq = "".join(ch for ch in q if ch.isdigit())
    dp = "".join(ch for ch in p if ch.isdigit())
    wq = {w for w in QUESTION_WORDS if w in q}
    wp = {w for w in QUESTION_WORDS if w in p}
    return [
        math.log1p(lq), math.log1p(lp), min(lq, lp) / max(lq, lp, 1),
        char_overlap(q, p), char_overlap(p, q), jaccard(cq, cp) if cq or cp else 0.0,
        _cover(bq, bp), _cover(bp, bq), jaccard(bq, bp) if bq or bp else 0.0, _cover(tq, tp),
        jaccard(tq, tp) if tq or tp else 0.0,
        float(bool(q) and q in p), float(bool(p) and p in q), float(q == p),
        lcs_sub / max(lq, 1), lcs_sub / max(lp, 1), lcs_seq / max(min(lq, 64), 1), lcs_seq / max(min(lp, 128), 1),
        SequenceMatcher(None, q, p, autojunk=False).ratio(),
        prefix / max(lq, 1), suffix / max(lq, 1), math.log1p(len(cq - cp)), math.log1p(len(cp - cq)),
        float(bool(dq)), float(bool(dp)), float(dq != dp),
        float(sum(n in p for n in NEGATIONS)), float(sum(n in q for n in NEGATIONS)),
        float(len(wq)), float(len(wp)), jaccard(wq, wp) if wq or wp else 1.0, float(len(wq ^ wp)),
    ]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def knowledge_features(query: str, product: str, kb: KnowledgeBase, rule_ids: Sequence[str]) -> list[float]:
    """The knowledge base's reading of the pair (entities, rules, branches, prior), as numbers."""
    qe = kb.extract(query)
    pe = kb.extract(product)
    specificity = kb.query_specificity(qe, query)
    hits = recall(kb, qe, pe, specificity)
    qx, px = kb.enrich(qe), kb.enrich(pe)
    fired = {h.id for h in hits}
    q_cn, p_cn = kb.canonical_common_names(qe.common_name), kb.canonical_common_names(pe.common_name)
    eff = kb.efficacy_relation(qx.efficacy, px.efficacy)  # None: a side has none, or the KB cannot tell
    cat = kb.category_overlap(qx.category, px.category) if qx.category and px.category else None
    cap = ceiling(hits)
    forced = veto(hits)
    branch = branch_flags(query, product, qx, px, kb)
    prior = knowledge_prior_of(qx, px, query, product, kb)
    return [
        float(bool(q_cn)), float(bool(p_cn)), float(bool(q_cn & p_cn)), float(bool(q_cn and p_cn and not q_cn & p_cn)),
        float(bool(qe.brand)), float(bool(pe.brand)),
        float(bool(qe.brand and pe.brand and not kb.same_brand(qe.brand, pe.brand))),
        float(bool(qe.dosage_form)), float(bool(pe.dosage_form)),
        float(bool(qe.dosage_form and pe.dosage_form and not kb.dosage_forms_equal(qe.dosage_form, pe.dosage_form))),
        float(bool(qx.efficacy)), float(bool(px.efficacy)), eff or 0.0, float(eff == 0.0),
        float(bool(qx.category)), float(bool(px.category)), cat or 0.0,
        float(kb.population_conflict(qx.population, px.population)), float(specificity == "specific"),
        *branch,
        (cap.rank / 3.0) if cap else 1.0, float(cap is not None),
        (forced[0].rank / 3.0) if forced else 1.0, float(forced is not None),
        *(prior[lvl] for lvl in _LEVELS),
        *(float(r in fired) for r in rule_ids),
    ]


def blend_kind(product: str, kind: PairKind, kb: KnowledgeBase) -> str:
    """The pair's kind for the cross-encoders' blend weight: another query, a product listing, or a title (a page)."""
    if kind == "query":
        return "query"
    return "listing" if product_search.parse_name(product, kb).is_listing else "title"


def guideline_features(query: str, product: str, kb: KnowledgeBase) -> list[float]:
    """The product-search reading of the pair and the clause the guideline's branches would apply (a feature, whether
    or not the judge lets that clause decide: judge.guideline_clauses)."""
    r = product_search.read_pair(query, product, kb)
    qi, p = r.intent, r.product
    decision = product_search.decide_reading(r, kb)
    p_brands = list(p.brands)
    brand_same = bool(qi.brands and p_brands and kb.same_brand(list(qi.brands), p_brands))
    p_trades = {m.trade for m in p.mentions if m.trade}
    keys = {x for m in p.mentions for x in m.inner} | {m.core for m in p.mentions}
    level = decision.level if decision else None
    return [
        float(qi.kind == "product"), float(qi.kind == "need"), float(qi.kind == "question"), float(p.is_listing),
        float(bool(p.appended)), float(bool(r.shared)),
        float(bool(qi.brands)), float(brand_same), float(bool(qi.brands and p_brands and not brand_same)),
        float(bool(qi.brands and not p_brands)),
        float(bool(qi.trade_names)), float(bool(set(qi.trade_names) & p_trades)),
        float(bool(qi.forms)), float(bool(qi.forms and p.forms and not kb.dosage_forms_equal(list(qi.forms),
                                                                                            list(p.forms)))),
        float(bool(qi.specifications)),
        float(bool(qi.specifications and p.specifications and not product_search.same_spec(qi.specifications,
                                                                                             p.specifications))),
        float(qi.spelled is not None),
        float(any(n in k and n != k for n in qi.names for k in keys)),
        float(decision is not None), *(float(level is lvl) for lvl in _LEVELS),
    ]


def branch_flags(query: str, product: str, qe: Entities, pe: Entities, kb: KnowledgeBase) -> tuple[float, ...]:
    """Which of Algorithm 1's deterministic branches would fire (as features, not as decisions)."""
    return (float(query_in_name(query, [product])), float(query_chars_in_name(query, [product], 2)),
            float(core_match(qe, pe, kb) is not None))


def pair_features(
    query: str, product: str, kind: PairKind, kb: KnowledgeBase, spec: FeatureSpec,
    u: np.ndarray, v: np.ndarray,
) -> np.ndarray:
    """One row of features; u and v are the unit embeddings of the query and the product text."""
    cos = float(np.dot(u, v))
    row = [
        *lexical_features(query, product),
        *knowledge_features(query, product, kb, spec.rules),
        *guideline_features(query, product, kb),
        float(kind == "query"),
    ]
    return np.concatenate([np.asarray(row, dtype=np.float32), u, v, np.abs(u - v), u * v,
                           np.asarray([cos], dtype=np.float32)]).astype(np.float32)
