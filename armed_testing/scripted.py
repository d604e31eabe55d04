"""Deterministic test doubles of every model role, driven by rules given in the constructor.

Pipeline tests must exercise the real stages at the model boundary without loading a model: these doubles
implement the same protocols, answer from tables or callables, can be made slow (`delay_s`, for timeout
paths) or broken (`fail`, for degradation paths), and record every call so a test can assert what a stage
asked for. They are honest about constraints: a scripted `choose` still refuses to answer outside `choices`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from armed.engines.base import (
    CONSISTENCY_LABELS,
    ChatMessage,
    ChoiceResult,
    Completion,
    SamplingOptions,
    cut_at_stop,
    normalise_vector,
)


class ScriptedModelError(RuntimeError):
    """Raised by a scripted double built with `fail=True` (or a failing exception type)."""


@dataclass
class _Behaviour:
    delay_s: float = 0.0
    fail: bool | type[BaseException] | BaseException = False
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def enter(self, method: str, payload: Any) -> None:
        self.calls.append((method, payload))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            if isinstance(self.fail, BaseException):
                raise self.fail
            if isinstance(self.fail, type):
                raise self.fail(f"scripted {method} failure")
            raise ScriptedModelError(f"scripted {method} failure")


def _last_text(messages: Sequence[ChatMessage]) -> str:
    return messages[-1].content if messages else ""


def _match_table(table: Mapping[str, str], text: str) -> str | None:
    """The answer of the first key (in table order) that is a substring of `text`."""
    for key, answer in table.items():
        if key in text:
            return answer
    return None


def char_completion(text: str, prompt: Sequence[ChatMessage], options: SamplingOptions, model_id: str) -> Completion:
    """A double's completion in which one character is one token: stop strings and `max_tokens` act as they do
    on a real engine (a cut by the budget is reported as "length"); sampling options change nothing."""
    text, _ = cut_at_stop(text, options.stop)
    reason = "length" if len(text) > options.max_tokens else "stop"
    text = text[: options.max_tokens]
    return Completion(text=text, finish_reason=reason, prompt_tokens=sum(len(m.content) for m in prompt),
                      completion_tokens=len(text), model=model_id)


ChooseRule = Callable[[Sequence[ChatMessage], Sequence[str]], str | Mapping[str, float]]
GenerateRule = Callable[[Sequence[ChatMessage]], str]


class ScriptedChatModel:
    """A ChatModel answering from `answers`.

    `answers` is either a callable (messages, choices) → a label, or a dict of label → probability; or a
    mapping from a substring of the last message to the label. Without a match, `default` is used, else the
    first choice. `choose` raises ValueError when the rule picks something outside `choices`, as constrained
    decoding would never do. `generations` works the same way for `generate` (callable or substring table).
    The chosen label gets `confidence` probability; the rest is shared evenly among the other choices.
    """

    def __init__(
        self,
        answers: ChooseRule | Mapping[str, str] | None = None,
        *,
        generations: GenerateRule | Mapping[str, str] | None = None,
        default: str | None = None,
        default_text: str = "",
        confidence: float = 0.9,
        model_id: str = "scripted-llm",
        delay_s: float = 0.0,
        fail: bool | type[BaseException] | BaseException = False,
    ) -> None:
        if not 0 < confidence <= 1:
            raise ValueError("confidence must be in (0, 1]")
        self.model_id = model_id
        self._answers = answers
        self._generations = generations
        self._default = default
        self._default_text = default_text
        self._confidence = confidence
        self._b = _Behaviour(delay_s=delay_s, fail=fail)

    @property
    def calls(self) -> list[tuple[str, Any]]:
        """("choose", (messages, choices)), ("generate", (messages, max_tokens)) and ("complete", (messages,
        options)) in call order."""
        return self._b.calls

    @property
    def delay_s(self) -> float:
        return self._b.delay_s

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        self._b.delay_s = value

    @property
    def fail(self) -> bool | type[BaseException] | BaseException:
        return self._b.fail

    @fail.setter
    def fail(self, value: bool | type[BaseException] | BaseException) -> None:
        self._b.fail = value

    def _distribution(self, label: str, choices: Sequence[str]) -> dict[str, float]:
        others = [c for c in choices if c != label]
        if not others:
            return {label: 1.0}
        rest = (1.0 - self._confidence) / len(others)
        return {c: (self._confidence if c == label else rest) for c in choices}

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        choices = list(dict.fromkeys(choices))
        await self._b.enter("choose", (list(messages), choices))
        if not choices:
            raise ValueError("choose() needs at least one choice")
        picked: str | Mapping[str, float] | None
        if callable(self._answers):
            picked = self._answers(messages, choices)
        elif self._answers is not None:
            picked = _match_table(self._answers, _last_text(messages))
        else:
            picked = None
        if picked is None:
            picked = self._default if self._default is not None else choices[0]
        if isinstance(picked, Mapping):
            unknown = set(picked) - set(choices)
            if unknown:
                raise ValueError(f"scripted distribution names labels outside the choices: {sorted(unknown)}")
            total = sum(picked.values())
            probs = {c: float(picked.get(c, 0.0)) / total for c in choices}
            label = max(choices, key=lambda c: probs[c])
        else:
            if picked not in choices:
                raise ValueError(f"scripted answer {picked!r} is not one of the choices {choices}")
            label, probs = picked, self._distribution(picked, choices)
        prompt_tokens = sum(len(m.content) for m in messages)
        return ChoiceResult(label, probs, self.model_id, prompt_tokens=prompt_tokens, output_tokens=len(label))

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        """The scripted text as a completion (see `char_completion`)."""
        await self._b.enter("complete", (list(messages), options))
        return char_completion(self._scripted_text(messages), messages, options, self.model_id)

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        await self._b.enter("generate", (list(messages), max_tokens))
        return self._scripted_text(messages)

    def _scripted_text(self, messages: Sequence[ChatMessage]) -> str:
        text: str | None
        if callable(self._generations):
            text = self._generations(messages)
        elif self._generations is not None:
            text = _match_table(self._generations, _last_text(messages))
        else:
            text = None
        return self._default_text if text is None else text


def hashed_vector(text: str, dim: int = 64) -> list[float]:
    """A deterministic unit vector from character bigrams: texts sharing characters point alike.

    Good enough for a double: 感冒发烧 / 感冒药 share 感冒 and so come out closer than 眼药水, which lets a filter
    test see the similarity threshold act without a real embedder.
    """
    vec = [0.0] * dim
    padded = f"^{text}$"
    grams = [padded[i : i + 2] for i in range(len(padded) - 1)] or [padded]
    for g in grams:
        h = hashlib.blake2b(g.encode("utf-8"), digest_size=8).digest()
        vec[int.from_bytes(h[:4], "little") % dim] += 1.0 if h[4] & 1 else -1.0
    if not any(vec):
        vec[0] = 1.0
    return normalise_vector(vec)


class ScriptedEmbedder:
    """An Embedder over a table of fixed vectors (normalised), falling back to `hashed_vector`."""

    def __init__(
        self,
        vectors: Mapping[str, Sequence[float]] | None = None,
        *,
        dim: int = 64,
        model_id: str = "scripted-embedder",
        delay_s: float = 0.0,
        fail: bool | type[BaseException] | BaseException = False,
    ) -> None:
        self.model_id = model_id
        self.dim = dim
        self._vectors = {k: normalise_vector(v) for k, v in (vectors or {}).items()}
        for key, vec in self._vectors.items():
            if len(vec) != dim:
                raise ValueError(f"vector for {key!r} has {len(vec)} dims, expected {dim}")
        self._b = _Behaviour(delay_s=delay_s, fail=fail)

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self._b.calls

    async def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(t) for t in texts)  # a double has no tokenizer: one token per character

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await self._b.enter("embed", list(texts))
        return [list(self._vectors[t]) if t in self._vectors else hashed_vector(t, self.dim) for t in texts]


PairRule = Callable[[str, str], str | Mapping[str, float]]


class ScriptedPairClassifier:
    """A PairClassifier answering from a rule (query, document) → label or distribution, or a pair table.

    `table` maps (query, document) → label; unmatched pairs get `default` (default: the first label).
    """

    def __init__(
        self,
        rule: PairRule | None = None,
        *,
        table: Mapping[tuple[str, str], str] | None = None,
        labels: Sequence[str] = CONSISTENCY_LABELS,
        default: str | None = None,
        confidence: float = 0.9,
        model_id: str = "scripted-consistency",
        delay_s: float = 0.0,
        fail: bool | type[BaseException] | BaseException = False,
    ) -> None:
        self.model_id = model_id
        self.labels: tuple[str, ...] = tuple(labels)
        if not self.labels:
            raise ValueError("a classifier needs labels")
        self._rule = rule
        self._table = dict(table or {})
        self._default = default if default is not None else self.labels[0]
        if self._default not in self.labels:
            raise ValueError(f"default {self._default!r} is not one of {self.labels}")
        self._confidence = confidence
        self._b = _Behaviour(delay_s=delay_s, fail=fail)

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self._b.calls

    def _dist(self, picked: str | Mapping[str, float]) -> dict[str, float]:
        if isinstance(picked, Mapping):
            unknown = set(picked) - set(self.labels)
            if unknown:
                raise ValueError(f"scripted distribution names unknown labels: {sorted(unknown)}")
            total = sum(picked.values())
            return {lab: float(picked.get(lab, 0.0)) / total for lab in self.labels}
        if picked not in self.labels:
            raise ValueError(f"scripted label {picked!r} is not one of {self.labels}")
        if len(self.labels) == 1:
            return {picked: 1.0}
        rest = (1.0 - self._confidence) / (len(self.labels) - 1)
        return {lab: (self._confidence if lab == picked else rest) for lab in self.labels}

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        await self._b.enter("classify", list(pairs))
        out = []
        for q, d in pairs:
            picked = self._rule(q, d) if self._rule else self._table.get((q, d), self._default)
            out.append(self._dist(picked))
        return out


class ScriptedImageReader:
    """An ImageReader returning the lines registered for exact image bytes; unknown images give `default`.

    Bytes registered in `broken` raise ValueError, as a real OCR engine does on undecodable input.
    """

    def __init__(
        self,
        texts: Mapping[bytes, Sequence[str]] | None = None,
        *,
        default: Sequence[str] = (),
        broken: Sequence[bytes] = (),
        model_id: str = "scripted-ocr",
        delay_s: float = 0.0,
        fail: bool | type[BaseException] | BaseException = False,
    ) -> None:
        self.model_id = model_id
        self._texts = {k: list(v) for k, v in (texts or {}).items()}
        self._default = list(default)
        self._broken = set(broken)
        self._b = _Behaviour(delay_s=delay_s, fail=fail)

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self._b.calls

    async def read(self, image: bytes) -> list[str]:
        await self._b.enter("read", image)
        if image in self._broken:
            raise ValueError(f"image of {len(image)} bytes is not a readable image")
        return list(self._texts.get(image, self._default))
