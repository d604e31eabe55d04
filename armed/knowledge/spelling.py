"""Queries that spell a known name another way: pinyin (`ganmaoling`, `fen bi de`) and homophone typos
(感冒零 for 感冒灵).

Shoppers type pinyin when they do not know the characters, and Chinese input methods give a homophone when the
wrong candidate is picked; both mean the name they spell (the guideline's clause exact.spelling). The index maps the
toneless pinyin of every known drug name, trade name and brand (pypinyin, with its phrase readings) to those names;
a query is looked up by its own pinyin. It is built with the knowledge base and versioned with it.

A lookup answers only when it is unambiguous: one canonical name for the key. A typo must keep the name's length and
differ in at most `MAX_TYPO_CHARS` characters (so a real word that merely sounds like a drug is not taken for it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice, product

from pypinyin import Style, lazy_pinyin, pinyin

from armed.knowledge.index import is_cjk, normalise

MAX_TYPO_CHARS = 2
# Readings indexed per name: a character with several readings (得 de/dei, 参 can/shen) gives several keys; a name
# with more combinations than this keeps its first ones (the dictionary's usual readings come first).
MAX_READINGS = 16
_SEP = "\x1f"
_LATIN_QUERY = re.compile(r"[a-z][a-z\s'’-]*")


@dataclass(frozen=True)
class Spelled:
    """The known surface a query spells, and how: `pinyin` (written in Latin letters) or `homophone` (characters)."""

    surface: str
    how: str


def pinyin_key(text: str) -> str:
    """Toneless pinyin of the CJK characters, joined without spaces (ü as v, as keyboards type it); '' if none."""
    chars = "".join(ch for ch in normalise(text) if is_cjk(ch))
    return "".join(lazy_pinyin(chars, style=Style.NORMAL, v_to_u=False)) if chars else ""


def pinyin_keys(text: str) -> list[str]:
    """Every toneless reading of the CJK characters (phrase reading first), at most MAX_READINGS."""
    chars = "".join(ch for ch in normalise(text) if is_cjk(ch))
    if not chars:
        return []
    keys = [pinyin_key(chars)]
    # Character by character: a phrase reading (必得 → bi dei) would hide the reading shoppers type (de).
    per_char = [pinyin(ch, style=Style.NORMAL, heteronym=True, v_to_u=False)[0] for ch in chars]
    for combo in islice(product(*per_char), MAX_READINGS):
        key = "".join(combo)
        if key not in keys:
            keys.append(key)
    return keys


def build_index(surfaces: Iterable[str]) -> dict[str, str]:
    """pinyin key → the surfaces with that key (joined by \\x1f, sorted): surfaces of 2-12 CJK characters only."""
    index: dict[str, set[str]] = {}
    for s in surfaces:
        key = normalise(s)
        if not 2 <= len(key) <= 12 or not all(is_cjk(ch) for ch in key):
            continue
        for k in pinyin_keys(key):
            index.setdefault(k, set()).add(key)
    return {k: _SEP.join(sorted(v)) for k, v in index.items() if k}


def lookup(index: dict[str, str], text: str, suffix_keys: Iterable[tuple[str, str]] = (),
           canonical: Callable[[str], str] = lambda s: s) -> Spelled | None:
    """The surface `text` spells, or None. `suffix_keys`: (pinyin, surface) of dosage forms a query may end in
    (ganmaolingkeli = 感冒灵 + 颗粒); `canonical` maps a surface to the name it means (ambiguity is judged on those)."""
    q = normalise(text)
    if not q:
        return None
    latin = bool(_LATIN_QUERY.fullmatch(q))
    if latin:
        keys, cjk = [re.sub(r"[\s'’-]", "", q)], ""
    elif all(is_cjk(ch) for ch in q):
        keys, cjk = pinyin_keys(q), q
    else:
        return None
    candidates = [(key, cjk) for key in keys]
    for sk, surface in suffix_keys:
        if latin and keys[0].endswith(sk) and len(keys[0]) > len(sk) + 2:
            candidates.append((keys[0][: -len(sk)], ""))
        elif cjk.endswith(surface) and len(cjk) > len(surface) + 1:
            candidates += [(k, cjk[: -len(surface)]) for k in pinyin_keys(cjk[: -len(surface)])]
    for k, chars in candidates:
        found = index.get(k)
        if not found:
            continue
        names = found.split(_SEP)
        if not latin:
            names = [n for n in names if n != chars and len(n) == len(chars)
                     and sum(a != b for a, b in zip(n, chars, strict=True)) <= MAX_TYPO_CHARS]
        if not names or len({canonical(n) for n in names}) != 1:
            continue
        return Spelled(names[0], "pinyin" if latin else "homophone")
    return None
