"""The pharmacy benchmark: product-search pairs built from the public drug lists, labelled by the guideline clause
their construction implies (`armed eval pharmacy`; issue 22).

KUAKE measures general medical Q&A; this set measures what the guideline (../shared/notes/relevance-guideline.md,
armed/guideline.py) is written for: a short pharmacy query and a merchant's product name. Every pair is made from
real names in ../shared/data/knowledge (drug-dicts, originator-drugs, drug-inserts; read by path, never copied) by a
construction whose label follows from how it was made, and names that construction's clause:

    generic_name  exact.generic       generic (with or without its dosage form) vs any maker's product of it
    trade_name    exact.trade         trade name (芬必得) vs the product sold under it
    maker_name    exact.brand         maker + generic (修正消栓通络片) vs that maker's product
    other_maker   less.brand          maker A + generic, or a trade name, vs another maker's same drug
    other_form    less.form           generic with a form vs the same core in another form of the same route
    symptom       need.met            a symptom/disease of the insert's 功能主治 vs that product
                  irrelevant.efficacy  ... vs a product of a disjoint therapeutic area
    category      need.met            a category word (降压药) vs a product of that originator group
                  irrelevant.efficacy  ... vs a product of a disjoint group
    ingredient    less.ingredient     an ingredient vs a compound insert listing it among several
                  exact.generic       an ingredient that is itself a product's generic vs that product
    unrelated     irrelevant.efficacy  a generic / trade name vs a product of a disjoint therapeutic area
    cheating      irrelevant.cheating  a trade name or maker vs another maker's product that borrows it (同款, 平替)
    typo          exact.spelling      a homophone misspelling (one character) vs the product it spells
    pinyin        exact.spelling      toneless pinyin of a name vs the product
    population    exact.generic       儿童 + a children's drug (小儿X, an adults' X exists) vs the children's product

Devices, nutrition, personal care, adult products and population conflicts come from the hand-written part
(benchmarks/pharmacy/hand.jsonl). The split is by common name (the drug a pair is about): sha1("pharmacy:" + name)
% 2 → tune (0) / report (1); a pair that involves two drugs is only built when both fall in the same half.
Deterministic for a seed and the input bytes (every file read is hashed into the manifest).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from armed.guideline import CLAUSE, PRODUCT_CATEGORIES, QUERY_TYPES
from armed.knowledge.areas import AreaTable
from armed.knowledge.base import SEED_FILE, SEED_PACKAGE, KnowledgeBase
from armed.knowledge.sources import DictRows, InsertRow, read_dicts, read_inserts, read_originators

GENERATOR_VERSION = "pharmacy-gen-1"
SPLITS = ("tune", "report")
REPO_ROOT = Path(__file__).resolve().parents[2]
HAND_FILE = REPO_ROOT / "benchmarks" / "pharmacy" / "hand.jsonl"
DEFAULT_OUT = Path("benchmarks/pharmacy/generated")
LABELS = ("highly_relevant", "moderately_relevant", "weakly_relevant", "irrelevant")
ROW_FIELDS = ("id", "query", "product", "label", "clause", "query_type", "product_category", "common_name", "split",
              "source")
# Pairs the unit tests own (tests/pipeline): never in the benchmark, so no test result is also a benchmark figure.
RESERVED_PAIRS = frozenset({
    ("感冒灵颗粒", "[999] 感冒灵颗粒 10g*9袋"),
    ("修正消栓通络片", "[德济]消栓通络片"),
    ("云南白药气雾剂", "云南白药膏"),
})

# How many pairs each construction contributes at most (fewer where the sources hold fewer).
QUOTAS: dict[str, int] = {
    "generic_name": 360, "trade_name": 190, "maker_name": 260, "other_maker": 280, "other_form": 160,
    "symptom.met": 230, "symptom.irrelevant": 150, "category.met": 170, "category.irrelevant": 110,
    "ingredient.weak": 160, "ingredient.exact": 24, "unrelated": 160, "cheating": 130, "typo": 160, "pinyin": 160,
    "population": 60,
}


# ------------------------------------------------------------------------------------------------ names and forms

@dataclass(frozen=True)
class Form:
    suffix: str
    family: str | None  # the canonical form (片, 胶囊, ...); None: a form whose kin is unclear (含片, 膏, 栓, ...)
    route: str | None  # oral / skin / eye: other_form pairs stay inside one route, so the use overlaps
    unit: str  # which self-written spec list fits it


# Longest suffix first. 缓释片 / 肠溶片 / 分散片 are 片 (the guideline: not a different form for other_form).
_FORM_TABLE: tuple[tuple[str, str | None, str | None, str], ...] = (
    ("阴道泡腾片", None, None, "片"), ("口腔崩解片", None, None, "片"), ("阴道软胶囊", None, None, "粒"),
    ("口服混悬液", "混悬液", "oral", "瓶"), ("缓释胶囊", "胶囊", "oral", "粒"), ("肠溶胶囊", "胶囊", "oral", "粒"),
    ("薄膜衣片", "片", "oral", "片"), ("混悬滴剂", None, None, "瓶"), ("干混悬剂", None, None, "袋"),
    ("鼻喷雾剂", None, None, "瓶"), ("鼻用喷雾剂", None, None, "瓶"), ("眼用凝胶", "眼膏", "eye", "支"),
    ("口服溶液", "口服液", "oral", "瓶"),
    ("缓释片", "片", "oral", "片"), ("控释片", "片", "oral", "片"), ("肠溶片", "片", "oral", "片"),
    ("分散片", "片", "oral", "片"), ("糖衣片", "片", "oral", "片"), ("泡腾片", None, None, "片"),
    ("咀嚼片", None, None, "片"), ("阴道片", None, None, "片"), ("口崩片", None, None, "片"),
    ("舌下片", None, None, "片"), ("软胶囊", "胶囊", "oral", "粒"), ("口服液", "口服液", "oral", "支"),
    ("混悬液", "混悬液", "oral", "瓶"), ("滴眼液", "滴眼液", "eye", "支"), ("滴耳液", None, None, "支"),
    ("滴鼻液", None, None, "支"), ("喷雾剂", None, None, "瓶"), ("气雾剂", None, None, "瓶"),
    ("橡胶膏", "贴膏", "skin", "贴"), ("巴布膏", "贴膏", "skin", "贴"), ("水蜜丸", "丸", "oral", "丸"),
    ("浓缩丸", "丸", "oral", "丸"), ("大蜜丸", "丸", "oral", "丸"), ("小蜜丸", "丸", "oral", "丸"),
    ("胶囊", "胶囊", "oral", "粒"), ("颗粒", "颗粒", "oral", "袋"), ("冲剂", "颗粒", "oral", "袋"),
    ("滴丸", "滴丸", "oral", "丸"), ("水丸", "丸", "oral", "丸"), ("蜜丸", "丸", "oral", "丸"),
    ("合剂", "口服液", "oral", "瓶"), ("糖浆", "糖浆", "oral", "瓶"), ("乳膏", "软膏", "skin", "支"),
    ("软膏", "软膏", "skin", "支"), ("眼膏", "眼膏", "eye", "支"), ("凝胶", "凝胶", "skin", "支"),
    ("贴膏", "贴膏", "skin", "贴"), ("膏药", "贴膏", "skin", "贴"), ("含片", None, None, "片"),
    ("搽剂", None, None, "瓶"), ("洗液", None, None, "瓶"), ("滴剂", None, None, "瓶"), ("贴剂", None, None, "贴"),
    ("片", "片", "oral", "片"), ("丸", "丸", "oral", "丸"), ("散", "散", "oral", "袋"), ("栓", None, None, "栓"),
    ("酊", None, None, "瓶"), ("茶", None, None, "袋"), ("膏", None, None, "盒"), ("水", None, None, "支"),
)
FORMS: tuple[Form, ...] = tuple(Form(*row) for row in sorted(_FORM_TABLE, key=lambda r: -len(r[0])))

# Pack sizes only (no strengths: a strength the insert does not give could be wrong for the drug).
_SPECS: dict[str, tuple[str, ...]] = {
    "片": ("12片*2板", "24片/盒", "36片/瓶", "100片/瓶", "10片*3板/盒", "14片/盒"),
    "粒": ("12粒*2板", "24粒/盒", "20粒/盒", "36粒/瓶", "10粒*3板/盒", "30粒/瓶"),
    "袋": ("10袋/盒", "9袋/盒", "12袋/盒", "6袋/盒", "18袋/盒"),
    "丸": ("10袋/盒", "200丸/瓶", "10丸/盒", "6瓶/盒", "120丸/瓶"),
    "支": ("10支/盒", "6支/盒", "12支/盒", "1支/盒"),
    "瓶": ("100ml/瓶", "120ml/瓶", "150ml/瓶", "60ml/瓶", "1瓶/盒"),
    "贴": ("4贴/盒", "6贴/盒", "10贴/袋", "8贴/盒"),
    "栓": ("7粒/盒", "10粒/盒", "6粒/盒"),
}
_GENERIC_SPECS = ("1盒", "1瓶", "1盒装")

_EXCLUDE_NAME = re.compile(r"注射|吸入|植入|输液|灌肠|透析|[()（）/·,，\s\[\]【】<>]")
_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
_SALT_PREFIXES = ("盐酸", "硫酸", "磷酸", "马来酸", "富马酸", "酒石酸", "琥珀酸", "甲磺酸", "苯磺酸", "氢溴酸",
                  "醋酸", "枸橼酸", "苯甲酸", "甲硫酸", "乳酸", "硝酸", "萘磺酸")
_INORGANIC_STEMS = ("氯化", "碳酸", "枸橼酸", "葡萄糖酸", "乳酸", "醋酸", "硫酸", "磷酸", "碘化", "溴化", "硝酸")


def parse_form(name: str) -> Form | None:
    for f in FORMS:
        if name.endswith(f.suffix) and len(name) > len(f.suffix):
            return f
    return None


def core_of(name: str) -> str:
    """The name without its dosage-form suffix (布洛芬缓释胶囊 → 布洛芬)."""
    f = parse_form(name)
    return name[: -len(f.suffix)] if f else name


def common_name(name: str) -> str:
    """The split key: the core without salt noise (盐酸小檗碱片 → 小檗碱, 阿托伐他汀钙片 → 阿托伐他汀)."""
    core = core_of(name)
    for p in _SALT_PREFIXES:
        if core.startswith(p) and len(core) - len(p) >= 2 and core[len(p)] != "酸":
            core = core[len(p):]
            break
    if (core[-1:] in ("钠", "钾", "钙") and len(core) >= 4 and core[-2] not in "钠钾钙镁"
            and not core[:-1].endswith(_INORGANIC_STEMS)):
        core = core[:-1]
    return core


def split_of(common: str) -> str:
    """tune or report: sha1("pharmacy:" + common name) % 2."""
    return SPLITS[int(hashlib.sha1(f"pharmacy:{common}".encode()).hexdigest(), 16) % 2]


def usable_name(name: str) -> bool:
    """A generic name a pharmacy lists and this generator can render: CJK (digits/latin allowed inside, as in
    维生素B2片), a known dosage form, no injection / inhalation / parentheses."""
    if not name or _EXCLUDE_NAME.search(name) or not 3 <= len(name) <= 16:
        return False
    if not re.match(r"^[\u4e00-\u9fff][\u4e00-\u9fffA-Za-z0-9\-]*[\u4e00-\u9fff]$", name):
        return False
    return parse_form(name) is not None and len(core_of(name)) >= 2


# ------------------------------------------------------------------------------------------------------- makers

_PLACES = (
    "内蒙古", "黑龙江", "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "江苏", "浙江", "安徽", "福建",
    "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海", "广西",
    "西藏", "宁夏", "新疆", "香港", "澳门", "台湾", "广州", "深圳", "杭州", "南京", "武汉", "成都", "西安", "哈尔滨",
    "长春", "沈阳", "济南", "石家庄", "太原", "郑州", "长沙", "南昌", "福州", "昆明", "贵阳", "南宁", "兰州", "合肥",
    "苏州", "无锡", "厦门", "青岛", "大连", "烟台", "桂林", "梧州", "绵阳", "通化", "常州", "扬州", "珠海", "佛山",
    "中山", "汕头", "海口", "鞍山", "丹东", "吉林市", "赤峰", "包头", "邯郸", "保定", "唐山", "洛阳", "开封", "宜昌",
)
_CUT = re.compile(r"股份有限公司|有限责任公司|有限公司|集团|股份|公司|\(|（")
# Words a cut maker name can shrink to that name no maker.
_NOT_MAKERS = frozenset({"药业", "制药", "医药", "中药", "国药", "药品", "生物", "集团", "药厂", "化学", "科技",
                         "股份", "实业", "制剂", "中成药", "西药", "天然", "植物", "本草", "通用", "蒙药", "藏药",
                         "盐酸", "硫酸", "复方", "小儿", "儿童", "维生素"})
_TRAIL = ("制药厂", "制药", "药业", "医药科技", "医药", "生物科技", "生物制药", "生物", "科技", "药厂", "中药厂",
          "总厂", "实业", "中药", "国药", "药品", "工业", "制剂", "厂")


def maker_short(full: str) -> str | None:
    """A maker's short name as a shopper types it (北京同仁堂股份有限公司 → 同仁堂; 先声药业 → 先声); None when
    nothing usable is left (2–5 CJK characters)."""
    s = _CUT.split(full.strip(), maxsplit=1)[0]
    for _ in range(2):
        for p in _PLACES:
            if s.startswith(p) and len(s) - len(p) >= 2:
                s = s[len(p):]
                s = s[1:] if s[:1] in ("省", "市") and len(s) >= 3 else s
                break
    changed = True
    while changed:
        changed = False
        for t in _TRAIL:
            if s.endswith(t) and len(s) - len(t) >= 2:
                s, changed = s[: -len(t)], True
                break
    return s if 2 <= len(s) <= 5 and _CJK.match(s) and s not in _NOT_MAKERS and s not in _PLACES else None


@dataclass(frozen=True)
class Maker:
    short: str  # bracket tag / query word (同仁堂, 先声, 修正)
    full: str  # as the source writes it (北京同仁堂, 先声药业, 山东沃华医药科技股份有限公司)

    def bigrams(self) -> set[str]:
        return {self.short[i: i + 2] for i in range(len(self.short) - 1)}


# Originators whose products changed hands or names (a trade name listed under one may be sold under another):
# for "another maker" pairs each group counts as one maker. Self-written from public company histories.
LINEAGES: tuple[tuple[str, ...], ...] = (
    ("赫力昂", "中美史克", "史克", "葛兰素史克", "惠氏"),
    ("晖致", "辉瑞", "普强", "惠氏"),
    ("强生", "杨森"),
    ("诺华", "山德士"),
    ("赛诺菲", "安万特"),
    ("艾伯维", "雅培"),
    ("默沙东", "先灵葆雅", "欧加隆", "默克"),
    ("拜耳", "先灵"),
    ("百时美施贵宝", "施贵宝"),
    ("阿斯利康", "阿斯特拉"),
)


def _lineage(m: Maker) -> set[int]:
    return {i for i, names in enumerate(LINEAGES) if any(n in m.full or n in m.short for n in names)}


def same_maker(a: Maker, b: Maker) -> bool:
    """Conservatively the same maker (or group): a shared 2-character piece of the short names, one's short name
    inside the other's full name (北京同仁堂 / 同仁堂, 信谊 / 上海信谊 / 信谊天平), or one lineage
    (中美史克 / 赫力昂)."""
    return (bool(a.bigrams() & b.bigrams()) or a.short in b.full or b.short in a.full
            or bool(_lineage(a) & _lineage(b)))


# ---------------------------------------------------------------------------------------------- therapeutic areas

# Originator-drugs file groups → the therapeutic area used for disjointness. MIXED groups carry no information;
# None marks a group whose drugs span areas (a drug in one is kept out of every disjointness pair).
MIXED = "mixed"
GROUP_AREAS: dict[str, tuple[str, ...] | str | None] = {
    "热门药品": MIXED, "其他": MIXED, "癌症肿瘤": None, "麻醉药": None, "营养补充": None, "血液疾病": None,
    "生殖系统": None, "骨骼健康": None, "感冒咳嗽": ("呼吸",), "呼吸系统": ("呼吸",), "鼻腔用药": ("呼吸",),
    "糖尿病": ("糖尿病",), "高血压": ("心脑血管",), "血脂调节": ("心脑血管",), "心脏病": ("心脑血管",),
    "心血管": ("心脑血管",), "痛风": ("痛风",), "甲状腺": ("甲状腺",), "偏头痛": ("疼痛",), "疼痛缓解": ("疼痛",),
    "艾滋病": ("抗感染",), "抗病毒药": ("抗感染",), "抗感染药": ("抗感染",), "肝炎": ("抗感染", "肝胆"),
    "肝胆疾病": ("肝胆",), "便秘": ("消化",), "肠胃消化": ("消化",), "胃酸分泌": ("消化",), "癫痫": ("神志",),
    "精神类药物": ("神志",), "神经系统": ("神志",), "皮肤健康": ("皮肤",), "眼科用药": ("眼科",),
    "风湿免疫": ("骨伤风湿",), "妇科用药": ("妇科",), "泌尿健康": ("泌尿",), "过敏性疾病": ("过敏",),
}
# The therapeutic-area table (keywords → areas, disjoint pairs, drugs whose area is unknown) is the seed's
# `therapeutic_areas`, read by the judge too (armed/knowledge/areas.py): one table, so the benchmark's symptom and
# unrelated labels and the judge's irrelevant.efficacy agree by construction (benchmarks/pharmacy/README.md says what
# that means for the figures).
AREAS = AreaTable(KnowledgeBase.parse_seed(resources.files(SEED_PACKAGE).joinpath(SEED_FILE).read_bytes(),
                                           "packaged seed").therapeutic_areas)
DISJOINT_AREA_PAIRS: tuple[tuple[str, str], ...] = tuple(tuple(sorted(p)) for p in AREAS.disjoint)  # type: ignore[misc]
AREA_UNKNOWN: tuple[str, ...] = AREAS.unknown_names


def areas_disjoint(a: Iterable[str], b: Iterable[str]) -> bool:
    """Every area of one is clearly disjoint from every area of the other (both non-empty)."""
    return AREAS.disjoint_areas(a, b)


def text_areas(text: str) -> set[str]:
    return AREAS.text_areas(text)


# Category query words: an originator group (or a keyword rule inside one) → the words a shopper types, the area
# the need belongs to, and which generic names qualify (all when `include` is empty; `exclude` drops some).
@dataclass(frozen=True)
class CategoryRule:
    words: tuple[str, ...]
    groups: tuple[str, ...]
    areas: tuple[str, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()  # restrict to products of these routes (退烧药: oral)
    specific: bool = True  # the product's every mapped group lies in `areas` (ibuprofen is not a 痛风药)
    families: tuple[str, ...] = ()  # restrict to these canonical forms (眼药水: 滴眼液)


CATEGORY_RULES: tuple[CategoryRule, ...] = (
    CategoryRule(("降糖药", "降血糖药", "糖尿病药"), ("糖尿病",), ("糖尿病",), exclude=("加巴林",)),
    CategoryRule(("降压药", "降血压药", "高血压药"), ("高血压",), ("心脑血管",), exclude=("萘哌地尔",)),
    CategoryRule(("降脂药", "降血脂药"), ("血脂调节",), ("心脑血管",)),
    CategoryRule(("心脏病药",), ("心脏病",), ("心脑血管",)),
    CategoryRule(("心血管药",), ("心血管",), ("心脑血管",), exclude=("乳膏", "含片", "萘哌地尔", "柑橘黄酮")),
    CategoryRule(("痛风药", "降尿酸药"), ("痛风",), ("痛风",), include=("非布司他", "苯溴马隆", "别嘌醇", "多替诺雷")),
    CategoryRule(("便秘药", "通便药"), ("便秘",), ("消化",), exclude=("莫沙必利",)),
    CategoryRule(("胃药",), ("胃酸分泌",), ("消化",)),
    CategoryRule(("抗癫痫药",), ("癫痫",), ("神志",)),
    CategoryRule(("止痛药", "镇痛药"), ("疼痛缓解",), ("疼痛",), specific=False, exclude=("贴剂",)),
    CategoryRule(("皮肤病药",), ("皮肤健康",), ("皮肤",), exclude=("贴", "依托芬那酯", "口腔")),
    CategoryRule(("鼻炎药",), ("鼻腔用药",), ("呼吸",), include=("鼻",)),
    CategoryRule(("眼药水",), ("眼科用药",), ("眼科",), families=("滴眼液",)),
    CategoryRule(("眼科用药",), ("眼科用药",), ("眼科",)),
    CategoryRule(("妇科药",), ("妇科用药",), ("妇科",)),
    CategoryRule(("哮喘药", "平喘药"), ("呼吸系统",), ("呼吸",)),
    CategoryRule(("抗过敏药",), ("过敏性疾病",), ("过敏",)),
    CategoryRule(("抗病毒药",), ("抗病毒药",), ("抗感染",)),
    CategoryRule(("抗感染药",), ("抗感染药",), ("抗感染",)),
    CategoryRule(("肝胆用药",), ("肝胆疾病",), ("肝胆",)),
    CategoryRule(("感冒药",), ("感冒咳嗽",), ("呼吸",), specific=False,
                 include=("氨酚", "伪麻", "酚麻", "美敏", "氨咖", "酚咖", "氨麻")),
    CategoryRule(("止咳药",), ("感冒咳嗽",), ("呼吸",), specific=False,
                 include=("右美沙芬", "可待因", "福尔可定", "愈美")),
    CategoryRule(("化痰药",), ("感冒咳嗽",), ("呼吸",), specific=False, include=("氨溴索", "乙酰半胱氨酸")),
    CategoryRule(("退烧药", "退热药"), ("*",), ("呼吸", "疼痛"), specific=False, include=("=布洛芬", "=对乙酰氨基酚"),
                 routes=("oral",)),
)


# ------------------------------------------------------------------------------------------------------- pinyin

def _pinyin_tools() -> tuple[Callable[[str], list[str]], Callable[[str], set[str]]]:
    from pypinyin import Style, lazy_pinyin, pinyin

    def readings(ch: str) -> set[str]:
        return set(pinyin(ch, heteronym=True, style=Style.NORMAL)[0])

    return lazy_pinyin, readings


def confident_pinyin(name: str) -> list[str] | None:
    """Toneless pinyin of a CJK name when the in-context reading agrees with every character's own default reading
    (芬必得 reads fen bi dei in context, fen bi de alone: not confident, so no pinyin pair is made from it)."""
    if not _CJK.match(name):
        return None
    lazy, _ = _pinyin_tools()
    ctx = lazy(name)
    alone = [lazy(c)[0] for c in name]
    return ctx if ctx == alone and all(p.isascii() and p.isalpha() for p in ctx) else None


# --------------------------------------------------------------------------------------------------- catalogue

@dataclass
class Product:
    """One generic name with everything the sources say about it."""

    name: str
    makers: list[Maker] = field(default_factory=list)
    trades: list[tuple[str, Maker | None]] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)
    specs: list[str] = field(default_factory=list)
    inserts: list[InsertRow] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)

    @property
    def form(self) -> Form:
        f = parse_form(self.name)
        assert f is not None
        return f

    @property
    def core(self) -> str:
        return core_of(self.name)

    @property
    def common(self) -> str:
        return common_name(self.name)

    @property
    def split(self) -> str:
        return split_of(self.common)

    def add_maker(self, m: Maker) -> None:
        """A maker of this product; one whose name overlaps the drug's (甘露 / 甘露消渴胶囊) is left out: a query of
        maker + name would not say which is which."""
        if m.short in self.name or self.core in m.short or any(m.short.endswith(p) for p in _SALT_PREFIXES):
            return
        if m.short not in m.full:  # a full name that does not show the short one (an English company) says nothing
            m = Maker(m.short, m.short)
        if all(m.short != x.short for x in self.makers):
            self.makers.append(m)

    def areas(self) -> set[str] | None:
        """Therapeutic areas from the originator groups or the insert's indication; None when unknown or when a
        group spans areas (then the product is never paired as 'disjoint')."""
        if any(k in self.name for k in AREA_UNKNOWN):
            return None
        out: set[str] = set()
        for g in self.groups:
            a = GROUP_AREAS.get(g, None)
            if a == MIXED:
                continue
            if a is None:
                return None
            out.update(a)
        for ins in self.inserts:
            out |= text_areas(ins.efficacy_text + ins.title)
        return out or None


_SPEC_OK = re.compile(r"^\d+(\.\d+)?(g|mg|ml|μg)(\*\d+(\.\d+)?(片|粒|袋|丸|支|瓶|板|贴|s)){1,3}(/(盒|瓶|袋))?$")
_SPEC_EACH = re.compile(r"^每(粒|片|袋|丸|支|瓶)(?:装|重)?(\d+(?:\.\d+)?)(g|mg|ml|克|毫升)。?$")


_UNIT_WORD = {"片": "片", "粒": "粒", "袋": "袋", "丸": "丸", "支": "支", "瓶": "瓶", "贴": "贴", "栓": "粒"}


def tidy_spec(raw: str, unit: str = "粒") -> list[str]:
    """An insert's 【规格】 as listing specs: kept when it already reads like one (0.4g*36粒/盒; the shorthand
    10s counts the form's units: 15g*10s of granules is 15g*10袋); 每粒装0.4g becomes 0.4g*24粒 / 0.4g*36粒;
    anything else (several variants, prose) gives nothing."""
    s = raw.strip().replace("克", "g").replace("毫升", "ml").replace("x", "*").replace("×", "*").rstrip("。")
    if _SPEC_OK.match(s):
        return [re.sub(r"(?<=\d)s", _UNIT_WORD.get(unit, "粒"), s)]
    m = _SPEC_EACH.match(s)
    if m:
        unit, amount, u = m.groups()
        count = {"粒": (24, 36), "片": (24, 36), "袋": (9, 12), "丸": (10, 12), "支": (6, 10), "瓶": (1,)}[unit]
        return [f"{amount}{u}*{n}{unit}" for n in count]
    return []


_BRAND_TAG_BAD = re.compile(r"丸|片|装|礼盒|浓缩|水蜜|大蜜|小蜜|\d|买|送|薄膜|糖衣|素片")


def clean_insert(row: InsertRow, known: set[str]) -> tuple[str, str | None] | None:
    """(generic name, brand tag) from an insert's messy titles ('普济堂-艾附暖宫丸', '凤凰制药 女珍颗粒 6g*12袋',
    '元胡止痛片(半宙)', '百灵鸟泌淋清胶囊0.4g*36粒'); None when no clean name is found."""
    tags: list[str] = []

    def candidates(text: str) -> list[tuple[str, str]]:
        out = []
        for tag in re.findall(r"[(（]([^()（）]*)[)）]", text):
            if 2 <= len(tag) <= 5 and _CJK.match(tag) and not _BRAND_TAG_BAD.search(tag):
                tags.append(tag)
        bare = re.sub(r"[(（][^()（）]*[)）]", " ", text)
        for tok in re.split(r"[\s\-—]+", bare):
            tok = re.sub(r"[\d.]+.*$", "", tok)  # a spec glued on: 泌淋清胶囊0.4g*36粒
            if usable_name(tok):
                out.append((tok, ""))
        return out

    found = candidates(row.name) + candidates(row.title)
    names = [t for t, _ in found]
    if not names:
        return None
    # the name itself when it is a known generic; else the shortest candidate whose tail is a known generic
    choice = next((n for n in names if n in known), None)
    if choice is None:
        for n in sorted(names, key=len):
            tail = next((n[i:] for i in range(len(n) - 2) if n[i:] in known), None)
            if tail and tail != n:
                tags.append(n[: len(n) - len(tail)])
                choice = tail
                break
    if choice is None:
        choice = min(names, key=len)
    half = len(choice) // 2
    if len(choice) % 2 == 0 and choice[:half] == choice[half:]:  # 参茸鹿胎丸参茸鹿胎丸
        choice = choice[:half]
    if not usable_name(choice):
        return None
    for tok in re.split(r"[\s\-—]+", re.sub(r"[(（][^()（）]*[)）]", " ", row.title)):
        tok = re.sub(r"[\d.]+.*$", "", tok)
        if tok and tok != choice and tok.endswith(choice) and 2 <= len(tok) - len(choice) <= 5:
            tags.append(tok[: -len(choice)])
        elif tok and tok != choice and choice not in tok and 2 <= len(tok) <= 6 and _CJK.match(tok):
            tags.append(tok)
    tag = next((t for t in tags if 2 <= len(t) <= 6 and _CJK.match(t) and not _BRAND_TAG_BAD.search(t)
                and t.rstrip("牌") and t not in choice), None)
    return choice, (tag.removesuffix("牌") if tag else None)


@dataclass
class Sources:
    """What the generator read (rows and the files' hashes)."""

    drugs: list[str]
    producers: list[str]
    symptom_words: set[str]  # symptom.txt + disease.txt: the words a shopper would type
    originators: list[Any]
    inserts: list[InsertRow]
    annotations: dict[str, dict[str, set[str]]]  # insert id → entity → labels
    ingredient_sections: dict[str, str]  # insert id → its 【成分】 text
    files: dict[str, str]  # path relative to the knowledge folder → sha256


def read_sources(knowledge: Path) -> Sources:
    """The four public sources, through armed.knowledge.sources' readers (plus the insert span labels)."""
    dd = knowledge / "drug-dicts"
    # drug.txt and producer.txt are required; symptom.txt / disease.txt only sharpen the symptom queries
    dicts = {n: read_dicts(dd / n, f"drug-dicts:{dd / n}") for n in ("drug.txt", "producer.txt", "symptom.txt",
                                                                      "disease.txt")
             if n in ("drug.txt", "producer.txt") or (dd / n).is_file()}
    orig = read_originators(knowledge / "originator-drugs", f"originator-drugs:{knowledge / 'originator-drugs'}")
    ins = read_inserts(knowledge / "drug-inserts", f"drug-inserts:{knowledge / 'drug-inserts'}")
    annotations: dict[str, dict[str, set[str]]] = {}
    sections: dict[str, str] = {}
    for f in ins.files:  # the span labels (症状 / 疾病 vs 中药功效 / 证候), which InsertRow merges
        for item in json.loads(f.read_text(encoding="utf-8")):
            labels: dict[str, set[str]] = defaultdict(set)
            for ann in item.get("annotations", []):
                labels[str(ann.get("entity", "")).strip()].add(str(ann.get("label")))
            annotations[str(item["id"])] = labels
            m = re.search(r"【成分】(.*?)(【|$)", str(item["text"]), re.S)
            sections[str(item["id"])] = m.group(1) if m else ""
    files = {}
    for f in [*(x for d in dicts.values() for x in d.files), *orig.files, *ins.files]:
        files[f.relative_to(knowledge).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    rows = {n: d.dicts for n, d in dicts.items()}
    rows.setdefault("symptom.txt", DictRows())
    rows.setdefault("disease.txt", DictRows())
    return Sources(
        drugs=rows["drug.txt"].drugs,  # type: ignore[union-attr]
        producers=rows["producer.txt"].producers,  # type: ignore[union-attr]
        symptom_words=set(rows["symptom.txt"].symptoms) | set(rows["disease.txt"].diseases),  # type: ignore[union-attr]
        originators=orig.originators, inserts=ins.inserts, annotations=annotations, ingredient_sections=sections,
        files=dict(sorted(files.items())),
    )


def _trade_ok(trade: str, generic: str, company_words: set[str], names: set[str]) -> bool:
    return (2 <= len(trade) <= 6 and bool(_CJK.match(trade)) and trade not in company_words and trade not in names
            and trade not in generic and core_of(generic) not in trade)


def build_catalogue(src: Sources) -> dict[str, Product]:
    known = {d for d in src.drugs if d}
    cat: dict[str, Product] = {}

    def product(name: str) -> Product:
        if name not in cat:
            cat[name] = Product(name)
        return cat[name]

    for d in sorted(known):
        if usable_name(d):
            product(d).sources.add("drug-dicts")
    # producer.txt: maker + generic; the tail that is a known generic is the drug, the head the maker
    for line in sorted(set(src.producers)):
        for i in range(2, len(line) - 2):
            tail = line[i:]
            if tail in known:
                if usable_name(tail) and not line[:i].endswith((*_SALT_PREFIXES, "复方", "小儿")):
                    short = maker_short(line[:i])
                    if short:
                        p = product(tail)
                        p.add_maker(Maker(short, line[:i]))
                        p.sources.add("drug-dicts")
                break
    company_words = {r.abbreviation for r in src.originators if r.abbreviation}
    for r in sorted(src.originators, key=lambda r: (r.group, r.id, r.generic)):
        if not usable_name(r.generic):
            continue
        p = product(r.generic)
        p.sources.add("originator-drugs")
        p.groups.add(r.group)
        m = None
        if r.abbreviation and _CJK.match(r.abbreviation) and 2 <= len(r.abbreviation) <= 6:
            m = Maker(r.abbreviation, r.company or r.abbreviation)
        elif r.company and (s := maker_short(r.company)):
            m = Maker(s, r.company)
        if m:
            p.add_maker(m)
        if r.trade and _trade_ok(r.trade, r.generic, company_words, known) and (r.trade, m) not in p.trades:
            p.trades.append((r.trade, m))
    for row in sorted(src.inserts, key=lambda r: r.id):
        cleaned = clean_insert(row, known)
        if cleaned is None:
            continue
        name, tag = cleaned
        p = product(name)
        p.sources.add("drug-inserts")
        p.inserts.append(row)
        # the listing's brand tag (普济堂) is the maker a shopper sees; its company (药都制药) may read otherwise, so
        # the tag stands alone rather than beside a second "maker" that other_maker would take for another one
        short = maker_short(row.maker) if row.maker else None
        if tag:
            p.add_maker(Maker(tag, tag))
        elif short:
            p.add_maker(Maker(short, row.maker))
        p.specs.extend(s for s in tidy_spec(row.spec, p.form.unit) if s not in p.specs)
    return cat


# ------------------------------------------------------------------------------------------------------ rendering

def spec_for(p: Product, rng: random.Random) -> str:
    if p.specs:
        return rng.choice(p.specs)
    return rng.choice(_SPECS.get(p.form.unit, _GENERIC_SPECS))


def render(p: Product, rng: random.Random, maker: Maker | None, trade: str | None = None,
           tail: str | None = None) -> str:
    """A product name in one of the shapes real listings use (bracket tag, maker word, full company, trade name
    first, maker last); `tail` (a borrowed 同款 claim) is placed where listings put such words."""
    spec = spec_for(p, rng)
    name = p.name
    if trade:
        m = maker.short if maker else None
        shapes = [f"{trade} {name} {spec}", f"{trade}({name}) {spec}", f"[{trade}]{name} {spec}"]
        if m:
            shapes += [f"[{m}] {trade} {name} {spec}", f"{m} {trade} {name} {spec}", f"{trade} {name} {spec} {m}"]
        out = rng.choice(shapes)
    elif maker is None:
        out = rng.choice([f"{name} {spec}", f"{name} {spec}/盒"]) if not spec.endswith(("盒", "瓶", "袋")) \
            else f"{name} {spec}"
    else:
        m, full = maker.short, maker.full
        shapes = [f"[{m}]{name} {spec}", f"{m} {name} {spec}", f"【{m}】{name}", f"【{m}】{name} {spec}",
                  f"{name} {spec} {m}", f"{m}{name} {spec}"]
        if full != m and len(full) <= 20:
            shapes.append(f"{full} {name} {spec}")
            if len(full) <= 6:  # a short maker word glued on, as producer lists write it (先声药业双氯芬酸钠缓释胶囊)
                shapes.append(f"{full}{name}")
        out = rng.choice(shapes)
    if tail:
        pos = rng.randrange(3)
        out = f"{out} {tail}" if pos == 0 else (f"{tail} {out}" if pos == 1 else out.replace(name, f"{name} {tail}", 1))
    return out


# ----------------------------------------------------------------------------------------------------------- rows

def make_row(query: str, product_name: str, clause_id: str, query_type: str, common: str, source: str,
             category: str = "中西药品", note: str | None = None) -> dict[str, Any]:
    """One benchmark row; its label is its clause's level, by construction (asserted)."""
    c = CLAUSE[clause_id]
    assert query_type in QUERY_TYPES, query_type
    assert category in PRODUCT_CATEGORIES, category
    row: dict[str, Any] = {
        "query": query, "product": {"name": product_name}, "label": c.level.value, "clause": clause_id,
        "query_type": query_type, "product_category": category, "common_name": common, "source": source,
    }
    if note:
        row["note"] = note
    assert row["label"] == CLAUSE[row["clause"]].level.value
    return row


def _src(p: Product) -> str:
    for s in ("drug-inserts", "originator-drugs", "drug-dicts"):
        if s in p.sources:
            return f"generated:{s}"
    return "generated"


def _pick(cands: list[tuple[str, dict[str, Any]]], k: int, rng: random.Random, cap: int = 2) -> list[dict[str, Any]]:
    """Up to k candidates, spread over keys: at most `cap` per key (a common name) on the first pass."""
    order = list(cands)
    rng.shuffle(order)
    taken: list[dict[str, Any]] = []
    per: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for pass_cap in (cap, cap * 3):
        for key, row in order:
            if len(taken) >= k:
                return taken
            ident = (row["query"], row["product"]["name"])
            if per[key] >= pass_cap or ident in seen or ident in RESERVED_PAIRS:
                continue
            per[key] += 1
            seen.add(ident)
            taken.append(row)
    return taken


class Generator:
    """The constructions, one method per query type; each returns candidate rows keyed by common name."""

    def __init__(self, src: Sources, seed: int) -> None:
        self.src = src
        self.seed = seed
        self.cat = build_catalogue(src)
        self.products = [self.cat[n] for n in sorted(self.cat)]
        self.with_makers = [p for p in self.products if p.makers]
        self.names = set(self.cat) | set(src.drugs)
        self.cores = {core_of(n) for n in self.names}
        self.trades = {t for p in self.products for t, _ in p.trades}
        self.ingredients = {i for row in src.inserts for i in row.ingredients}
        # every maker a trade name is listed under (芬必得: 中美史克 and 赫力昂); a trade without one is never used
        # for an "another maker" pair, since nobody could say which maker is not its owner
        self.trade_owners: dict[str, list[Maker]] = defaultdict(list)
        for p in self.products:
            for t, m in p.trades:
                if m is not None and m not in self.trade_owners[t]:
                    self.trade_owners[t].append(m)

    def not_owner(self, trade: str, b: Maker) -> bool:
        owners = self.trade_owners.get(trade, [])
        return bool(owners) and not any(same_maker(o, b) for o in owners) and trade not in b.full \
            and b.short not in trade

    def bare_ok(self, p: Product) -> bool:
        """Whether the core alone (布洛芬 for 布洛芬缓释胶囊) may stand as a query for the product: three characters
        at least, and not an ingredient's name (天麻 for 天麻丸 could ask for the herb, which 天麻丸 holds among
        nine others)."""
        return len(p.core) >= 3 and p.core not in self.ingredients

    def name_or_core(self, p: Product, rng: random.Random, share_name: float) -> str:
        return p.name if rng.random() < share_name or not self.bare_ok(p) else p.core

    def rng(self, what: str) -> random.Random:
        return random.Random(f"{self.seed}:{what}")

    # --- highly relevant by name
    def generic_name(self, rng: random.Random) -> list[tuple[str, dict]]:
        out = []
        for p in self.with_makers:
            q = self.name_or_core(p, rng, 0.6)
            m = rng.choice(p.makers)
            out.append((p.common, make_row(q, render(p, rng, m), "exact.generic", "generic_name", p.common, _src(p))))
        return out

    def trade_name(self, rng: random.Random) -> list[tuple[str, dict]]:
        out = []
        for p in self.products:
            for trade, m in p.trades:
                out.append((p.common, make_row(trade, render(p, rng, m, trade=trade), "exact.trade", "trade_name",
                                               p.common, "generated:originator-drugs")))
        return out

    def maker_name(self, rng: random.Random) -> list[tuple[str, dict]]:
        out = []
        for p in self.with_makers:
            m = rng.choice(p.makers)
            what = self.name_or_core(p, rng, 0.7)
            q = f"{m.short}{what}" if rng.random() < 0.7 else f"{m.short} {what}"
            out.append((p.common, make_row(q, render(p, rng, m), "exact.brand", "maker_name", p.common, _src(p))))
        return out

    def other_maker(self, rng: random.Random) -> list[tuple[str, dict]]:
        out = []
        for p in self.with_makers:
            if len(p.makers) >= 2:
                a, b = rng.sample(p.makers, 2)
                if not same_maker(a, b):
                    what = self.name_or_core(p, rng, 0.7)
                    q = f"{a.short}{what}" if rng.random() < 0.7 else f"{a.short} {what}"
                    out.append((p.common, make_row(q, render(p, rng, b), "less.brand", "other_maker", p.common,
                                                   _src(p))))
            for trade, _ in p.trades:
                others = [b for b in p.makers if self.not_owner(trade, b)]
                if others:
                    b = rng.choice(others)
                    out.append((p.common, make_row(trade, render(p, rng, b), "less.brand", "other_maker", p.common,
                                                   "generated:originator-drugs")))
        return out

    def other_form(self, rng: random.Random) -> list[tuple[str, dict]]:
        by_core: dict[str, list[Product]] = defaultdict(list)
        for p in self.products:
            if p.form.family and p.form.route:
                by_core[p.core].append(p)
        out = []
        for core in sorted(by_core):
            ps = by_core[core]
            for q in ps:
                for p in ps:
                    if p.form.family == q.form.family or p.form.route != q.form.route or not p.makers:
                        continue
                    m = rng.choice(p.makers)
                    out.append((p.common, make_row(q.name, render(p, rng, m), "less.form", "other_form", p.common,
                                                   _src(p))))
        return out

    # --- symptoms and categories
    def _indication_terms(self, row: InsertRow) -> list[str]:
        """Symptom / disease spans (annotated 症状 or 疾病, 2–6 characters) that are whole items of the insert's
        '用于 …' clause before any '症见' (the indication proper, not the symptom description)."""
        text = row.efficacy_text
        i = text.find("用于")
        if i < 0:
            return []
        clause = re.split(r"[。；;]|症见|证见", text[i + 2:], maxsplit=1)[0]
        labels = self.src.annotations.get(row.id, {})
        items = re.split(r"[，、,及和或与]|引起的|所致的|所致|导致的|属.*?者|等", clause)
        out = []
        for it in items:
            it = re.sub(r"^(治疗|缓解|改善|用于|急、|急|慢性)", "", it.strip())
            it = it.strip()
            if not (2 <= len(it) <= 6 and _CJK.match(it) and labels.get(it, set()) & {"症状", "疾病"}):
                continue
            # a word of the symptom / disease dictionaries, or a longer span that names a body system; not the
            # insert's fragments (后错, 色淡, 味臭)
            if it in self.src.symptom_words or (len(it) >= 3 and text_areas(it)):
                out.append(it)
        return list(dict.fromkeys(out))

    def symptom(self, rng: random.Random) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        met, irr = [], []
        insert_products = [p for p in self.products if p.inserts and p.makers]
        # products of known areas (inserts by their indication, originator drugs by their group)
        area_products = {p.name: a for p in self.products if p.makers and (a := p.areas()) is not None}
        terms: dict[str, set[str]] = defaultdict(set)  # term → product names whose indication names it
        for p in insert_products:
            for row in p.inserts:
                for t in self._indication_terms(row):
                    terms[t].add(p.name)
        for t in sorted(terms):
            for name in sorted(terms[t]):
                p = self.cat[name]
                out_row = make_row(t, render(p, rng, rng.choice(p.makers)), "need.met", "symptom", p.common,
                                   "generated:drug-inserts")
                met.append((f"{t}|{p.common}", out_row))
            # the need's areas: its own keywords' and every area of the products it was read from (小腹胀痛 reads
            # as 消化 alone, but it came from gynaecological inserts: those count too)
            t_areas = text_areas(t)
            for name in terms[t]:
                t_areas |= self.cat[name].areas() or {"?"}
            if not t_areas or "?" in t_areas:
                continue
            others = [self.cat[n] for n, a in area_products.items() if areas_disjoint(t_areas, a)
                      and t not in "".join(r.efficacy_text for r in self.cat[n].inserts)]
            # two from other inserts (a TCM product beside a TCM need: the harder pair), two from the rest
            tcm = [p for p in others if p.inserts]
            rest = [p for p in others if not p.inserts]
            for p in rng.sample(tcm, min(2, len(tcm))) + rng.sample(rest, min(2, len(rest))):
                irr.append((f"{t}|{p.common}", make_row(t, render(p, rng, rng.choice(p.makers)), "irrelevant.efficacy",
                                                        "symptom", p.common, "generated:drug-inserts")))
        return met, irr

    def _category_members(self, rule: CategoryRule) -> list[Product]:
        out = []
        for p in self.products:
            if rule.groups != ("*",) and not (p.groups & set(rule.groups)):
                continue
            if rule.include and not any((p.core == k[1:]) if k.startswith("=") else (k in p.name)
                                        for k in rule.include):
                continue
            if any(k in p.name for k in rule.exclude):
                continue
            if rule.routes and p.form.route not in rule.routes:
                continue
            if rule.families and p.form.family not in rule.families:
                continue
            if rule.specific:
                a = p.areas()
                if a is None or not a <= set(rule.areas):
                    continue
            if not (p.makers or p.trades):
                continue
            out.append(p)
        return out

    def _render_any(self, p: Product, rng: random.Random) -> str:
        if p.trades and rng.random() < 0.5:
            trade, m = rng.choice(p.trades)
            return render(p, rng, m, trade=trade)
        return render(p, rng, rng.choice(p.makers) if p.makers else None)

    def category(self, rng: random.Random) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        met, irr = [], []
        known_area = [p for p in self.products if (p.makers or p.trades) and p.areas() is not None
                      and "originator-drugs" in p.sources]
        for rule in CATEGORY_RULES:
            members = self._category_members(rule)
            for p in members:
                met.append((f"{rule.words[0]}|{p.common}", make_row(rng.choice(rule.words), self._render_any(p, rng),
                                                                   "need.met", "category", p.common,
                                                                   "generated:originator-drugs")))
            others = [p for p in known_area if areas_disjoint(rule.areas, p.areas() or ())]
            for p in rng.sample(others, min(8, len(others))):
                irr.append((f"{rule.words[0]}|{p.common}", make_row(rng.choice(rule.words), self._render_any(p, rng),
                                                                   "irrelevant.efficacy", "category", p.common,
                                                                   "generated:originator-drugs")))
        return met, irr

    # --- ingredients
    _EXCIPIENT = re.compile(r"糖|粉|淀|糊|精|钠|钾|镁|酸|醇|酯|蜂蜜|炼蜜|辅料|赋形|纤维|甜菊|香料|色素|明胶|甘油|水|乙")

    def ingredient(self, rng: random.Random) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        weak, exact = [], []
        by_core = {p.core: p for p in self.products if p.makers}
        for p in self.products:
            if not p.inserts or not p.makers:
                continue
            row = p.inserts[0]
            section = self.src.ingredient_sections.get(row.id, "")
            actives = [i for i in row.ingredients if 2 <= len(i) <= 4 and _CJK.match(i)
                       and not self._EXCIPIENT.search(i) and i in section]
            if len(actives) < 3:
                continue
            for ing in actives:
                if ing in p.name or any(ing in x or x in ing for x in (p.core,)):
                    continue
                if split_of(common_name(ing)) != p.split:
                    continue
                weak.append((f"{ing}|{p.common}", make_row(ing, render(p, rng, rng.choice(p.makers)),
                                                           "less.ingredient", "ingredient", p.common,
                                                           "generated:drug-inserts")))
                single = by_core.get(ing)
                if single is not None and single.name != p.name:
                    exact.append((single.common, make_row(ing, render(single, rng, rng.choice(single.makers)),
                                                          "exact.generic", "ingredient", single.common,
                                                          _src(single))))
        return weak, exact

    # --- irrelevant
    def unrelated(self, rng: random.Random) -> list[tuple[str, dict]]:
        pool = [(p, a) for p in self.products if (p.makers or p.trades) and (a := p.areas()) is not None]
        out = []
        for p, a in pool:
            for _ in range(2):
                qp, qa = rng.choice(pool)
                if qp.split != p.split or qp.common == p.common or not areas_disjoint(a, qa):
                    continue
                if qp.trades and rng.random() < 0.4:
                    q = rng.choice(qp.trades)[0]
                else:
                    q = self.name_or_core(qp, rng, 0.6)
                if q in p.name or p.core in q:
                    continue
                out.append((p.common, make_row(q, self._render_any(p, rng), "irrelevant.efficacy", "unrelated",
                                               p.common, _src(p))))
                break
        return out

    def cheating(self, rng: random.Random) -> list[tuple[str, dict]]:
        out = []
        marks = ("{x}同款", "平替{x}", "代替{x}", "{x}替代", "{x}平替")
        for p in self.with_makers:
            for trade, _ in p.trades:
                others = [b for b in p.makers if self.not_owner(trade, b)]
                if others:
                    b = rng.choice(others)
                    tail = rng.choice(marks).format(x=trade)
                    out.append((p.common, make_row(trade, render(p, rng, b, tail=tail), "irrelevant.cheating",
                                                   "cheating", p.common, "generated:originator-drugs")))
            if len(p.makers) >= 2:
                a, b = rng.sample(p.makers, 2)
                if not same_maker(a, b):
                    tail = rng.choice(marks).format(x=a.short)
                    q = f"{a.short}{p.name}"
                    out.append((p.common, make_row(q, render(p, rng, b, tail=tail), "irrelevant.cheating",
                                                   "cheating", p.common, _src(p))))
        return out

    # --- spelling
    def _homophones(self) -> dict[str, list[str]]:
        """toneless reading → the unambiguous characters (one reading only) of the names that read so."""
        _, readings = _pinyin_tools()
        by: dict[str, set[str]] = defaultdict(set)
        for ch in sorted({c for n in self.names | self.trades for c in n if _CJK.match(c)}):
            r = readings(ch)
            if len(r) == 1:
                by[next(iter(r))].add(ch)
        return {k: sorted(v) for k, v in by.items()}

    def typo(self, rng: random.Random) -> list[tuple[str, dict]]:
        homo = self._homophones()
        out = []

        def misspell(word: str, editable: int) -> str | None:
            py = confident_pinyin(word)
            if py is None:
                return None
            positions = list(range(editable))
            rng.shuffle(positions)
            for i in positions:
                choices = [c for c in homo.get(py[i], []) if c != word[i]]
                if not choices:
                    continue
                typo = word[:i] + rng.choice(choices) + word[i + 1:]
                if typo != word and typo not in self.names and typo not in self.cores and typo not in self.trades:
                    return typo
            return None

        for p in self.products:
            if p.makers:
                word = self.name_or_core(p, rng, 0.5)
                t = misspell(word, len(p.core)) if len(p.core) >= 3 else None
                if t:
                    out.append((p.common, make_row(t, render(p, rng, rng.choice(p.makers)), "exact.spelling", "typo",
                                                   p.common, _src(p))))
            for trade, m in p.trades:
                t = misspell(trade, len(trade)) if len(trade) >= 3 else None
                if t:
                    out.append((p.common, make_row(t, render(p, rng, m, trade=trade), "exact.spelling", "typo",
                                                   p.common, "generated:originator-drugs")))
        return out

    def pinyin(self, rng: random.Random) -> list[tuple[str, dict]]:
        words: dict[str, list[tuple[str, Product, str | None]]] = defaultdict(list)  # pinyin → (word, product, trade)
        for p in self.products:
            if p.makers and 3 <= len(p.core) <= 4 and p.core not in self.ingredients:
                words["".join(confident_pinyin(p.core) or [])].append((p.core, p, None))
            for trade, _ in p.trades:
                if 3 <= len(trade) <= 4:
                    words["".join(confident_pinyin(trade) or [])].append((trade, p, trade))
        # a pinyin that spells two different words (or two drugs) is ambiguous: left out
        all_words: dict[str, set[str]] = defaultdict(set)
        for n in self.names | self.cores | self.trades:
            py = confident_pinyin(n)
            if py:
                all_words["".join(py)].add(n)
        out = []
        for key in sorted(words):
            if not key or len(all_words[key]) > 1 or len({p.common for _, p, _ in words[key]}) > 1:
                continue
            word, p, trade = words[key][0]
            py = confident_pinyin(word) or []
            q = " ".join(py) if rng.random() < 0.4 else "".join(py)
            if trade:
                m = next((m for t, m in p.trades if t == trade), None)
                name = render(p, rng, m, trade=trade)
            else:
                name = render(p, rng, rng.choice(p.makers))
            out.append((p.common, make_row(q, name, "exact.spelling", "pinyin", p.common, _src(p))))
        return out

    def population(self, rng: random.Random) -> list[tuple[str, dict]]:
        out = []
        for p in self.with_makers:
            if p.name.startswith(("小儿", "儿童")) and p.name[2:] in self.names:
                rest = core_of(p.name[2:])
                q = rng.choice([f"儿童{rest}", f"儿童 {rest}", f"{rest} 儿童", f"小孩{rest}"])
                out.append((p.common, make_row(q, render(p, rng, rng.choice(p.makers)), "exact.generic", "population",
                                               p.common, _src(p))))
        return out

    def generate(self) -> list[dict[str, Any]]:
        sym_met, sym_irr = self.symptom(self.rng("symptom"))
        cat_met, cat_irr = self.category(self.rng("category"))
        ing_weak, ing_exact = self.ingredient(self.rng("ingredient"))
        built = {
            "generic_name": self.generic_name(self.rng("generic_name")),
            "trade_name": self.trade_name(self.rng("trade_name")),
            "maker_name": self.maker_name(self.rng("maker_name")),
            "other_maker": self.other_maker(self.rng("other_maker")),
            "other_form": self.other_form(self.rng("other_form")),
            "symptom.met": sym_met, "symptom.irrelevant": sym_irr,
            "category.met": cat_met, "category.irrelevant": cat_irr,
            "ingredient.weak": ing_weak, "ingredient.exact": ing_exact,
            "unrelated": self.unrelated(self.rng("unrelated")),
            "cheating": self.cheating(self.rng("cheating")),
            "typo": self.typo(self.rng("typo")),
            "pinyin": self.pinyin(self.rng("pinyin")),
            "population": self.population(self.rng("population")),
        }
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for what, cands in built.items():
            for row in _pick(cands, QUOTAS[what], self.rng(f"pick:{what}"), cap=1 if what == "generic_name" else 2):
                ident = (row["query"], row["product"]["name"])
                if ident not in seen:
                    seen.add(ident)
                    rows.append(row)
        return rows


# ------------------------------------------------------------------------------------------------------ hand rows

def read_hand(path: Path) -> list[dict[str, Any]]:
    """The hand-written rows, checked like generated ones (label = its clause's level, known type and category)."""
    rows = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path.name} line {n}"
        row = json.loads(raw)
        for key in ("id", "query", "product", "label", "clause", "query_type", "product_category", "common_name",
                    "note"):
            if not row.get(key):
                raise ValueError(f"{where}: missing {key}")
        if row["clause"] not in CLAUSE or CLAUSE[row["clause"]].level.value != row["label"]:
            raise ValueError(f"{where}: label {row['label']!r} is not the level of clause {row['clause']!r}")
        if row["query_type"] not in QUERY_TYPES or row["product_category"] not in PRODUCT_CATEGORIES:
            raise ValueError(f"{where}: unknown query_type or product_category")
        if (row["query"], row["product"]["name"]) in RESERVED_PAIRS:
            raise ValueError(f"{where}: a pair reserved for the unit tests")
        row["source"] = "hand"
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------- build and write

@dataclass
class Built:
    rows: list[dict[str, Any]]
    manifest: dict[str, Any]


def build(knowledge: Path, seed: int = 0, hand: Path | None = HAND_FILE, command: str = "") -> Built:
    """Every row (generated, then hand), with ids and splits, and the manifest."""
    src = read_sources(knowledge)
    gen = Generator(src, seed)
    rows = gen.generate()
    for i, row in enumerate(rows, start=1):
        row["id"] = f"ph-{i:06d}"
    hand_rows = read_hand(hand) if hand else []
    ids = {r["id"] for r in rows}
    for row in hand_rows:
        if row["id"] in ids:
            raise ValueError(f"hand row id {row['id']} is not unique")
        ids.add(row["id"])
    ordered = []
    for row in [*rows, *hand_rows]:
        row["split"] = split_of(row["common_name"])
        ordered.append({k: row[k] for k in (*ROW_FIELDS, "note") if k in row})
    files = {f"knowledge/{k}": v for k, v in src.files.items()}
    if hand:
        files[f"hand/{hand.name}"] = hashlib.sha256(hand.read_bytes()).hexdigest()
    return Built(ordered, manifest(ordered, files, seed, command))


def manifest(rows: Sequence[dict[str, Any]], files: dict[str, str], seed: int, command: str) -> dict[str, Any]:
    counts = Counter((r["split"], r["query_type"], r["label"], r["clause"], r["product_category"]) for r in rows)
    halves = {}
    for s in SPLITS:
        mine = [r for r in rows if r["split"] == s]
        halves[s] = {
            "pairs": len(mine), "common_names": len({r["common_name"] for r in mine}),
            "generated": sum(r["source"] != "hand" for r in mine), "hand": sum(r["source"] == "hand" for r in mine),
            "by_label": dict(sorted(Counter(r["label"] for r in mine).items())),
            "by_query_type": dict(sorted(Counter(r["query_type"] for r in mine).items())),
            "by_query_type_label": {f"{qt}|{lab}": n for (qt, lab), n in
                                    sorted(Counter((r["query_type"], r["label"]) for r in mine).items())},
        }
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "command": command,
        "split_rule": 'sha1("pharmacy:" + common_name) % 2: 0 → tune, 1 → report',
        "pairs": len(rows),
        "halves": halves,
        "counts": [{"split": s, "query_type": q, "label": lab, "clause": c, "product_category": pc, "n": n}
                   for (s, q, lab, c, pc), n in sorted(counts.items())],
        "source_files_sha256": files,
    }


def write(built: Built, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for s in SPLITS:
        path = out / f"{s}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for row in built.rows:
                if row["split"] == s:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths[s] = path
    paths["manifest"] = out / "manifest.json"
    paths["manifest"].write_text(json.dumps(built.manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return paths
