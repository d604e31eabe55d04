"""In-process traces of the judgment DAG: which model calls one judgment makes, on which side, with how many tokens.

The Pipeline runs in this process with the engines of the `engine_cls` it is given (the zero-work doubles,
armed_testing/zero_work.py, passed in by `python -m armed_testing.cli perf`) standing in for every role the
profile deploys; kb / ocr-kb / none roles stay None exactly as in the Serve judge. Each engine is wrapped so each
call is recorded with the side it ran on (query, product, or the join). The zero-work engines answer from a hash
of their input, so the same pair always takes the same path: the trace is exact for these inputs.

Critical path: within a side every model call is awaited before the next (rewrite → embed → classify → NER;
OCR → VL → standardise), and the two sides run concurrently, so the sequential model calls on the critical path
are max(query-side calls, product-side calls) + join calls (the LLM judge).

Token counts use the real Qwen tokenizer (rebuilt offline), which is what the GPU profiles' Qwen3 / Qwen2.5-VL
models read: chat prompts are counted as the message texts plus Qwen's chat-template tokens (5 per message, 3
to open the answer, 4 for the empty think block of Qwen3), an image as Qwen2.5-VL's (h/28)·(w/28) + 2 tokens;
constrained answers as the label's tokens + EOS; free generation at its max_tokens budget (an upper bound: the
zero-work engine's echo says nothing about a real model's length).
"""

from __future__ import annotations

import contextvars
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from armed.domain import Branch, Product, Query
from armed.pipeline.hooks import JudgmentHooks, SideLoader, Understood
from armed.settings import EngineClass

SIDE: contextvars.ContextVar[str] = contextvars.ContextVar("armed_perf_side", default="join")
# Every branch that decides without a model call at the join (the hierarchy's own branches, guideline included).
DETERMINISTIC = {b.value for b in Branch} - {Branch.student.value, Branch.llm_judge.value, Branch.fallback.value}
CHAT_OVERHEAD_PER_MESSAGE = 5  # <|im_start|>role\n ... <|im_end|>\n
CHAT_OPEN_ANSWER = 3 + 4  # <|im_start|>assistant\n + <think>\n\n</think>\n\n


@dataclass
class CallRecord:
    role: str
    method: str
    side: str
    items: int
    prompt_tokens: int
    output_tokens: int
    output_is_budget: bool = False


@dataclass
class Tracer:
    count_tokens: Any = None  # callable(str) -> int, or None (tokens then reported as 0)
    calls: list[CallRecord] = field(default_factory=list)

    def tokens(self, text: str) -> int:
        return int(self.count_tokens(text)) if self.count_tokens and text else 0


