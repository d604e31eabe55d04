"""A built knowledge base: one versioned folder that every judge replica opens without rebuilding anything.

`armed kb build` builds a KnowledgeBase from the seed and any mix of sources (as `KnowledgeBase.load` does),
then writes it here:

    <artefact>/manifest.json   format, version, rules version, sources, counts per entity type, built-at
    <artefact>/state.pkl       the small state (seed, rules, dosage forms, populations, ...): a pickle
    <artefact>/index/*.npy     the big indexes as flat arrays, memory-mapped at load (armed/knowledge/frozen.py):
                               the lexicon matchers, large str→str maps (common names, brands), drug records,
                               documents and the BM25 postings

The version is content-addressed: `content_version` hashes what the KB answers from (every lexicon surface and
payload, map, record, document, rule and seed field) in a canonical order, never file bytes or paths, so the
same content built twice, from reordered or reformatted files or another folder, has the same version, and an
artefact's version equals that of the in-memory KB it was written from (tests/knowledge/test_artefact.py).

state.pkl is a pickle: an artefact is as trusted as code. Load only artefacts you built (the chart syncs them
from your own PVC or bucket). Pickle keeps this module free of the KB's internals: a field added to
KnowledgeBase travels in the artefact without a change here (a Matcher or a large str→str dict is mapped; the
rest is pickled).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from armed.knowledge.frozen import CsrBM25, FrozenMatcher, FrozenStrMap, LazyDocs, StrTable, model_json
from armed.knowledge.index import BM25, Matcher

if TYPE_CHECKING:
    from armed.knowledge.base import KnowledgeBase
    from armed.settings import KnowledgeSettings

# 2: trade names and their makers, the pinyin index, complementary efficacy groups (issue 22).
# 3: the seed carries therapeutic_areas; insert names cleaned of makers and specs (issue 22).
FORMAT = 3
MANIFEST = "manifest.json"
# Attributes that describe where a KB came from, not what it knows: not part of the version.
# (_class_words: build-time only, derived from the seed's categories, which the matcher already hashes.)
_NOT_CONTENT = {"version", "source_names", "artefact_path", "_class_words"}
# A str→str dict at least this large is memory-mapped rather than pickled (small ones stay plain dicts: a dict
# lookup is ~20x faster than a binary search, and they are hit on every comparison).
MAP_MIN_ENTRIES = 5000


class ArtefactError(ValueError):
    """An artefact is missing, malformed, of another format, or a setting names one wrongly."""


# ---------------------------------------------------------------------------------------------------- version


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


def content_version(kb: KnowledgeBase) -> str:
    """12 hex digits of sha256 over the KB's content, attribute by attribute in name order (see module doc)."""
    h = hashlib.sha256(b"armed-kb-content-v1")
    for name in sorted(vars(kb)):
        if name not in _NOT_CONTENT:
            _feed(h, name)
            _feed(h, getattr(kb, name))
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------- counts


def counts(kb: KnowledgeBase) -> dict[str, int]:
    """What a curator checks after a build: lexicon surfaces per entity type, brands, common names, records,
    documents and rules."""
    out: dict[str, int] = {}
    for _, payloads in kb._matcher.entries():
        for field in sorted({p.field for p in payloads}):
            out[f"surfaces.{field}"] = out.get(f"surfaces.{field}", 0) + 1
    out["brands"] = len(set(kb._brand.values()))
    out["common_names"] = len(set(kb._cn.values()))
    out["records"] = len(kb._records)
    out["documents"] = len(kb._docs)
    out["rules"] = len(kb.rules)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------------- write


