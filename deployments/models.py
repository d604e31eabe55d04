"""One Ray Serve deployment class per model role: engine + request path + health.

Each class answers two ways that share one request path: handle methods (`embed`, `classify`, `choose`,
`generate`, `read`) that the judge's handle clients call, and HTTP routes (FastAPI ingress) that call those same
methods. Engines that take one request at a time on their worker thread (embedder, consistency) get dynamic batching
(armed/engines/batching.py, not `@serve.batch`: see there why): whatever queued while the engine was busy goes
into its next call, up to the profile's `batching.max_batch_size`.

No stalls (deployments/deadlines.py): every request runs under the role's `call_timeout_s`, its wait for the
engine included, so a caller gets a timeout error (504 here, 503 or a degraded judgment through the judge)
instead of a hang; the engine's blocking work runs on its own thread (armed/blocking.py), never on the event
loop, so other requests and the health check are still answered while one call is stuck. `check_health` fails
when a blocking engine call has run past `wedged_after_s` (a thread cannot be interrupted: only a new replica
frees the engine), and otherwise makes a tiny real call to an engine that has not answered lately, so a wedged
engine (CUDA error, dead thread) gets the replica replaced; process liveness alone would not.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from armed import roles
from armed.engines.base import ChatMessage, ChoiceResult, Completion, SamplingOptions
from armed.engines.batching import DynamicBatcher
from armed.images import ImageError
from armed.log import get_logger
from armed.serving.limits import InputLimits
from armed.settings import EngineSpec, image_settings
from deployments import api, auth, loopback
from deployments.deadlines import EngineTimeout, engine_health, within_deadline
from deployments.engines import EngineClass, build_role_engine, spec_model_id

log = get_logger("armed.deployments")


class ModelArgs(BaseModel):
    """Constructor arguments of a model deployment (what the app builder binds)."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="llm, vl, embedder, consistency, ocr or student.")
    engine: EngineSpec = Field(description="The role's engine spec from the profile.")
    max_batch_size: int = Field(default=32, ge=1, description="Dynamic batching: most requests per engine call.")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, description="Dynamic batching: longest a request waits "
                                        "for others while the engine is idle.")
    call_timeout_s: float = Field(default=30.0, gt=0, description="Deadline of one request in the replica (the "
                                  "profile's call_timeout_s).")
    wedged_after_s: float = Field(default=90.0, gt=0, description="A blocking engine call running this long fails "
                                  "the health check (the profile's wedged_after_s).")
    health_timeout_s: float = Field(default=30.0, gt=0, description="Serve's health_check_timeout_s; the engine "
                                    "probe gets a share of it (deployments.deadlines.PROBE_SHARE).")
    limits: InputLimits = Field(default_factory=InputLimits, description="The profile's HTTP input limits.")


