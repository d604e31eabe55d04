"""Read-only, memory-mapped forms of the knowledge base's indexes, for a built artefact (armed/knowledge/artefact.py).

A replica must start in well under a second even for a register of a million names, so nothing here is rebuilt
at load: every index is a handful of flat numpy arrays opened with `np.load(mmap_mode="r")` (pages come in on
first touch and are shared by every process on the node through the page cache).

- `StrTable`: many strings as one UTF-8 blob plus offsets.
- `FrozenStrMap`: a str → str (or str → JSON model) mapping: keys' 64-bit polynomial hashes, sorted, beside the
  key and value tables; a lookup is a binary search and one string comparison (the hash only finds candidates).
- `FrozenMatcher`: the lexicon matcher (same results as `index.Matcher`): every substring of the text up to the
  longest surface is hashed at once from prefix hashes, all looked up in one `searchsorted`, then verified.
- `CsrBM25`: the BM25 index (same scores as `index.BM25`) as CSR postings.

Why not pyahocorasick / bm25s: measured in benchmarks/kb/README.md. An Aho-Corasick automaton is not mappable:
`ahocorasick.load` rebuilds it in memory (3.1 s and 1.9 GB peak for 1 M surfaces here), while these arrays open in
milliseconds. bm25s scores differently from armed's BM25 (no query-term frequency; another idf floor), so a swap
would change retrieval, for no gain at this index size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from armed.knowledge.index import BM25, Match, Matcher, Payload, blocked_mask, bm25_tokens, normalise

_MASK = (1 << 64) - 1
_P = 0x100000001B3  # FNV-1 64-bit prime: odd, so multiplication is a bijection mod 2**64


def str_hash(s: str) -> int:
    """64-bit polynomial hash of a string's code points (+1 each), mod 2**64; stable across processes."""
    h = 0
    for ch in s:
        h = (h * _P + ord(ch) + 1) & _MASK
    return h


def _save(folder: Path, name: str, arr: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)


def _open(folder: Path, name: str) -> np.ndarray:
    return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)


A = TypeVar("A", bound="_Arrays")


