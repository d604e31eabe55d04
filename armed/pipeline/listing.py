"""Reading a name the way a pharmacy lists it: brand, the product's own name (core + dosage form), specification.

Both sides of a product-search pair are read with this one parser. For the product it finds the product's *own*
name: the first product mentioned (its head), with the names of other drugs that trail it after the specification
or after the complete head (an appended search term: `马应龙麝香痔疮膏 10g 感冒灵颗粒`) set aside, so containment and
stuffing cannot make a product into another one. For the query it finds the names it asks for.

A mention is a name and its dosage form: a common name the knowledge base knows (消栓通络 + 片), a trade name (芬必得,
which stands for its drug and its maker), or a structural name the knowledge base does not know: the characters
before a dosage form (头孢克肟 + 分散片, 麝香痔疮 + 膏), so a name the knowledge base lacks is still compared as a name.
The core of a mention is compared after dropping a salt prefix or suffix (盐酸二甲双胍 = 二甲双胍); a core that holds
another drug's name and more (阿莫西林克拉维酸钾 ⊃ 阿莫西林) is a different, compound drug.

`is_listing` says whether the text reads as a product listing at all — a head, no question, and little that the
lexicon and the listing vocabulary cannot account for (`MAX_RESIDUAL_*`). KUAKE's titles are questions and web-page
titles: they are not listings, and the product-search branches leave them to the student.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from armed.knowledge import spelling
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.brands import ORDINARY, PLACES, maker_core
from armed.knowledge.index import Match, Payload, is_cjk, normalise

# Words that make a text a question or a page about a product rather than the product (KUAKE's titles).
QUESTION_MARKERS = (
    "?", "？", "怎么", "怎样", "什么", "如何", "为什么", "为何", "哪个", "哪些", "哪里", "哪种",
    "能不能", "能否", "可不可以", "可以吃", "能吃", "是否", "有没有", "多少", "多久", "几天", "原因", "区别",
    "作用", "副作用", "说明书", "用法", "用量", "禁忌", "注意事项", "好不好", "有用吗", "图片", "多钱", "百度",
    "知乎", "_", "怎么办", "患者", "医生", "问题",
)
# Listing vocabulary: packaging, marketing and product-type words a listing carries besides its name.
LISTING_WORDS = (
    "盒装", "瓶装", "袋装", "大包装", "小包装", "家庭装", "礼盒装", "礼盒", "组合装", "套装", "组合", "装", "盒",
    "瓶", "袋", "支", "板", "包", "罐", "正品", "原装", "进口", "国产", "官方", "旗舰", "国药准字", "非处方药",
    "处方药", "otc", "医用", "家用", "一次性", "无菌", "独立包装", "新款", "新品", "升级款", "款", "型", "用于",
    "适用于", "所致", "引起的", "的", "和", "与", "及", "或", "加", "成人", "儿童", "中老年", "老人", "男士",
    "女士", "男女", "通用", "便携式", "便携", "全自动", "电子", "智能", "上臂式", "腕式", "手腕式", "手指",
    "指夹式", "医疗", "器械", "防水", "透气", "独立", "软胶囊", "口服", "外用", "片", "粒", "丸",
    # a maker's company words after its brand (九芝堂股份有限公司 妇科十味片): the brand is matched, they are not
    "股份有限公司", "有限责任公司", "有限公司", "股份", "公司", "集团", "制药厂", "制药", "药业", "药厂",
)
# Words that describe a device or a pack, glued before its name (红外额温枪): not part of the name.
DESCRIPTIVE = (
    "红外", "电子", "数字", "智能", "医用", "家用", "一次性", "便携式", "便携", "全自动", "上臂式", "腕式",
    "指夹式", "防水", "无菌", "独立包装", "儿童款", "成人款",
)
# The longest word glued before a known name (a maker, 江苏瑞年前进) and the longest name the knowledge base does not
# know (头孢克肟, 复方金钱草): a longer run of characters is a sentence, not a name.
MAX_GLUED_CHARS = 8
MAX_CORE_CHARS = 12
# A listing is a title, not prose: at most this long, and no clause punctuation between words (KUAKE's titles).
MAX_LISTING_CHARS = 60
_SENTENCE = re.compile(r"[\u3400-\u9fff][,。;!?][\u3400-\u9fff]")
# A text is a listing only if at most this many CJK characters (or this share of them) are unaccounted for.
MAX_RESIDUAL_CHARS = 3
MAX_RESIDUAL_SHARE = 0.25
# Salt prefixes / suffixes that do not change which drug a name is (盐酸二甲双胍 is 二甲双胍).
_SALT_PREFIX = re.compile(
    r"^(?:盐酸|硫酸|枸橼酸|马来酸|苯磺酸|甲磺酸|酒石酸|富马酸|琥珀酸|醋酸|磷酸|乳酸|葡萄糖酸|氢溴酸|门冬氨酸)")
_SALT_SUFFIX = re.compile(r"(?<!酸)(?:钠|钾|钙|镁)$")  # 阿托伐他汀钙 = 阿托伐他汀; 枸橼酸钾 ≠ 枸橼酸钙
# Words joining two products into one listing (a combination pack), as opposed to a trailing search term.
_COMBINE = re.compile(r"^\s*(?:\+|＋|加|和|与|及|&|组合|套装)\s*")
_COMPOUND_MARKERS = ("复方", "复合", "强力", "精制", "加味", "加减")
_SEP = set(" \t,，、/|;；:：·-_+＋()（）[]【】")
_MAX_CORE_GAP = 10  # CJK characters between a known name and the dosage form that still belong to its core


def core_key(core: str) -> str:
    """A name's core as compared: normalised, without a salt prefix or suffix (never below two characters)."""
    key = normalise(core).replace(" ", "")
    stripped = _SALT_PREFIX.sub("", key)
    if len(stripped) >= 2:
        key = stripped
    stripped = _SALT_SUFFIX.sub("", key)
    return stripped if len(stripped) >= 2 else key


