"""HTTP request/response schemas shared by every model deployment and the gateway (OpenAI-compatible surface).

The model deployments answer these routes for their own model (under `/models/<role>`); the gateway answers
the same routes at `/v1/...` for every model, routing by the `model` field. Both call the same handle methods
(`embed`, `classify`, `choose`, `complete`, `read`), so HTTP and handle calls share one request path.

The edge's contract, the same on every route of every app (`install_error_handlers`):
- Limits are data (armed.serving.limits.InputLimits, the profile's `limits`): the body is counted as it arrives
  (413 past `body_bytes`, chunked or not, before any route reads it); every field past its bound is 422 naming it.
- A body that is not JSON is 400 (415 when it is not sent as JSON); one nested deeper than `json_depth`, or holding
  a lone surrogate (`"\\ud800"`, which no encoder accepts later) in any string, is 422 naming the field.
- Every OpenAI parameter is honoured or refused with 400 naming it; unknown vendor extras are ignored and listed in
  the `X-Armed-Ignored-Params` response header (OpenAI clients send `extra_body` fields freely).
- Every error, FastAPI's own 404 / 405 included, is `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from armed import images
from armed.engines.base import ChatMessage, ChoiceResult, Completion, SamplingOptions
from armed.log import get_logger
from armed.roles import ROLES
from armed.serving.body_gate import BodyBounds, BodyGate
from armed.serving.errors import error_body, error_type
from armed.serving.limits import InputLimits
from armed.settings import image_settings
from armed.text import invalid_unicode_path
from deployments.auth import install_auth

log = get_logger("armed.api")
IGNORED_HEADER = "X-Armed-Ignored-Params"


def model_names(role: str, model_path: str | None) -> list[str]:
    """Names a role answers to: its model name `armed-<role>` first (armed/roles.py; what /v1/models lists), the
    role, the checkpoint path."""
    names = [ROLES[role].model_name, role]
    if model_path:
        names.append(model_path)
    return names


# --- limits -------------------------------------------------------------------------------------------------------
# One InputLimits per process: a replica (its own process) sets its profile's at start-up, before it serves. A
# module-level value rather than app state because Serve pickles a copy of the FastAPI app at import time, which
# a replica's constructor cannot reach; everything reads it through `limits()`, never the variable itself.
_limits = InputLimits()


def limits() -> InputLimits:
    """The limits this process enforces (the profile's once a deployment has called `set_limits`)."""
    return _limits


def set_limits(value: InputLimits) -> None:
    global _limits
    _limits = value


# --- errors -------------------------------------------------------------------------------------------------------

class ApiError(Exception):
    """An error with an HTTP status and an OpenAI-style body (`{"error": {"message", "type", "param", "code"}}`)."""

    def __init__(self, status: int, message: str, kind: str | None = None, headers: dict | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or error_type(status)
        self.headers = headers or {}
        self.param = param

    def response(self) -> JSONResponse:
        body = error_body(self.status, self.message, self.kind, self.param)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _field_error(param: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, f"{param}: {message}", param=param)


def _over(param: str, size: int, limit: int, unit: str = "characters") -> ApiError:
    return _field_error(param, f"{size} {unit}; the limit is {limit}")


def engine_input_error(exc: BaseException) -> ApiError:
    """An engine's ValueError (its input's fault: a broken image, a prompt past the context) as a 400.

    Through a Serve handle the error arrives wrapped (RayTaskError, also an instance of the cause's class); the
    message is the cause's, never the remote traceback.
    """
    cause = getattr(exc, "cause", None) or exc
    param = getattr(cause, "param", None)
    return ApiError(400, str(cause)[:500] or type(cause).__name__, param=param if isinstance(param, str) else None)


# --- the body: size, time, JSON -----------------------------------------------------------------------------------


def body_bounds() -> BodyBounds:
    """The body bounds of this process's limits (the gate reads them per request: set_limits comes later)."""
    lim = limits()
    return BodyBounds(body_bytes=lim.body_bytes, body_timeout_s=lim.body_timeout_s)


def _nested_deeper_than(value: Any, depth: int) -> bool:
    """Whether JSON `value` nests objects / arrays more than `depth` levels (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > depth:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


async def check_json_body(request: Request) -> None:
    """The checks every JSON body passes before its schema: JSON at all, depth, lone surrogates."""
    body = await request.body()
    if not body:
        return  # the schema says what is missing
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))):
        raise ApiError(415, "send the request body as JSON with 'Content-Type: application/json'")
    lim = limits()
    try:
        data = await request.json()  # Starlette keeps the parsed value: FastAPI does not parse it again
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column "
                            f"{exc.colno})") from None
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(422, f"the request body nests deeper than {lim.json_depth} levels", param="body") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ApiError(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None
    if _nested_deeper_than(data, lim.json_depth):
        raise ApiError(422, f"the request body nests deeper than {lim.json_depth} levels", param="body")
    path = invalid_unicode_path(data)
    if path is not None:
        raise _field_error(path, "contains a lone surrogate (invalid Unicode); send well-formed UTF-16 escapes")


class EdgeRoute(APIRoute):
    """A FastAPI route whose JSON body passes `check_json_body` before FastAPI validates it."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            await check_json_body(request)
            return await handler(request)

        return checked


def _loc(parts: tuple) -> str:
    out = ""
    for p in parts:
        if p == "body" and not out:
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    err = exc.errors()[0] if exc.errors() else {}
    param = _loc(tuple(err.get("loc", ())))
    msg = str(err.get("msg", "malformed request")).removeprefix("Value error, ")
    return ApiError(422, f"{param}: {msg}", param=param).response()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for this app's routes"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {headers.get('Allow', '?')}"
    else:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)[:500]
    return ApiError(exc.status_code, message, headers=headers).response()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, error=f"{type(exc).__name__}: {str(exc)[:300]}")
    return ApiError(500, "internal error; the request was not processed").response()


