"""A built knowledge base: one versioned folder that every judge replica opens without rebuilding anything.

`armed kb build` builds a KnowledgeBase from the seed and any mix of sources (as `KnowledgeBase.load` does),
then writes it here:

    <artefact>/manifest.json   format, version, rules version, sources, counts per entity type, built-at
    <artefact>/state.json      the small state (seed, rules, dosage forms, populations, ...) as tagged JSON
    <artefact>/index/*.npy     the big indexes as flat arrays, memory-mapped at load (armed/knowledge/frozen.py):
                               the lexicon matchers, large str→str maps (common names, brands), drug records,
                               documents and the BM25 postings

The version is content-addressed (armed/knowledge/content.py): the same content built twice, from reordered or
reformatted files or another folder, has the same version, and an artefact's version equals that of the in-memory
KB it was written from (tests/knowledge/test_artefact.py).

An artefact is data, never code: the chart syncs artefacts from buckets, so whoever can write to the bucket must not
be able to run code in the judge. The state is JSON whose only constructors are the containers below and the
pydantic models named in STATE_MODELS (validated like any input); the indexes are .npy read with allow_pickle=False.
A pickle (state.pkl, format 2 and before) is refused, not loaded. A field added to KnowledgeBase travels in the
artefact without a change here as long as it is built from str, numbers, lists, tuples, sets, dicts, compiled
patterns and the models in STATE_MODELS (a Matcher or a large str→str dict is mapped); anything else fails the
build, naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from armed import __version__
from armed.domain import WebDoc
from armed.engines.cache import cache_dir
from armed.knowledge.base import DrugRecord, KnowledgeBase, KnowledgeError
from armed.knowledge.frozen import CsrBM25, FrozenMatcher, FrozenStrMap, LazyDocs, StrTable, model_json
from armed.knowledge.index import BM25, Matcher
from armed.knowledge.schema import HijackPattern, Rule, Seed

if TYPE_CHECKING:
    from armed.settings import KnowledgeSettings

# 2: trade names and their makers, the pinyin index, complementary efficacy groups (issue 22).
# 3: the state as JSON (state.json) instead of a pickle (state.pkl), same content and versions (issue 23); the seed
#    carries therapeutic_areas and insert names are cleaned of makers and specs (issue 22).
FORMAT = 3
MANIFEST = "manifest.json"
STATE = "state.json"
PICKLED_STATE = "state.pkl"  # formats 1-2: never loaded (a pickle runs code)
# A str→str dict at least this large is memory-mapped rather than kept in the state (small ones stay plain dicts: a
# dict lookup is ~20x faster than a binary search, and they are hit on every comparison).
MAP_MIN_ENTRIES = 5000
# The only classes a state file can name: each is rebuilt by pydantic validation from JSON, as input would be.
STATE_MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (Seed, Rule, HijackPattern, DrugRecord, WebDoc)}


class ArtefactError(ValueError):
    """An artefact is missing, malformed, of another format, or a setting names one wrongly."""


# ---------------------------------------------------------------------------------------------------- state


def _json_key(encoded: Any) -> str:
    return json.dumps(encoded, ensure_ascii=False, sort_keys=True)


def encode_state(value: Any, where: str = "state") -> Any:
    """A state value as JSON-ready data: JSON's own types as they are (lists stay lists), everything else an object
    {"$": tag, "v": ...}; dicts keep their order (lookups that take the first match depend on it), sets are
    written sorted. TypeError, naming `where`, for a value with no data form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
    if isinstance(value, list):
        return [encode_state(x, f"{where}[{i}]") for i, x in enumerate(value)]
    if isinstance(value, tuple):
        return {"$": "tuple", "v": [encode_state(x, f"{where}[{i}]") for i, x in enumerate(value)]}
    if isinstance(value, set | frozenset):
        items = sorted((encode_state(x, f"{where}{{}}") for x in value), key=_json_key)
        return {"$": "frozenset" if isinstance(value, frozenset) else "set", "v": items}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {"$": "dict", "v": {k: encode_state(v, f"{where}[{k!r}]") for k, v in value.items()}}
        return {"$": "pairs", "v": [[encode_state(k, f"{where} key"), encode_state(v, f"{where}[{k!r}]")]
                                    for k, v in value.items()]}
    if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
        return {"$": "re", "v": value.pattern, "flags": int(value.flags)}
    if isinstance(value, Path):
        return {"$": "path", "v": str(value)}
    if isinstance(value, BaseModel) and STATE_MODELS.get(type(value).__name__) is type(value):
        return {"$": "model", "cls": type(value).__name__, "v": value.model_dump(mode="json")}
    raise TypeError(f"{where}: a {type(value).__name__} has no data form in a knowledge-base artefact (build the "
                    "field from JSON types, tuples, sets, patterns or a model in STATE_MODELS)")