@dataclass(frozen=True)
class Mention:
    """One product name in a text: its span (in the normalised text), core, knowledge-base name, form, trade name."""

    start: int
    end: int
    core: str
    canonical: str | None
    form: str | None = None
    trade: str | None = None
    trade_brand: str | None = None
    inner: tuple[str, ...] = ()  # known names inside a longer core (a compound): 阿莫西林 in 阿莫西林克拉维酸钾
    need_word: bool = False  # the core is only a need (止咳 in 止咳糖浆): a need, not a product's name
    lead: str = ""  # the word glued before the core that was read as its maker (信邦 in 信邦木瓜丸)

    @property
    def key(self) -> str:
        return self.canonical or core_key(self.core)


@dataclass(frozen=True)
class NameParse:
    """What a name says as a listing: its mentions (head first), brands, forms, specifications and populations."""

    text: str
    mentions: tuple[Mention, ...] = ()  # the product's own (head) mentions
    appended: tuple[Mention, ...] = ()  # mentions of other drugs trailing the product's own name
    brands: tuple[str, ...] = ()
    forms: tuple[str, ...] = ()
    specifications: tuple[str, ...] = ()
    residual: str = ""
    question: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> set[str]:
        """Keys of the head's products (canonical name, else the salt-free structural core). A product named by its
        use (小儿感冒颗粒) is named by it; a query's need word is a need, not a name (see `query_names`)."""
        return {m.key for m in self.mentions}

    @property
    def query_names(self) -> set[str]:
        """The names a query asks for: its mentions that are not only a need (止咳糖浆 asks for any cough syrup)."""
        return {m.key for m in self.mentions if not m.need_word}

    @property
    def trade_names(self) -> list[Mention]:
        return [m for m in self.mentions if m.trade]

    @property
    def is_listing(self) -> bool:
        cjk = sum(is_cjk(ch) for ch in self.text)
        residual = sum(is_cjk(ch) for ch in self.residual)
        return (bool(self.names) and not self.question and len(self.text) <= MAX_LISTING_CHARS
                and not _SENTENCE.search(self.text)
                and (residual <= MAX_RESIDUAL_CHARS or residual <= MAX_RESIDUAL_SHARE * cjk))


# Sentence particles, only where a clause ends (吗啡, 吗丁啉 and 吗替麦考酚酯 are drugs).
_PARTICLE_END = re.compile(r"[吗呢](?:$|[\s?？,，.。!！])")