def install_error_handlers(app: FastAPI) -> None:
    """The edge on `app`: body limit, JSON checks on every route declared after this call, OpenAI-shaped errors
    for every status (FastAPI's 404 / 405 and unexpected 500s too). Installed last, the API-key check
    (deployments.auth) runs first, before any byte of the body is read."""
    app.router.route_class = EdgeRoute
    app.add_middleware(BodyGate, bounds=body_bounds)  # the whole body, bounded, before any route (body_gate)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    install_auth(app)


def json_response(body: dict[str, Any], ignored: list[str] | None = None) -> JSONResponse:
    """A 200 JSON answer; unknown request parameters that were ignored are named in a header."""
    # Header values are latin-1 on the wire and end at a newline: names in any script, or with control characters,
    # are sent escaped (\uXXXX, \n).
    names = ", ".join(n.encode("unicode_escape").decode("ascii") for n in ignored or [])[:1024]
    headers = {IGNORED_HEADER: names} if ignored else {}
    return JSONResponse(body, headers=headers)


# --- OpenAI parameters --------------------------------------------------------------------------------------------
# Parameters OpenAI (or vLLM's OpenAI server) defines that armed cannot honour: accepted only at their neutral value,
# anything else is 400 naming the parameter. Each entry: the test for "neutral" and what armed accepts.


def _unset(v: Any) -> bool:
    return v is None


def _falsy(v: Any) -> bool:
    return v is None or v is False


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


def _zero(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v == 0)


def _one(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v == 1)


