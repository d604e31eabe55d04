"""HTTP request/response schemas shared by every model deployment and the gateway (OpenAI-compatible surface).

The model deployments answer these routes for their own model (under `/models/<role>`); the gateway answers
the same routes at `/v1/...` for every model, routing by the `model` field. Both call the same handle methods
(`embed`, `classify`, `choose`, `generate`, `read`), so HTTP and handle calls share one request path.
Limits are part of the contract: anything past them is a 4xx with a reason, never a 500.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from armed import images
from armed.engines.base import ChatMessage, ChoiceResult
from deployments.auth import install_auth

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_INPUTS = 256
MAX_TEXT_CHARS = 8192
MAX_MESSAGES = 32
MAX_CHOICES = 32
MAX_TOKENS = 2048
ROLE_MODEL_NAME = {"llm": "armed-llm", "vl": "armed-vl", "embedder": "armed-embedder",
                   "consistency": "armed-consistency", "ocr": "armed-ocr", "student": "armed-student"}


def model_names(role: str, model_path: str | None) -> list[str]:
    """Names a role answers to: `armed-<role>` first (what /v1/models lists), the role, the checkpoint path."""
    names = [ROLE_MODEL_NAME[role], role]
    if model_path:
        names.append(model_path)
    return names


class ApiError(Exception):
    """An error with an HTTP status and an OpenAI-style body (`{"error": {"message", "type", "code"}}`)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.status}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Body-size limit, ApiError → its status, validation → 422 with the field; never a bare 500 for input.
    Installed last, the API-key check (deployments.auth) runs first."""

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return ApiError(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}").response()
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "malformed request")).removeprefix("Value error, ")
        return ApiError(422, f"{loc}: {msg}").response()

    install_auth(app)


# --- embeddings -------------------------------------------------------------------------------------------------


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send encoding_format, user, ...

    model: str = Field(max_length=512)
    input: str | list[str] = Field(description="One text or a list of texts.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: little-endian float32 bytes (what the openai client asks for)."
    )

    @field_validator("input")
    @classmethod
    def _bounds(cls, v: str | list[str]) -> str | list[str]:
        texts = [v] if isinstance(v, str) else v
        if not texts:
            raise ValueError("input is empty")
        if len(texts) > MAX_INPUTS:
            raise ValueError(f"{len(texts)} inputs; the limit is {MAX_INPUTS}")
        for t in texts:
            if len(t) > MAX_TEXT_CHARS:
                raise ValueError(f"an input is {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
        return v

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_response(
    model: str, vectors: list[list[float]], texts: list[str], encoding: str = "float"
) -> dict:
    tokens = sum(len(t) for t in texts)  # characters: the engines do not report tokens through the protocol
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": _encode(v, encoding)} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- classification (consistency) -------------------------------------------------------------------------------


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=512)
    pairs: list[tuple[str, str]] = Field(description="(query, document) pairs.")

    @field_validator("pairs")
    @classmethod
    def _bounds(cls, v: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if not v:
            raise ValueError("pairs is empty")
        if len(v) > MAX_INPUTS:
            raise ValueError(f"{len(v)} pairs; the limit is {MAX_INPUTS}")
        if any(len(a) > MAX_TEXT_CHARS or len(b) > MAX_TEXT_CHARS for a, b in v):
            raise ValueError(f"a text is longer than {MAX_TEXT_CHARS} characters")
        return v


def classify_response(model: str, dists: list[dict[str, float]]) -> dict:
    return {
        "object": "list",
        "model": model,
        "data": [
            {"index": i, "label": max(d, key=d.__getitem__) if d else None, "probabilities": d}
            for i, d in enumerate(dists)
        ],
    }


# --- OCR ---------------------------------------------------------------------------------------------------------


class OcrRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="armed-ocr", max_length=512)
    image: str = Field(description="Base64 image bytes, or a data: URI.")

    def image_bytes(self) -> bytes:
        return decode_image(self.image, "image")


# --- chat ---------------------------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class ChatRequest(BaseModel):
    """OpenAI chat completion; `guided_choice` (vLLM's name) constrains the answer to one of the choices."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=512)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    guided_choice: list[str] | None = Field(default=None, min_length=1, max_length=MAX_CHOICES)
    stream: bool = False

    def to_messages(self) -> list[ChatMessage]:
        out = []
        for i, m in enumerate(self.messages):
            if isinstance(m.content, str):
                text, images = m.content, []
            else:
                parts_text, images = [], []
                for part in m.content:
                    if part.type == "text":
                        parts_text.append(part.text or "")
                    else:
                        url = (part.image_url or {}).get("url", "")
                        images.append(decode_image(url, f"messages[{i}].image_url"))
                text = "\n".join(parts_text)
            if len(text) > MAX_TEXT_CHARS * 4:
                raise ApiError(413, f"messages[{i}] is {len(text)} characters; the limit is {MAX_TEXT_CHARS * 4}")
            out.append(ChatMessage(role=m.role, content=text, images=tuple(images)))
        return out

    def token_budget(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 128


def decode_image(value: str, field: str) -> bytes:
    """A base64 string or `data:` URI → bytes of an image within the limits (armed/images.py), else a 400 / 413
    naming the field. Replicas fetch nothing here and read no file: a URL, a path or any other scheme gets the one
    message every unreadable image gets. The header is checked here (format, pixel count: a decompression bomb
    stops at the edge); the engine decodes the pixels under the same limits."""
    s = images.configured()
    try:
        if not isinstance(value, str):
            raise images.ImageError()
        data = images.from_data_uri(value, s.max_bytes) if value[:5].lower() == "data:" else images.from_base64(
            value, s.max_bytes)
        images.open_checked(data, s).close()
    except images.ImageError as exc:
        raise image_api_error(exc, field) from None
    return data


def image_api_error(exc: BaseException, field: str) -> ApiError:
    """An ImageError (raised here, by an engine, or by a replica behind a handle: Ray's wrapper is an instance of
    it whose text is a traceback, so the message is read from the original) → 413 / 400 naming the field."""
    cause = getattr(exc, "cause", exc)
    message = getattr(cause, "message", images.UNREADABLE)
    return ApiError(413 if getattr(cause, "too_large", False) else 400, f"{field}: {message}")


def chat_response(model: str, text: str, choice: ChoiceResult | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    body: dict[str, Any] = {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": choice.prompt_tokens if choice else 0,
            "completion_tokens": choice.output_tokens if choice else 0,
            "total_tokens": (choice.prompt_tokens + choice.output_tokens) if choice else 0,
        },
    }
    if choice is not None:
        # Not an OpenAI field: the distribution over the offered choices, which the judge's evidence uses.
        body["choice_probabilities"] = choice.probabilities
    return body


def models_list(names: list[str]) -> dict:
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "armed"} for n in names]}