def is_question(clean: str, names: Sequence[tuple[int, int]] = ()) -> bool:
    """Does the (normalised) text ask something, or read as a page about a product rather than the product? `names`:
    spans of known names and makers; a particle or marker inside one asks nothing (拉坦噻吗, 好医生 the maker)."""
    def free(at: int) -> bool:
        return not any(a <= at < b for a, b in names)

    return any(free(m.start()) for m in _PARTICLE_END.finditer(clean)) or any(
        free(m.start()) for mk in QUESTION_MARKERS if mk in clean for m in re.finditer(re.escape(mk), clean))


def _fields(m: Match) -> set[str]:
    return {p.field for p in m.payloads}


def _value(m: Match, field_name: str) -> str | None:
    return next((p.value for p in m.payloads if p.field == field_name), None)


def _name_char(ch: str) -> bool:
    """A character a name is written with: CJK, or Latin letters and digits glued to it (维生素B, 辅酶Q10)."""
    return is_cjk(ch) or (ch.isascii() and ch.isalnum())


def _boundary_before(text: str, i: int, stops: set[int], limit: int) -> int:
    """Start of the run of name characters that ends at i (a structural core): back to a separator or a stop; a
    run of Latin letters and digits alone is not a name's start (a model code or a spec before it is not its core).
    A run longer than `limit` is a sentence, not a name: i (nothing) is returned."""
    j = i
    while j > 0 and _name_char(text[j - 1]) and (j not in stops):
        j -= 1
    while j < i and not is_cjk(text[j]):  # the core starts at its first CJK character
        j += 1
    return j if i - j <= limit else i


def glued_maker(prefix: str, kb: KnowledgeBase) -> str | None:
    """What a word glued before a name is, when it is a maker: its brand (信邦 in 信邦木瓜丸, 瑞年前进 in
    江苏瑞年前进氯氮平片, 博祥 in 博祥药业骨炎灵片), '' for a place alone (湖北 in 湖北襄阳隆中肥儿糖浆), None when
    it is part of the name (复方, 小儿, 强力, a lexicon word, a descriptive word)."""
    word = normalise(prefix)
    if not word or _only_words(word, DESCRIPTIVE) or not all(_name_char(ch) for ch in word):
        return None
    core = maker_core(word)
    spelt = kb.spelled(word) if len(word) >= 2 and all(is_cjk(ch) for ch in word) else None
    if spelt is not None and kb.common_name_of(spelt.surface):  # a misspelt drug name (甲硝坐 for 甲硝唑)
        return None
    if word in PLACES or core in PLACES:
        return ""
    if not 2 <= len(core) <= 8 or any(ch.isdigit() for ch in core) or core in ORDINARY or any(
            core.startswith(w) or core.endswith(w) for w in ORDINARY if len(w) >= 2):
        return None
    found = kb.extract(core)
    if any(found.get(f) for f in ("common_name", "dosage_form", "efficacy", "category", "population", "region",
                                  "ingredients")):
        return None
    return kb.canonical_brands([core]).pop()


def same_maker(a: list[str] | tuple[str, ...], b: list[str] | tuple[str, ...], kb: KnowledgeBase) -> bool:
    """`KnowledgeBase.same_brand`, and a brand misspelt by a homophone (汤臣倍建 for 汤臣倍健) is that brand."""
    if kb.same_brand(list(a), list(b)):
        return True
    ca = {maker_core(x) for x in a} | {normalise(x) for x in a}
    cb = {maker_core(x) for x in b} | {normalise(x) for x in b}
    return any(len(x) == len(y) >= 2 and sum(c != d for c, d in zip(x, y, strict=True)) <= spelling.MAX_TYPO_CHARS
               and all(is_cjk(c) for c in x + y) and set(spelling.pinyin_keys(x)) & set(spelling.pinyin_keys(y))
               for x in ca for y in cb)


def _only_words(text: str, words: tuple[str, ...]) -> bool:
    for w in sorted(words, key=len, reverse=True):
        text = text.replace(w, "")
    return not text