class _AnswerClock:
    """The engine, plus when it last answered a call (any method), for the health check. `clock` is the time
    source (monotonic seconds); tests pass a fake one so "answered lately" does not depend on machine load."""

    def __init__(self, engine: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._last_answer = float("-inf")
        self._last_miss = float("-inf")

    def seconds_since_answer(self) -> float:
        """Since the last answer; infinite when a request missed its deadline after it (that answer no longer
        vouches for the engine, so the health check probes)."""
        if self._last_miss > self._last_answer:
            return float("inf")
        return self._clock() - self._last_answer

    def missed_deadline(self) -> None:
        self._last_miss = self._clock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            self._last_answer = self._clock()
            return result

        return timed


class _ModelBase:
    """What every model deployment shares: args, engine, names, health probe, ping."""

    role: str

    def __init__(
        self, args: dict[str, Any], *, engine_cls: EngineClass | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`args`: ModelArgs as a dict (what the app builder binds). `engine_cls`: injected by the app builder in
        Python only (tests, the perf stack), never from a Serve config; None builds the profile's engine
        (deployments.engines.build_role_engine). `clock`: the health check's time source (Serve never passes it;
        tests inject a fake one)."""
        self.args = ModelArgs.model_validate(args)
        self.role = self.args.role
        loopback.keep_replica_grpc_on_loopback()  # before Serve starts this replica's gRPC server
        api.set_limits(self.args.limits)  # before the first request: this replica's routes enforce the profile's
        auth.load_api_key()  # at start-up: a blank key fails here; no key logs its warning once
        image_settings()  # a bad ARMED_IMAGES__* setting fails start-up here, not the first image request (500)
        started = time.perf_counter()
        self.engine = _AnswerClock((engine_cls or build_role_engine)(self.role, self.args.engine), clock)
        self.names = api.model_names(self.role, self.args.engine.model)
        self.model_id = spec_model_id(self.args.engine)
        log.info("model_ready", role=self.role, model=self.model_id, seconds=round(time.perf_counter() - started, 3))

    def check_model(self, name: str) -> None:
        if name not in self.names:
            raise api.ApiError(404, f"model {name!r} is not served here; this route serves {self.names[0]!r}",
                               kind="not_found_error")

    async def ping(self) -> str:
        """Cheapest possible call: used to wake a scaled-to-zero deployment (the queued call counts as load)."""
        return self.model_id

    def new_batcher(self, fn: Any) -> DynamicBatcher:
        # the engine call of a batch has the request deadline too: a stuck batch must not hold the slot forever
        return DynamicBatcher(fn, max_batch_size=self.args.max_batch_size, max_wait_s=self.args.batch_wait_timeout_s,
                              call_timeout_s=self.args.call_timeout_s)

    async def within_deadline(self, work: Any) -> Any:
        """Await `work` (a coroutine of this replica's engine) under the role's call deadline."""
        try:
            return await within_deadline(work, self.role, self.args.call_timeout_s)
        except EngineTimeout:
            self.engine.missed_deadline()
            raise

    async def engine_stats(self) -> dict[str, Any]:
        """Batch sizes the engine saw, where it records them (the zero-work doubles), and the batcher's recent ones."""
        batcher = getattr(self, "batcher", None)
        return {"batch_sizes": list(getattr(self.engine, "batch_sizes", [])), "calls": getattr(self.engine, "calls", 0),
                "batcher_batch_sizes": list(batcher.batch_sizes) if batcher is not None else [],
                "pid": os.getpid()}  # which replica process answered (a replaced replica has a new one)

    async def _probe(self) -> None:
        raise NotImplementedError

    async def check_health(self) -> None:
        """Serve calls this every health_check_period_s, on the replica's event loop (a blocked loop never
        answers, which fails the check too); it raises when the engine is wedged (deployments.deadlines)."""
        await engine_health(self.role, self.engine.seconds_since_answer(), self._probe,
                            wedged_after_s=self.args.wedged_after_s, health_timeout_s=self.args.health_timeout_s)


embedder_api = FastAPI(title="armed embedder", description="OpenAI-compatible embeddings of the embedder role.")
api.install_error_handlers(embedder_api)


@serve.deployment(name="embedder")
@serve.ingress(embedder_api)
class EmbedderDeployment(_ModelBase):
    """The embedding role; single texts from concurrent requests are batched into one engine call."""

    def __init__(
        self, args: dict[str, Any], *, engine_cls: EngineClass | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(args, engine_cls=engine_cls, clock=clock)
        self.batcher: DynamicBatcher[str, list[float]] = self.new_batcher(self.engine.embed)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return list(await self.within_deadline(asyncio.gather(*(self.batcher.submit(t) for t in texts))))

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Vectors and the tokens the model read for them (the embeddings response's usage), in one call."""
        return await self.embed(texts), await self.count_tokens(texts)

    async def count_tokens(self, texts: Sequence[str]) -> int:
        return await self.engine.count_tokens(texts)

    async def _probe(self) -> None:
        vec = (await self.engine.embed(["health"]))[0]
        if not vec:
            raise RuntimeError("embedder returned an empty vector")

    @embedder_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.names[:1])

    @embedder_api.post(roles.EMBEDDINGS)
    async def http_embeddings(self, body: api.EmbeddingRequest) -> Response:
        self.check_model(body.model)
        texts = body.texts()
        try:
            vectors, tokens = await self.embed_with_usage(texts)
        except ValueError as exc:
            raise api.engine_input_error(exc) from None
        body.check_dimensions(vectors)
        return api.json_response(api.embedding_response(self.names[0], vectors, tokens, body.encoding_format),
                                 body.ignored())


classifier_api = FastAPI(title="armed consistency", description="(query, document) pair classification.")
api.install_error_handlers(classifier_api)


@serve.deployment(name="consistency")
@serve.ingress(classifier_api)
class ClassifierDeployment(_ModelBase):
    """The consistency role (pair classifier); pairs from concurrent requests are batched."""

    def __init__(
        self, args: dict[str, Any], *, engine_cls: EngineClass | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(args, engine_cls=engine_cls, clock=clock)
        self.labels: tuple[str, ...] = tuple(self.engine.labels)
        self.batcher: DynamicBatcher[tuple[str, str], dict[str, float]] = self.new_batcher(self.engine.classify)

    async def classify(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        return list(await self.within_deadline(asyncio.gather(*(self.batcher.submit((a, b)) for a, b in pairs))))

    async def get_labels(self) -> tuple[str, ...]:
        return self.labels

    async def _probe(self) -> None:
        dist = (await self.engine.classify([("health", "health")]))[0]
        if set(dist) != set(self.labels):
            raise RuntimeError(f"classifier returned labels {sorted(dist)}, expected {sorted(self.labels)}")

    @classifier_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.names[:1])

    @classifier_api.post(roles.CLASSIFY)
    async def http_classify(self, body: api.ClassifyRequest) -> dict:
        self.check_model(body.model)
        try:
            dists = await self.classify(body.pairs)
        except ValueError as exc:
            raise api.engine_input_error(exc) from None
        return api.classify_response(self.names[0], dists)


def _chat_api(role: str) -> FastAPI:
    app = FastAPI(title=f"armed {role}", description=f"OpenAI-compatible chat completions of the {role} role.")
    api.install_error_handlers(app)
    return app


async def _chat_http(dep: _ChatBase, body: api.ChatRequest) -> Response:
    dep.check_model(body.model)
    messages = body.to_messages()
    if any(m.images for m in messages) and not roles.get_role(dep.role).reads_images:
        raise api.ApiError(400, f"model {dep.names[0]!r} does not read images; use armed-vl")
    options = body.sampling()
    try:
        if body.guided_choice:
            completion, probs = api.choice_completion(await dep.choose(messages, body.guided_choice), options)
        else:
            completion, probs = await dep.complete(messages, options), None
    except ImageError as exc:  # an image that passed the edge's header check but not the engine's decode
        raise api.image_api_error(exc, "messages.image_url") from None
    except ValueError as exc:  # the engine's verdict on this input (a broken image, a prompt past the context)
        raise api.engine_input_error(exc) from None
    return api.json_response(api.chat_response(dep.names[0], completion, probs), body.ignored())


class _ChatBase(_ModelBase):
    """The LLM and VL roles: constrained choice and free generation (the vLLM engine merges concurrent calls)."""

    async def choose(self, messages: Sequence[ChatMessage], choices: Sequence[str]) -> ChoiceResult:
        return await self.within_deadline(self.engine.choose(list(messages), list(choices)))

    async def generate(self, messages: Sequence[ChatMessage], max_tokens: int = 128) -> str:
        return await self.within_deadline(self.engine.generate(list(messages), max_tokens=max_tokens))

    async def complete(self, messages: Sequence[ChatMessage], options: SamplingOptions) -> Completion:
        return await self.within_deadline(self.engine.complete(list(messages), options))

    async def _probe(self) -> None:
        res = await self.engine.choose([ChatMessage(role="user", content="health: yes or no?")], ["yes", "no"])
        if res.label not in ("yes", "no"):
            raise RuntimeError(f"constrained choice returned {res.label!r}")


llm_api = _chat_api("llm")


@serve.deployment(name="llm")
@serve.ingress(llm_api)
class LLMDeployment(_ChatBase):
    """The LLM role where armed's own engine serves it (the ray-llm path uses ray.serve.llm instead)."""

    @llm_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.names[:1])

    @llm_api.post(roles.CHAT)
    async def http_chat(self, body: api.ChatRequest) -> Response:
        return await _chat_http(self, body)


vl_api = _chat_api("vl")


@serve.deployment(name="vl")
@serve.ingress(vl_api)
class VLDeployment(_ChatBase):
    """The vision-language role (cheating check): chat with image content parts."""

    @vl_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.names[:1])

    @vl_api.post(roles.CHAT)
    async def http_chat(self, body: api.ChatRequest) -> Response:
        return await _chat_http(self, body)


ocr_api = FastAPI(title="armed ocr", description="Text lines printed on an image.")
api.install_error_handlers(ocr_api)


@serve.deployment(name="ocr")
@serve.ingress(ocr_api)
class OcrDeployment(_ModelBase):
    """OCR (RapidOCR on CPU nodes): one image per call; ONNX runtime uses the replica's cores itself."""

    async def read(self, image: bytes) -> list[str]:
        return await self.within_deadline(self.engine.read(image))

    async def _probe(self) -> None:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (32, 32), "white").save(buf, format="PNG")
        lines = await self.engine.read(buf.getvalue())
        if not isinstance(lines, list):
            raise RuntimeError("OCR returned no line list")

    @ocr_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.names[:1])

    @ocr_api.post(roles.OCR)
    async def http_ocr(self, body: api.OcrRequest) -> dict:
        self.check_model(body.model)
        image = body.image_bytes()
        try:
            lines = await self.read(image)
        except ImageError as exc:  # the engine's full decode failed (truncated data past a sound header)
            raise api.image_api_error(exc, "image") from None
        except ValueError as exc:  # not an image the engine can read
            raise api.engine_input_error(exc) from None
        return {"object": "ocr", "model": self.names[0], "lines": lines}

