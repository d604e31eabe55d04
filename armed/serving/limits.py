"""Input limits of the HTTP edge, as data: one model, read from the serving profile's `limits` section.

Every bound the gateway and the model routes enforce on a request is a field here, with its default; nothing
else in the code spells a number for them. A request past a bound is refused before any model sees it: 413 for
the body size, 422 naming the field for everything inside the body (see deployments/api.py). The judgment's own
fields (query, product name, CPV, images) are bounded by the domain model (armed/domain.py), which the library
and the batch CLI share, and the batch size by the profile's `judge.max_batch_pairs`.

Why each default: the body cap fits one 8 MiB image in base64 with room to spare; the text caps are far above any
real query, product name or chat turn armed serves, yet bound what one request can cost a model. The guided_choice
caps exist because a label is scored token by token: one 1,025-character label kept the CPU LLM busy for 36-47 s,
a 100,000-character one for minutes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class InputLimits(BaseModel):
    """Bounds on one HTTP request to armed (the profile's `limits`; every field has a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024,
        description="Largest request body, counted as it arrives (Content-Length and chunked alike): 413 past it.",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest time the whole body may take to arrive: 408 past it."
    )
    json_depth: int = Field(default=32, ge=4, le=256, description="Deepest nesting of objects and arrays in a body.")
    model_chars: int = Field(default=512, ge=1, description="Longest `model` name.")
    id_chars: int = Field(default=256, ge=1, description="Longest caller-supplied identifier (`user`).")
    inputs: int = Field(default=256, ge=1, description="Most texts in one /v1/embeddings or pairs in one /v1/classify.")
    text_chars: int = Field(default=8192, ge=1, description="Longest embedding input or classified text.")
    inputs_total_chars: int = Field(
        default=65536, ge=1,
        description="All texts of one /v1/embeddings or /v1/classify request together (an embedder's cost grows "
                    "with every token: 256 inputs of 8192 characters would hold a CPU replica for many minutes).",
    )
    messages: int = Field(default=32, ge=1, description="Most chat messages in one request.")
    message_parts: int = Field(default=16, ge=1, description="Most content parts in one chat message.")
    message_chars: int = Field(default=32768, ge=1, description="Longest chat message (its text parts together).")
    chat_chars: int = Field(default=65536, ge=1, description="All chat messages' text together.")
    max_tokens: int = Field(default=2048, ge=1, description="Largest max_tokens / max_completion_tokens.")
    default_max_tokens: int = Field(default=128, ge=1, description="Completion budget when the request names none.")
    choices: int = Field(default=32, ge=1, description="Most guided_choice entries.")
    choice_chars: int = Field(default=64, ge=1, description="Longest guided_choice entry.")
    choice_total_chars: int = Field(default=512, ge=1, description="All guided_choice entries together.")
    stop_sequences: int = Field(default=4, ge=0, description="Most `stop` sequences (OpenAI's own bound).")
    stop_chars: int = Field(default=64, ge=1, description="Longest `stop` sequence.")

    @model_validator(mode="after")
    def _consistent(self) -> InputLimits:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(f"default_max_tokens {self.default_max_tokens} > max_tokens {self.max_tokens}")
        if self.choice_chars > self.choice_total_chars:
            raise ValueError(f"choice_chars {self.choice_chars} > choice_total_chars {self.choice_total_chars}")
        if self.text_chars > self.inputs_total_chars:
            raise ValueError(f"text_chars {self.text_chars} > inputs_total_chars {self.inputs_total_chars}")
        if self.message_chars > self.chat_chars:
            raise ValueError(f"message_chars {self.message_chars} > chat_chars {self.chat_chars}")
        return self
