"""The judge (composition) deployment and its HTTP gateway.

`JudgeService` runs the library's Pipeline with handle-backed model clients: query side ∥ product side, then
`conclude`. It caches query understanding by normalised query, product understanding by product id + content
hash, and whole judgments by the pair; every key carries the versions (knowledge base, rules, model ids), so a
new KB or model never serves an old answer. Degraded results are never cached: a model that was down for a
second must not pin a worse answer for the TTL.

Nothing contacts a model at start-up: the clients find their handles on first use. While a required role has no
running replica the answer is 503 with Retry-After (the check is a cached controller read, not a model call);
an optional role that fails or times out only degrades the judgment (the pipeline's stage recorder).

`Gateway` is the HTTP ingress (FastAPI, port 8000): /v1/judge, /v1/judge/batch and the OpenAI-compatible routes
for every model, routed by the `model` field to the same handle methods the judge uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from armed.errors import InputError, JudgmentTimeout
from armed.log import bound_request, get_logger, new_request_id
from armed.serving import config as serve_cfg
from armed.serving.profiles import JudgeCaches, Profile, load_profile
from armed.text import normalise
from deployments import api, auth, loopback
from deployments.cache import TTLCache
from deployments.clients import (
    UNAVAILABLE_ROLES,
    HandleClient,
    ModelUnavailable,
    ReplicaAvailability,
    Target,
    build_handle_clients,
)
from deployments.engines import spec_model_id
from deployments.metrics import MetricsRecorder, NullRecorder, RayMetricsRecorder, record_judgment

log = get_logger("armed.judge")


def role_targets(profile: Profile) -> dict[str, Target]:
    """Where each deployed role is served, by Serve app and deployment name (from the profile alone)."""
    return {
        role: Target(role, serve_cfg.app_name(role), serve_cfg.deployment_name(profile, role))
        for role in profile.deployed_roles()
    }


def handle_clients_for(profile: Profile, availability: ReplicaAvailability | None = None) -> Any:
    """ModelClients over handles for the profile's deployed roles (kb / ocr-kb / none roles stay None)."""
    targets = role_targets(profile)
    ray_llm = [r for r in targets if profile.models[r].serving == "ray-llm"]
    model_ids = {
        r: (serve_cfg.model_id_for_ray_llm(r) if r in ray_llm else spec_model_id(profile.models[r].engine))
        for r in targets
    }
    return build_handle_clients(
        targets,
        model_ids,
        labels=profile.models["consistency"].engine.labels,
        student_labels=profile.models["student"].engine.labels,
        ray_llm_roles=ray_llm,
        timeout_s=profile.judge.model_timeout_s,
        retry_after_s=profile.judge.retry_after_s,
        availability=availability,
    )


def error_result(status: int, message: str, field: str | None = None, retry_after: int | None = None) -> dict:
    body: dict[str, Any] = {"error": {"message": message, "code": status}}
    if field:
        body["error"]["field"] = field
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return {"status": status, "body": body, "headers": headers}


@dataclass
class _Side:
    value: Any
    reports: list
    degraded: list[str]


