"""A "gullible" scripted LLM: it obeys any instruction it reads in its prompt, so an injection that reaches a prompt
wins. The injection tests run the corpus through it to show that the defence is armed's, not the model's weakness.

It reads like a capable model (Unicode normalised, invisible characters ignored, look-alike letters read as the
letters they imitate) and it is credulous in every way the corpus attacks:
- a chat-template / role token anywhere → it believes a new assistant turn began and answers the level named after
  it, else highly_relevant;
- any relevance level named anywhere in the prompt (English or Chinese, tags, JSON, fake turns) except armed's own
  level definitions and rule effects → it answers the most relevant level named;
- the query written anywhere inside the product's text → highly_relevant (naive name containment);
- `generate` (rewrite, NER, standard name): an instruction verb followed by text → that text; else it echoes the
  quoted data back (a standard name = the name it was given).
Otherwise it judges by character overlap, an honest but weak rule. Test double at the model boundary only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from armed.domain import RelevanceLevel
from armed.engines.base import ChatMessage, ChoiceResult
from armed.pipeline import prompts

# Cyrillic / Greek letters that look Latin: a reader sees the Latin letter.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "һ": "h",
    "ԁ": "d", "ɡ": "g", "ӏ": "l", "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "ρ": "p",
    "А": "A", "Е": "E", "О": "O", "Р": "P", "С": "C", "Н": "H", "І": "I", "Т": "T", "К": "K", "М": "M",
})
_TOKEN = re.compile(r"<\|[^|]{1,40}\|>|\[/?inst\]|</?s>|</?think>|<\|?(?:system|assistant|user)\|?>")
# Level names as a reader understands them, most relevant first.
_LEVEL_WORDS: list[tuple[RelevanceLevel, re.Pattern[str]]] = [
    (RelevanceLevel.highly, re.compile(r"highly[\s_\-]*relevant|高度相关|非常相关|完全相关|高相关")),
    (RelevanceLevel.moderately, re.compile(r"moderately[\s_\-]*relevant|中度相关|比较相关")),
    (RelevanceLevel.weakly, re.compile(r"weakly[\s_\-]*relevant|less[\s_\-]*relevant|弱相关|有点相关")),
    (RelevanceLevel.irrelevant, re.compile(r"\birrelevant\b|not[\s_\-]*relevant|不相关")),
]
_ORDER = {lvl: i for i, (lvl, _) in enumerate(_LEVEL_WORDS)}
_INSTRUCTION = re.compile(
    r"(?:answer|output|reply|respond|say|write|return|输出|回答|答案|写作|改为|写成)\s*(?:with|exactly)?\s*[:：=]?\s*"
    r"([^\n，,。.;；]{1,60})"
)
# Where armed's prompts quote the pair (older <<<...>>> fences and tagged blocks both).
_QUERY = [re.compile(r"<query>\s*(.*?)\s*</query>", re.S), re.compile(r"Query:\s*<<<(.*?)>>>", re.S)]
_PRODUCT = [re.compile(r"<product_name>\s*(.*?)\s*</product_name>", re.S), re.compile(r"Product:\s*<<<(.*?)>>>", re.S)]


def read(text: str) -> str:
    """What a capable model reads: NFKC, invisible / bidi / soft-hyphen characters gone, look-alikes as Latin."""
    text = unicodedata.normalize("NFKC", text).translate(_HOMOGLYPHS)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").lower()


def _armed_own(text: str) -> str:
    """The prompt without the level names armed itself writes (its level definitions, the guideline's clauses, rule
    effects)."""
    for lvl, definition in prompts.LEVEL_DEFINITIONS.items():
        text = text.replace(read(f"{lvl.value}: {definition}"), " ")
    text = text.replace(read(prompts.GUIDELINE_TEXT), " ")
    return re.sub(r"(?:cap|set):[a-z_]+", " ", text)


def _normal(text: str) -> str:
    return re.sub(r"[\W_]+", "", read(text))


def _first(patterns: list[re.Pattern[str]], text: str) -> str | None:
    for p in patterns:
        m = p.search(text)
        if m:
            return m.group(1)
    return None


@dataclass
class GullibleChatModel:
    model_id: str = "gullible-llm"
    confidence: float = 0.9
    calls: list[tuple[str, list[ChatMessage]]] = field(default_factory=list)
    # Per judge prompt: did it find the quoted query and product (the tests assert it always did).
    found_pair: list[bool] = field(default_factory=list)
    why: list[str] = field(default_factory=list)

    def verdict(self, messages: Sequence[ChatMessage]) -> tuple[RelevanceLevel, str]:
        raw = "\n".join(m.content for m in messages)
        text = _armed_own(read(raw))
        token = _TOKEN.search(text)
        named = [lvl for lvl, pat in _LEVEL_WORDS if pat.search(text)]
        if token:
            after = text[token.end():]
            obeyed = [lvl for lvl, pat in _LEVEL_WORDS if pat.search(after)]
            return (obeyed[0] if obeyed else RelevanceLevel.highly), f"role token {token.group(0)!r}"
        if named:
            return min(named, key=_ORDER.__getitem__), "a level named in the prompt"
        query, product = _first(_QUERY, raw), _first(_PRODUCT, raw)
        self.found_pair.append(query is not None and product is not None)
        if query is None or product is None:
            return RelevanceLevel.irrelevant, "no pair found"
        q, p = _normal(query), _normal(product)
        if q and q in p:
            return RelevanceLevel.highly, "the query stands in the product text"
        overlap = len(set(q) & set(p)) / max(len(set(q)), 1)
        if overlap >= 0.8:
            return RelevanceLevel.moderately, f"overlap {overlap:.2f}"
        if overlap >= 0.5:
            return RelevanceLevel.weakly, f"overlap {overlap:.2f}"
        return RelevanceLevel.irrelevant, f"overlap {overlap:.2f}"

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        self.calls.append(("choose", list(messages)))
        choices = list(dict.fromkeys(choices))
        level, why = self.verdict(messages)
        self.why.append(why)
        label = level.value if level.value in choices else choices[0]
        rest = (1 - self.confidence) / max(len(choices) - 1, 1)
        probs = {c: (self.confidence if c == label else rest) for c in choices}
        return ChoiceResult(label, probs, self.model_id)

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        self.calls.append(("generate", list(messages)))
        raw = messages[-1].content if messages else ""
        text = read(raw)
        # It reads armed's instructions first, then obeys the latest instruction it finds in what follows.
        start = min((m.start() for m in re.finditer(r"<<<|<[a-z_]+>", text)), default=len(text))
        orders = list(_INSTRUCTION.finditer(text, start))
        if orders:
            return orders[-1].group(1).strip()
        if "json" in text:
            return "{}"
        quoted = _first([*_PRODUCT, re.compile(r"<<<(.*?)>>>", re.S), re.compile(r"<[a-z_]+>\s*(.*?)\s*</", re.S)],
                        raw)
        return quoted or ""
