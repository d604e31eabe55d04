"""Brands the lexicon has never seen: where a product name puts its maker, and which words are never one.

The lexicon knows the seed's brands and whatever the sources add; a marketplace names thousands more. A name shows
its maker in a few fixed places, and those are what this module reads (on the normalised text `KnowledgeBase.extract`
matches on, after the lexicon has had its say):

- a bracketed tag: ``[康恩贝]消栓通络片``, ``【康恩贝】…``, ``〔…〕``, ``「…」``, ``『…』`` (a store tag
  【X旗舰店】 gives X);
- a maker's name: ``…制药`` / ``…药业`` / ``…药厂`` / ``…集团`` / ``…股份`` / ``…有限公司``
  (``浙江康恩贝制药`` → 康恩贝);
- the word heading a known common name: ``康恩贝消栓通络片`` (消栓通络 is known, so 康恩贝 is the maker).

The reverse matters as much: a guessed brand caps a judgment, so a word that only modifies a drug name (复方, 小儿,
强力), a population, efficacy or region word, a specification, a place, a pharmacy or a word of a question (孕妇可以
吃…) must never become one. Each finder therefore requires the candidate to touch no other lexicon entity and to pass
`plausible_brand`. Rates on real names are measured by `armed eval brands` (docs/knowledge.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from armed.knowledge.index import Match, is_cjk, normalise

How = Literal["bracket", "maker", "prefix"]

# Province-level names and large cities: a maker's name starts with its seat (浙江康恩贝 → 康恩贝), and a place alone
# (常州制药 → 常州) is not a brand.
PLACES: frozenset[str] = frozenset(
    "北京 天津 上海 重庆 河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 湖南 广东 海南 四川 "
    "贵州 云南 陕西 甘肃 青海 台湾 内蒙古 广西 西藏 宁夏 新疆 香港 澳门 广州 深圳 杭州 南京 武汉 成都 西安 长春 "
    "沈阳 哈尔滨 济南 青岛 石家庄 太原 郑州 长沙 南昌 福州 昆明 贵阳 兰州 常州 苏州 无锡 大连 厦门 宁波 温州 "
    "合肥 南宁 海口 拉萨 银川 西宁 乌鲁木齐 呼和浩特 天津市 中国 西南 西北 东北".split()
)
_PLACE_FORMS = sorted(
    (form for p in PLACES for form in (p + "省", p + "市", p + "自治区", p)), key=len, reverse=True
)

# Words that modify or describe a drug name and never name its maker. Populations, efficacy, regions and dosage
# forms are not listed: the lexicon finds those, and a candidate touching any lexicon entity is refused anyway.
ORDINARY: frozenset[str] = frozenset(
    "复方 小儿 儿童 婴儿 幼儿 宝宝 成人 老人 女士 男士 女性 男性 孕妇 妇科 儿科 加味 加减 精制 强力 速效 长效 特效 "
    "缓释 控释 肠溶 新型 新版 新款 正品 原装 进口 国产 官方 正宗 特价 家用 家庭 天然 野生 无糖 含糖 低糖 纯中药 中药 "
    "西药 中成药 注射用 口服 外用 盐酸 硫酸 醋酸 枸橼酸 马来酸 甲磺酸 磷酸 富马酸 琥珀酸 碳酸 乳酸 葡萄糖酸 维生素 "
    "多维 复合 浓缩 颗粒 滴丸 水丸 蜜丸 大蜜丸 小蜜丸 口服液 非处方 处方 甲类 乙类 otc rx 感冒 发烧 退烧 止咳 "
    "清热 解毒 消炎 止痛 通用 同款 平替 替代 国药准字 批准文号 包邮 现货 促销 热卖 爆款 推荐 买一送一 整盒 整箱 "
    "大盒 小盒 大瓶 小瓶 大包装 小包装 套装 组合 礼盒 试用装 旗舰 药店 药房 大药房 医院 诊所 专柜 金牌 "
    "老牌 名牌 品牌 厂家 厂商 生产 批发 零售 治疗 预防 缓解 用于 注射 液体 游离 血清 血样 体检 手指 早期 晚期 "
    "后天 先天 急性 慢性 求助 提问 咨询 问题 求救 请教 分享 科普 讨论".split()
)
# Characters of a question or a sentence: a candidate holding one is words around a drug name, not a maker.
# Verbs of taking a drug and words of time are here too: 睡前喝布洛芬, 晚期白癜风, 漏服一次妈富隆 (QTR train titles).
_FUNCTION_CHARS = set(
    "的了吗呢吧啊么与及或是在有用吃治买卖哪什怎几多少能可会要该请你我他她它们这那个些为被把从对给"
    "喝服打抹涂擦敷测查检听说关于您后前期怀孕岁度做取漏来去又再还就都也很太最更不没想完次两半"
)
# A disease or symptom ends so (反流性食道炎); a maker's name does not.
_DISEASE_ENDINGS = set("炎病症痛疮癣疹瘤癌咳热痒肿毒伤风")
# A maker's name ends in one of these; what precedes is the brand (康恩贝制药 → 康恩贝).
_MAKER_RE = re.compile(
    r"(?:(?:集团)?(?:股份)?有限(?:责任)?公司|(?:制药|药业|医药|生物|科技|实业|药品)(?:集团|股份|有限)"
    r"|制药厂|制药|药业|药厂|集团|股份)"
)
_MAKER_WORD_RE = re.compile(r"(?:制药厂|制药|药业|药厂|医药|科技|生物|集团|股份|实业|中药|总厂|工业|有限|公司|药品)$")
# A store's tag names the brand it sells (【康恩贝旗舰店】); a pharmacy's names only itself.
_STORE_RE = re.compile(r"(?:官方)?(?:旗舰店|专卖店|专营店|官方店|品牌店)$")
_PHARMACY_RE = re.compile(r"药房|药店|医院|诊所|健康网|商城|超市")
_BRACKET_RE = re.compile(r"【([^】]{1,16})】|\[([^\]]{1,16})\]|〔([^〕]{1,16})〕|「([^」]{1,16})」|『([^』]{1,16})』")
_LATIN_BRAND_RE = re.compile(r"[a-z][a-z&'.\- ]{1,18}[a-z]")
# Latin words a bracket holds that are not makers (tags, grades, units).
_LATIN_NOT_BRAND = frozenset("otc rx new hot vip sale top gmp usp bp ep cn usa uk eu jp kr hk mg ml iu pcs box".split())
_BOUNDARY_RE = re.compile(r"[^\u3400-\u9fff\uf900-\ufaffa-z0-9]")


@dataclass(frozen=True)
class BrandGuess:
    """A brand found by position rather than by the lexicon; `how` says which finder, for evidence."""

    brand: str  # the canonical brand (a known alias resolved), or the maker's core name
    surface: str  # what the text says (康恩贝制药)
    how: How


def strip_place(name: str) -> str:
    """The name without a leading place (浙江康恩贝 → 康恩贝), unless too little would be left to name anything."""
    for form in _PLACE_FORMS:
        if name.startswith(form) and len(name) - len(form) >= 2:
            return name[len(form) :]
    return name


def maker_core(name: str) -> str:
    """A maker's full or short name reduced to its brand: 浙江康恩贝制药股份有限公司 → 康恩贝, 豪森药业 → 豪森."""
    core = normalise(name)
    if core.endswith("牌") and len(core) >= 3:
        core = core[:-1]
    core = re.sub(r"(?:集团)?(?:股份)?有限(?:责任)?公司.*$|(?:集团)?股份公司.*$", "", core).strip()
    for _ in range(4):
        stripped = _MAKER_WORD_RE.sub("", core)
        if stripped == core or len(stripped) < 2:
            break
        core = stripped
    return strip_place(core)