def decode_state(data: Any, where: str = "state") -> Any:
    """The inverse of `encode_state`. ArtefactError, naming `where`, for anything it would not have written."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [decode_state(x, f"{where}[{i}]") for i, x in enumerate(data)]
    if not isinstance(data, dict):
        raise ArtefactError(f"{where}: not state data ({type(data).__name__})")
    tag, v = data.get("$"), data.get("v")
    if tag in ("tuple", "set", "frozenset") and isinstance(v, list):
        items = [decode_state(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return tuple(items) if tag == "tuple" else set(items) if tag == "set" else frozenset(items)
    if tag == "dict" and isinstance(v, dict):
        return {k: decode_state(x, f"{where}[{k!r}]") for k, x in v.items()}
    if tag == "pairs" and isinstance(v, list) and all(isinstance(kv, list) and len(kv) == 2 for kv in v):
        return {decode_state(k, f"{where} key"): decode_state(x, f"{where}[{k!r}]") for k, x in v}
    if tag == "re" and isinstance(v, str) and isinstance(data.get("flags"), int):
        return re.compile(v, data["flags"])
    if tag == "float" and v in ("nan", "inf", "-inf"):
        return float(v)
    if tag == "path" and isinstance(v, str):
        return Path(v)
    if tag == "model":
        cls = STATE_MODELS.get(data.get("cls"))  # type: ignore[arg-type]
        if cls is None:
            raise ArtefactError(f"{where}: {data.get('cls')!r} is not a model a knowledge-base state may hold")
        try:
            return cls.model_validate(v)
        except ValidationError as exc:
            raise ArtefactError(f"{where}: invalid {cls.__name__}: {exc}") from exc
    raise ArtefactError(f"{where}: not state data (tag {tag!r})")



# ---------------------------------------------------------------------------------------------------- write


def write_artefact(kb: KnowledgeBase, out: Path, sources: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Write a built (in-memory) KB to `out` atomically (a temporary sibling renamed into place); returns the
    manifest. An existing `out` holding the same version is left as it is; another version needs force."""
    out = Path(out)
    if (out / MANIFEST).is_file():
        old = _raw_manifest(out)
        current = old.get("format") == FORMAT and not (out / PICKLED_STATE).exists()
        if old.get("version") == kb.version and current and not force:
            return old
        if old.get("version") != kb.version and not force:
            raise ArtefactError(f"{out} holds knowledge base {old.get('version')}, not {kb.version}: "
                                "choose another --out or pass --force to replace it")
        # else the same content in an older format (a pickled state): rewritten in this one
    elif out.exists() and any(out.iterdir()):
        raise ArtefactError(f"{out} exists and is not a knowledge-base artefact")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    index = tmp / "index"
    index.mkdir(parents=True)
    frozen: dict[str, dict[str, Any]] = {}
    state: dict[str, Any] = {}
    for name, value in kb.state().items():
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
        elif name != "artefact_path":  # where a KB was loaded from is set at load, not stored
            state[name] = encode_state(value, name)
    (tmp / STATE).write_text(json.dumps(state, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    manifest = {
        "format": FORMAT,
        "version": kb.version,
        "rules_version": kb.rules_version,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "armed_version": __version__,
        "sources": list(kb.source_names),
        "requested_sources": list(sources),
        "counts": kb.counts(),
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


def _raw_manifest(path: Path) -> dict[str, Any]:
    f = Path(path) / MANIFEST
    try:
        manifest = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path} is not a knowledge-base artefact ({f}: {exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtefactError(f"{path} is not a knowledge-base artefact ({f} is not a JSON object)")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of an artefact this armed loads; ArtefactError for anything else (a pickled state included)."""
    if (Path(path) / PICKLED_STATE).exists():
        raise ArtefactError(f"{path} holds a pickled state ({PICKLED_STATE}, artefact format 2 or before), which "
                            "armed refuses to load: a pickle runs code when read. Rebuild it with `armed kb build` "
                            f"(format {FORMAT} stores the state as JSON; same content, same version)")
    manifest = _raw_manifest(path)
    if manifest.get("format") != FORMAT:
        raise ArtefactError(f"{path}: artefact format {manifest.get('format')!r}, this armed reads {FORMAT}: "
                            "rebuild it with `armed kb build`")
    return manifest


def load_artefact(path: Path) -> KnowledgeBase:
    """Open a built artefact: read the small state (JSON), memory-map the indexes; nothing is rebuilt."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        raw = json.loads((path / STATE).read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ArtefactError(f"{STATE} is not a JSON object")
        state = {name: decode_state(value, name) for name, value in raw.items()}
        index = path / "index"
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
            state[name] = value
        kb = KnowledgeBase.from_state(state)
    except (OSError, KeyError, ValueError) as exc:  # ArtefactError is a ValueError: it gets the path too
        raise ArtefactError(f"{path}: cannot load the artefact: {exc}") from exc
    kb.version = manifest["version"]
    kb.source_names = list(manifest.get("sources", []))
    kb.artefact_path = path.resolve()  # where derived data (armed/knowledge/doc_vectors.py) is looked up
    return kb


def default_root() -> Path:
    """$ARMED_CACHE_DIR/kb: where `armed kb build --install` puts artefacts and `current`."""
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
    """The KB a process judges with: the configured artefact (built by `armed kb build`, loaded without
    rebuilding), else the seed + sources built here (see resolve_artefact)."""
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
    if ref == "seed":
        return KnowledgeBase.load()
    if ref == "current":
        ref = str(default_root() / "current")
    return load_artefact(Path(ref))