def _trades_as_listed(mentions: list[Mention], kb: KnowledgeBase) -> list[Mention]:
    """A trade name beside the drug name it is sold as means that drug: 美林 resolves to 布洛芬, but in
    美林 布洛伪麻混悬液 it is 强生's 布洛伪麻 (the sources list 美林 for both), so the listing names one drug."""
    out = []
    for m in mentions:
        if m.trade:
            listed = [o.key for o in mentions if not o.trade and o.key != m.key and kb.lists_name_for(m.trade, [o.key])]
            if listed:
                m = replace(m, canonical=listed[0])
        out.append(m)
    return out


def _maker_tokens(clean: str, covered: bytearray, mentions: list[Mention],
                  kb: KnowledgeBase) -> list[tuple[int, int, str]]:
    """Makers named where a listing names them, as a word of their own: the first word before the product's name
    (西门子 助听器, 远程 健脑胶囊) and the last word after it (… 24粒/盒 晖致). A word the lexicon reads as anything, a
    listing word or an implausible brand is not one."""
    if not mentions:
        return []
    found = []
    tokens = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"[^\s\[\]【】()（）/|,，、:：+]+", clean)]
    first, last = mentions[0].start, max(m.end for m in mentions)
    for a, b, tok in tokens:
        if not (b <= first or a >= last) or any(covered[a:b]):
            continue
        brand = glued_maker(tok, kb)
        if brand and not _only_words(tok, LISTING_WORDS) and not kb.extract(tok).model_dump(exclude_defaults=True):
            found.append((a, b, brand))
    return found