class _Arrays:
    """A structure kept as a few arrays: saved as `<name>.<part>.npy`, one per entry of PARTS (the constructor's
    arguments, in order), and opened memory-mapped."""

    PARTS: ClassVar[tuple[str, ...]]

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays, in PARTS order."""
        raise NotImplementedError

    def save(self, folder: Path, name: str) -> None:
        for part, arr in zip(self.PARTS, self.arrays(), strict=True):
            _save(folder, f"{name}.{part}", arr)

    @classmethod
    def open(cls: type[A], folder: Path, name: str) -> A:
        return cls(*(_open(folder, f"{name}.{part}") for part in cls.PARTS))


class StrTable(_Arrays, Sequence[str]):
    """Strings stored as one UTF-8 blob and int64 offsets; item i is decoded on access."""

    PARTS = ("blob", "off")

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self._blob, self._off = blob, offsets

    @classmethod
    def build(cls, strings: Sequence[str]) -> StrTable:
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self._blob, self._off

    def __len__(self) -> int:
        return len(self._off) - 1

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        a, b = int(self._off[i]), int(self._off[i + 1])
        return self._blob[a:b].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]


class _HashIndex(_Arrays):
    """Sorted 64-bit hashes of the keys beside the key ids they came from."""

    PARTS = ("hash", "ids")

    def __init__(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        self.hashes, self.ids = hashes, ids

    @classmethod
    def build(cls, keys: Sequence[str]) -> _HashIndex:
        h = np.fromiter((str_hash(k) for k in keys), dtype=np.uint64, count=len(keys))
        order = np.argsort(h, kind="stable")
        return cls(h[order], order.astype(np.int64))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.hashes, self.ids

    def candidates(self, h: int) -> Iterator[int]:
        """Key ids whose hash is h (almost always zero or one)."""
        n = len(self.hashes)
        if not n:
            return
        target = np.uint64(h)
        pos = int(np.searchsorted(self.hashes, target, "left"))
        while pos < n and self.hashes[pos] == target:
            yield int(self.ids[pos])
            pos += 1


V = TypeVar("V")


class FrozenStrMap(Mapping[str, V]):
    """A read-only str → value mapping over a key table, a hash index and a value table (values decoded by
    `decode`: identity for strings, JSON → model for records)."""

    def __init__(self, keys: StrTable, index: _HashIndex, values: StrTable, decode: Callable[[str], V]) -> None:
        self._keys, self._index, self._values, self._decode = keys, index, values, decode

    @staticmethod
    def save(mapping: Mapping[str, Any], folder: Path, name: str, encode: Callable[[Any], str] = str) -> None:
        keys = list(mapping)
        StrTable.build(keys).save(folder, f"{name}.keys")
        _HashIndex.build(keys).save(folder, name)
        StrTable.build([encode(mapping[k]) for k in keys]).save(folder, f"{name}.values")

    @classmethod
    def open(cls, folder: Path, name: str, decode: Callable[[str], Any] = str) -> FrozenStrMap[Any]:
        return cls(StrTable.open(folder, f"{name}.keys"), _HashIndex.open(folder, name),
                   StrTable.open(folder, f"{name}.values"), decode)

    def _find(self, key: str) -> int | None:
        for i in self._index.candidates(str_hash(key)):
            if self._keys[i] == key:
                return i
        return None

    def __getitem__(self, key: str) -> V:
        i = self._find(key) if isinstance(key, str) else None
        if i is None:
            raise KeyError(key)
        return self._decode(self._values[i])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) is not None

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)


class FrozenMatcher(Matcher):
    """`Matcher` over memory-mapped arrays: same surfaces, payloads and extraction rules, nothing to rebuild."""

    def __init__(self, folder: Path, name: str, fields: Sequence[str]) -> None:
        super().__init__()
        self._surfaces = StrTable.open(folder, f"{name}.surfaces")
        self._index = _HashIndex.open(folder, name)
        self._pay_off = _open(folder, f"{name}.pay_off")
        self._pay_field = _open(folder, f"{name}.pay_field")
        self._pay_value = _open(folder, f"{name}.pay_value")
        self._pay_prio = _open(folder, f"{name}.pay_prio")
        self._values = StrTable.open(folder, f"{name}.values")
        self._fields = list(fields)
        lengths = _open(folder, f"{name}.lengths")
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._max_len = int(self._lengths.max()) if len(self._lengths) else 0
        powers = [1]
        for _ in range(self._max_len):
            powers.append((powers[-1] * _P) & _MASK)
        self._powers = np.array(powers, dtype=np.uint64)  # P**L mod 2**64, for substring hashes
        self.size = len(self._surfaces)

    @staticmethod
    def save(matcher: Matcher, folder: Path, name: str) -> list[str]:
        """Write a built Matcher's entries; returns the field names (their order is the pay_field code)."""
        entries = list(matcher.entries())
        fields = sorted({p.field for _, ps in entries for p in ps})
        code = {f: i for i, f in enumerate(fields)}
        values: dict[str, int] = {}
        off = np.zeros(len(entries) + 1, dtype=np.int64)
        pf: list[int] = []
        pv: list[int] = []
        pp: list[int] = []
        for k, (_, payloads) in enumerate(entries):
            for p in payloads:
                pf.append(code[p.field])
                pv.append(values.setdefault(p.value, len(values)))
                pp.append(p.priority)
            off[k + 1] = len(pf)
        surfaces = [s for s, _ in entries]
        StrTable.build(surfaces).save(folder, f"{name}.surfaces")
        _HashIndex.build(surfaces).save(folder, name)
        _save(folder, f"{name}.pay_off", off)
        _save(folder, f"{name}.pay_field", np.array(pf, dtype=np.uint8))
        _save(folder, f"{name}.pay_value", np.array(pv, dtype=np.uint32))
        _save(folder, f"{name}.pay_prio", np.array(pp, dtype=np.int16))
        StrTable.build(list(values)).save(folder, f"{name}.values")
        _save(folder, f"{name}.lengths", np.array(sorted({len(s) for s in surfaces}), dtype=np.int32))
        return fields

    def add(self, surface: str, payload: Payload) -> None:
        raise TypeError("a knowledge-base artefact is read-only: rebuild it with `armed kb build`")

    def _payloads(self, k: int) -> tuple[Payload, ...]:
        a, b = int(self._pay_off[k]), int(self._pay_off[k + 1])
        return tuple(
            Payload(self._fields[int(self._pay_field[i])], self._values[int(self._pay_value[i])],
                    int(self._pay_prio[i]))
            for i in range(a, b)
        )

    def _find(self, surface: str) -> int | None:
        for k in self._index.candidates(str_hash(surface)):
            if self._surfaces[k] == surface:
                return k
        return None

    def lookup(self, surface: str) -> list[Payload]:
        k = self._find(normalise(surface))
        return list(self._payloads(k)) if k is not None else []

    def entries(self) -> Iterator[tuple[str, tuple[Payload, ...]]]:
        for k, s in enumerate(self._surfaces):
            yield s, self._payloads(k)

    def _occurrences(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, surface id) of every known surface in text: all substrings up to the longest surface
        length, hashed from prefix hashes (h[i:j] = H[j] - H[i]·P^(j-i) mod 2**64), found in one searchsorted."""
        n = len(text)
        if not n or not self._max_len:
            return []
        prefix = [0] * (n + 1)
        h = 0
        for i, ch in enumerate(text):
            h = (h * _P + ord(ch) + 1) & _MASK
            prefix[i + 1] = h
        pre = np.array(prefix, dtype=np.uint64)
        lengths = self._lengths[self._lengths <= n]
        if not len(lengths):
            return []
        starts = np.concatenate([np.arange(0, n - L + 1) for L in lengths])
        lens = np.concatenate([np.full(n - L + 1, L) for L in lengths])
        ends = starts + lens
        with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point: everything is mod 2**64
            sub = pre[ends] - pre[starts] * self._powers[lens]
        table = self._index.hashes
        pos = np.searchsorted(table, sub, "left")
        found = np.nonzero(pos < len(table))[0]
        found = found[np.asarray(table[pos[found]]) == sub[found]]
        out: list[tuple[int, int, int]] = []
        for f in found.tolist():
            s, e = int(starts[f]), int(ends[f])
            for k in self._index.candidates(int(sub[f])):
                if self._surfaces[k] == text[s:e]:
                    out.append((s, e, k))
                    break
        return out

    def all_matches(self, text: str, blocked: Sequence[tuple[int, int]] = ()) -> list[Match]:
        mask = blocked_mask(len(text), blocked)
        occ = self._occurrences(text)
        starts = {s for s, _, _ in occ}
        out = []
        for s, e, k in sorted(occ):
            if any(mask[s:e]) or not self._acceptable(text, s, e, starts.__contains__):
                continue
            out.append(Match(s, e, text[s:e], self._payloads(k)))
        return out


class CsrBM25(BM25):
    """`BM25` (same scores, same order) over CSR postings: a term's (doc, tf) pairs are one slice."""

    def __init__(self, folder: Path, name: str, k1: float, b: float, avg: float) -> None:
        self.k1, self.b, self._avg = k1, b, avg
        self._vocab: FrozenStrMap[str] = FrozenStrMap.open(folder, f"{name}.vocab")
        self._off = _open(folder, f"{name}.off")
        self._doc = _open(folder, f"{name}.doc")
        self._tf = _open(folder, f"{name}.tf")
        self._idf_arr = _open(folder, f"{name}.idf")
        self._len = _open(folder, f"{name}.len")

    @staticmethod
    def save(bm25: BM25, folder: Path, name: str) -> dict[str, float]:
        terms = list(bm25._postings)
        FrozenStrMap.save({t: str(i) for i, t in enumerate(terms)}, folder, f"{name}.vocab")
        off = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum([len(bm25._postings[t]) for t in terms], out=off[1:])
        doc = np.fromiter((d for t in terms for d, _ in bm25._postings[t]), dtype=np.int32, count=int(off[-1]))
        tf = np.fromiter((f for t in terms for _, f in bm25._postings[t]), dtype=np.int32, count=int(off[-1]))
        _save(folder, f"{name}.off", off)
        _save(folder, f"{name}.doc", doc)
        _save(folder, f"{name}.tf", tf)
        _save(folder, f"{name}.idf", np.array([bm25._idf[t] for t in terms], dtype=np.float64))
        _save(folder, f"{name}.len", np.array(bm25._lengths, dtype=np.int64))
        return {"k1": bm25.k1, "b": bm25.b, "avg": bm25._avg}

    def __len__(self) -> int:
        return len(self._len)

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        docs: list[np.ndarray] = []
        parts: list[np.ndarray] = []
        counts: dict[str, int] = {}
        for tok in bm25_tokens(query):
            counts[tok] = counts.get(tok, 0) + 1
        for tok, qtf in counts.items():
            tid = self._vocab.get(tok)
            if tid is None:
                continue
            t = int(tid)
            a, b = int(self._off[t]), int(self._off[t + 1])
            d = np.asarray(self._doc[a:b])
            tf = np.asarray(self._tf[a:b], dtype=np.float64)
            # The same expression, in the same order, as BM25.top: the scores are bit-identical.
            norm = self.k1 * (1 - self.b + self.b * np.asarray(self._len[d], dtype=np.float64) / (self._avg or 1.0))
            parts.append(qtf * float(self._idf_arr[t]) * tf * (self.k1 + 1) / (tf + norm))
            docs.append(d)
        if not docs:
            return []
        ids, inverse = np.unique(np.concatenate(docs), return_inverse=True)
        scores = np.bincount(inverse, weights=np.concatenate(parts))
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[i]), float(scores[i])) for i in order]


class LazyDocs(Sequence[Any]):
    """The knowledge documents as JSON in a StrTable; a document is parsed only when search returns it."""

    def __init__(self, table: StrTable, decode: Callable[[str], Any]) -> None:
        self._table, self._decode = table, decode

    @staticmethod
    def save(docs: Sequence[Any], folder: Path, name: str) -> None:
        StrTable.build([d.model_dump_json() for d in docs]).save(folder, name)

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self._decode(self._table[i])

    def __iter__(self) -> Iterator[Any]:
        for s in self._table:
            yield self._decode(s)


def model_json(obj: Any) -> str:
    """A pydantic model as JSON (the value encoder of FrozenStrMap for records)."""
    return obj.model_dump_json() if hasattr(obj, "model_dump_json") else json.dumps(obj, ensure_ascii=False)