def plausible_brand(core: str) -> bool:
    """Can this (already stripped) word be a maker's brand? Two to six CJK characters, or a Latin name, that is not an
    ordinary drug-name word, a place, a number or a phrase of a question."""
    if not core:
        return False
    if all(is_cjk(ch) for ch in core):
        return (
            2 <= len(core) <= 6
            and core not in ORDINARY
            and core not in PLACES
            and not (set(core) & _FUNCTION_CHARS)
            and not any(core.startswith(w) or core.endswith(w) for w in ORDINARY if len(w) >= 2)
            and core[-1] not in _DISEASE_ENDINGS
        )
    return bool(_LATIN_BRAND_RE.fullmatch(core)) and core not in _LATIN_NOT_BRAND


def _touches(matches: Sequence[Match], start: int, end: int) -> bool:
    return any(m.start < end and start < m.end for m in matches)


def _segment_start(text: str, i: int) -> int:
    """Where the word run ending at i starts: after the last space, punctuation or bracket before it."""
    j = i
    while j > 0 and not _BOUNDARY_RE.match(text[j - 1]):
        j -= 1
    return j


def bracket_brands(
    raw: str, lexicon: Callable[[str], Sequence[Match]], noise: Callable[[str], bool]
) -> list[tuple[str, str]]:
    """(core, surface) of every bracketed tag that names a maker: 【康恩贝】, [Swisse], 【康恩贝旗舰店】.

    `lexicon` returns the lexicon's matches in a text (a tag holding a drug, an efficacy or a population is not a
    brand); `noise` says whether the tag is selling noise (包邮, 正品).
    """
    out: list[tuple[str, str]] = []
    text = unicodedata.normalize("NFKC", raw).lower()
    for m in _BRACKET_RE.finditer(text):
        content = next(g for g in m.groups() if g is not None).strip()
        core = _STORE_RE.sub("", content).strip()  # before the noise test: 旗舰店 is noise, 康恩贝旗舰店 a brand
        if not core or noise(core) or _PHARMACY_RE.search(core) or re.search(r"\d", core):
            continue
        if any(not (p.field == "brand") for mt in lexicon(core) for p in mt.payloads):
            continue
        core = maker_core(core) if all(is_cjk(ch) for ch in core) else core
        if plausible_brand(core):
            out.append((core, content))
    return out