def image_tokens(data: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
    return max(1, round(h / 28)) * max(1, round(w / 28)) + 2


class TracedEngine:
    """Forwards every attribute to the engine; records each model call (role, side, items, tokens)."""

    def __init__(self, engine: Any, role: str, tracer: Tracer) -> None:
        self._engine = engine
        self._role = role
        self._tracer = tracer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def _rec(self, method: str, items: int, prompt: int, output: int, budget: bool = False) -> None:
        self._tracer.calls.append(CallRecord(self._role, method, SIDE.get(), items, prompt, output, budget))

    def _chat_prompt(self, messages: Any) -> int:
        t = self._tracer
        n = sum(t.tokens(m.content) + CHAT_OVERHEAD_PER_MESSAGE + sum(image_tokens(i) for i in m.images)
                for m in messages)
        return n + CHAT_OPEN_ANSWER if t.count_tokens else 0

    async def choose(self, messages: Any, choices: Any) -> Any:
        res = await self._engine.choose(messages, choices)
        out = self._tracer.tokens(res.label) + 1 if self._tracer.count_tokens else 0
        self._rec("choose", 1, self._chat_prompt(messages), out)
        return res

    async def generate(self, messages: Any, *, max_tokens: int = 128) -> str:
        text = await self._engine.generate(messages, max_tokens=max_tokens)
        self._rec("generate", 1, self._chat_prompt(messages), max_tokens if self._tracer.count_tokens else 0, True)
        return text

    async def embed(self, texts: Any) -> Any:
        out = await self._engine.embed(texts)
        self._rec("embed", len(texts), sum(self._tracer.tokens(t) + 1 for t in texts) if self._tracer.count_tokens
                  else 0, 0)
        return out

    async def classify(self, pairs: Any) -> Any:
        out = await self._engine.classify(pairs)
        tok = sum(self._tracer.tokens(f"Query: {q}\nDocument: {d}") + 1 for q, d in pairs)
        self._rec("classify", len(pairs), tok if self._tracer.count_tokens else 0, 0)
        return out

    async def read(self, image: bytes) -> Any:
        out = await self._engine.read(image)
        self._rec("read", 1, 0, 0)
        return out


def qwen_token_counter() -> Any:
    """A str → token count function on the real Qwen tokenizer (None when it cannot be built here)."""
    try:
        from armed.engines.qwen_tokenizer import build_qwen_tokenizer

        tok = build_qwen_tokenizer()
    except Exception:
        return None
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def traced_pipeline(
    profile: Any, tracer: Tracer, engine_cls: EngineClass, *, llm_text: bool | None = None
) -> Any:
    """A Pipeline of `profile` (its settings, the KB) whose deployed roles are traced engines of `engine_cls`
    (built as a model replica builds its engine: `engine_cls(role, spec)`)."""
    from armed.engines.base import ModelClients
    from armed.knowledge.artefact import load_knowledge
    from armed.pipeline.dag import Pipeline
    from armed.settings import overlay

    settings = profile.to_settings()
    if llm_text is not None:
        settings = overlay(settings, {"stages": {"llm_text": llm_text}})
    clients = ModelClients()
    for role in profile.deployed_roles():
        eng = engine_cls(role, profile.models[role].engine)
        setattr(clients, role, TracedEngine(eng, role, tracer))
    kb = load_knowledge(settings.knowledge)
    return Pipeline(settings, kb, clients)


class _SideLabels(JudgmentHooks):
    """Labels the model calls each side makes (SIDE), around the pipeline's own side runs: each side runs in its
    own task, so the label set there stays in that task; what is left runs at the join."""

    async def query_side(self, query: Query, load: SideLoader[Any]) -> tuple[Understood[Any], bool]:
        SIDE.set("query")
        return await load(), False

    async def product_side(self, product: Product, load: SideLoader[Any]) -> tuple[Understood[Any], bool]:
        SIDE.set("product")
        return await load(), False


async def trace_pair(pipeline: Any, tracer: Tracer, query: str, product: Any) -> dict[str, Any]:
    """Judge one pair through the pipeline's own `judge` (the flow the Serve judge runs, with the same parsing and
    cheating-check switch) and return its trace."""
    first = len(tracer.calls)
    token = SIDE.set("join")
    try:
        j = await pipeline.judge(query, product, request_id="perf", hooks=_SideLabels())
    finally:
        SIDE.reset(token)
    calls = tracer.calls[first:]
    by_side = Counter(c.side for c in calls)
    return {
        "branch": j.branch.value,
        "path": path_of(j.branch.value),
        "calls": calls,
        "by_side": dict(by_side),
        "critical_path_calls": max(by_side.get("query", 0), by_side.get("product", 0)) + by_side.get("join", 0),
        "judgment": j,
    }


def path_of(branch: str) -> str:
    if branch in DETERMINISTIC:
        return "deterministic"
    return branch if branch in (Branch.llm_judge.value, Branch.student.value) else "fallback"


def cost_table(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """Per path (and over the whole mix): judgments, and per judgment the calls and tokens of each role."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in traces:
        groups[t["path"]].append(t)
        groups["all"].append(t)
    out: dict[str, Any] = {}
    for path, ts in groups.items():
        n = len(ts)
        roles: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for t in ts:
            for c in t["calls"]:
                r = roles[c.role]
                r["calls"] += 1
                r["items"] += c.items
                r["prompt_tokens"] += c.prompt_tokens
                r["output_tokens"] += c.output_tokens
                if c.output_is_budget:
                    r["output_tokens_budget_part"] += c.output_tokens
        out[path] = {
            "judgments": n,
            "share": None,
            "model_calls_per_judgment": round(sum(r["calls"] for r in roles.values()) / n, 3),
            "critical_path_calls_mean": round(sum(t["critical_path_calls"] for t in ts) / n, 3),
            "per_role": {role: {k: round(v / n, 2) for k, v in r.items()} for role, r in sorted(roles.items())},
        }
    total = len(traces)
    for v in out.values():
        v["share"] = round(v["judgments"] / total, 3) if total else None
    return out
