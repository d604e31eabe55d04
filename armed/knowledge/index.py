"""Text machinery of the knowledge base: normalisation, a dictionary matcher for Chinese text and BM25.

Chinese product names have no spaces, so entity extraction cannot tokenise first; it matches every known
surface form directly against the characters (a trie walked from every position) and resolves overlaps by
"longest match wins". Retrieval uses BM25 over character bigrams, which needs no segmenter either.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_ASCII_ALNUM = re.compile(r"[a-z0-9]")
_LATIN_WORD_RE = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_CJK_RUN_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), lower case, whitespace collapsed: the form every surface is matched in."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def is_cjk(ch: str) -> bool:
    return bool(_CJK_RE.match(ch))


@dataclass(frozen=True)
class Payload:
    """What a matched surface means: an entity field and its canonical value."""

    field: str
    value: str
    priority: int = 0  # seed entries 0; public sources 1 (used only to order equal spans)


def blocked_mask(length: int, blocked: Sequence[tuple[int, int]]) -> bytearray:
    """1 at every position of a text of `length` that a (start, end) span of `blocked` covers (clipped to the text):
    where no lexicon match may stand (specifications already read)."""
    mask = bytearray(length)
    for s, e in blocked:
        for k in range(max(0, s), min(length, e)):
            mask[k] = 1
    return mask


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    surface: str
    payloads: tuple[Payload, ...]


class Matcher:
    """A character trie of surface forms → payloads, with longest-match-wins extraction.

    Single-character surfaces (片, 丸, 膏 ...) are only accepted at a word end — end of text, a non-CJK
    character, or the start of another known surface — so 片 in 片仔癀 is not read as a tablet.
    Latin / digit surfaces must not touch other Latin letters or digits (999 inside 1999 is not a brand).
    """

    _END = "\x00"

    def __init__(self) -> None:
        self._root: dict[str, dict] = {}
        self.size = 0

    def add(self, surface: str, payload: Payload) -> None:
        key = normalise(surface)
        if not key:
            return
        node = self._root
        for ch in key:
            node = node.setdefault(ch, {})
        bucket: list[Payload] | None = node.get(self._END)  # type: ignore[assignment]
        if bucket is None:
            bucket = []
            node[self._END] = bucket  # type: ignore[assignment]
            self.size += 1
        if payload not in bucket:
            bucket.append(payload)

    def lookup(self, surface: str) -> list[Payload]:
        node = self._root
        for ch in normalise(surface):
            nxt = node.get(ch)
            if nxt is None:
                return []
            node = nxt
        return list(node.get(self._END, []))  # type: ignore[arg-type]

    def _starts_here(self, text: str, i: int) -> bool:
        node = self._root
        for ch in text[i:]:
            node = node.get(ch)  # type: ignore[assignment]
            if node is None:
                return False
            if self._END in node:
                return True
        return False

    def entries(self) -> Iterator[tuple[str, tuple[Payload, ...]]]:
        """Every (surface, payloads) pair, surfaces in sorted order (what an artefact stores and versions)."""
        found: list[tuple[str, tuple[Payload, ...]]] = []
        stack: list[tuple[str, dict]] = [("", self._root)]
        while stack:
            prefix, node = stack.pop()
            for ch, child in node.items():
                if ch == self._END:
                    found.append((prefix, tuple(child)))  # type: ignore[arg-type]
                else:
                    stack.append((prefix + ch, child))
        found.sort(key=lambda e: e[0])
        return iter(found)

    def _acceptable(
        self, text: str, start: int, end: int, starts_here: Callable[[int], bool] | None = None
    ) -> bool:
        first, last = text[start], text[end - 1]
        if _ASCII_ALNUM.match(first) and start > 0 and _ASCII_ALNUM.match(text[start - 1]):
            return False
        if _ASCII_ALNUM.match(last) and end < len(text) and _ASCII_ALNUM.match(text[end]):
            return False
        if end - start == 1 and is_cjk(first) and end < len(text) and is_cjk(text[end]):
            # starts_here: a caller that already knows where surfaces start (FrozenMatcher) saves the trie walk.
            starts = starts_here(end) if starts_here is not None else self._starts_here(text, end)
            if not starts:
                return False
        return True

    def all_matches(self, text: str, blocked: Sequence[tuple[int, int]] = ()) -> list[Match]:
        """Every acceptable match of every known surface in (already normalised) text, except blocked spans."""
        mask = blocked_mask(len(text), blocked)
        out: list[Match] = []
        for i in range(len(text)):
            if mask[i]:
                continue
            node = self._root
            j = i
            while j < len(text) and not mask[j]:
                node = node.get(text[j])  # type: ignore[assignment]
                if node is None:
                    break
                j += 1
                bucket = node.get(self._END)
                if bucket and self._acceptable(text, i, j):
                    out.append(Match(i, j, text[i:j], tuple(bucket)))  # type: ignore[arg-type]
        return out

    def extract(self, text: str, blocked: Sequence[tuple[int, int]] = ()) -> list[Match]:
        """Non-overlapping matches, longest first (ties: earlier start, then seed before sources), text order."""
        candidates = self.all_matches(text, blocked)
        candidates.sort(key=lambda m: (-(m.end - m.start), m.start, min(p.priority for p in m.payloads)))
        taken = bytearray(len(text))
        chosen: list[Match] = []
        for m in candidates:
            if any(taken[m.start : m.end]):
                continue
            for k in range(m.start, m.end):
                taken[k] = 1
            chosen.append(m)
        chosen.sort(key=lambda m: m.start)
        return chosen


def bm25_tokens(text: str) -> list[str]:
    """Character bigrams of every CJK run (a lone character stands for itself) plus lower-case Latin words."""
    t = normalise(text)
    tokens: list[str] = []
    for run in _CJK_RUN_RE.findall(t):
        if len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[k : k + 2] for k in range(len(run) - 1))
    tokens.extend(_LATIN_WORD_RE.findall(t))
    return tokens


class BM25:
    """Okapi BM25 (k1=1.5, b=0.75) over an in-memory inverted index, built once at load time."""

    def __init__(self, docs: Iterable[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._lengths: list[int] = []
        for idx, text in enumerate(docs):
            counts = Counter(bm25_tokens(text))
            self._lengths.append(sum(counts.values()))
            for tok, tf in counts.items():
                self._postings[tok].append((idx, tf))
        n = len(self._lengths)
        self._avg = (sum(self._lengths) / n) if n else 0.0
        self._idf = {tok: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for tok, p in self._postings.items()}

    def __len__(self) -> int:
        return len(self._lengths)

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        scores: dict[int, float] = defaultdict(float)
        for tok, qtf in Counter(bm25_tokens(query)).items():
            postings = self._postings.get(tok)
            if not postings:
                continue
            idf = self._idf[tok]
            for idx, tf in postings:
                norm = self.k1 * (1 - self.b + self.b * self._lengths[idx] / (self._avg or 1.0))
                scores[idx] += qtf * idf * tf * (self.k1 + 1) / (tf + norm)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:k]
