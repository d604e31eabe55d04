"""Text helpers for Chinese and mixed Chinese/Latin pharmacy text (no whitespace tokenisation anywhere)."""

from __future__ import annotations

import re
import unicodedata

# Characters that carry no meaning for matching: punctuation and symbols of both scripts, and spaces.
_PUNCT = re.compile(
    r"[\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65!-/:-@\[-`{-~·•【】「」『』〔〕]+"
)
# Chat-template control tokens must never reach a prompt from merchant text.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{0,40}\|>|</?think>")
# Quoted data may not hold the characters prompts delimit with: angle brackets (<<< >>> fences, tags, <|tokens|>) are
# shown as single guillemets, backticks (markdown fences) as primes.
_DATA_ESCAPES = str.maketrans({"<": "‹", ">": "›", "`": "ʹ"})


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), lower-case, punctuation and spaces removed."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def char_set(text: str) -> set[str]:
    return set(normalise(text))


def ngrams(text: str, n: int) -> set[str]:
    t = normalise(text)
    if len(t) < n:
        return {t} if t else set()
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def char_overlap(query: str, target: str) -> float:
    """Share of the query's distinct characters that appear in the target (the lexical baseline's measure)."""
    q = char_set(query)
    if not q:
        return 0.0
    return len(q & char_set(target)) / len(q)


def escape_markup(text: str) -> str:
    """Text that cannot close or open a tag of a template it is placed in (the student's <query>…</query><product>…
    </product>) nor carry a chat-template token; nothing else changes (no normalisation: the student reads the text as
    written, as it was trained)."""
    return _SPECIAL_TOKEN.sub("", text).translate(_DATA_ESCAPES)


def escape_data(text: str) -> str:
    """Text that cannot open, close or fake a delimiter or a chat turn: NFKC (full-width ＜｜ become < | first),
    chat-template tokens removed, invisible format characters dropped, angle brackets and backticks escaped."""
    t = _SPECIAL_TOKEN.sub("", unicodedata.normalize("NFKC", text))
    t = "".join(ch for ch in t if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\t\n")
    return t.translate(_DATA_ESCAPES)


def sanitise_for_prompt(text: str, max_chars: int) -> str:
    """Make untrusted text (a product name, an attribute, OCR text, a web page, a query) safe to quote in a prompt.

    `escape_data`, then every run of whitespace (newlines too) becomes one space, so quoted data can never start a
    line of its own to pose as a heading or a dialogue turn, and the length is bounded. Prompts quote the result
    between <<< and >>> and say that it is data; the judge's answer is also constrained to a fixed label set.
    """
    t = re.sub(r"\s+", " ", escape_data(text)).strip()
    return t[:max_chars]


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """`text` with each lone surrogate written as its escape (`\\ud800` as the six characters `\\`, `u`, `d`, `8`,
    `0`, `0`): valid Unicode that a strict UTF-8 or JSON consumer accepts and that still shows what the input held.
    Used where armed quotes refused input back (an error's field or message), never to repair input."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(text) else text


def escape_surrogates_in(value: object) -> object:
    """`escape_surrogates` on every string of a JSON-like value, dict keys included."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {escape_surrogates_in(k): escape_surrogates_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_surrogates_in(v) for v in value]
    return value


def invalid_unicode_path(value: object, path: str = "") -> str | None:
    """The dotted path of the first string in `value` (nested dicts / lists) holding a lone surrogate, else None.

    JSON lets a client send `"\\ud800"`, which Python decodes into a str that no UTF-8 encoder, tokenizer or
    JSON writer accepts later. armed's policy, the same on HTTP and in the batch CLI: such input is refused at the
    edge with the field named (a 4xx / an error record), never repaired silently and never passed inward.
    """
    if isinstance(value, str):
        return (path or "input") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and _SURROGATE.search(k):
                return sub
            found = invalid_unicode_path(v, sub)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = invalid_unicode_path(v, f"{path}[{i}]")
            if found:
                return found
    return None