def parse_name(text: str, kb: KnowledgeBase, *, query: bool = False) -> NameParse:
    """Read `text` (a query or a product name, already sanitised) as a listing. `query`: a short query that names
    nothing the knowledge base knows and no dosage form is read as a name itself (盐酸齐拉西酮, 五妙水仙)."""
    clean = normalise(kb.strip_noise(text))
    specs = kb.specifications(clean)
    matches = kb.lexicon_matches(clean)
    question = is_question(clean, [(m.start, m.end) for m in matches if _fields(m) & {"common_name", "brand"}])
    covered = bytearray(len(clean))

    def cover(a: int, b: int) -> None:
        for k in range(max(a, 0), min(b, len(clean))):
            covered[k] = 1

    for a, b, _ in specs:
        cover(a, b)
    for m in matches:
        cover(m.start, m.end)
    form_at = {m.start: m for m in matches if "dosage_form" in _fields(m)}
    # A category word that ends in a dosage form (钙片 in 枸橼酸钙片) still ends a name in that form.
    for m in matches:
        if "category" in _fields(m) and "common_name" not in _fields(m):
            found = kb.form_suffix(m.surface)
            if found:
                at = m.end - len(found[0])
                form_at.setdefault(at, Match(at, m.end, found[0], (Payload("dosage_form", found[1]),)))
    # Brands the lexicon does not know, where they stand (康恩贝 in 康恩贝消栓通络片): a name never reaches into them.
    guessed: list[tuple[int, int]] = []
    misspelt: set[str] = set()  # guessed "brands" that are a drug name misspelt (甲硝坐芬布芬): part of the name
    for g in kb.guess_brands(text):
        surface = normalise(g.surface)
        at = clean.find(surface)
        spelt = kb.spelled(surface) if all(is_cjk(ch) for ch in surface) else None
        if spelt is not None and kb.common_name_of(spelt.surface):
            misspelt.add(g.brand)
        elif surface and at >= 0:
            guessed.append((at, at + len(surface)))
            cover(at, at + len(surface))
    # Where a structural core may not reach back past: the end of a brand, a name or a specification.
    stops = ({m.end for m in matches if _fields(m) & {"brand", "common_name"}} | {b for _, b, _ in specs}
             | {b for _, b in guessed})
    mentions: list[Mention] = []
    glued: list[str] = []
    glued_at: dict[int, str] = {}  # mention index → the maker word glued before it
    used_forms: set[int] = set()
    names = [m for m in matches if "common_name" in _fields(m)]
    for k, m in enumerate(names):
        fields = _fields(m)
        nxt = names[k + 1] if k + 1 < len(names) else None
        # A surface that is both a brand and a name (云南白药) is the maker when another name follows it at once.
        if "brand" in fields and nxt is not None and clean[m.end : nxt.start].strip() == "" \
                and not kb.is_trade_name(m.surface):  # a trade name (泰道) is its product's name, whoever makes it
            continue
        # A trade name glued to another product's name with only descriptive words between (舒敏保湿面膜: 舒敏 is a
        # trade name of 盐酸曲马多 in the drug lists) describes that product; it is no drug of its own.
        if nxt is not None and kb.is_trade_name(m.surface) and _value(nxt, "common_name") != _value(m, "common_name") \
                and _only_modifiers(clean, m.end, nxt.start, matches):
            continue
        canonical = _value(m, "common_name")
        # A source's full name (消栓通络片) is the core and its form.
        start, end, form, core, inner = m.start, m.end, None, kb.split_form(m.surface)[0] or m.surface, ()
        # Unknown characters glued before the name belong to it (复方对乙酰氨基酚 is not 对乙酰氨基酚), back to a brand,
        # a specification or a separator.
        head_at = _boundary_before(clean, m.start, stops, MAX_GLUED_CHARS)
        # (Modifiers the lexicon knows may be glued on: 小儿 in 小儿敷脐止泻; another name, brand or form may not.)
        prefix_matches = [x for x in matches if x is not m and x.start < m.start and x.end > head_at]
        # A population, a description or a use glued on (儿童医用口罩, 舒敏保湿面膜) leaves the name what it is; a
        # compound marker (复方) or unknown characters make another name.
        prefix = clean[head_at : m.start]
        rest = prefix
        for w in sorted((*DESCRIPTIVE, *(x.surface for x in prefix_matches)), key=len, reverse=True):
            rest = rest.replace(w, "")
        modifier_only = all(_fields(x) & {"population", "efficacy", "region"} for x in prefix_matches) and (
            not rest or (prefix_matches and len(rest) <= 2 and not prefix.startswith(_COMPOUND_MARKERS)))
        if head_at < m.start and not any(_fields(x) & {"brand", "common_name", "dosage_form", "category"}
                                         for x in prefix_matches) and not modifier_only:
            maker = glued_maker(clean[head_at : m.start], kb)
            lead = clean[head_at : m.start]
            if maker is None:  # part of the name: a compound or a variant (复方对乙酰氨基酚)
                start, core, canonical = head_at, clean[head_at : m.end], None
                inner = (_value(m, "common_name") or m.surface,)
            elif maker:  # a maker glued to a known name (信邦木瓜丸)
                glued.append(maker)
                glued_at[len(mentions)] = lead
            cover(head_at, m.start)
        # The core runs on to the next dosage form when only unknown characters stand between (a compound).
        gap_end = m.end
        while gap_end < len(clean) and gap_end - m.end <= _MAX_CORE_GAP and _name_char(clean[gap_end]) \
                and gap_end not in form_at and not any(x.start == gap_end for x in matches if x is not m):
            gap_end += 1
        if gap_end in form_at and gap_end > m.end:
            longer = clean[start:gap_end]
            known = kb.common_name_of(longer)
            core, canonical = longer, known
            if known is None:
                inner = inner or (_value(m, "common_name") or m.surface,)
            cover(m.end, gap_end)
            end = gap_end
        if end in form_at:
            f = form_at[end]
            form, end = _value(f, "dosage_form"), f.end
            used_forms.add(f.start)
        elif m.end in form_at:
            f = form_at[m.end]
            form, end = _value(f, "dosage_form"), f.end
            used_forms.add(f.start)
        if form is None:  # a known full name still states its form (消栓通络片 from a source)
            form = kb.split_form(m.surface)[1]
        trade = normalise(m.surface) if kb.is_trade_name(m.surface) and core == m.surface else None
        trade_brand = None
        if trade:
            found = kb.trade_names_in(m.surface)
            trade_brand = found[0].brand if found else None
        if canonical is None and not inner:
            canonical = kb.common_name_of(core)
        mentions.append(Mention(start, end, core, canonical, form, trade, trade_brand, inner,
                                lead=glued_at.get(len(mentions), "")))
    # Structural names: a dosage form with unknown characters before it (头孢克肟分散片, 麝香痔疮膏).
    for start, f in sorted(form_at.items()):
        if start in used_forms or any(x.start <= start < x.end for x in mentions):
            continue
        a = _boundary_before(clean, start, stops, MAX_CORE_CHARS)
        core = clean[a:start]
        if len(core) < 2:
            continue
        inside = [x for x in matches if a <= x.start and x.end <= start]
        need_word = bool(inside) and sum(x.end - x.start for x in inside) == len(core) and all(
            _fields(x) & {"efficacy", "category", "population", "region"} for x in inside)
        canonical = kb.common_name_of(core)
        cover(a, f.end)
        mentions.append(Mention(a, f.end, core, canonical, _value(f, "dosage_form"), need_word=need_word))
    if query and not any(not m.need_word for m in mentions) and not question:
        runs = [(r.start(), r.end()) for r in re.finditer(r"[\u3400-\u9fff\uf900-\ufaffa-z0-9]+", clean)
                if not any(covered[r.start() : r.end()]) and is_cjk(r.group(0)[0])]
        if len(runs) == 1 and 2 <= runs[0][1] - runs[0][0] <= 10:
            a, b = runs[0]
            mentions.append(Mention(a, b, clean[a:b], kb.common_name_of(clean[a:b])))
            cover(a, b)
    mentions.sort(key=lambda x: x.start)
    mentions = _trades_as_listed(mentions, kb)
    makers = _maker_tokens(clean, covered, mentions, kb)
    for a, b, _ in makers:
        cover(a, b)
    head, appended, notes = _split_head(clean, mentions, specs)
    # A bracketed tag that names nothing (【湿疹可用】, 【正品】) is a listing's label, not words of its name.
    for tag in re.finditer(r"[\[【(（]([^\]】)）]{1,16})[\]】)）]", text):
        at = clean.find(normalise(tag.group(1)))
        if at >= 0:
            cover(at, at + len(normalise(tag.group(1))))
    residual = "".join(ch for k, ch in enumerate(clean) if not covered[k])
    for w in sorted(LISTING_WORDS, key=len, reverse=True):
        residual = residual.replace(w, " ")
    ents = kb.extract(text)
    return NameParse(
        text=clean,
        mentions=tuple(head),
        appended=tuple(appended),
        brands=tuple(dict.fromkeys([*(b for b in ents.brand if b not in misspelt), *glued,
                                    *(brand for _, _, brand in makers)])),
        forms=tuple(dict.fromkeys(m.form for m in head if m.form)),
        specifications=tuple(s for _, _, s in specs),
        residual=re.sub(r"[^\u3400-\u9fff\uf900-\ufaff]+", "", residual),
        question=question,
        notes=tuple(notes),
    )


