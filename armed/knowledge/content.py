"""A knowledge base's version: a hash of its content, the same for the in-memory build and the artefact written
from it (armed/knowledge/artefact.py).

`content_version` hashes what the KB answers from (every lexicon surface and payload, map, record, document, rule
and seed field) in a canonical order, never file bytes or paths, so the same content built twice, from reordered or
reformatted files or another folder, has the same version. Its own module, below both the KB (which versions itself
when built) and the artefact (which stores and loads it), so neither imports the other to reach it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from armed.knowledge.index import BM25, Matcher

# Attributes that describe where a KB came from, not what it knows: not part of the version.
# (_class_words: build-time only, derived from the seed's categories, which the matcher already hashes.)
_NOT_CONTENT = {"version", "source_names", "artefact_path", "_class_words"}


def _feed(h: Any, obj: Any) -> None:
    """Feed a canonical, type-tagged encoding of obj into the hash (mappings and sets in sorted order)."""
    if isinstance(obj, str):
        b = obj.encode("utf-8")
        h.update(b"s%d:" % len(b))
        h.update(b)
    elif obj is None or isinstance(obj, bool | int | float):
        h.update(b"v" + repr(obj).encode() + b";")
    elif isinstance(obj, BaseModel):
        _feed(h, obj.model_dump_json())
    elif isinstance(obj, Matcher):
        h.update(b"M")
        for surface, payloads in obj.entries():
            _feed(h, surface)
            _feed(h, [dataclasses.astuple(p) for p in payloads])
        h.update(b"m")
    elif isinstance(obj, BM25):  # derived from the documents; only its parameters are content
        _feed(h, ["bm25", obj.k1, obj.b])
    elif isinstance(obj, re.Pattern):
        _feed(h, ["re", obj.pattern, obj.flags])
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        _feed(h, dataclasses.astuple(obj))
    elif isinstance(obj, Mapping):
        h.update(b"d%d{" % len(obj))
        for k in sorted(obj, key=str):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, set | frozenset):
        _feed(h, ["set", *sorted(obj, key=str)])
    elif isinstance(obj, Sequence):
        h.update(b"l%d[" % len(obj))
        for x in obj:
            _feed(h, x)
        h.update(b"]")
    else:
        raise TypeError(f"content_version: no canonical form for {type(obj).__name__}")


def content_version(kb: object) -> str:
    """12 hex digits of sha256 over the KB's content, attribute by attribute in name order (see module doc)."""
    h = hashlib.sha256(b"armed-kb-content-v1")
    for name in sorted(vars(kb)):
        if name not in _NOT_CONTENT:
            _feed(h, name)
            _feed(h, getattr(kb, name))
    return h.hexdigest()[:12]