Neutral = tuple[Callable[[Any], bool], str]
CHAT_UNSUPPORTED: dict[str, Neutral] = {
    "n": (_one, "1 (one choice per request)"),
    "stream": (_falsy, "false (answers are short; no streaming)"),
    "stream_options": (_unset, "null (no streaming)"),
    "logprobs": (_falsy, "false"),
    "top_logprobs": (_zero, "0 or null"),
    "tools": (_empty, "none (no tool calling)"),
    "functions": (_empty, "none (no function calling)"),
    "tool_choice": (lambda v: v in (None, "none"), "'none' or null"),
    "function_call": (lambda v: v in (None, "none"), "'none' or null"),
    "logit_bias": (_empty, "empty or null"),
    "presence_penalty": (_zero, "0"),
    "frequency_penalty": (_zero, "0"),
    "response_format": (lambda v: v is None or v == {"type": "text"}, "{'type': 'text'} (use guided_choice)"),
    "store": (_falsy, "false (armed stores no completions)"),
    "metadata": (_empty, "empty (armed stores no completions)"),
    "modalities": (lambda v: v in (None, ["text"]), "['text']"),
    "audio": (_unset, "null"),
    "prediction": (_unset, "null"),
    "reasoning_effort": (_unset, "null (thinking is off)"),
    "verbosity": (_unset, "null"),
    "web_search_options": (_unset, "null"),
    "service_tier": (lambda v: v in (None, "auto", "default"), "'auto' or 'default'"),
    # vLLM's extensions of the same API: a client written for vLLM must not get a silently different decode
    "guided_json": (_unset, "null (use guided_choice)"),
    "guided_regex": (_unset, "null (use guided_choice)"),
    "guided_grammar": (_unset, "null (use guided_choice)"),
    "guided_decoding_backend": (_unset, "null"),
    "guided_whitespace_pattern": (_unset, "null"),
    "structured_outputs": (_unset, "null (use guided_choice)"),
    "top_k": (lambda v: v in (None, 0, -1), "-1, 0 or null"),
    "min_p": (_zero, "0"),
    "repetition_penalty": (_one, "1"),
    "length_penalty": (_one, "1"),
    "min_tokens": (_zero, "0"),
    "ignore_eos": (_falsy, "false"),
    "use_beam_search": (_falsy, "false"),
    "best_of": (_one, "1"),
    "echo": (_falsy, "false"),
    "include_stop_str_in_output": (_falsy, "false"),
    "skip_special_tokens": (lambda v: v in (None, True), "true"),
    "stop_token_ids": (_empty, "empty"),
    "bad_words": (_empty, "empty"),
    "allowed_token_ids": (_empty, "empty"),
    "logits_processors": (_empty, "empty"),
    "prompt_logprobs": (_unset, "null"),
    "truncate_prompt_tokens": (_unset, "null"),
    "priority": (_zero, "0"),
    "chat_template": (_unset, "null (the model's own template)"),
    "chat_template_kwargs": (_empty, "empty"),
    "add_generation_prompt": (lambda v: v in (None, True), "true"),
    "continue_final_message": (_falsy, "false"),
}
# Known parameters with nothing to honour: identifiers for the caller's own bookkeeping, and one that only
# matters with tools (refused above). Accepted; not reported as ignored.
CHAT_ACCEPTED = frozenset({"parallel_tool_calls", "prompt_cache_key", "safety_identifier"})
EMBEDDING_ACCEPTED: frozenset[str] = frozenset()


def _refuse_unsupported(extra: dict[str, Any], table: dict[str, Neutral]) -> None:
    for name, value in extra.items():
        rule = table.get(name)
        if rule is not None and not rule[0](value):
            shown = json.dumps(value, ensure_ascii=False, default=str)[:80]
            raise ApiError(400, f"{name}={shown} is not supported; armed accepts {rule[1]}", param=name)


def _ignored(extra: dict[str, Any] | None, known: frozenset[str], table: dict[str, Neutral]) -> list[str]:
    return sorted(k for k in (extra or {}) if k not in known and k not in table)


