"""The model-client interface every pipeline stage talks to.

A stage never knows which engine answers it: vLLM on a GPU, transformers on a CPU, a model a registry package
ships, a Ray Serve handle, or a scripted double in a test. Each role is one small protocol with async methods.
Engines that block (transformers, vllm.LLM, ONNX sessions) run their work on their own worker thread
(armed.blocking.BlockingWorker), so they never stall the event loop that runs the DAG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Engines that block run their calls on a BlockingWorker (armed/blocking.py): one dedicated thread per engine.
from armed.blocking import BlockingWorker as BlockingWorker


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn. `images` are encoded image bytes, only for vision-language models."""

    role: str
    content: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ChoiceResult:
    """A constrained answer: exactly one of the offered choices, with a distribution over all of them."""

    label: str
    probabilities: dict[str, float]
    model: str
    prompt_tokens: int = 0
    output_tokens: int = 0


@runtime_checkable
class ChatModel(Protocol):
    """The LLM and VL roles. `choose` can only return one of `choices` (constrained decoding or scoring)."""

    model_id: str

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult: ...

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str: ...


@runtime_checkable
class Embedder(Protocol):
    """The embedding role: unit-length vectors, one per text."""

    model_id: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@runtime_checkable
class PairClassifier(Protocol):
    """The consistency role: for (query, document) pairs, a distribution over `labels`."""

    model_id: str
    labels: tuple[str, ...]

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]: ...


@runtime_checkable
class ImageReader(Protocol):
    """OCR: the text lines printed on an image."""

    model_id: str

    async def read(self, image: bytes) -> list[str]: ...


@dataclass
class ModelClients:
    """The engines one pipeline run may use; a role left as None is simply not available."""

    llm: ChatModel | None = None
    vl: ChatModel | None = None
    embedder: Embedder | None = None
    consistency: PairClassifier | None = None
    ocr: ImageReader | None = None
    # The online judge: a PairClassifier whose labels are the four relevance levels (armed.student.engine).
    student: PairClassifier | None = None
    extra_ids: dict[str, str] = field(default_factory=dict)

    def model_ids(self) -> dict[str, str]:
        ids = {}
        for role in ("llm", "vl", "embedder", "consistency", "ocr", "student"):
            client = getattr(self, role)
            ids[role] = client.model_id if client is not None else "none"
        ids.update(self.extra_ids)
        return ids


def softmax(scores: dict[str, float]) -> dict[str, float]:
    """Normalise log-scores into probabilities (stable for very negative values)."""
    if not scores:
        return {}
    top = max(scores.values())
    exp = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}


def normalise_vector(vec: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [float(x) / norm for x in vec]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)