def maker_brands(text: str, matches: Sequence[Match]) -> list[tuple[str, str]]:
    """(core, surface) of every maker's name in normalised text:
    浙江康恩贝制药 消栓通络片 → (康恩贝, 浙江康恩贝制药)."""
    out: list[tuple[str, str]] = []
    done = 0  # 康恩贝制药股份有限公司 is one maker, however many suffixes it stacks
    for m in _MAKER_RE.finditer(text):
        if m.start() < done:
            continue
        start = _segment_start(text, m.start())
        if start < done:
            continue
        name = text[start : m.start()]
        if len(name) < 2 or not all(is_cjk(ch) for ch in name) or _touches(matches, start, m.start()):
            continue
        core = maker_core(name)
        if plausible_brand(core):
            end = m.end()
            while (more := _MAKER_RE.match(text, end)) is not None:
                end = more.end()
            out.append((core, text[start:end]))
            done = end
    return out


def prefix_brand(text: str, matches: Sequence[Match], is_common_name: Callable[[Match], bool],
                 has_form: Callable[[Match], bool]) -> tuple[str, str] | None:
    """(core, surface) of the word heading the first known common name: 康恩贝消栓通络片 → 康恩贝.

    Only a word that opens its run of text (nothing but a space or punctuation before it), touches no other lexicon
    entity and is plausible; and only before a common name of three characters or more, or of two followed by a
    dosage form, since a short name is often the tail of a longer drug the lexicon does not know (杞菊地黄丸 is not
    地黄 by a maker called 杞菊).
    """
    for k, m in enumerate(matches):
        if not is_common_name(m):
            continue
        nxt = matches[k + 1] if k + 1 < len(matches) else None
        form_next = nxt is not None and nxt.start == m.end and any(p.field == "dosage_form" for p in nxt.payloads)
        # A product name: the common name ends its run, or a dosage form / specification follows. In a sentence
        # (睡前喝布洛芬后就出汗) the words around a drug are not its maker.
        ends = m.end == len(text) or bool(_BOUNDARY_RE.match(text[m.end])) or text[m.end].isdigit()
        if m.end - m.start < 3 and not (form_next or has_form(m)):
            return None
        if not (form_next or ends or has_form(m)):
            return None
        start = _segment_start(text, m.start)
        word = text[start : m.start]
        if len(word) < 2 or not all(is_cjk(ch) for ch in word) or _touches(matches, start, m.start):
            return None
        core = strip_place(word)
        if core.endswith("牌") and len(core) >= 3:  # 葛洪牌桂龙药膏: X牌 is "brand X"
            core = core[:-1]
        return (core, word) if plausible_brand(core) else None
    return None


def in_brand_position(text: str, m: Match, matches: Sequence[Match]) -> bool:
    """Does a lexicon brand learned from a source stand where a maker's name stands?

    Source brands include real makers whose names are ordinary words (长红制药, 第一生化, 希望制药), so inside a
    sentence they are words (头上长红疙瘩, 第一次吃避孕药). A source brand counts when it opens its run of text (after
    a place at most: 吉林敖东) and, when it is two characters, when what follows is another entity, a maker word, a
    specification or the end of the run.
    """
    head = strip_place(text[_segment_start(text, m.start) : m.start] + "xx")
    if head != "xx":
        return False
    if m.end - m.start >= 3:
        return True
    if m.end == len(text) or text[m.end].isdigit() or _MAKER_RE.match(text, m.end):
        return True
    if m.start > 0 and text[m.start - 1] in "([{（【〔「『<《" and text[m.end] in ")]}）】〕」』>》":
        return True  # 肾宝片(汇仁)
    drug = {"common_name", "dosage_form", "ingredients"}
    if text[m.end] == " ":  # 信谊 某某片: a drug name of its own follows the space
        run_end = next((k for k in range(m.end + 1, len(text)) if _BOUNDARY_RE.match(text[k])), len(text))
        return any(m.end < o.start and o.end <= run_end and any(p.field in drug for p in o.payloads)
                   for o in matches)
    return any(o.start == m.end and any(p.field in drug for p in o.payloads) for o in matches)
