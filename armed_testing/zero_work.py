"""Zero-work engines: protocol-complete engines that do (almost) nothing, for two honest uses.

1. Measuring the serving overhead alone (proxy, handles, batching, the DAG's fan-out) with models that cost ~0.
2. Tests of the Serve layer that must not depend on model weights or on the engine factory.

They are deterministic (vectors and choices derive from a hash of the input) and can be made slow, failing or
wedged (`delay_s`, `fail`, `wedge_on`) to test timeouts, degradation, autoscaling and replica replacement. A
failing engine still answers the health probe (inputs equal to PROBE_TEXT): it models a replica that is up but
whose answers fail, which is what the judge must turn into a degraded judgment; a failing probe would instead
keep the replica from starting.

They reach a model deployment only by injection: `ZeroWork(...)` is the `engine_cls` a test or the perf stack
binds into the deployment (`serve_apps.models.build_model_app(args, engine_cls=ZeroWork(delay_s=0.05))`), the
way ray.serve.llm's LLMServer takes its `engine_cls`; no setting, flag or Serve config arg can name it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from armed.blocking import BlockingWorker
from armed.engines.base import (
    CONSISTENCY_LABELS,
    ChatMessage,
    ChatModel,
    ChoiceResult,
    Completion,
    Embedder,
    ImageReader,
    PairClassifier,
    SamplingOptions,
    normalise_vector,
    softmax,
)
from armed.roles import get_role
from armed.settings import EngineSpec
from armed_testing.scripted import char_completion

PROBE_TEXT = "health"  # what the model deployments' check_health sends
_WEDGES: list[threading.Event] = []  # what wedged calls wait for; nothing sets them in a replica


def _wedge() -> None:
    stuck = threading.Event()
    _WEDGES.append(stuck)
    stuck.wait()


def _unwedged() -> None:
    return None


def release_wedges() -> int:
    """Let every wedged call of this process return (tests end with it; a wedged replica is replaced instead)."""
    for stuck in _WEDGES:
        stuck.set()
    n = len(_WEDGES)
    _WEDGES.clear()
    return n


def _seed(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class _Knobs:
    def __init__(self, *, delay_s: float = 0.0, fail: bool = False, wedge_on: str | None = None,
                 model_id: str = "zero-work") -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.model_id = model_id
        self.calls = 0
        self.wedge_on = wedge_on
        # With wedge_on, calls go through one worker thread like a real engine's: a call whose input contains
        # wedge_on blocks that thread for good (a hung CUDA kernel, a FIFO read), and later calls queue behind it.
        self._worker = BlockingWorker(f"{model_id}-engine") if wedge_on else None

    async def _work(self, *inputs: str) -> None:
        self.calls += 1
        if self._worker is not None and self.wedge_on is not None:
            wedge = any(self.wedge_on in i for i in inputs)
            await self._worker.run(_wedge if wedge else _unwedged, what="wedged call" if wedge else "call")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail and not all(PROBE_TEXT in i for i in inputs):
            raise RuntimeError(f"{self.model_id}: configured to fail")


def _decodes(*images: bytes) -> None:
    """Zero-work engines skip the model, not the input contract: an image a real engine could not decode is refused
    the same way (armed.images.ImageError, a 400), so fuzzing a zero-work stack sees what a real one answers."""
    from armed.images import check

    for image in images:
        check(image)


class ZeroWorkChat(_Knobs):
    """ChatModel: `choose` picks by hash of the last message; `generate` / `complete` echo (a prefix of) it."""

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        _decodes(*(img for m in messages for img in m.images))
        await self._work(messages[-1].content)
        digest = _seed(messages[-1].content + "|" + str(len(messages[-1].images)))
        scores = {c: digest[i % len(digest)] / 64.0 for i, c in enumerate(choices)}
        probs = softmax(scores)
        return ChoiceResult(label=max(probs, key=probs.__getitem__), probabilities=probs, model=self.model_id)

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        await self._work(messages[-1].content)
        return messages[-1].content[: max(1, min(max_tokens, 32))]

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        """Echoes the last message, one character per token (so `max_tokens` and `stop` act as on a model)."""
        _decodes(*(img for m in messages for img in m.images))
        await self._work(messages[-1].content)
        return char_completion(messages[-1].content, messages, options, self.model_id)


class ZeroWorkEmbedder(_Knobs):
    """Embedder: an 8-dimensional unit vector from a hash of each text."""

    def __init__(self, *, dim: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self.dim = dim
        self.batch_sizes: list[int] = []

    async def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(t) for t in texts)  # no tokenizer: one token per character

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await self._work(*texts)
        self.batch_sizes.append(len(texts))
        return [normalise_vector([b - 127.5 for b in _seed(t)[: self.dim]]) for t in texts]


class ZeroWorkClassifier(_Knobs):
    """PairClassifier: P(first label) from a hash of the pair."""

    def __init__(self, *, labels: Sequence[str] = CONSISTENCY_LABELS, **kw: Any) -> None:
        super().__init__(**kw)
        self.labels = tuple(labels)
        self.batch_sizes: list[int] = []

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        await self._work(*(a + b for a, b in pairs))
        self.batch_sizes.append(len(pairs))
        out = []
        for a, b in pairs:
            p = _seed(a + "\x1f" + b)[0] / 255.0
            rest = (1.0 - p) / max(len(self.labels) - 1, 1)
            out.append({lab: (p if i == 0 else rest) for i, lab in enumerate(self.labels)})
        return out


class ZeroWorkOcr(_Knobs):
    """ImageReader: one line naming the image's size."""

    async def read(self, image: bytes) -> list[str]:
        _decodes(image)
        # The health probe sends a tiny blank PNG; real product images are larger than 1 KiB.
        await self._work(PROBE_TEXT if len(image) < 1024 else "")
        return [f"{len(image)} bytes"]


# The zero-work engine of each engine protocol (armed/roles.py says which protocol a role implements).
_BY_PROTOCOL: dict[type, type] = {ChatModel: ZeroWorkChat, Embedder: ZeroWorkEmbedder,
                                  PairClassifier: ZeroWorkClassifier, ImageReader: ZeroWorkOcr}


def zero_work_engine(role: str, **options: Any) -> Any:
    """The zero-work engine for a role: the one of its protocol; a pair classifier gets the role's labels."""
    entry = get_role(role)
    options.setdefault("model_id", f"zero-work-{role}")
    if entry.labels:
        options.setdefault("labels", entry.labels)
    return _BY_PROTOCOL[entry.protocol](**options)


@dataclass(frozen=True)
class ZeroWork:
    """The injectable engine class of every role: `ZeroWork(delay_s=...)(role, spec)` builds the role's zero-work
    engine, as a model deployment calls its `engine_cls` (deployments.engines.EngineClass).

    Frozen and defined at module level, so Ray pickles it by reference into the bound deployment and the replica
    imports it from this package (a source checkout on the workers' PYTHONPATH). A classifier role answers with
    the spec's labels when the spec names them, else the role's own (the student's four levels)."""

    delay_s: float = 0.0
    fail: bool = False
    wedge_on: str | None = None

    def __call__(self, role: str, spec: EngineSpec) -> Any:
        options: dict[str, Any] = {"delay_s": self.delay_s, "fail": self.fail, "wedge_on": self.wedge_on}
        if get_role(role).labels and "labels" in spec.model_fields_set:
            options["labels"] = spec.labels
        return zero_work_engine(role, **options)