class JudgeService:
    """Judgments with caches over a Pipeline (the real one, or any object with the same split API)."""

    def __init__(
        self,
        pipeline: Any,
        caches: JudgeCaches,
        *,
        required: list[HandleClient] | None = None,
        retry_after_s: int = 10,
        max_batch_pairs: int = 64,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.metrics: MetricsRecorder = metrics or NullRecorder()
        self.required = required or []
        self.required_roles = {c.target.role for c in self.required}
        self.retry_after_s = retry_after_s
        self.max_batch_pairs = max_batch_pairs
        self.query_cache: TTLCache[_Side] = TTLCache(caches.query.size, caches.query.ttl_s)
        self.product_cache: TTLCache[_Side] = TTLCache(caches.product.size, caches.product.ttl_s)
        self.judgment_cache: TTLCache[Any] = TTLCache(caches.judgment.size, caches.judgment.ttl_s)
        self._versions_key: str | None = None

    @classmethod
    def from_profile(cls, profile: Profile, metrics: MetricsRecorder | None = None) -> JudgeService:
        """Load the knowledge base and wire handle clients; contacts no model deployment."""
        from armed.knowledge.base import KnowledgeBase
        from armed.pipeline.dag import Pipeline

        settings = profile.to_settings()
        clients = handle_clients_for(profile)
        kb = KnowledgeBase.load(settings.knowledge.seed, settings.knowledge.sources)
        required = [getattr(clients, r) for r in profile.judge.required_roles]
        return cls(
            Pipeline(settings, kb, clients),
            profile.judge.caches,
            required=required,
            retry_after_s=profile.judge.retry_after_s,
            max_batch_pairs=profile.judge.max_batch_pairs,
            metrics=metrics,
        )

    def versions_key(self) -> str:
        """Hash of KB, rules and model ids: part of every cache key. Static for the life of the replica."""
        if self._versions_key is None:
            v = self.pipeline.versions()
            self._versions_key = hashlib.sha256(v.model_dump_json().encode()).hexdigest()[:16]
        return self._versions_key

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"size": len(c), "hits": c.hits, "misses": c.misses}
            for name, c in (("query", self.query_cache), ("product", self.product_cache),
                            ("judgment", self.judgment_cache))
        }

    async def judge_one(self, query: object, product: object, request_id: str) -> Any:
        """One Judgment; raises InputError, ModelUnavailable (required role down) or JudgmentTimeout."""
        from armed.pipeline.dag import parse_pair
        from armed.pipeline.product_side import load_image_bytes
        from armed.pipeline.stages import StageRecorder

        began = time.perf_counter()
        q_in, p_in = parse_pair(query, product)
        for i, img in enumerate(p_in.images):
            try:
                load_image_bytes(img)
            except ValueError as exc:
                raise InputError(f"product.images[{i}]", str(exc)) from None
        for client in self.required:
            await client.ensure_available()
        vkey = self.versions_key()
        norm_q = normalise(q_in.text)
        jkey = (norm_q, p_in.id, p_in.content_hash(), vkey)
        cached = self.judgment_cache.get(jkey)
        self.metrics.cache("judgment", cached is not None)
        if cached is not None:
            self.judgment_cache.hits += 1
            judgment = cached.model_copy(update={"request_id": request_id, "seconds": 0.0})
            record_judgment(self.metrics, judgment, time.perf_counter() - began, cached=True)
            return judgment
        self.judgment_cache.misses += 1

        started = time.perf_counter()
        marks: set[str] = set()
        token = UNAVAILABLE_ROLES.set(marks)
        try:

            async def side(cache: TTLCache[_Side], key: tuple, name: str, run: Any) -> tuple[_Side, bool]:
                async def load() -> _Side:
                    rec = StageRecorder()
                    value = await run(rec)
                    return _Side(value, rec.reports, rec.degraded)

                value, hit = await cache.get_or_load(key, load, keep=lambda s: not s.degraded)
                self.metrics.cache(name, hit)
                return value, hit

            async def run() -> Any:
                (qs, q_hit), (ps, p_hit) = await asyncio.gather(
                    side(self.query_cache, (norm_q, vkey), "query",
                         lambda rec: self.pipeline.understand_query(q_in.text, rec)),
                    side(self.product_cache, (p_in.id, p_in.content_hash(), vkey), "product",
                         lambda rec: self.pipeline.understand_product(p_in, rec)),
                )
                rec = StageRecorder()
                for hit, s, name in ((q_hit, qs, "query_side"), (p_hit, ps, "product_side")):
                    if hit:
                        rec.skip(name, "cache hit")
                    else:
                        rec.reports.extend(s.reports)
                        rec.degraded.extend(s.degraded)
                return await self.pipeline.conclude(request_id, q_in, p_in, qs.value, ps.value, rec, started)

            total = self.pipeline.settings.timeouts.total
            try:
                judgment = await asyncio.wait_for(run(), total)
            except TimeoutError:
                raise JudgmentTimeout(f"judgment took longer than {total}s") from None
        finally:
            UNAVAILABLE_ROLES.reset(token)
        down = sorted(marks & self.required_roles)
        if down:
            # A required model vanished mid-request: the fallback answer would be silently worse. Say so.
            raise ModelUnavailable(down[0], "no running replica during the judgment", self.retry_after_s)
        if not judgment.degraded:
            self.judgment_cache.put(jkey, judgment)
        record_judgment(self.metrics, judgment, time.perf_counter() - began)
        return judgment

    async def judge(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A tagged result for the gateway: {"status", "body", "headers"}; exceptions never cross the handle."""
        request_id = str(payload.get("request_id") or new_request_id())
        with bound_request(request_id):
            try:
                judgment = await self.judge_one(payload.get("query"), payload.get("product"), request_id)
            except InputError as exc:
                return error_result(400, exc.message, field=exc.field)
            except ModelUnavailable as exc:
                log.warning("model_unavailable", role=exc.role, reason=exc.reason)
                return error_result(503, str(exc), retry_after=exc.retry_after_s)
            except JudgmentTimeout as exc:
                return error_result(504, str(exc))
            except Exception as exc:
                log.exception("judge_failed")
                return error_result(500, f"{type(exc).__name__}: {str(exc)[:300]}")
            return {"status": 200, "body": json.loads(judgment.model_dump_json()), "headers": {}}

    async def judge_batch(self, payload: dict[str, Any]) -> dict[str, Any]:
        pairs = payload.get("pairs")
        if not isinstance(pairs, list) or not pairs:
            return error_result(400, "pairs must be a non-empty list", field="pairs")
        if len(pairs) > self.max_batch_pairs:
            return error_result(413, f"{len(pairs)} pairs; the limit is {self.max_batch_pairs}", field="pairs")
        base = str(payload.get("request_id") or new_request_id())
        results = await asyncio.gather(
            *(self.judge({**(p if isinstance(p, dict) else {}), "request_id": f"{base}-{i}"})
              for i, p in enumerate(pairs))
        )
        unavailable = [r for r in results if r["status"] == 503]
        if unavailable:
            return unavailable[0]
        items = [{"index": i, "status": r["status"], **({"judgment": r["body"]} if r["status"] == 200 else r["body"])}
                 for i, r in enumerate(results)]
        return {"status": 200, "body": {"request_id": base, "results": items}, "headers": {}}


class JudgeArgs(BaseModel):
    """Builder / constructor arguments of the judge application."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(default="cpu", description="Profile name (gpu_profiles/<name>.yaml) or a YAML path.")
    engine_source: str = Field(default="factory", description="Passed to model apps; the judge ignores it.")


@serve.deployment(name=serve_cfg.JUDGE_DEPLOYMENT)
class JudgeDeployment:
    """The composition deployment: one JudgeService per replica (its own caches)."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = JudgeArgs.model_validate(args)
        loopback.keep_replica_grpc_on_loopback()  # before Serve starts this replica's gRPC server
        # The metric objects are made once here, per replica; every request records through them.
        self.service = JudgeService.from_profile(load_profile(self.args.profile), metrics=RayMetricsRecorder())

    async def judge(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.service.judge(payload)

    async def judge_batch(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.service.judge_batch(payload)

    async def ping(self) -> str:
        return "judge"

    async def stats(self) -> dict[str, Any]:
        return self.service.stats()


# --- the HTTP gateway ---------------------------------------------------------------------------------------------


class JudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The search query.")
    product: dict[str, Any] | str = Field(description="{'name', 'images': [base64 | {'uri'}], 'cpv': {...}, 'id'}")


class JudgeBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[JudgeRequest] = Field(min_length=1, description="Pairs to judge.")


gateway_api = FastAPI(
    title="armed",
    description="Relevance judgment for online-pharmacy search, and an OpenAI-compatible surface for its models.",
)
api.install_error_handlers(gateway_api)


def _images_to_refs(product: dict[str, Any] | str) -> dict[str, Any] | str:
    """The HTTP contract allows bare strings in `images` (base64, or a uri); the domain wants ImageRef objects."""
    if not isinstance(product, dict) or not isinstance(product.get("images"), list):
        return product
    refs = []
    for img in product["images"]:
        if isinstance(img, str):
            is_uri = img.startswith(("http://", "https://", "file:", "/"))
            refs.append({"uri": img} if is_uri else {"data": img})
        else:
            refs.append(img)
    return {**product, "images": refs}


def _to_response(result: dict[str, Any], request_id: str) -> JSONResponse:
    headers = {**result.get("headers", {}), "X-Request-Id": request_id}
    return JSONResponse(result["body"], status_code=result["status"], headers=headers)


@serve.deployment(name=serve_cfg.GATEWAY_DEPLOYMENT)
@serve.ingress(gateway_api)
class Gateway:
    """HTTP ingress: judge routes forward to the Judge deployment, model routes to the model deployments."""

    def __init__(self, args: dict[str, Any], judge: Any = None) -> None:
        self.args = JudgeArgs.model_validate(args)
        loopback.keep_replica_grpc_on_loopback()  # before Serve starts this replica's gRPC server
        auth.load_api_key()  # at start-up: a blank key fails here; no key logs its warning once
        profile = load_profile(self.args.profile)
        self.availability = ReplicaAvailability()
        self.clients = handle_clients_for(profile, self.availability)
        self.judge_client = HandleClient(
            Target("judge", serve_cfg.JUDGE_APP, serve_cfg.JUDGE_DEPLOYMENT), "judge", self.availability,
            timeout_s=profile.to_settings().timeouts.total + 5, retry_after_s=profile.judge.retry_after_s,
        )
        if judge is not None:
            self.judge_client._handle = judge
        self.by_name: dict[str, str] = {}
        for role in profile.deployed_roles():
            for name in api.model_names(role, profile.models[role].engine.model):
                self.by_name.setdefault(name, role)
        self.listed = [api.ROLE_MODEL_NAME[r] for r in profile.deployed_roles() if r != "ocr"]

    def _client(self, model: str, allowed: tuple[str, ...]) -> Any:
        role = self.by_name.get(model)
        if role is None:
            raise api.ApiError(404, f"unknown model {model!r}; known: {', '.join(self.listed)}", "not_found_error")
        if role not in allowed:
            raise api.ApiError(400, f"model {model!r} ({role}) does not serve this route")
        return getattr(self.clients, role)

    async def _model_call(self, coro: Any) -> Any:
        try:
            return await coro
        except ModelUnavailable as exc:
            raise api.ApiError(503, str(exc), "service_unavailable",
                               headers={"Retry-After": str(exc.retry_after_s)}) from None

    async def _judge(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.judge_client.call(method, payload)
        except ModelUnavailable as exc:
            return error_result(503, f"the judge is unavailable: {exc.reason}", retry_after=exc.retry_after_s)

    @gateway_api.post("/v1/judge")
    async def http_judge(self, body: JudgeRequest, x_request_id: str | None = Header(default=None)) -> Response:
        request_id = (x_request_id or new_request_id())[:64]
        payload = {"query": body.query, "product": _images_to_refs(body.product), "request_id": request_id}
        return _to_response(await self._judge("judge", payload), request_id)

    @gateway_api.post("/v1/judge/batch")
    async def http_judge_batch(
        self, body: JudgeBatchRequest, x_request_id: str | None = Header(default=None)
    ) -> Response:
        request_id = (x_request_id or new_request_id())[:64]
        pairs = [{"query": p.query, "product": _images_to_refs(p.product)} for p in body.pairs]
        return _to_response(await self._judge("judge_batch", {"pairs": pairs, "request_id": request_id}), request_id)

    @gateway_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.listed)

    @gateway_api.post("/v1/embeddings")
    async def http_embeddings(self, body: api.EmbeddingRequest) -> dict:
        client = self._client(body.model, ("embedder",))
        texts = body.texts()
        vectors = await self._model_call(client.embed(texts))
        return api.embedding_response(body.model, vectors, texts, body.encoding_format)

    @gateway_api.post("/v1/classify")
    async def http_classify(self, body: api.ClassifyRequest) -> dict:
        client = self._client(body.model, ("consistency", "student"))
        return api.classify_response(body.model, await self._model_call(client.classify(body.pairs)))

    @gateway_api.post("/v1/chat/completions")
    async def http_chat(self, body: api.ChatRequest) -> dict:
        client = self._client(body.model, ("llm", "vl"))
        if body.stream:
            raise api.ApiError(400, "stream=true is not supported; armed's answers are short")
        messages = body.to_messages()
        if any(m.images for m in messages) and client.target.role != "vl":
            raise api.ApiError(400, f"model {body.model!r} does not read images; use armed-vl")
        if body.guided_choice:
            result = await self._model_call(client.choose(messages, body.guided_choice))
            return api.chat_response(body.model, result.label, result)
        text = await self._model_call(client.generate(messages, max_tokens=body.token_budget()))
        return api.chat_response(body.model, text)

    @gateway_api.post("/v1/ocr")
    async def http_ocr(self, body: api.OcrRequest) -> dict:
        client = self._client(body.model, ("ocr",))
        return {"object": "ocr", "model": body.model, "lines": await self._model_call(client.read(body.image_bytes()))}
