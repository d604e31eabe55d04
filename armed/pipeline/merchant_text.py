"""Merchant text is data: the one sanitiser a product's name, attributes and category pass where they enter armed.

Everything downstream (the deterministic branches, the expert rules, the student, every prompt) reads the sanitised
text, so an instruction or a stuffed search term removed here reaches none of them. What was removed is reported as
kinds (`Cleaned.removed`), never as the removed text, so the evidence can say it without repeating the injection.

How it works: detection runs on a shadow of the text (each character NFKC-normalised, lower-cased, look-alike
Cyrillic/Greek letters read as Latin, invisible characters gone) that remembers where each of its characters came
from; what a rule matches there is cut from the merchant's own characters. A name in which no rule fires comes back
unchanged (apart from invisible format characters, which never carry meaning in a name), so ordinary names are judged
exactly as the student was trained to see them.

Rules, in order (each names the kind it reports):
- invisible: zero-width, bidi, soft-hyphen and other format characters;
- template_token: chat-template and role tokens (<|im_start|>, [INST], <|eot_id|>, <think> ...) and the turn they
  open (up to the token that closes it);
- markup: tags (a name never holds markup) with the content of non-formatting elements (<result>…</result>), and
  JSON-style "label": "…" pairs;
- delimiter: fences and delimiter runs (```, <<<, >>>, ---, ###);
- role_turn: plain-text dialogue turns (System:, Assistant:, 用户：, 助手： …) to the end of their line;
- answer_label: "Answer: …", "判定结果：…" and the like when they state a relevance level;
- instruction: imperative injections in English or Chinese (ignore the instructions above, 忽略以上指令, 系统提示,
  you are now …, note to the AI …) to the end of their sentence;
- judgment_words: the relevance vocabulary itself (highly relevant, 高度相关 …): a product name never needs it;
- hashtag: #keywords;
- padding / repetition: a filler run (_FILLER_RUN spaces or punctuation marks) and, after the head of the name,
  everything behind it; a phrase repeated _REPEATS times (and, after the head, the rest);
- match_claim: a claim that the product matches the search, Chinese or English (本品与您搜索的X完全匹配, 与您搜索的X
  一致, 正是您要找的X, 您搜索的X就是本品, 搜X就选本品, X 官方正品 完全匹配, 100%匹配, 精准匹配, exact match for X,
  matches your search, this is the X you searched for), with its clause and the query it names; with or without the
  query, so attributes lose it too. A bare match verdict (完全匹配) counts only where it ends its clause: 骨髓配型完全
  匹配的几率 is a question about marrow donors;
- length: the cap MAX_JUDGED_NAME_CHARS (names only);
- with the query (names only; a mention is a piece of the query holding at least half of it, or one of its drug or
  brand names): negated_query (不含X, 无X, 非X, 不是X, 替代X, X平替, without X …: the product says it is not X, so X
  goes with its marker); compared_query (媲美X, 堪比X, 比X更好, X升级版, 与X同效, better than X); stuffed_query (X
  after an SEO word: 热搜X, X同款, 关键词：X, 适用于X …; the whole query alone or with sales filler in brackets; X
  heading a keyword list; the whole query _QUERY_REPEATS times). A bracketed or listed X stays when the knowledge base
  finds the rest of the name to name the same product (布洛芬缓释胶囊（芬必得）: 芬必得 is 布洛芬), and a phrase the
  knowledge base calls traffic hijacking (X同款, X平替, 替代X) stays for the cheating check to judge;
- appended_query (names only, last): X standing after the product's own name has ended, cut with what trails it (a
  specification right behind X excepted: it is the product's). The name has ended after its specification (马应龙麝
  香痔疮膏 10g 感冒灵颗粒, … 0.3g*24片/盒 感冒灵; the knowledge base's specification patterns, else _SPEC), after a
  separator behind a complete product name (a dosage-form word or another product noun ends it: 马应龙麝香痔疮膏 |
  感冒灵颗粒, 马应龙麝香痔疮膏 感冒灵颗粒 感冒药) or behind a bracketed tag that follows a name, and glued straight
  to a drug's dosage-form word (马应龙麝香痔疮膏感冒灵颗粒) or to a specification (10g感冒灵颗粒); a short word glued
  before X behind a spec goes with it (10g 适合X), and a letter-spaced X (感 冒 灵) is read without its spaces. X is
  a product's name (the whole query, one of its drug / brand names, or a piece in which the knowledge base finds one:
  not 治脚气 of 盐酸治脚气). It stays when it heads the name (the query at the start is the product's own name), when
  it continues the query begun before it, when the name before it lists another part of the query or already says
  all of it (a product behind the query heading the name is not cut), when the rest of the name already says
  everything it says (_adds_nothing: [999] 感冒灵颗粒 10g*9袋 感冒灵 is an exact product repeating its name; 修正
  消栓通络片 behind [康恩贝]消栓通络片 adds another maker and goes), for hijacking phrases as above, and behind a
  head that reads as a question or an article title rather than a listing (_NOT_A_LISTING: KUAKE titles such as 感冒
  灵颗粒和感冒清热颗粒哪个好, 布洛芬缓释胶囊说明书; only the text before X counts, so a particle the merchant puts
  behind X does not protect it). Prepended (X 马应龙麝香痔疮膏 10g) is not caught: X heads the name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from armed.domain import Product

if TYPE_CHECKING:
    from armed.knowledge.base import KnowledgeBase

# Longest product name armed judges. Marketplace titles are capped near 60 characters (Taobao / Tmall: 60, JD: 50-60
# in practice) and the longest KUAKE-QTR title in train/ is 50; anything past 80 is padding, not the product.
MAX_JUDGED_NAME_CHARS = 80
# Padding: a run of this many spaces / punctuation marks, or a phrase repeated this many times (questions on train/
# end in up to 12 question marks and repeat a plea five times; attacks pad with hundreds).
_FILLER_RUN = 16
_REPEATS = 6
# The whole query this many times in one name is stuffing (titles on train/ say it up to three or four times).
_QUERY_REPEATS = 5
# What the name becomes when nothing but injected text was in it.
EMPTY_NAME = "未命名商品"

KINDS = (
    "invisible", "template_token", "markup", "delimiter", "role_turn", "answer_label", "instruction",
    "judgment_words", "hashtag", "padding", "repetition", "length", "match_claim", "negated_query", "compared_query",
    "stuffed_query", "appended_query",
)


@dataclass(frozen=True)
class Cleaned:
    text: str
    removed: tuple[str, ...] = ()  # kinds (see KINDS), in the order the rules fired; never the removed text


# ----------------------------------------------------------------------------------------------- the shadow text

# Cyrillic / Greek letters that look Latin: detection reads them as the Latin letter they imitate.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "һ": "h",
    "ԁ": "d", "ɡ": "g", "ӏ": "l", "ԛ": "q", "ԝ": "w", "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "τ": "t",
    "ρ": "p", "ε": "e", "υ": "u",
})


def _invisible(ch: str) -> bool:
    # Format characters (zero-width, bidi controls, soft hyphen, word joiner, BOM) and controls other than the
    # whitespace the domain keeps; U+3164 / U+115F / U+1160 are Hangul fillers that render as nothing.
    cat = unicodedata.category(ch)
    return cat == "Cf" or (cat == "Cc" and ch not in "\t\n") or ch in "\u3164\u115f\u1160\uffa0"


class _Shadow:
    """The detection view of a text, with the index of the original character behind each of its characters."""

    def __init__(self, original: str) -> None:
        self.original = original
        chars: list[str] = []
        origin: list[int] = []
        for i, ch in enumerate(original):
            if _invisible(ch):
                continue
            for c in unicodedata.normalize("NFKC", ch).lower().translate(_HOMOGLYPHS):
                chars.append(c)
                origin.append(i)
        self.text = "".join(chars)
        self.origin = origin
        self.removed: list[str] = []
        self.invisible = any(_invisible(ch) for ch in original)

    def cut(self, spans: Iterable[tuple[int, int]], kind: str | None) -> bool:
        """Remove shadow spans [a, b); report `kind` once if anything went (None: tidying, not reported)."""
        drop = [False] * len(self.text)
        hit = False
        for a, b in spans:
            for k in range(max(a, 0), min(b, len(self.text))):
                drop[k] = True
                hit = True
        if not hit:
            return False
        self.text = "".join(c for c, d in zip(self.text, drop, strict=True) if not d)
        self.origin = [o for o, d in zip(self.origin, drop, strict=True) if not d]
        if kind and kind not in self.removed:
            self.removed.append(kind)
        return True

    def sub(self, pattern: re.Pattern[str], kind: str | None, span: Callable[[re.Match[str]], tuple[int, int]]
            | None = None) -> bool:
        return self.cut([span(m) if span else m.span() for m in pattern.finditer(self.text)], kind)

    def copy(self) -> _Shadow:
        """A trial copy: cut on it, and `adopt` it if the trial is kept."""
        out = _Shadow.__new__(_Shadow)
        out.original, out.text, out.origin = self.original, self.text, list(self.origin)
        out.removed, out.invisible = list(self.removed), self.invisible
        return out

    def adopt(self, trial: _Shadow) -> None:
        self.text, self.origin, self.removed = trial.text, trial.origin, trial.removed

    def result(self) -> str:
        kept = sorted(set(self.origin))
        return "".join(self.original[i] for i in kept)


# --------------------------------------------------------------------------------------------- the rules' words

_TERMINATORS = ".!?。！？\n"
_OPEN = "([{（【「『〔《〈"
_CLOSE = ")]}）】」』〕》〉"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# Glue a removed span takes with it on its left: spaces and the ASCII punctuation that only joins an injection on.
_LEFT_GLUE = " \t\n\"'<>{}:;,|=`#*~-–—"

# Chat-template / role tokens. Openers start a turn the merchant wrote for the model; closers end it.
_TOKEN = re.compile(
    r"<\|[^|<>\n]{1,40}\|>|\[/?inst\]|<</?sys>>|</?s>|</?think>|<start_of_turn>|<end_of_turn>"
)
# Tokens that close a turn; every other token opens one (a header, a role, an answer, a think block).
_TOKEN_CLOSERS = ("im_end", "eot", "eos", "endoftext", "end_of_turn", "</s>", "</think>", "<</sys>>")

# Formatting tags whose content is ordinary text; the content of any other element is dropped with it.
_FORMATTING = {"b", "i", "u", "em", "strong", "span", "font", "small", "big", "sup", "sub", "p", "br", "div"}
_TAG = re.compile(r"</?([a-z][a-z0-9_:\-]{0,30})(?:\s[^<>\n]{0,80})?/?>")
_JSON_LABEL = re.compile(
    r"[\"'](?:label|level|result|answer|relevance|verdict|rating|score|judg(?:e)?ment)[\"']\s*[:=]\s*"
    r"(?:\"[^\"\n]{0,60}\"|'[^'\n]{0,60}'|[\w.]+)"
)
# A JSON object (a name never holds one): braces around a quoted key and a colon.
_JSON_OBJECT = re.compile(r"\{[^{}]{0,200}?[\"'][\w ]{1,30}[\"']\s*:[^{}]{0,200}\}")
# A fenced block (```…```): a name never holds one, so the fences go with what they hold. Three backticks, as
# markdown fences them: a doubled one is a typo in a question on train/ (一``熬夜就腰痛).
_FENCED = re.compile(r"`{3,}.*?`{3,}", re.S)
_DELIMITER = re.compile(r"`{3,}|<{2,}|>{2,}|(?:^|(?<=\n))\s*(?:-{3,}|={3,}|\*{3,})\s*(?=\n|$)|#{2,}|-{3,}")

# (Not "model" or "input": "Model: HEM-7121", "Input: 220V" are how devices are listed.)
_ROLES = r"system|user|assistant|human|ai|chatgpt|response|instruction|用户|助手|系统|客服|机器人|人类"
_ROLE_TURN = re.compile(rf"(?:^|(?<=[\s>\]}}）】]))(?:{_ROLES})\s*[:：]")

# The relevance vocabulary (English and Chinese). Stems, so relevance / relevancy / 相关性 go too.
# Chinese: the level phrases only (a bare 相关 is ordinary medical language: 甲状腺相关眼病).
_LEVEL = (r"(?:(?:highly|moderately|weakly|less|somewhat|very|fully|not|non|partially|totally)[\s_\-]*)?"
          r"(?:ir)?relevan(?:t|ce|cy)\b|(?:高度|中度|低度|非常|完全|比较|有点|部分|极其|极|强|弱|高|不)相关")
_LEVEL_RE = re.compile(_LEVEL)
_ANSWER_LABEL = re.compile(
    r"(?:final\s+answer|answer|output|result|label|level|levels|verdict|rating|classification|judg(?:e)?ment|"
    r"判定结果|判定|判断结果|结果|答案|回答|评级|评分|结论|相关性)\s*[\"']?\s*[:：=]"
)

# English triggers; word edges are lookarounds on letters, so a trigger joined straight to Chinese text still matches.
_EN_INSTRUCTION = re.compile(
    r"(?<![a-z])(?:ignore|disregard|forget|override|bypass|skip)(?![a-z])[^.!?\n]{0,40}?(?<![a-z])(?:instructions?|"
    r"rules?|prompts?|above|previous|prior|earlier|everything|context|query|guidelines?|system)(?![a-z])"
    r"|(?<![a-z])new\s+(?:instructions?|task|rules?|system\s+prompt)(?![a-z])"
    r"|(?<![a-z])you\s+(?:are|must|should|will)\s+(?:now|an?|always|rate|answer|output|say|classify|judge|label)(?![a-z])"
    r"|(?<![a-z])note\s+to\s+(?:the\s+)?(?:ai|model|assistant|judge|reviewer|llm|grader|rater|annotator|evaluator|bot)"
    r"(?![a-z])"
    r"|(?<![a-z])(?:answer|reply|respond|output|say|rate|label|classify|judge|mark)\s+(?:with|as|this|it|exactly|only)"
    r"(?![a-z])"
    r"|(?<![a-z])(?:always|must)\s+(?:rate|answer|say|output|label|classify|judge|mark)"
    r"|(?<![a-z])the\s+correct\s+(?:label|answer|level|rating)(?![a-z])"
    r"|(?<![a-z])end\s+of\s+(?:the\s+)?(?:data|input|text|context|product|document|prompt)(?![a-z])"
    r"|(?<![a-z])system\s+prompt(?![a-z])"
)
_ZH_INSTRUCTION = re.compile(
    r"(?:忽略|无视|忽视|不要理会|别管|跳过|不用管)[^。！？\n]{0,6}?(?:以上|之前|上面|前面|先前|上述|所有|全部|规则|指令|指示|要求|提示|约束)"
    r"|系统提示|系统指令|新指令|新的指令|新任务|以下为指令|你现在|你的任务|作为(?:评估|评审|审核|助手|ai)|评估员|评审员|审核员|打分员"
)
# An imperative counts only in a sentence that names a level ("USB直接输出 2A" is a charger, not an instruction).
_ZH_IMPERATIVE = re.compile(r"(?:请|必须|务必|一律|直接)(?:将|把)?[^。！？\n]{0,8}?(?:输出|判定|判为|评为|标记为|打分)")
# Words that introduce an injected sentence and go with it.
_LEAD_IN = re.compile(
    r"(?:注意|提示|重要|请|以下为|以下是|下面是|important|note|attention|p\.?s\.?|nb)\s*[:：!！]?\s*$"
)


def _bracket_aware_end(s: str, i: int, stop: Callable[[int], int | None]) -> int:
    """Scan from i for the first k where `stop(k)` gives an end, skipping bracketed spans; an unopened closing
    bracket always ends the scan (the span being cut never takes its enclosing bracket with it)."""
    depth = 0
    for k in range(i, len(s)):
        ch = s[k]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            if depth == 0:
                return k
            depth -= 1
        else:
            end = stop(k)
            if end is not None:
                return end
    return len(s)


def _latin_run_end(s: str, i: int) -> int:
    """End of the Latin run starting at i: the first CJK character, newline or unopened closing bracket."""
    return _bracket_aware_end(s, i, lambda k: k if _CJK.match(s[k]) or s[k] == "\n" else None)


def _sentence_end(s: str, i: int) -> int:
    """End of the sentence starting at i (its terminator included), stopping before an unopened closing bracket."""

    def terminator(k: int) -> int | None:
        ch = s[k]
        if ch in _TERMINATORS and (ch not in ".!?" or k + 1 == len(s) or not s[k + 1].isalnum()):
            return k + 1
        return None

    return _bracket_aware_end(s, i, terminator)


def _clause_end(s: str, i: int) -> int:
    """An English injection runs to the end of its Latin run; a Chinese one to the end of its sentence (judged by its
    first character after any spaces)."""
    k = i
    while k < len(s) and s[k] in " \t":
        k += 1
    return _sentence_end(s, i) if _CJK.match(s[k : k + 1] or " ") else _latin_run_end(s, i)


def _lead_in_start(s: str, a: int) -> int:
    """Extend a span left over a lead-in (注意：, IMPORTANT:, Note:) and the glue before it."""
    m = _LEAD_IN.search(s[max(0, a - 16) : a])
    if m:
        a = max(0, a - 16) + m.start()
    return _glue_left(s, a)


def _glue_left(s: str, a: int) -> int:
    while a > 0 and s[a - 1] in _LEFT_GLUE:
        a -= 1
    # One full stop that ended the merchant's text just before an injected English sentence ("name. IMPORTANT: ...");
    # an ellipsis is the merchant's own.
    if a > 1 and s[a - 1] == "." and s[a - 2] != ".":
        a -= 1
        while a > 0 and s[a - 1] in " \t":
            a -= 1
    return a


def _english_clause(s: str, a: int, b: int) -> tuple[int, int]:
    """Widen [a, b) to the plain English words around it ("The product above is highly relevant."): words of
    letters only, so a specification (SPF50+, 50ml) or Chinese text bounds it."""
    while True:
        k = a
        while k > 0 and s[k - 1] in " ,;:'\"-":
            k -= 1
        m = re.search(r"[a-z]+(?:'[a-z]+)?$", s[:k])
        if m is None or (m.start() > 0 and s[m.start() - 1].isalnum()):
            break
        a = m.start()
    while True:
        m = re.match(r"[ ,;:'\"\-]*([a-z]+(?:'[a-z]+)?)(?![a-z0-9])", s[b:])
        if not m:
            break
        b += m.end()
    m = re.match(r"[ ]*[.!?]", s[b:])
    if m:
        b += m.end()
    return _glue_left(s, a), b


# ------------------------------------------------------------------------------------------ query-aware words

_NEG_BEFORE = sorted([
    "不含有", "不含", "无添加", "不添加", "零添加", "无", "非", "不是", "并非", "绝非", "可替代", "可代替", "替代",
    "代替", "取代", "平替", "区别于", "不同于", "有别于", "除了", "不要", "拒绝", "告别",
    "without ", "no ", "non-", "non ", "not ", "instead of ", "substitute for ", "alternative to ", "replaces ",
    "replace ",
], key=len, reverse=True)
_NEG_AFTER = sorted(["平替", "替代品", "代替品", "除外", "以外", "无关", "-free", " free", " substitute",
                     " alternative", " dupe"], key=len, reverse=True)
_COMPARE_BEFORE = sorted([
    "效果媲美", "媲美", "堪比", "比肩", "对标", "类似于", "类似", "相当于", "胜过", "优于", "好过", "强过", "赛过",
    "不输", "超越", "like ", "similar to ", "better than ", "compared to ", "compared with ", "vs. ", "vs ", "versus ",
], key=len, reverse=True)
# (一样 is not one: 像针扎一样, X和Y一样吗 are how questions are asked.)
_COMPARE_AFTER = sorted(["升级版", "加强版", "增强版", "同效", "同等效果", "同级", "级别", " upgrade", " equivalent",
                         "-like"], key=len, reverse=True)
_COMPARE_TAIL = re.compile(r"^(?:的效果|效果|的|级别|水平)")
# Words a negated term takes with it (不含布洛芬成分, 代替布洛芬使用).
_NEG_TAIL = re.compile(r"^(?:成分|使用|用|类|之类|的)")
_NOT_NEGATION = ("是不是", "有无", "无论", "无法", "无需", "无须", "非常", "是非", "并无")
# SEO words only: natural words that can precede a term (适合, 推荐, 搜索) are left alone.
_MARKET_BEFORE = sorted([
    "大家都在搜", "都在搜", "热搜", "热卖", "热销", "爆款", "同款", "关键词", "关键字", "搜索词", "热词", "标签",
    "适用于", "tags", "tag", "keywords", "keyword", "search terms",
], key=len, reverse=True)
_MARKET_AFTER = sorted(["同款", "爆款", "热卖", "热搜", "热销"], key=len, reverse=True)
# Sales filler that may stand beside a stuffed term in brackets or lists.
_FILLER = {
    "正品", "包邮", "特价", "旗舰店", "官方", "官方旗舰", "热门", "推荐", "新款", "现货", "秒杀", "促销", "优惠",
    "热卖", "爆款", "同款", "直营", "自营", "药店", "大药房", "medicine", "pharmacy", "drug", "hot", "sale",
}
_SEP_RE = re.compile(r"[ \t,，、/|;；#:：]+")
_SUFFIXES = ("片", "胶囊", "颗粒", "药", "液", "膏", "丸", "散", "贴")
# How product-type keywords end (感冒药, 钙片, 维生素, 保健品, 口罩 ...).
_KEYWORD_ENDINGS = (*_SUFFIXES, "素", "品", "剂", "霜", "水", "露", "茶", "粉", "罩", "仪", "器", "贴")


@dataclass(frozen=True)
class _Query:
    """The query as the stuffing rules match it, and what counts as a mention of it: a piece of the query text that
    holds at least half of it, or one of its drug / brand names (布洛芬 of 布洛芬缓释胶囊). A shorter fragment is
    ordinary language (不是熬夜, 无咳嗽 in a question about a cough) and is left alone."""

    text: str
    names: frozenset[str]
    kb: KnowledgeBase | None = None
    keep_hijack: bool = True

    @classmethod
    def of(cls, query: str, kb: KnowledgeBase | None, keep_hijack: bool = True) -> _Query:
        text = "".join(c for c in unicodedata.normalize("NFKC", query).lower() if not _invisible(c)).strip()
        names: set[str] = set()
        if kb is not None:
            e = kb.extract(query)
            found = (_norm(x) for x in e.common_name + e.brand + e.ingredients)
            names = {n for n in found if len(n) >= 2 and n in text}
        return cls(text, frozenset(names), kb, keep_hijack)

    def hijack(self, span: str) -> bool:
        """Is the span a traffic-hijacking claim (X同款, X平替, 替代X) in the knowledge base's terms? Then it stays: the
        cheating check reads it and judges the listing (irrelevant, branch cheating), which beats hiding it. With the
        cheating check switched off nothing would read it, so it goes like any stuffing (`keep_hijack=False`)."""
        return self.keep_hijack and self.kb is not None and bool(self.kb.hijack_terms(span))

    def inside_name(self, s: str) -> Callable[[int], bool]:
        """Whether s[i] lies inside a name the knowledge base knows (非 of 盐酸安非他酮, 比 of 比索洛尔): a marker there
        is part of that name, not a negation or a comparison."""
        if self.kb is None:
            return lambda i: False
        spans = [(m.start, m.end) for m in self.kb.lexicon_matches(s)
                 if any(p.field in ("common_name", "brand") for p in m.payloads)]
        return lambda i: any(a <= i < b for a, b in spans)

    def substantial(self, piece: str) -> bool:
        return (len(piece) >= 2 or piece == self.text) and (2 * len(piece) >= len(self.text) or piece in self.names)

    def at(self, s: str, i: int) -> int:
        """Length of the longest mention starting at s[i] (0: none)."""
        n = 0
        while i + n < len(s) and s[i : i + n + 1] in self.text:
            n += 1
        for k in range(n, 0, -1):
            if self.substantial(s[i : i + k]):
                return k
        return 0

    def ending(self, s: str, k: int) -> int:
        """Start of the longest mention ending at s[k] (-1: none)."""
        for a in range(max(0, k - len(self.text)), k):
            if s[a:k] in self.text and self.substantial(s[a:k]):
                return a
        return -1

    def item(self, item: str, whole: bool = False) -> bool:
        """A list or bracket item that is a mention (a drug-form suffix allowed: 布洛芬片, 布洛芬胶囊); `whole`: only
        the whole query counts."""
        item = item.strip()
        for suffix in ("", *_SUFFIXES):
            if item.endswith(suffix):
                core = item[: len(item) - len(suffix)] if suffix else item
                if core == self.text or (not whole and core in self.text and self.substantial(core)):
                    return True
        return False


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().strip()


def _corroborated(kb: KnowledgeBase | None, mention: str, rest: str) -> bool:
    """Does the knowledge base find the rest of the name to name the same product as `mention` (the same drug, trade
    names resolved, or the same brand)? Then the mention is the product's own (布洛芬缓释胶囊（芬必得）), not stuffing.
    Sharing only a category or an efficacy is not enough: an unrelated listing can claim either."""
    if kb is None or not rest.strip():
        return False
    me, re_ = kb.enrich(kb.extract(mention)), kb.enrich(kb.extract(rest))
    cn_m = set(kb.resolve_common_names(me.brand + me.common_name).values()) | kb.canonical_common_names(me.common_name)
    cn_r = set(kb.resolve_common_names(re_.brand + re_.common_name).values()) | kb.canonical_common_names(
        re_.common_name)
    if cn_m & cn_r:
        return True
    # A trade name a source lists for the rest's drug too ([舒发泰]恩曲他滨替诺福韦片, where 舒发泰 resolves to another
    # drug of its maker's).
    if any(kb.lists_name_for(t.surface, cn_r) for t in kb.trade_names_in(mention)):
        return True
    return bool(me.brand and re_.brand and kb.same_brand(me.brand, re_.brand))


# --------------------------------------------------------------------------------------------------- the rules

def _template_tokens(sh: _Shadow) -> None:
    s = sh.text
    spans: list[tuple[int, int]] = []
    tokens = list(_TOKEN.finditer(s))
    for k, m in enumerate(tokens):
        tok = m.group(0)
        closer = any(c in tok for c in _TOKEN_CLOSERS)
        spans.append(m.span())
        if closer:
            continue
        # An opener: its turn runs to the next closer, else to the end of the text.
        end = len(s)
        for n in tokens[k + 1 :]:
            if any(c in n.group(0) for c in _TOKEN_CLOSERS):
                end = n.start()
                break
        spans.append((m.end(), end))
    if spans:
        spans = [(_glue_left(s, a), b) for a, b in spans]
    sh.cut(spans, "template_token")


def _markup(sh: _Shadow) -> None:
    s = sh.text
    spans: list[tuple[int, int]] = []
    for m in _TAG.finditer(s):
        name = m.group(1)
        spans.append((_glue_left(s, m.start()), m.end()))
        if m.group(0).startswith("</") or name in _FORMATTING or m.group(0).endswith("/>"):
            continue
        close = s.find(f"</{name}", m.end())
        if close >= 0:
            spans.append((m.end(), close))
    for m in _JSON_OBJECT.finditer(s):
        spans.append((_glue_left(s, m.start()), m.end()))
    for m in _JSON_LABEL.finditer(s):
        if _LEVEL_RE.search(m.group(0)) or re.search(r"\d", m.group(0)):
            spans.append((_glue_left(s, m.start()), m.end()))
    sh.cut(spans, "markup")


def _answer_labels(sh: _Shadow) -> None:
    s = sh.text
    spans = []
    for m in _ANSWER_LABEL.finditer(s):
        end = _clause_end(s, m.end()) if m.end() < len(s) else len(s)
        # "Levels:" and the like open a list: it runs to the end of the lines that follow.
        if re.match(r"levels?|labels?", m.group(0)):
            end = len(s)
        if _LEVEL_RE.search(s[m.end() : end]) or re.match(r"levels?|labels?", m.group(0)):
            spans.append((_lead_in_start(s, m.start()), end))
    sh.cut(spans, "answer_label")


def _role_turns(sh: _Shadow) -> None:
    s = sh.text
    spans = []
    for m in _ROLE_TURN.finditer(s):
        nl = s.find("\n", m.end())
        # A turn's text may start on the next line ("### Response:\nhighly_relevant").
        if nl >= 0 and not s[m.end() : nl].strip():
            nl = s.find("\n", nl + 1)
        spans.append((_glue_left(s, m.start()), len(s) if nl < 0 else nl))
    sh.cut(spans, "role_turn")


def _instructions(sh: _Shadow) -> None:
    s = sh.text
    spans = []
    for pat in (_EN_INSTRUCTION, _ZH_INSTRUCTION, _ZH_IMPERATIVE):
        for m in pat.finditer(s):
            a = _lead_in_start(s, m.start())
            b = _latin_run_end(s, m.start()) if pat is _EN_INSTRUCTION else _sentence_end(s, m.start())
            if pat is not _ZH_IMPERATIVE or _LEVEL_RE.search(s[m.start() : b]):
                spans.append((a, b))
    sh.cut(spans, "instruction")


def _judgment_words(sh: _Shadow) -> None:
    s = sh.text
    spans = []
    for m in _LEVEL_RE.finditer(s):
        if _CJK.match(m.group(0)[0]):
            spans.append((_glue_left(s, m.start()), m.end()))
        else:
            spans.append(_english_clause(s, m.start(), m.end()))
    sh.cut(spans, "judgment_words")


def _padding(sh: _Shadow) -> None:
    s = sh.text
    # A filler run hides what follows it from a listing page: the run goes, and after the head of the name, so does
    # everything behind it. A run that ends the name hides nothing and stays.
    filler = re.search(rf"[\s\W_]{{{_FILLER_RUN},}}", s)
    if filler and re.search(r"\w", s[filler.end() :]):
        sh.cut([(filler.start(), len(s)) if filler.start() > 0 else filler.span()], "padding")
    s = sh.text
    # A phrase repeated many times: at the head, the repetition goes; after it, the rest of the name goes too. A
    # repetition starts where a word does (the rotation "吗 西瓜…" of "西瓜…吗" is the same run one character early).
    unit = rf"(\S.{{0,23}}?)(?:\s*\1){{{_REPEATS - 1},}}"
    rep = re.search(rf"(?:^|(?<=[\s,，、/|;；])){unit}", s) or re.search(unit, s)
    if rep and len(re.sub(r"[\W_]", "", rep.group(1))) >= 2:
        end = rep.end() if rep.start() == 0 else len(s)
        sh.cut([(_glue_left(s, rep.start()), end)], "repetition")


def _cap(sh: _Shadow, max_chars: int) -> None:
    if len(sh.text) > max_chars:
        sh.cut([(max_chars, len(sh.text))], "length")


def _query_stuffing(sh: _Shadow, query: str, kb: KnowledgeBase | None, keep_hijack: bool) -> None:
    q = _Query.of(query, kb, keep_hijack)
    if not q.text:
        return
    _negations(sh, q)
    _comparisons(sh, q)
    _marketing(sh, q, kb)
    _brackets(sh, q, kb)
    _lists(sh, q, kb)
    _repeated_query(sh, q)
    _appended(sh, q, kb)


def _marker_hits(s: str, markers: Sequence[str]) -> Iterator[re.Match[str]]:
    """Every occurrence of each marker in s, marker by marker; an ASCII marker only where it starts a word (the
    "top" of "laptop" is not a marker)."""
    for marker in markers:
        for m in re.finditer(re.escape(marker), s):
            if not (marker.isascii() and m.start() > 0 and s[m.start() - 1].isalnum()):
                yield m


def _comparisons(sh: _Shadow, q: _Query) -> None:
    """Comparison and kinship claims (媲美X, 堪比X, 比X更好, X升级版, 与X同效, better than X): the product says it is
    like X, not that it is X. Added after the held-out family (comparison claims) showed the gap; see docs/security.md,
    "Prompt injection and query stuffing"."""
    s = sh.text
    spans = []
    for m in _marker_hits(s, _COMPARE_BEFORE):
        n = q.at(s, m.end())
        if n and s[m.start() : m.end() + n] not in q.text:
            tail = _COMPARE_TAIL.match(s[m.end() + n :])
            spans.append((m.start(), m.end() + n + (tail.end() if tail else 0)))
    in_name = q.inside_name(s)
    for m in re.finditer("比", s):  # 比X更好 / 比X还强: only with the comparative after it (比较, 比如 are words)
        if in_name(m.start()):
            continue
        n = q.at(s, m.end())
        more = re.match(r"(?:更|还|要)[\w]{0,4}", s[m.end() + n :]) if n else None
        if more and s[m.start() : m.end() + n] not in q.text:
            spans.append((m.start(), m.end() + n + more.end()))
    for marker in _COMPARE_AFTER:
        for m in re.finditer(re.escape(marker), s):
            a = q.ending(s, m.start())
            if a >= 0 and s[a : m.end()] not in q.text:
                if a > 0 and s[a - 1] in "与和跟同":
                    a -= 1
                spans.append((a, m.end()))
    sh.cut([(_glue_left(s, a), b) for a, b in spans if not q.hijack(s[a:b])], "compared_query")


def _negations(sh: _Shadow, q: _Query) -> None:
    s = sh.text
    spans = []
    in_name = q.inside_name(s)
    for i in range(len(s)):
        for marker in _NEG_BEFORE:
            if not s.startswith(marker, i) or (marker.isascii() and i > 0 and s[i - 1].isalnum()):
                continue
            if in_name(i):
                break
            if any(s.startswith(w, k) for w in _NOT_NEGATION for k in range(max(0, i - 2), i + 1)
                   if k <= i < k + len(w)):
                break
            j = i + len(marker)
            n = q.at(s, j)
            if n and s[i : j + n] not in q.text:  # 非处方 in a query for 非处方药 is the query, not a negation of it
                tail = _NEG_TAIL.match(s[j + n :])
                spans.append((i, j + n + (tail.end() if tail else 0)))
            break
    for marker in _NEG_AFTER:
        for m in re.finditer(re.escape(marker), s):
            a = q.ending(s, m.start())
            if a >= 0 and s[a : m.end()] not in q.text:
                spans.append((a, m.end()))
    sh.cut([(_glue_left(s, a), b) for a, b in spans if not q.hijack(s[a:b])], "negated_query")


def _marketing(sh: _Shadow, q: _Query, kb: KnowledgeBase | None) -> None:
    s = sh.text
    spans = []
    for m in _marker_hits(s, _MARKET_BEFORE):
        j = m.end()
        while j < len(s) and s[j] in " \t:：\"'“”":
            j += 1
        n = q.at(s, j)
        if not n or s[m.start() : j + n] in q.text:
            continue
        end = _list_end(s, j + n)
        if not _corroborated(kb, s[j : j + n], s[: m.start()] + s[end:]):
            spans.append((m.start(), end))
    for marker in _MARKET_AFTER:
        for m in re.finditer(re.escape(marker), s):
            a = q.ending(s, m.start())
            if a >= 0 and s[a : m.end()] not in q.text and not _corroborated(kb, s[a : m.start()],
                                                                              s[:a] + s[m.end() :]):
                spans.append((a, m.end()))
    sh.cut([(_glue_left(s, a), b) for a, b in spans if not q.hijack(s[a:b])], "stuffed_query")


def _list_end(s: str, i: int) -> int:
    """End of the keyword list continuing at i (separator-joined keywords), else i."""
    end = i
    for m in re.finditer(r"[ \t,，、/|;；]+([^\s,，、/|;；]{1,12})", s[i:]):
        if i + m.start() != end or not _keyword(m.group(1)):
            break
        end = i + m.end()
    return end


def _keyword(item: str) -> bool:
    """A search keyword rather than a phrase: sales filler, a product-type word (退烧药, 钙片, 保健品) or one Latin
    word."""
    item = item.strip()
    return bool(item) and (item in _FILLER or re.fullmatch(r"[a-z]{3,20}", item) is not None or (
        len(item) <= 6 and not re.search(r"\d", item) and item.endswith(_KEYWORD_ENDINGS)))


def _brackets(sh: _Shadow, q: _Query, kb: KnowledgeBase | None) -> None:
    """The whole query in brackets, alone or with sales filler, adds nothing the product is (the marketplace trick of
    copying the search term into the title). Kept: a bracket that explains a bare trade name before it (太罗（罗格列酮钠
    片）), a maker's brand tag at the head (【同仁堂】六味地黄丸), and a term the knowledge base finds the rest of the
    name to be about too (芬必得 is 布洛芬)."""
    s = sh.text
    spans = []
    for m in re.finditer(r"[(（【\[「『〔《〈]([^()（）【】\[\]「」『』〔〕《》〈〉]{1,60})[)）】\]」』〕》〉]", s):
        items = [t for t in _SEP_RE.split(m.group(1)) if t]
        mentions = [t for t in items if q.item(t, whole=True)]
        if not mentions or not all(q.item(t, whole=True) or t in _FILLER for t in items):
            continue
        head, outside = s[: m.start()].strip(), s[: m.start()] + s[m.end() :]
        if any(t in outside for t in mentions):
            continue  # the name says it outside the brackets too: nothing is added
        if 0 < len(head) <= 6 and not re.search(r"\s", head):
            continue
        if not head and kb is not None and kb.extract(mentions[0]).brand:
            continue
        if not _corroborated(kb, " ".join(mentions), outside):
            spans.append((_glue_left(s, m.start()), m.end()))
    sh.cut(spans, "stuffed_query")


def _lists(sh: _Shadow, q: _Query, kb: KnowledgeBase | None) -> None:
    """A mention heading a keyword list that runs to the end of the name: three or more separator-joined items, each
    a mention or a keyword (感冒药 退烧药 消炎药; 维生素/钙片/保健品)."""
    s = sh.text
    for sep in ("/", "|", "，", ",", "、", "；", ";", " "):
        parts = s.split(sep)
        for k in range(1, len(parts) - 2):
            tail = [t for t in parts[k:] if t.strip()]
            if len(tail) < 3 or not q.item(parts[k]):
                continue
            if not all(q.item(t) or _keyword(t) for t in tail):
                continue
            start = len(sep.join(parts[:k]))
            if _corroborated(kb, parts[k], s[:start]):
                return
            sh.cut([(_glue_left(s, start), len(s))], "stuffed_query")
            return


def _repeated_query(sh: _Shadow, q: _Query) -> None:
    s = sh.text
    if len(q.text) >= 2 and s.count(q.text) >= _QUERY_REPEATS:
        sh.cut([(_glue_left(s, m.start()), m.end()) for m in re.finditer(re.escape(q.text), s)], "stuffed_query")


# ------------------------------------------------------------------------------------ match claims (issue 22)

# Where a Chinese claim's clause ends.
_CLAIM_BOUND = "。！？!?\n，,；;：:|"
# The claim's own lead-in: a label (温馨提示：), the product as its subject (本品, 这款), the copula or the preposition
# (正是, 就是, 与, 和).
_ZH_CLAIM_LABEL = r"(?:(?:温馨提示|友情提示|商品说明|提示|说明|注意)\s*[:：]?\s*)?"
_ZH_CLAIM_LEAD = (rf"{_ZH_CLAIM_LABEL}"
                  r"(?:(?:本品|本商品|此商品|该商品|本产品|此产品|该产品|这款|此款|本款|这个|这就|它)\s*)?"
                  r"(?:就|正|即|便|恰|恰好|刚好)?(?:是|为|与|和|跟|同)?\s*")
# "what you searched for": the user's search as the object of the claim (您搜索的, 你要找的, 您需要的).
_ZH_SEARCHED = (r"(?:您|你|亲)(?:所|正在|刚刚|刚才|想|要)?"
                r"(?:搜索|搜寻|搜|要找|寻找|在找|找|查找|查询|检索|需要|想要|要买|想买)的")
_ZH_VERDICT = (r"(?:完全|精准|精确|百分百|100%|百分之百|绝对|高度|一模一样)?\s*(?:匹配|一致|相符|吻合|相同|对应)"
               r"|就是(?:本品|本商品|这款|此款|它|我们|这个|我家)")
_ZH_CLAIMS = (
    # 本品与您搜索的X完全匹配, 您搜索的X就是本品, 与您搜索的X一致: up to the verdict
    re.compile(rf"{_ZH_CLAIM_LEAD}{_ZH_SEARCHED}[^{_CLAIM_BOUND}]{{0,30}}?(?:{_ZH_VERDICT})"),
    # 正是您要找的X: to the end of its clause (or the first space after the object)
    re.compile(rf"{_ZH_CLAIM_LEAD}{_ZH_SEARCHED}\s*[^\s{_CLAIM_BOUND}]*"),
    # 与搜索词完全匹配, 和您的搜索结果一致
    re.compile(rf"{_ZH_CLAIM_LEAD}(?:您的|你的)?(?:搜索|检索)(?:词|结果|关键词|内容|需求)?\s*(?:{_ZH_VERDICT})"),
    # 此商品即为X, 本品就是X: the product says it is what was searched
    re.compile(rf"{_ZH_CLAIM_LABEL}(?:本品|本商品|此商品|该商品|本产品|此产品|该产品|这款|此款|本款)\s*(?:即为|就是|正是|即是|便是)"
               rf"\s*[^\s{_CLAIM_BOUND}]*"),
    # 搜X就选本品
    re.compile(rf"(?:想|要)?搜(?:索)?[^{_CLAIM_BOUND}]{{0,20}}?就(?:选|买|认准|来|找|拍|下单|购买)"
               r"(?:本品|本店|我们|这款|这里|我家|它|我)?"),
)
# 100%匹配, 精准匹配, X 官方正品 完全匹配: a bare match verdict, only where it ends its clause (完全匹配的几率 is
# ordinary language); the query and sales filler before it go with it.
_ZH_MATCH = re.compile(r"(?:(?:完全|精准|精确|百分百|100%|百分之百|高度|智能|绝对)\s*匹配(?:度)?"
                       r"|匹配度\s*(?:100%|百分百|百分之百|最高))"
                       r"(?=$|[\s。！？!?，,；;：:|)）】\]」』])")
_EN_CLAIMS = re.compile(
    r"(?<![a-z])(?:(?:this|it|that)(?:\s+(?:product|item|listing))?\s*(?:is|'s)\s+)?(?:an?\s+|the\s+)?"
    r"(?:exact|perfect|precise|100%|best|complete|full|direct|total)\s*-?\s*match(?:es|ed|ing)?(?![a-z])"
    r"|(?<![a-z])(?:match(?:es|ed|ing)?|fits?)\s+(?:exactly\s+)?(?:your|the|what\s+you)\s+(?:search(?:ed)?|query|"
    r"keywords?|search\s+terms?)(?![a-z])"
    r"|(?<![a-z])(?:(?:this|it)\s*(?:is|'s)\s+)?(?:exactly\s+)?(?:the|what)\s+[^.!?\n]{0,40}?you(?:'re|\s+are|\s+were)?"
    r"\s+(?:searched|searching|search|looked|looking|look|want|wanted|need|needed)(?:\s+for)?(?![a-z])"
    r"|(?<![a-z])(?:you\s+searched\s+for|as\s+searched)(?![a-z])"
)
# Sales filler a bare match verdict may carry (X 官方正品 完全匹配).
_CLAIM_FILLER = sorted({*_FILLER, "官方正品", "保证", "保障", "品质", "放心购"}, key=len, reverse=True)


def _match_claims(sh: _Shadow, q: _Query | None) -> None:
    """A claim that the product matches the search (本品与您搜索的X完全匹配, 正是您要找的X, 搜X就选本品, 100%匹配,
    exact match for X, matches your search): the listing says what the judge is to conclude. The claim goes with its
    clause, and the query it names with it. Runs with or without the query (a claim needs no X to be one)."""
    s = sh.text
    spans = []
    for pat in _ZH_CLAIMS:
        spans += [(_lead_in_start(s, m.start()), m.end()) for m in pat.finditer(s) if m.group(0).strip()]
    for m in _ZH_MATCH.finditer(s):
        a = m.start()
        while True:  # left over spaces, sales filler and the query (X 官方正品 完全匹配)
            k = a
            while k > 0 and s[k - 1] in " \t-,，、":
                k -= 1
            word = next((w for w in _CLAIM_FILLER if s.endswith(w, 0, k)), None)
            start = k - len(word) if word else (_mention_ending(q, s, k) if q else -1)
            if start < 0 or start == k:
                break
            a = start
        spans.append((_glue_left(s, a), m.end()))
    for m in _EN_CLAIMS.finditer(s):
        spans.append((_glue_left(s, m.start()), _claim_tail(s, m.end(), q)))
    sh.cut(spans, "match_claim")


def _claim_tail(s: str, k: int, q: _Query | None) -> int:
    """End of an English claim: its Latin run, and the query it names even in Chinese (exact match for 感冒灵颗粒)."""
    for _ in range(4):
        k0 = k
        k = _latin_run_end(s, k)
        j = k
        while j < len(s) and s[j] in " \t:：-":
            j += 1
        n = _mention_at(q, s, j) if q else 0
        if n:
            k = j + n
        if k == k0:
            break
    return k


# ------------------------------------------------------------------------------------ appended query (issue 22)

# Dosage-form words a drug's name ends with (the seed's dosage-form variants), longest first.
_FORM_WORDS = sorted({
    "片", "片剂", "薄膜衣片", "糖衣片", "缓释片", "控释片", "肠溶片", "分散片", "咀嚼片", "泡腾片", "含片", "口含片",
    "胶囊", "软胶囊", "硬胶囊", "缓释胶囊", "肠溶胶囊", "颗粒", "颗粒剂", "冲剂", "泡腾颗粒", "口服液", "合剂",
    "口服溶液", "混悬液", "混悬剂", "干混悬剂", "糖浆", "气雾剂", "喷雾剂", "喷剂", "软膏", "乳膏", "凝胶", "膏",
    "膏剂", "贴", "贴剂", "贴膏", "膏药", "滴眼液", "眼药水", "滴眼剂", "眼膏", "滴鼻液", "滴耳液", "滴丸", "丸",
    "水丸", "蜜丸", "大蜜丸", "浓缩丸", "散", "散剂", "酊", "酊剂", "滴剂", "注射液", "栓", "栓剂", "搽剂", "洗剂",
    "正气水", "液", "剂",
}, key=len, reverse=True)
# What else ends a product's name (a non-drug product: 避孕套, 口罩, 血压计, 防晒霜, 创可贴).
_PRODUCT_ENDINGS = (*_FORM_WORDS, "套", "罩", "仪", "器", "计", "霜", "露", "棉", "垫", "巾", "裤", "贴")
# What separates a product's name from text appended to it.
_APPEND_SEP = " \t|/,，、;；:：+·~-_"
# Without a knowledge base: a pack size or strength (the seed's specification pattern, simplified).
_SPEC = re.compile(r"\d+(?:\.\d+)?\s*(?:mg|g|ml|μg|ug|mcg|kg|iu|万单位|单位|克|毫克|毫升|片|粒|袋|支|贴|丸|瓶|"
                   r"盒|板|包|枚|只|揿|喷|张)(?:\s*[*×x]\s*\d+(?:\.\d+)?\s*(?:mg|g|ml|片|粒|袋|支|贴|丸|瓶|盒|板|包|枚|只|张)?)*"
                   r"(?:\s*/\s*(?:盒|瓶|袋|板|支|包|罐|张))?")
# A question or an article title, not a product listing (KUAKE titles: 感冒灵颗粒和感冒清热颗粒哪个好, 布洛芬缓释胶囊
# 说明书): the appended-query rule leaves such text alone.
_NOT_A_LISTING = re.compile(
    r"[?？]|吗|呢|么|怎|如何|为何|为啥|什么|哪|是否|能否|能不能|可不可以|可以|有没有|会不会|多少|多久|第几"
    r"|几[天次片粒岁个号代种年月周]|区别|好不好|有用|有效|副作用|作用|功效|用法|用量|说明书|禁忌|注意|原因|还是|一起"
    r"|同时|之后|以后|百科|知道|问答|医生|网站|_|我|你|吃了|喝了|用了|服了|吃过|用过|服用"
)


def _mention_at(q: _Query, s: str, i: int) -> int:
    """Length of the mention of the query starting at s[i], with a dosage-form suffix it carries (0: none)."""
    n = q.at(s, i)
    if n:
        n += next((len(w) for w in _FORM_WORDS if s.startswith(w, i + n)), 0)
    return n


def _mention_ending(q: _Query, s: str, k: int) -> int:
    """Start of a mention of the query ending at s[k] (a dosage-form suffix allowed), else -1."""
    for w in ("", *_FORM_WORDS):
        if s.endswith(w, 0, k):
            a = q.ending(s, k - len(w))
            if a >= 0:
                return a
    return -1


def _names_a_product(q: _Query, kb: KnowledgeBase | None, core: str) -> bool:
    """Is this mention a product's name (what a merchant appends), not a fragment of a longer query (治脚气 of
    盐酸治脚气, 一大一小 of 婴儿睾丸一大一小)? The whole query, one of its drug / brand names, or (with the knowledge
    base) a piece in which it finds a drug name or a brand; without it, a leading piece of the query."""
    if core == q.text or any(n in core for n in q.names):
        return True
    if kb is not None:
        e = kb.extract(core)
        return bool(e.common_name or e.brand)
    return q.text.startswith(core)


def _query_span(q: _Query, core: str) -> tuple[int, int]:
    k = q.text.find(core)
    return (k, k + len(core)) if k >= 0 else (0, len(q.text))


def _said_before(q: _Query, s: str, i: int, core: str) -> bool:
    """Does the name before s[i] already mention another part of the query (蒲地蓝消炎片，复方北豆根氨酚那敏片 for the
    query 复方北豆根氨酚那敏片 蒲地蓝: the name lists what the query lists), or all of what this mention says (阿莫西林
    胶囊 阿莫西林颗粒 0.125g*12袋 for 阿莫西林胶囊: the query heads the name, and cutting the product behind it would
    leave only the query)? Then nothing was appended here."""
    a, b = _query_span(q, core)
    for k in range(i):
        n = q.at(s, k)
        if n:
            c, d = _query_span(q, s[k : k + n])
            if d <= a or c >= b or (c <= a and b <= d):
                return True
    return False


def _specs(s: str, kb: KnowledgeBase | None) -> list[tuple[int, int]]:
    """Specifications in s (the knowledge base's patterns, else _SPEC), with the 装 of a pack count (12只装)."""
    found = [(a, b) for a, b, _ in kb.specifications(s)] if kb is not None else [m.span() for m in _SPEC.finditer(s)]
    return [(a, b + 1 if s.startswith("装", b) else b) for a, b in found]


def _name_chars(text: str) -> int:
    return len(re.findall(r"[a-z]|[\u3400-\u9fff]", re.sub(r"[(（【\[][^)）】\]]*[)）】\]]", "", text)))


def _ends_name(t: str, word: str) -> bool:
    """Does t end with this dosage-form word or product noun as a name's end, not as a count (吃一片, 3片)? Digits
    behind a Latin letter are the name's own (碳酸钙D3片, 辅酶Q10胶囊)."""
    return t.endswith(word) and not re.search(r"(?:(?<![A-Za-z0-9])[0-9]+|[一二三四五六七八九十两几半百千])$",
                                              t[: len(t) - len(word)])


def _appendix_start(s: str, i: int, specs: list[tuple[int, int]]) -> int | None:
    """Where the text appended to the product's name starts, if the name has ended before the mention at s[i]
    (None: the mention is part of the name). The name has ended after its specification (马应龙麝香痔疮膏 10g |感冒灵
    颗粒; a short word glued before the mention goes with it: 10g 适合感冒灵颗粒), after a separator behind a complete
    product name (马应龙麝香痔疮膏 | 感冒灵颗粒: a dosage-form word or another product noun ends it) or behind a
    bracketed tag that follows the name, or glued straight to the end of a drug's name (马应龙麝香痔疮膏感冒灵颗粒) or
    of a specification (10g感冒灵颗粒)."""
    t = s[:i].rstrip(_APPEND_SEP)
    separated = len(t) < i
    if not separated and i > 0 and not (_CJK.match(s[i - 1]) or s[i - 1].isalnum() or s[i - 1] in _CLOSE):
        return None
    # After the specification: the head (a name before the spec) has ended with it.
    for a, b in specs:
        if b <= len(t) and (separated or b == i) and _name_chars(s[:a]) >= 2:
            return i
    if not separated:
        # Glued: straight behind a drug's dosage-form word (the name before it at least two characters) or another
        # product noun (a name of three characters or more: 杜蕾斯避孕套).
        token = t.split(" ")[-1]
        for w in _FORM_WORDS:
            if _ends_name(t, w) and _name_chars(token[: len(token) - len(w)]) >= 2:
                return i
        if any(_ends_name(t, w) for w in _PRODUCT_ENDINGS) and _name_chars(token) >= 3:
            return i
        # A short word between a specification (or a separator behind it) and the mention: 10g 适合感冒灵颗粒.
        w = i
        while w > 0 and i - w < 4 and _CJK.match(s[w - 1]):
            w -= 1
        if w < i and (w == 0 or not _CJK.match(s[w - 1])):
            if any(b <= w and _name_chars(s[:a]) >= 2 and not s[b:w].strip(_APPEND_SEP) for a, b in specs):
                return w
        return None
    # Behind a separator: the token before it ends a product's name, or is a bracket tag behind the name.
    token = re.split(r"[\s|/,，、;；:+·~]", t)[-1]
    if any(_ends_name(t, w) for w in _PRODUCT_ENDINGS) and _name_chars(token) >= 3:
        return i
    if t and t[-1] in _CLOSE:
        opened = max(t.rfind(o) for o in _OPEN)
        if opened > 0 and _name_chars(t[:opened]) >= 2:
            return i
    return None


def _adds_nothing(kb: KnowledgeBase | None, mention: str, rest: str) -> bool:
    """Does the rest of the name already say everything the mention says? Then it is the product's own name repeated
    ([999] 感冒灵颗粒 10g*9袋 感冒灵) and stays. With the knowledge base: every drug name, brand, dosage form,
    efficacy and category the mention names is named by the rest too (修正消栓通络片 behind [康恩贝]消栓通络片 adds a
    brand; 布洛芬缓释胶囊 behind 布洛芬混悬液 a dosage form: both go)."""
    if mention in rest:
        return True
    if kb is None or not rest.strip():
        return False
    me, re_ = kb.enrich(kb.extract(mention)), kb.enrich(kb.extract(rest))
    cn_m = set(kb.resolve_common_names(me.common_name).values()) | kb.canonical_common_names(me.common_name)
    cn_r = set(kb.resolve_common_names(re_.brand + re_.common_name).values()) | kb.canonical_common_names(
        re_.common_name)
    said = False
    if me.common_name:
        if not cn_m <= cn_r:
            return False
        said = True
    if me.brand:
        # Another maker's brand adds one; a bare brand behind a name that names none may be the product's own maker
        # (感冒灵颗粒 10g 999).
        if (re_.brand and not kb.same_brand(me.brand, re_.brand)) or (not re_.brand and me.common_name):
            return False
        said = True
    if me.dosage_form:
        if not (re_.dosage_form and kb.dosage_forms_equal(me.dosage_form, re_.dosage_form)):
            return False
    if me.efficacy:
        if not kb.efficacy_groups_of(me.efficacy) <= kb.efficacy_groups_of(re_.efficacy):
            return False
        said = True
    if me.category:
        if not set(me.category) <= set(re_.category):
            return False
        said = True
    return said


# Chinese written letter-spaced (布 洛 芬): a disguise, never how a product's name is written.
_SPACED = re.compile(r"(?<![\u3400-\u9fff0-9a-z])[\u3400-\u9fff0-9a-z](?: [\u3400-\u9fff0-9a-z]){2,}"
                     r"(?![\u3400-\u9fff0-9a-z])")


def _appended(sh: _Shadow, q: _Query, kb: KnowledgeBase | None) -> None:
    """The query appended behind the product's name (_cut_appended), also when it is letter-spaced (… 100片 布 洛 芬):
    a spaced run is read without its spaces, and kept as written unless the query in it is cut."""
    if _cut_appended(sh, q, kb):
        return
    for m in list(_SPACED.finditer(sh.text)):
        if len(_CJK.findall(m.group(0))) < 2:
            continue
        trial = sh.copy()
        trial.cut([(k, k + 1) for k in range(m.start(), m.end()) if sh.text[k] == " "], None)
        if _cut_appended(trial, q, kb):
            sh.adopt(trial)
            return


def _cut_appended(sh: _Shadow, q: _Query, kb: KnowledgeBase | None) -> bool:
    """The query appended behind the product's own name (马应龙麝香痔疮膏 10g 感冒灵颗粒, … | 感冒灵颗粒,
    马应龙麝香痔疮膏感冒灵颗粒): cut with what trails it, a specification right behind it excepted (it is the
    product's). Kept: the query heading the name (it is the product's own name), a mention the rest of the name already
    says (_adds_nothing), and a mention behind text that reads as a question or an article title (_NOT_A_LISTING;
    what the appendix itself says does not count: 马应龙麝香痔疮膏 10g 感冒灵颗粒吗 is still a listing)."""
    done = False
    for _ in range(4):
        s = sh.text
        specs = _specs(s, kb)
        cut = None
        for i in range(1, len(s)):
            n = _mention_at(q, s, i)
            # (A mention that continues the query begun before it is the head's own text: 天津血液|病研究所.)
            if not n or s[i - 1 : i + q.at(s, i)] in q.text:
                continue
            start = _appendix_start(s, i, specs)
            if start is None or _NOT_A_LISTING.search(s[:start]):
                continue
            core = s[i : i + q.at(s, i)]
            if not _names_a_product(q, kb, core) or _said_before(q, s, i, core):
                continue
            after = i + n
            k = after
            while k < len(s) and s[k] in " \t":
                k += 1
            end = next((a for a, _ in specs if a == k and k > after), len(s))
            if _adds_nothing(kb, s[i : i + n], s[:i] + s[end:]):
                continue
            b = after if end < len(s) else end
            if q.hijack(s[max(0, start - 4) : b]):
                continue  # 代替X, X平替 behind the name: left for the cheating check, as the other rules leave it
            a = start
            while a > 0 and s[a - 1] in _APPEND_SEP:
                a -= 1
            cut = (a, b)
            break
        if cut is None or not sh.cut([cut], "appended_query"):
            break
        done = True
    return done


def _tidy(sh: _Shadow) -> None:
    """After a removal: brackets left empty and dangling separators go (an unchanged name is never tidied)."""
    for _ in range(3):
        sh.sub(re.compile(r"[(（【\[「『〔《〈{][\s,，、/|;；:：\-_\"'.]*[)）】\]」』〕》〉}]"), None)
    s = sh.text
    spans = []
    # closers without an opener and openers without a closer
    stack: list[tuple[str, int]] = []
    pairs = dict(zip(_CLOSE, _OPEN, strict=True))
    for k, ch in enumerate(s):
        if ch in _OPEN:
            stack.append((ch, k))
        elif ch in _CLOSE:
            if stack and stack[-1][0] == pairs[ch]:
                stack.pop()
            else:
                spans.append((k, k + 1))
    spans += [(k, k + 1) for _, k in stack]
    sh.cut(spans, None)
    s = sh.text
    junk = " \t\n\"'{}:;,|=`#*~-–—/\\"
    a, b = 0, len(s)
    while a < b and s[a] in junk:
        a += 1
    while b > a and s[b - 1] in junk:
        b -= 1
    sh.cut([(0, a), (b, len(s))], None)
    sh.sub(re.compile(r"(?<=\s)\s+"), None)


_PIPELINE: tuple[Callable[[_Shadow], None], ...] = (
    _template_tokens, _markup,
    lambda sh: sh.sub(_FENCED, "delimiter", lambda m: (_glue_left(sh.text, m.start()), m.end())),
    lambda sh: sh.sub(_DELIMITER, "delimiter", lambda m: (_glue_left(sh.text, m.start()),
                                                                                       m.end())),
    _role_turns, _answer_labels, _instructions, _judgment_words,
    lambda sh: sh.sub(re.compile(r"(?:^|(?<=\s))#[^\s#]+"), "hashtag", lambda m: (_glue_left(sh.text, m.start()),
                                                                                    m.end())),
    _padding,
)


def clean_merchant_text(text: str, *, query: str | None = None, kb: KnowledgeBase | None = None,
                        max_chars: int | None = MAX_JUDGED_NAME_CHARS, empty: str = EMPTY_NAME,
                        keep_hijack: bool = True) -> Cleaned:
    """The merchant's text with injected instructions and (given the query) stuffed search terms removed.

    `kb` lets the stuffing rules keep a bracketed or listed term the rest of the name is about too. A text that held
    nothing but injection becomes `empty`.
    """
    sh = _Shadow(text)
    for rule in _PIPELINE:
        rule(sh)
    _match_claims(sh, _Query.of(query, kb, keep_hijack) if query else None)
    if max_chars is not None:
        _cap(sh, max_chars)
    if query:
        _query_stuffing(sh, query, kb, keep_hijack)
    removed = (["invisible"] if sh.invisible else []) + sh.removed
    if sh.removed:
        _tidy(sh)
    out = sh.result()
    if not out.strip():
        out = empty
    return Cleaned(out, tuple(removed))


@dataclass
class ProductText:
    """The sanitised fields of one product and what was removed from any of them (kinds, deduplicated)."""

    name: str
    cpv: dict[str, str]
    category: str | None
    removed: list[str] = field(default_factory=list)


def clean_product_fields(name: str, cpv: dict[str, str], category: str | None, *, query: str | None = None,
                         kb: KnowledgeBase | None = None, keep_hijack: bool = True) -> ProductText:
    """Every merchant-written field of a product: the name against the query, attributes and category on their own
    (an attribute that held only injection is dropped)."""
    removed: list[str] = []

    def note(kinds: Iterable[str]) -> None:
        removed.extend(k for k in kinds if k not in removed)

    n = clean_merchant_text(name, query=query, kb=kb, keep_hijack=keep_hijack)
    note(n.removed)
    out_cpv: dict[str, str] = {}
    for key, value in cpv.items():
        k = clean_merchant_text(key, max_chars=None, empty="")
        v = clean_merchant_text(value, max_chars=None, empty="")
        note(k.removed)
        note(v.removed)
        if k.text and v.text:
            out_cpv[k.text] = v.text
    cat = None
    if category is not None:
        c = clean_merchant_text(category, max_chars=None, empty="")
        note(c.removed)
        cat = c.text or None
    return ProductText(n.text, out_cpv, cat, removed)


def clean_product(product: Product, query: str, kb: KnowledgeBase | None = None, *,
                  keep_hijack: bool = True) -> Product:
    """The product as armed judges it: its merchant-written fields sanitised against this query, with what was removed
    recorded on it (`Product.sanitised`). An untouched product comes back as it was."""
    f = clean_product_fields(product.name, product.cpv, product.category, query=query, kb=kb,
                             keep_hijack=keep_hijack)
    if not f.removed and (f.name, f.cpv, f.category) == (product.name, product.cpv, product.category):
        return product
    out = product.model_copy(update={"name": f.name, "cpv": f.cpv, "category": f.category})
    out._sanitised = tuple(dict.fromkeys(product.sanitised + tuple(f.removed)))
    return out
