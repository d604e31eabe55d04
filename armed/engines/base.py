"""The model-client interface every pipeline stage talks to.

A stage never knows which engine answers it: vLLM on a GPU, transformers on a CPU, a model a registry package
ships, a Ray Serve handle, or a scripted double in a test. Each role is one small protocol with async methods.
Engines that block (transformers, vllm.LLM, ONNX sessions) run their work on their own worker thread
(armed.blocking.BlockingWorker), so they never stall the event loop that runs the DAG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal, Protocol, runtime_checkable

# Engines that block run their calls on a BlockingWorker (armed/blocking.py): one dedicated thread per engine.
from armed.blocking import BlockingWorker as BlockingWorker
from armed.labels import CONSISTENCY_LABELS as CONSISTENCY_LABELS  # the consistency role's contract


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


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingOptions:
    """How `complete` decodes. Temperature 0 (the default) is greedy; above 0 samples, within the top_p nucleus,
    reproducibly when `seed` is set. Decoding ends at the end-of-turn token, a `stop` string (left out of the
    text) or `max_tokens` generated tokens."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {self.max_tokens}")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be within [0, 2], not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be within (0, 1], not {self.top_p}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")


@dataclass(frozen=True)
class Completion:
    """Free text from a chat model, with why it ended and what it cost in the model's own tokens.

    `finish_reason` is "length" when `max_tokens` ended it (the text is then cut at a token boundary, never inside
    a UTF-8 character), else "stop" (end of turn or a stop string)."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    model: str = ""


class ContextLengthError(ValueError):
    """The prompt and the completion budget do not fit the model's context: the input's fault, a 400 at the edge."""

    param = "messages"  # what the caller must change (OpenAI names the same field for this error)

    def __init__(self, prompt_tokens: int, max_tokens: int, context: int) -> None:
        super().__init__(
            f"the prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}, but the model's context is "
            f"{context} tokens; shorten the messages or lower max_tokens"
        )
        self.prompt_tokens = prompt_tokens
        self.context = context


def check_context(prompt_tokens: int, max_tokens: int, context: int | None) -> None:
    """Refuse a prompt past the model's context before any compute is spent on it (a 15,000-token prompt kept
    a CPU replica busy for 2.5 minutes)."""
    if context is not None and prompt_tokens + max_tokens > context:
        raise ContextLengthError(prompt_tokens, max_tokens, context)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string (which is left out), and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True


@runtime_checkable
class ChatModel(Protocol):
    """The LLM and VL roles. `choose` can only return one of `choices` (constrained decoding or scoring).

    `complete` is free text with the request's sampling, finish reason and token counts (the OpenAI chat route);
    `generate` is its greedy text alone, what the pipeline's stages ask for."""

    model_id: str

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult: ...

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str: ...

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion: ...


@runtime_checkable
class Embedder(Protocol):
    """The embedding role: unit-length vectors, one per text."""

    model_id: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for `texts`, as `embed` feeds them (the `usage` of an embeddings response)."""
        ...


# How a consistency classifier reads a pair (no markup to escape: the pipeline sends the texts as they are).
CONSISTENCY_TEMPLATE = "Query: {query}\nDocument: {document}"


def consistency_pair(query: str, title: str, text: str) -> tuple[str, str]:
    """The (query, document) pair the two-stage filter asks the consistency role about: the query the side searched
    with, and the retrieved document as its title, one space, its text."""
    return query, title + " " + text


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
    """The engines one pipeline run may use, one field per model role (armed/roles.py); a role left as None is
    simply not available."""

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
        for f in fields(self):  # one field per role (armed/roles.py; tests/test_roles.py holds them together)
            if f.name == "extra_ids":
                continue
            client = getattr(self, f.name)
            ids[f.name] = client.model_id if client is not None else "none"
        ids.update(self.extra_ids)
        return ids


def check_choices(choices: Sequence[str]) -> list[str]:
    """The distinct choices in order; at least one, none empty (every engine's `choose` starts here)."""
    unique = list(dict.fromkeys(choices))
    if not unique:
        raise ValueError("choose() needs at least one choice")
    if any(not c for c in unique):
        raise ValueError("choices must be non-empty strings")
    return unique


def choice_token_budget(choices: Sequence[str]) -> int:
    """Tokens a constrained decode needs for the longest choice: its UTF-8 bytes bound its tokens, plus the end."""
    return max(len(c.encode("utf-8")) for c in choices) + 2


class ChoiceOutsideLabels(ValueError):
    """A constrained decode answered something that is not one of the choices (truncated, empty, another label).

    Never mapped to the nearest label: the caller's stage fails, and the judge degrades and says why.
    """

    def __init__(self, model: str, answer: str, choices: Sequence[str], finish_reason: str | None = None) -> None:
        why = f" (finish_reason {finish_reason})" if finish_reason else ""
        super().__init__(f"{model} answered {answer[:80]!r}{why}, which is not one of {list(choices)}")
        self.model = model
        self.answer = answer
        self.choices = tuple(choices)
        self.finish_reason = finish_reason

    def __reduce__(self) -> tuple:  # Ray pickles exceptions across processes: keep the fields
        return (type(self), (self.model, self.answer, self.choices, self.finish_reason))


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
