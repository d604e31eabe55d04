"""A boundary double for tests/serve/test_ray_llm.py: ray.serve.llm's real LLMServer on the real engine, except
that a constrained chat request whose messages carry `GARBAGE_MARK` gets a one-token budget. The real vLLM then
answers a cut-off label ("mo" for moderately_relevant), which is exactly the garbage a too-small budget or a
broken grammar produces in production; the judge must degrade on it, not relabel it."""

from __future__ import annotations

from typing import Any

from ray.llm._internal.serve.core.server.llm_server import LLMServer

GARBAGE_MARK = "ARMED-TEST-GARBAGE"


class TruncatingLLMServer(LLMServer):
    async def chat(self, request: Any, raw_request_info: Any = None) -> Any:
        if request.structured_outputs is not None and GARBAGE_MARK in str(request.messages):
            request = request.model_copy(update={"max_tokens": 1})
        return await super().chat(request, raw_request_info)
