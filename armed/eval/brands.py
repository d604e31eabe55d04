"""Does the brand rule fire for brands the knowledge base has never seen, and does it leave ordinary names alone?

Two measurements, both by `armed eval brands` and both in tests/knowledge/test_unseen_brands.py:

- hit rate: brand-differs pairs (the same drug from two makers, as in the paper's Table 10: 修正消栓通络片 vs
  [德济]消栓通络片) whose brands the knowledge base under test does not know. The pairs are built here from the company
  abbreviations of originator-drugs and the makers of drug-dicts' producer.txt (read by path, never copied), plus a
  small self-written set that needs no data. A pair is a hit when the judgment fires `brand_differs_similar_efficacy`.
- false-positive rate: the share of ordinary names (seed drug names with population / modifier words, and the QTR
  train titles) in which a brand is guessed (`KnowledgeBase.guess_brands`), i.e. found by position, not by the lexicon.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from armed.knowledge.base import KnowledgeBase
from armed.knowledge.brands import maker_core, plausible_brand
from armed.knowledge.index import is_cjk, normalise

BRAND_RULE = "brand_differs_similar_efficacy"


@dataclass(frozen=True)
class BrandPair:
    query: str
    product: str
    query_brand: str
    product_brand: str
    origin: str  # self-written | originator-drugs | drug-dicts


# Invented but plausible makers (none is a seed brand); every finder appears on both sides.
SELF_WRITTEN_PAIRS: tuple[BrandPair, ...] = (
    BrandPair("康恩贝消栓通络片", "[济和堂]消栓通络片 1.8g*12片*3板/盒", "康恩贝", "济和堂", "self-written"),
    BrandPair("[华岳]布洛芬缓释胶囊", "恒康制药 布洛芬缓释胶囊 0.3g*20粒", "华岳", "恒康", "self-written"),
    BrandPair("宏远感冒灵颗粒", "【瑞丰】感冒灵颗粒 10g*9袋", "宏远", "瑞丰", "self-written"),
    BrandPair("泰和堂板蓝根颗粒", "金泽药业板蓝根颗粒 10g*20袋", "泰和堂", "金泽", "self-written"),
    BrandPair("【鹤年】连花清瘟胶囊", "浙江天禾制药股份有限公司 连花清瘟胶囊", "鹤年", "天禾", "self-written"),
    BrandPair("康宁藿香正气口服液", "[润元]藿香正气口服液", "康宁", "润元", "self-written"),
    BrandPair("恒瑞达奥美拉唑肠溶胶囊", "【立康旗舰店】奥美拉唑肠溶胶囊 20mg*14粒", "恒瑞达", "立康", "self-written"),
    BrandPair("[安泰]氯雷他定片", "万邦德氯雷他定片 10mg*6片", "安泰", "万邦德", "self-written"),
    BrandPair("福元药业阿莫西林胶囊", "[一力]阿莫西林胶囊 0.25g*24粒", "福元", "一力", "self-written"),
    BrandPair("百灵健胃消食片", "华中药业 健胃消食片 0.8g*32片", "百灵", "华中", "self-written"),
)

# Names in which no brand may be guessed: a drug name with the words that modify it, specs and places.
ORDINARY_NAMES: tuple[str, ...] = (
    "儿童感冒灵", "小儿感冒颗粒", "复方丹参片", "复方板蓝根颗粒", "维生素C片", "维生素c咀嚼片 100片",
    "0.3g*20粒", "感冒灵颗粒 10g*9袋", "强力枇杷露", "加味逍遥丸", "北京消栓通络片", "云南板蓝根颗粒",
    "孕妇可以吃感冒灵吗", "儿童退烧药", "清热解毒口服液", "止咳糖浆 儿童", "布洛芬混悬液 儿童退烧",
    "老人钙片", "女性维生素", "【包邮】消栓通络片", "[正品]布洛芬缓释胶囊", "【阿里健康大药房】阿莫西林胶囊",
    "[官方旗舰店]感冒灵颗粒", "晚上喝完感冒灵后可以吃水果吗", "睡前喝布洛芬后出汗", "速效救心丸", "非处方药 感冒灵",
    "杞菊地黄丸", "头上长红疙瘩怎么办", "第一次吃避孕药有什么危害",
)

# A dosage-form word each pair's drug is written with (the seed's canonical form → a common surface).
_FORM_SURFACE = {"片剂": "片", "颗粒剂": "颗粒", "丸剂": "丸", "散剂": "散"}
_SPECS = ("", " 0.3g*24粒", " 10g*10袋/盒", " 12片*2板", "")
_PLACES_FOR_MAKERS = ("浙江", "江苏", "山东", "四川", "广东")
_PRODUCER_MAKER_RE = re.compile(r"^(.{2,6}?)(?:制药厂|制药|药业|药厂)")


def _order(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def originator_brands(folder: Path) -> list[str]:
    """Company abbreviations of originator-drugs (豪森药业 → 豪森), CJK and plausible only, in a stable order."""
    out: set[str] = set()
    for f in sorted(folder.glob("*.json")):
        for row in json.loads(f.read_text(encoding="utf-8"))["data"]:
            core = maker_core(str(row.get("company_abbreviation") or ""))
            if core and all(is_cjk(ch) for ch in core) and plausible_brand(core) and len(core) <= 4:
                out.add(core)
    return sorted(out, key=_order)


def producer_brands(producer_txt: Path) -> list[str]:
    """Makers named in drug-dicts' producer.txt by a maker word (长红制药…, 先声药业…), reduced to their brand."""
    out: set[str] = set()
    for line in producer_txt.read_text(encoding="utf-8").splitlines():
        m = _PRODUCER_MAKER_RE.match(line.strip())
        if m:
            core = maker_core(m.group(1))
            if all(is_cjk(ch) for ch in core) and plausible_brand(core) and 2 <= len(core) <= 4:
                out.add(core)
    return sorted(out, key=_order)