def _only_modifiers(clean: str, a: int, b: int, matches: list[Match]) -> bool:
    """Is clean[a:b] glued text (no space) made wholly of efficacy, population or region words (保湿 in
    舒敏保湿面膜)?"""
    if " " in clean[a:b]:
        return False
    k = a
    while k < b:
        word = next((x for x in matches if x.start == k and x.end <= b
                     and _fields(x) & {"efficacy", "population", "region"}), None)
        if word is None:
            return False
        k = word.end
    return True


def _split_head(clean: str, mentions: list[Mention], specs: list[tuple[int, int, str]]
                ) -> tuple[list[Mention], list[Mention], list[str]]:
    """(the product's own mentions, mentions of other drugs trailing it, notes). The head is the first mention and
    what names the same drug; another drug after the specification, or after the complete head without a combining
    word (+, 组合, 和 ...), trails the product's own name."""
    products = [m for m in mentions if not m.need_word] or mentions
    if not products:
        return [], [], []
    first = products[0]
    spec_start = min((a for a, _, _ in specs if a >= first.end), default=None)
    head, appended = [first], []
    for m in products[1:]:
        if m.key == first.key:  # the same drug again (芬必得 布洛芬缓释胶囊)
            head.append(m)
            continue
        joined = _COMBINE.match(clean[head[-1].end : m.start])
        after_spec = spec_start is not None and m.start >= spec_start
        if joined and not after_spec:
            head.append(m)
        elif after_spec or clean[head[-1].end : m.start].strip(" ") != "" or head[-1].form is not None:
            appended.append(m)
        else:
            head.append(m)
    notes = [f"trailing name set aside: {m.core}" for m in appended]
    return head, appended, notes