class _Request(BaseModel):
    """A request body: unknown extras are kept (`model_extra`) so each route can refuse or report them."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="Model name (see /v1/models).")

    def _check_model(self, lim: InputLimits) -> None:
        if len(self.model) > lim.model_chars:
            raise _over("model", len(self.model), lim.model_chars)


# --- embeddings -------------------------------------------------------------------------------------------------

EMBEDDING_UNSUPPORTED: dict[str, Neutral] = {
    "truncate_prompt_tokens": (_unset, "null (texts past the model's length are cut)"),
}


class EmbeddingRequest(_Request):
    """OpenAI embeddings. `dimensions` is honoured only at the model's own size (armed's models are not trained
    to be truncated); token-id input is refused (armed's models take text)."""

    input: str | list[str] = Field(description="One text or a list of texts.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: little-endian float32 bytes (what the openai client asks for)."
    )
    dimensions: int | None = Field(default=None, ge=1, description="Only the model's own size is accepted.")
    user: str | None = Field(default=None, description="The caller's end-user id: accepted, not used.")

    @model_validator(mode="before")
    @classmethod
    def _no_token_ids(cls, data: Any) -> Any:
        raw = data.get("input") if isinstance(data, dict) else None
        if isinstance(raw, list) and any(isinstance(x, int | list) and not isinstance(x, bool) for x in raw):
            raise _field_error("input", "token-id input is not supported; send text")
        return data

    @model_validator(mode="after")
    def _bounds(self) -> EmbeddingRequest:
        lim = limits()
        self._check_model(lim)
        texts = self.texts()
        if not texts:
            raise _field_error("input", "is empty")
        if len(texts) > lim.inputs:
            raise _over("input", len(texts), lim.inputs, "inputs")
        for i, t in enumerate(texts):
            where = "input" if isinstance(self.input, str) else f"input[{i}]"
            if not t:
                raise _field_error(where, "is an empty string")
            if len(t) > lim.text_chars:
                raise _over(where, len(t), lim.text_chars)
        total = sum(len(t) for t in texts)
        if total > lim.inputs_total_chars:
            raise _over("input", total, lim.inputs_total_chars, "characters in all")
        if self.user is not None and len(self.user) > lim.id_chars:
            raise _over("user", len(self.user), lim.id_chars)
        _refuse_unsupported(self.model_extra or {}, EMBEDDING_UNSUPPORTED)
        return self

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    def ignored(self) -> list[str]:
        return _ignored(self.model_extra, EMBEDDING_ACCEPTED, EMBEDDING_UNSUPPORTED)

    def check_dimensions(self, vectors: list[list[float]]) -> None:
        if self.dimensions is not None and vectors and self.dimensions != len(vectors[0]):
            raise ApiError(400, f"dimensions={self.dimensions} is not supported; this model's vectors have "
                                f"{len(vectors[0])} (omit dimensions or send that)", param="dimensions")


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_response(model: str, vectors: list[list[float]], tokens: int, encoding: str = "float") -> dict:
    """`tokens`: what the engine's tokenizer counts for the inputs (Embedder.count_tokens)."""
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": _encode(v, encoding)} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- classification (consistency) -------------------------------------------------------------------------------


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model name (see /v1/models).")
    pairs: list[tuple[str, str]] = Field(description="(query, document) pairs.")

    @model_validator(mode="after")
    def _bounds(self) -> ClassifyRequest:
        lim = limits()
        if len(self.model) > lim.model_chars:
            raise _over("model", len(self.model), lim.model_chars)
        if not self.pairs:
            raise _field_error("pairs", "is empty")
        if len(self.pairs) > lim.inputs:
            raise _over("pairs", len(self.pairs), lim.inputs, "pairs")
        for i, pair in enumerate(self.pairs):
            for j, text in enumerate(pair):
                if len(text) > lim.text_chars:
                    raise _over(f"pairs[{i}][{j}]", len(text), lim.text_chars)
        total = sum(len(a) + len(b) for a, b in self.pairs)
        if total > lim.inputs_total_chars:
            raise _over("pairs", total, lim.inputs_total_chars, "characters in all")
        return self


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

    model: str = Field(default="armed-ocr", description="Model name (see /v1/models).")
    image: str = Field(description="Base64 image bytes, or a data: URI.")

    @model_validator(mode="after")
    def _bounds(self) -> OcrRequest:
        if len(self.model) > limits().model_chars:
            raise _over("model", len(self.model), limits().model_chars)
        return self

    def image_bytes(self) -> bytes:
        return decode_image(self.image, "image")


# --- chat ---------------------------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessageIn(BaseModel):
    """One message. `developer` is OpenAI's newer name for `system`; `name` is accepted and not used."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content if p.type == "text")


class ChatRequest(_Request):
    """OpenAI chat completion; `guided_choice` (vLLM's name) constrains the answer to one of the choices.

    Honoured: max_tokens / max_completion_tokens (the latter wins when both are sent), temperature (0, the
    default, decodes greedily; above 0 samples), top_p, seed, stop, user (accepted, not used). Every parameter in
    CHAT_UNSUPPORTED is refused unless it has its neutral value. With guided_choice the answer is always one whole
    choice: temperature / top_p / seed sample among the choices by their probabilities, and stop is refused.
    """

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    guided_choice: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _bounds(self) -> ChatRequest:
        lim = limits()
        self._check_model(lim)
        self._check_messages(lim)
        for name in ("max_tokens", "max_completion_tokens"):
            value = getattr(self, name)
            if value is not None and value > lim.max_tokens:
                raise _field_error(name, f"{value} is more than the limit, {lim.max_tokens}")
        stops = self.stop_sequences()
        if len(stops) > lim.stop_sequences:
            raise _over("stop", len(stops), lim.stop_sequences, "sequences")
        for i, s in enumerate(stops):
            if not s:
                raise _field_error(f"stop[{i}]", "is an empty string")
            if len(s) > lim.stop_chars:
                raise _over(f"stop[{i}]", len(s), lim.stop_chars)
        if self.user is not None and len(self.user) > lim.id_chars:
            raise _over("user", len(self.user), lim.id_chars)
        if self.guided_choice is not None:
            self._check_choices(lim)
            if stops:
                raise ApiError(400, "stop cannot be combined with guided_choice: the answer is one whole choice",
                               param="stop")
        _refuse_unsupported(self.model_extra or {}, CHAT_UNSUPPORTED)
        return self

    def _check_messages(self, lim: InputLimits) -> None:
        if len(self.messages) > lim.messages:
            raise _over("messages", len(self.messages), lim.messages, "messages")
        total = 0
        for i, m in enumerate(self.messages):
            if isinstance(m.content, list) and len(m.content) > lim.message_parts:
                raise _over(f"messages[{i}].content", len(m.content), lim.message_parts, "parts")
            size = len(m.text())
            if size > lim.message_chars:
                raise _over(f"messages[{i}].content", size, lim.message_chars)
            total += size
        if total > lim.chat_chars:
            raise _over("messages", total, lim.chat_chars, "characters in all")

    def _check_choices(self, lim: InputLimits) -> None:
        choices = self.guided_choice or []
        if len(choices) > lim.choices:
            raise _over("guided_choice", len(choices), lim.choices, "choices")
        for i, c in enumerate(choices):
            if not c:
                raise _field_error(f"guided_choice[{i}]", "is an empty string; every choice needs text")
            if len(c) > lim.choice_chars:
                raise _over(f"guided_choice[{i}]", len(c), lim.choice_chars)
        total = sum(len(c) for c in choices)
        if total > lim.choice_total_chars:
            raise _over("guided_choice", total, lim.choice_total_chars, "characters in all")

    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def ignored(self) -> list[str]:
        return _ignored(self.model_extra, CHAT_ACCEPTED, CHAT_UNSUPPORTED)

    def to_messages(self) -> list[ChatMessage]:
        out = []
        for i, m in enumerate(self.messages):
            images = []
            if not isinstance(m.content, str):
                for part in m.content:
                    if part.type == "image_url":
                        url = (part.image_url or {}).get("url", "")
                        images.append(decode_image(url, f"messages[{i}].image_url"))
            role = "system" if m.role == "developer" else m.role
            out.append(ChatMessage(role=role, content=m.text(), images=tuple(images)))
        return out

    def sampling(self) -> SamplingOptions:
        return SamplingOptions(
            max_tokens=self.token_budget(),
            temperature=self.temperature or 0.0,
            top_p=self.top_p if self.top_p is not None else 1.0,
            seed=self.seed,
            stop=tuple(self.stop_sequences()),
        )

    def token_budget(self) -> int:
        return self.max_completion_tokens or self.max_tokens or limits().default_max_tokens


def decode_image(value: str, field: str) -> bytes:
    """A base64 string or `data:` URI → bytes of an image within the limits (armed/images.py), else a 400 / 413
    naming the field. Replicas fetch nothing here and read no file: a URL, a path or any other scheme gets the one
    message every unreadable image gets. The header is checked here (format, pixel count: a decompression bomb
    stops at the edge); the engine decodes the pixels under the same limits."""
    s = image_settings()
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


def sample_choice(result: ChoiceResult, options: SamplingOptions) -> str:
    """The guided_choice answer under the request's sampling: the engine's label when greedy (temperature 0),
    else a draw from its distribution over the choices, sharpened or flattened by the temperature and cut to the
    top_p nucleus; reproducible with a seed."""
    if options.temperature == 0 or not result.probabilities:
        return result.label
    logits = {c: math.log(p) / options.temperature for c, p in result.probabilities.items() if p > 0}
    if not logits:
        return result.label
    top = max(logits.values())
    weights = {c: math.exp(v - top) for c, v in logits.items()}
    total = sum(weights.values())
    ranked = sorted(weights.items(), key=lambda cw: -cw[1])
    nucleus, mass = [], 0.0
    for choice, w in ranked:
        nucleus.append((choice, w))
        mass += w / total
        if mass >= options.top_p:
            break
    rng = random.Random(options.seed)
    return rng.choices([c for c, _ in nucleus], weights=[w for _, w in nucleus])[0]


def chat_response(model: str, completion: Completion, probabilities: dict[str, float] | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    body: dict[str, Any] = {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": completion.finish_reason}],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }
    if probabilities is not None:
        # Not an OpenAI field: the distribution over the offered choices, which the judge's evidence uses.
        body["choice_probabilities"] = probabilities
    return body


def choice_completion(result: ChoiceResult, options: SamplingOptions) -> tuple[Completion, dict[str, float]]:
    """A guided_choice answer as a completion: always a whole choice, so it always ends by `stop`."""
    label = sample_choice(result, options)
    completion = Completion(text=label, finish_reason="stop", prompt_tokens=result.prompt_tokens,
                            completion_tokens=result.output_tokens, model=result.model)
    return completion, result.probabilities


def models_list(names: list[str]) -> dict:
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "armed"} for n in names]}