def _drugs(kb: KnowledgeBase) -> list[tuple[str, str]]:
    """(common name, dosage-form surface) of every seed drug with an efficacy (the rule compares efficacy)."""
    forms = {f.name: f for f in kb.seed.lexicons.dosage_forms}
    out = []
    for c in kb.seed.lexicons.common_names:
        # Left out: a name that is also a brand (云南白药: two makers' 云南白药散 is not a pair), one for a population
        # (the rule's population condition is not what is measured), one ending in a form (速效救心丸) or a digit
        # (碳酸钙D3片: the seed's specification pattern reads 3片 as a pack size, a known gap of its own).
        if (not c.efficacy or c.populations or c.name.endswith("丸") or c.name[-1].isdigit()
                or kb.knows_brand(c.name)):
            continue
        form = c.dosage_forms[0] if c.dosage_forms else ""
        out.append((c.name, _FORM_SURFACE.get(form, forms[form].variants[0] if form in forms else "")))
    return out


def build_unseen_pairs(knowledge_dir: Path, kb: KnowledgeBase, per_source: int = 25) -> list[BrandPair]:
    """Brand-differs pairs whose brands `kb` does not know: `per_source` from originator-drugs' abbreviations and as
    many from producer.txt's makers, each pair two unseen brands of one seed drug, in varied name shapes."""
    drugs = _drugs(kb)
    pairs: list[BrandPair] = []
    sources = (
        ("originator-drugs", originator_brands(knowledge_dir / "originator-drugs")),
        ("drug-dicts", producer_brands(knowledge_dir / "drug-dicts" / "producer.txt")),
    )
    used: set[str] = set()
    for origin, brands in sources:
        fresh = [b for b in brands if not kb.knows_brand(b) and b not in used][: 2 * per_source]
        used.update(fresh)
        for i in range(0, len(fresh) - 1, 2):
            a, b = fresh[i], fresh[i + 1]
            k = i // 2
            cn, form = drugs[k % len(drugs)]
            name = cn + form
            query = (f"{a}{name}", f"[{a}]{name}", f"{a}制药{name}")[k % 3]
            spec = _SPECS[k % len(_SPECS)]
            place = _PLACES_FOR_MAKERS[k % len(_PLACES_FOR_MAKERS)]
            product = (f"[{b}]{name}{spec}", f"{b}药业 {name}{spec}", f"{b}{name}{spec}", f"【{b}】{name}{spec}",
                       f"{place}{b}制药股份有限公司 {name}")[k % 5]
            pairs.append(BrandPair(query, product, a, b, origin))
    return pairs


@dataclass(frozen=True)
class PairResult:
    pair: BrandPair
    hit: bool
    level: str
    query_brands: list[str]
    product_brands: list[str]


async def _judge_all(kb: KnowledgeBase, pairs: Sequence[BrandPair]) -> list[PairResult]:
    from armed.engines.base import ModelClients
    from armed.pipeline.dag import Pipeline
    from armed.settings import ArmedSettings

    pipe = Pipeline(ArmedSettings(), kb, ModelClients())
    out = []
    for p in pairs:
        j = await pipe.judge(p.query, p.product)
        out.append(PairResult(
            p, any(r.id == BRAND_RULE for r in j.rules_fired), j.level.value,
            list(j.evidence.query.entities.brand), list(j.evidence.product.entities.brand),
        ))
    return out


def judge_pairs(kb: KnowledgeBase, pairs: Sequence[BrandPair]) -> list[PairResult]:
    """Judge every pair end to end (no models: the deterministic pipeline) and say whether the brand rule fired."""
    return asyncio.run(_judge_all(kb, pairs))


def guessed_rate(kb: KnowledgeBase, names: Iterable[str]) -> tuple[float, int, list[tuple[str, str]]]:
    """(share of names with a guessed brand, number of names, the (name, brand) guessed)."""
    names = list(dict.fromkeys(n for n in names if normalise(n)))
    hits = [(n, g[0].brand) for n in names if (g := kb.guess_brands(n))]
    return (len(hits) / len(names) if names else 0.0), len(names), hits


def qtr_titles(path: Path) -> list[str]:
    return sorted({str(r["title"]) for r in json.loads(path.read_text(encoding="utf-8"))})


def report(kb: KnowledgeBase, knowledge_dir: Path | None, qtr_train: Path | None) -> dict:
    """Everything `armed eval brands` prints, as one JSON-able dict."""
    out: dict = {"kb_version": kb.version, "kb_sources": kb.source_names}
    sets = {"self-written": list(SELF_WRITTEN_PAIRS)}
    if knowledge_dir is not None:
        sets["unseen (originator-drugs + drug-dicts)"] = build_unseen_pairs(knowledge_dir, kb)
    for name, pairs in sets.items():
        res = judge_pairs(kb, pairs)
        out[f"hit_rate {name}"] = {
            "pairs": len(res), "hit": sum(r.hit for r in res),
            "rate": round(sum(r.hit for r in res) / len(res), 4) if res else None,
            "misses": [asdict(r) for r in res if not r.hit],
        }
    rate, n, hits = guessed_rate(kb, ORDINARY_NAMES)
    out["false_positive ordinary names"] = {"names": n, "guessed": len(hits), "rate": round(rate, 5), "examples": hits}
    if qtr_train is not None:
        rate, n, hits = guessed_rate(kb, qtr_titles(qtr_train))
        out["guessed brand QTR train titles"] = {"names": n, "guessed": len(hits), "rate": round(rate, 5),
                                                 "examples": hits}
    return out