def write_artefact(kb: KnowledgeBase, out: Path, sources: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Write a built (in-memory) KB to `out` atomically (a temporary sibling renamed into place); returns the
    manifest. An existing `out` holding the same version is left as it is; another version needs force."""
    out = Path(out)
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        if old.get("version") == kb.version and not force:
            return old
        if not force:
            raise ArtefactError(f"{out} holds knowledge base {old.get('version')}, not {kb.version}: "
                                "choose another --out or pass --force to replace it")
    elif out.exists() and any(out.iterdir()):
        raise ArtefactError(f"{out} exists and is not a knowledge-base artefact")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    index = tmp / "index"
    index.mkdir(parents=True)
    frozen: dict[str, dict[str, Any]] = {}
    state: dict[str, Any] = {}
    for name, value in vars(kb).items():
        if isinstance(value, Matcher):
            frozen[name] = {"kind": "matcher", "fields": FrozenMatcher.save(value, index, name)}
        elif isinstance(value, BM25):
            frozen[name] = {"kind": "bm25", **CsrBM25.save(value, index, name)}
        elif name == "_records":
            FrozenStrMap.save(value, index, name, encode=model_json)
            frozen[name] = {"kind": "records"}
        elif name == "_docs":
            LazyDocs.save(value, index, name)
            frozen[name] = {"kind": "docs"}
        elif (isinstance(value, dict) and len(value) >= MAP_MIN_ENTRIES
              and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            FrozenStrMap.save(value, index, name)
            frozen[name] = {"kind": "strmap"}
        else:
            state[name] = value
    with (tmp / "state.pkl").open("wb") as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
    from armed import __version__

    manifest = {
        "format": FORMAT,
        "version": kb.version,
        "rules_version": kb.rules_version,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "armed_version": __version__,
        "sources": list(kb.source_names),
        "requested_sources": list(sources),
        "counts": counts(kb),
        "frozen": frozen,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return manifest


def build_artefact(out: Path, seed: Path | None = None, sources: Sequence[str] = (),
                   force: bool = False) -> dict[str, Any]:
    """`armed kb build`: the seed plus sources, built in memory once, written to `out`."""
    from armed.knowledge.base import KnowledgeBase

    return write_artefact(KnowledgeBase.load(seed, sources), out, sources, force)


def install(artefact: Path, root: Path | None = None) -> Path:
    """Point <root>/current (default $ARMED_CACHE_DIR/kb/current) at an artefact: what `auto` loads."""
    link = (root or default_root()) / "current"
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".current.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path(artefact).resolve())
    tmp.replace(link)  # atomic: a replica starting now sees the old or the new artefact, never none
    return link


# ---------------------------------------------------------------------------------------------------- read


def read_manifest(path: Path) -> dict[str, Any]:
    f = Path(path) / MANIFEST
    try:
        manifest = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path} is not a knowledge-base artefact ({f}: {exc})") from exc
    if manifest.get("format") != FORMAT:
        raise ArtefactError(f"{path}: artefact format {manifest.get('format')!r}, this armed reads {FORMAT}: "
                            "rebuild it with `armed kb build`")
    return manifest


def load_artefact(path: Path) -> KnowledgeBase:
    """Open a built artefact: unpickle the small state, memory-map the indexes; nothing is rebuilt."""
    from armed.domain import WebDoc
    from armed.knowledge.base import DrugRecord, KnowledgeBase

    path = Path(path)
    manifest = read_manifest(path)
    try:
        with (path / "state.pkl").open("rb") as fh:
            state = pickle.load(fh)
        index = path / "index"
        kb = KnowledgeBase.__new__(KnowledgeBase)
        vars(kb).update(state)
        for name, spec in manifest["frozen"].items():
            kind = spec["kind"]
            if kind == "matcher":
                value: Any = FrozenMatcher(index, name, spec["fields"])
            elif kind == "bm25":
                value = CsrBM25(index, name, spec["k1"], spec["b"], spec["avg"])
            elif kind == "records":
                value = FrozenStrMap.open(index, name, DrugRecord.model_validate_json)
            elif kind == "docs":
                value = LazyDocs(StrTable.open(index, name), WebDoc.model_validate_json)
            elif kind == "strmap":
                value = FrozenStrMap.open(index, name)
            else:
                raise ArtefactError(f"{path}: unknown index kind {kind!r} for {name}")
            setattr(kb, name, value)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, ValueError) as exc:
        raise ArtefactError(f"{path}: cannot load the artefact: {exc}") from exc
    kb.version = manifest["version"]
    kb.source_names = list(manifest.get("sources", []))
    kb.artefact_path = path.resolve()  # where derived data (armed/knowledge/doc_vectors.py) is looked up
    return kb


def default_root() -> Path:
    """$ARMED_CACHE_DIR/kb: where `armed kb build --install` puts artefacts and `current`."""
    from armed.engines.cache import cache_dir

    return cache_dir() / "kb"


def resolve_artefact(settings: KnowledgeSettings) -> Path | None:
    """The artefact a process should load, or None for the seed + sources build.

    artefact "none": never an artefact. "auto" (the default): $ARMED_CACHE_DIR/kb/current when it exists and no
    seed or sources are configured (those name another KB). Anything else is a path that must hold an artefact.
    """
    value = settings.artefact
    if value == "none":
        return None
    if value == "auto":
        if settings.seed is not None or settings.sources:
            return None
        current = default_root() / "current"
        return current if (current / MANIFEST).is_file() else None
    if "://" in value or value.startswith(":"):
        raise ArtefactError(f"knowledge.artefact {value!r}: the library reads a local folder; sync an object-store "
                            "artefact first (the chart's `knowledge.source: objectStore` does)")
    path = Path(value).expanduser()
    if not (path / MANIFEST).is_file():
        raise ArtefactError(f"knowledge.artefact {value!r}: no {MANIFEST} there (build one with `armed kb build`)")
    return path


def load_knowledge(settings: KnowledgeSettings) -> KnowledgeBase:
    """The KB of a process: the configured artefact, else the seed + sources (see resolve_artefact)."""
    from armed.knowledge.base import KnowledgeBase, KnowledgeError

    try:
        path = resolve_artefact(settings)
        if path is not None:
            return load_artefact(path)
    except ArtefactError as exc:
        raise KnowledgeError(str(exc)) from exc
    return KnowledgeBase.load(settings.seed, settings.sources)


def open_kb(ref: str) -> KnowledgeBase:
    """What the curator commands open: "seed" (the packaged seed alone), "current" (the installed artefact), or a
    path to an artefact."""
    from armed.knowledge.base import KnowledgeBase

    if ref == "seed":
        return KnowledgeBase.load()
    if ref == "current":
        ref = str(default_root() / "current")
    return load_artefact(Path(ref))


def iter_records(kb: KnowledgeBase) -> Iterator[tuple[str, Any]]:
    for name in kb._records:
        yield name, kb._records[name]
