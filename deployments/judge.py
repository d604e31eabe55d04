"""The judge (composition) deployment and its HTTP gateway.

`JudgeService` runs the library's `Pipeline.judge` with handle-backed model clients, and gives it hooks
(armed.pipeline.hooks) and nothing else: the flow is the pipeline's, so the served judge and the library judge a
pair the same way. The hooks cache query understanding by normalised query, product understanding by product id +
content hash, and whole judgments by the pair; every key carries the versions (knowledge base, rules, model ids),
so a new KB or model never serves an old answer. Degraded results are never cached: a model that was down for a
second must not pin a worse answer for the TTL.

No stalls: images are fetched and decoded off the event loop under `timeouts.image_read`, model calls have
deadlines (deployments.clients), and `check_health` fails on a stuck blocking call or a probe judgment that does
not finish in time, so Serve replaces a wedged judge replica (deployments.deadlines).

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from armed import roles
from armed.domain import Judgment, Product, Query
from armed.errors import InputError, JudgmentTimeout
from armed.images import ImageError, is_fetchable_uri
from armed.log import bound_request, get_logger, new_request_id
from armed.pipeline.hooks import JudgmentHooks, Understood
from armed.roles import ROLES
from armed.serving import config as serve_cfg
from armed.serving.profiles import JudgeCaches, JudgeProfile, Profile, ProfileRef, resolve_profile
from armed.settings import image_settings
from armed.text import invalid_unicode_path, normalise
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
from deployments.deadlines import PROBE_SHARE, ReplicaWedged, raise_if_wedged
from deployments.engines import spec_model_id
from deployments.metrics import MetricsRecorder, NullRecorder, RayMetricsRecorder, record_judgment

if TYPE_CHECKING:  # the gateway imports this module and never builds a pipeline: keep the DAG's imports out of it
    from armed.pipeline.dag import Pipeline
    from armed.pipeline.hooks import SideLoader
    from armed.pipeline.product_side import ProductUnderstanding
    from armed.pipeline.query_side import QueryUnderstanding

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
    clients = build_handle_clients(
        targets,
        model_ids,
        labels={r: profile.models[r].engine.labels for r in targets},
        ray_llm_roles=ray_llm,
        timeout_s=profile.judge.model_timeout_s,
        retry_after_s=profile.judge.retry_after_s,
        availability=availability,
    )
    # LLMServer answers to the role's public name (armed-llm); a judgment's versions also say which weights that name
    # served (armed-llm@vllm:/models/Qwen3-32B), as armed's own deployments' ids do.
    clients.extra_ids.update({r: f"{model_ids[r]}@{spec_model_id(profile.models[r].engine)}" for r in ray_llm})
    return clients


def error_result(status: int, message: str, field: str | None = None, retry_after: int | None = None) -> dict:
    body = api.error_body(status, message, param=field)
    if field:
        body["error"]["field"] = body["error"]["param"]  # the judge's own name for it, beside OpenAI's `param`
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return {"status": status, "body": body, "headers": headers}


# The probe judgment's fixed pair: known to the knowledge base, so the probe runs its lookups and rules.
PROBE_QUERY = "布洛芬"
PROBE_PRODUCT = {"id": "armed-health-probe", "name": "布洛芬缓释胶囊 0.3g*20粒", "cpv": {"剂型": "胶囊剂"}}


def probe_pipeline(pipeline: Any) -> Any:
    """The judge's pipeline with every model role off and no remote search: what the health check runs.

    It shares the knowledge base and settings, so it exercises this replica's event loop and DAG code, yet it
    calls no model: a model that is down or slow must not get a healthy judge replaced (the judge answers 503
    or degrades for it already); a replacement would only drop the judge's caches and its in-flight requests."""
    from armed.engines.base import ModelClients
    from armed.pipeline.dag import Pipeline
    from armed.pipeline.search import NoSearch

    search = NoSearch() if pipeline.settings.search.provider == "http" else pipeline.search
    return Pipeline(pipeline.settings, pipeline.kb, ModelClients(), search=search)


class _ServedHooks(JudgmentHooks):
    """One request's hooks into `Pipeline.judge`: the replica's required-model check and its three caches.

    The query side is cached by normalised query, the product side by product id + content hash (the images'
    bytes included), the whole judgment by both; every key carries the versions key, so a new knowledge base or
    model never serves an old answer. Nothing degraded is kept: a model that was down for a second must not pin a
    worse answer for the TTL; nor is a judgment during which a required model went down (it becomes a 503)."""

    def __init__(self, service: JudgeService, marks: set[str]) -> None:
        self.service = service
        self.marks = marks  # the roles found unavailable during this request (UNAVAILABLE_ROLES)
        self.from_cache = False

    def _judgment_key(self, query: Query, product: Product) -> tuple:
        return (normalise(query.text), product.id, product.content_hash(), self.service.versions_key())

    async def admit(self, query: Query, product: Product) -> None:
        for client in self.service.required:  # a cached controller read each, not a model call
            await client.ensure_available()

    def cached(self, query: Query, product: Product) -> Judgment | None:
        cache = self.service.judgment_cache
        judgment = cache.get(self._judgment_key(query, product))
        self.service.metrics.cache("judgment", judgment is not None)
        if judgment is None:
            cache.misses += 1
        else:
            cache.hits += 1
            self.from_cache = True
        return judgment

    async def _side(self, cache: TTLCache[Understood[Any]], key: tuple, name: str,
                    load: SideLoader[Any]) -> tuple[Understood[Any], bool]:
        value, hit = await cache.get_or_load(key, load, keep=lambda s: not s.degraded)
        self.service.metrics.cache(name, hit)
        return value, hit

    async def query_side(
        self, query: Query, load: SideLoader[QueryUnderstanding]
    ) -> tuple[Understood[QueryUnderstanding], bool]:
        key = (normalise(query.text), self.service.versions_key())
        return await self._side(self.service.query_cache, key, "query", load)

    async def product_side(
        self, product: Product, load: SideLoader[ProductUnderstanding]
    ) -> tuple[Understood[ProductUnderstanding], bool]:
        key = (product.id, product.content_hash(), self.service.versions_key())
        return await self._side(self.service.product_cache, key, "product", load)

    def made(self, query: Query, product: Product, judgment: Judgment) -> None:
        if not judgment.degraded and not self.marks & self.service.required_roles:
            self.service.judgment_cache.put(self._judgment_key(query, product), judgment)


class JudgeService:
    """Judgments with caches over a Pipeline: the pipeline's own `judge`, given this replica's hooks."""

    def __init__(
        self,
        pipeline: Pipeline,
        caches: JudgeCaches,
        *,
        required: list[HandleClient] | None = None,
        retry_after_s: int = 10,
        max_batch_pairs: int = 64,
        metrics: MetricsRecorder | None = None,
        probe: Any = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.pipeline = pipeline
        self.clock = clock  # the served judgment's time in the metrics (tests pass a fake one to assert exact times)
        self.probe_pipeline = probe  # what `probe` judges with (probe_pipeline(pipeline) for the real one)
        self.metrics: MetricsRecorder = metrics or NullRecorder()
        self.required = required or []
        self.required_roles = {c.target.role for c in self.required}
        self.retry_after_s = retry_after_s
        self.max_batch_pairs = max_batch_pairs
        self.query_cache: TTLCache[Understood[Any]] = TTLCache(caches.query.size, caches.query.ttl_s)
        self.product_cache: TTLCache[Understood[Any]] = TTLCache(caches.product.size, caches.product.ttl_s)
        self.judgment_cache: TTLCache[Judgment] = TTLCache(caches.judgment.size, caches.judgment.ttl_s)
        self._versions_key: str | None = None

    @classmethod
    def from_profile(cls, profile: Profile, metrics: MetricsRecorder | None = None) -> JudgeService:
        """Load the knowledge base and wire handle clients; contacts no model deployment."""
        from armed.knowledge.artefact import load_knowledge
        from armed.pipeline.dag import Pipeline

        settings = profile.to_settings()
        clients = handle_clients_for(profile)
        kb = load_knowledge(settings.knowledge)
        required = [getattr(clients, r) for r in profile.judge.required_roles]
        # the embedder handle serves the profile's embedder spec: its documents' stored vectors are that spec's
        pipeline = Pipeline(settings, kb, clients, doc_vectors_model=settings.models.embedder.identity())
        return cls(
            pipeline,
            profile.judge.caches,
            required=required,
            retry_after_s=profile.judge.retry_after_s,
            max_batch_pairs=profile.judge.max_batch_pairs,
            metrics=metrics,
            probe=probe_pipeline(pipeline),
        )

    async def probe(self) -> None:
        """A probe judgment of a fixed pair on the probe pipeline (no model, no cache, no metrics); raises
        ReplicaWedged when it fails or a stage of it fails."""
        if self.probe_pipeline is None:
            raise ReplicaWedged("judge: no probe pipeline (JudgeService was built without one)")
        judgment = await self.probe_pipeline.judge(PROBE_QUERY, PROBE_PRODUCT, request_id="health-probe")
        if judgment.degraded:
            raise ReplicaWedged(f"judge: the probe judgment degraded in {judgment.degraded}")

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

    async def judge_one(self, query: object, product: object, request_id: str) -> Judgment:
        """One Judgment; raises InputError, ModelUnavailable (required role down) or JudgmentTimeout."""
        began = self.clock()
        marks: set[str] = set()
        token = UNAVAILABLE_ROLES.set(marks)  # the clients add each role they find down during this judgment
        hooks = _ServedHooks(self, marks)
        try:
            judgment = await self.pipeline.judge(query, product, request_id, hooks=hooks)
        finally:
            UNAVAILABLE_ROLES.reset(token)
        down = sorted(marks & self.required_roles)
        if down:
            # A required model vanished mid-request: the fallback answer would be silently worse. Say so.
            raise ModelUnavailable(down[0], "no running replica during the judgment", self.retry_after_s)
        record_judgment(self.metrics, judgment, self.clock() - began, cached=hooks.from_cache)
        return judgment

    async def judge(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A tagged result for the gateway: {"status", "body", "headers"}; exceptions never cross the handle."""
        request_id = str(payload.get("request_id") or new_request_id())
        with bound_request(request_id):
            # Handle callers skip the HTTP edge: the same refusal here, before the text reaches a hash or a model.
            bad = invalid_unicode_path({"query": payload.get("query"), "product": payload.get("product")})
            if bad is not None:
                return error_result(400, f"{bad}: contains a lone surrogate (invalid Unicode)", field=bad)
            try:
                judgment = await self.judge_one(payload.get("query"), payload.get("product"), request_id)
            except InputError as exc:
                return error_result(400, exc.message, field=exc.field)
            except ModelUnavailable as exc:
                log.warning("model_unavailable", role=exc.role, reason=exc.reason)
                return error_result(503, str(exc), retry_after=exc.retry_after_s)
            except JudgmentTimeout as exc:
                return error_result(504, str(exc))
            except Exception:
                log.exception("judge_failed")  # the detail stays in the log: a 500 body names no internals
                return error_result(500, f"internal error while judging (request {request_id}); see the judge's log")
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


async def judge_health(service: JudgeService, judge: JudgeProfile) -> None:
    """The judge's health check: no blocking call (image read, controller read) stuck past judge.wedged_after_s,
    and a probe judgment that finishes cleanly within PROBE_SHARE of health_check_timeout_s."""
    raise_if_wedged("judge", judge.wedged_after_s)
    deadline = judge.health_check_timeout_s * PROBE_SHARE
    try:
        await asyncio.wait_for(service.probe(), deadline)
    except TimeoutError:
        raise ReplicaWedged(f"judge: the probe judgment took longer than {deadline:g}s") from None


class JudgeArgs(BaseModel):
    """Builder / constructor arguments of the judge application."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileRef = Field(
        default="cpu", description="The whole profile (a dict, as serve_config writes it), or a profile name "
        "(gpu_profiles/<name>.yaml) or YAML path."
    )


@serve.deployment(name=serve_cfg.JUDGE_DEPLOYMENT)
class JudgeDeployment:
    """The composition deployment: one JudgeService per replica (its own caches)."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = JudgeArgs.model_validate(args)
        loopback.keep_replica_grpc_on_loopback()  # before Serve starts this replica's gRPC server
        profile = resolve_profile(self.args.profile)
        self.health = profile.judge
        # The metric objects are made once here, per replica; every request records through them.
        self.service = JudgeService.from_profile(profile, metrics=RayMetricsRecorder())

    async def check_health(self) -> None:
        """Serve calls this every health_check_period_s on the replica's event loop (a blocked loop never answers
        and fails it by Serve's timeout)."""
        await judge_health(self.service, self.health)

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
    """One pair. The fields' own bounds (query and name length, CPV, images) are the domain's (armed/domain.py):
    the judge checks them and answers 400 naming the field; the body's size, depth and Unicode are checked here."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The search query.")
    product: dict[str, Any] | str = Field(description="{'name', 'images': [base64 | {'uri'}], 'cpv': {...}, 'id'}")


class JudgeBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[JudgeRequest] = Field(min_length=1, description="Pairs to judge (at most the profile's "
                                      "judge.max_batch_pairs).")


gateway_api = FastAPI(
    title="armed",
    description="Relevance judgment for online-pharmacy search, and an OpenAI-compatible surface for its models.",
)
api.install_error_handlers(gateway_api)


def _images_to_refs(product: dict[str, Any] | str) -> dict[str, Any] | str:
    """The HTTP contract allows bare strings in `images`; the domain wants ImageRef objects. An http(s) URL is a
    uri (fetched only where images.fetch_hosts allows); anything else is data (base64 or a data: URI), so a path
    is never a uri here: it fails to decode, with the message every unreadable image gets. (Base64 JPEGs start
    with '/9j/': a leading '/' cannot tell a path from data.)"""
    if not isinstance(product, dict) or not isinstance(product.get("images"), list):
        return product
    refs = []
    for img in product["images"]:
        if isinstance(img, str):
            refs.append({"uri": img} if is_fetchable_uri(img) else {"data": img})
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
        image_settings()  # a bad ARMED_IMAGES__* setting fails start-up here, not the first image request (500)
        profile = resolve_profile(self.args.profile)
        api.set_limits(profile.limits)  # before the first request: this replica's routes enforce the profile's
        self.max_batch_pairs = profile.judge.max_batch_pairs
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
        self.listed = [ROLES[r].model_name for r in profile.deployed_roles() if ROLES[r].listed]

    def _client(self, model: str, route: str) -> Any:
        """The client of the role `model` names, which must answer `route` (its entry in armed/roles.py)."""
        role = self.by_name.get(model)
        if role is None:
            raise api.ApiError(404, f"unknown model {model!r}; known: {', '.join(self.listed)}", "not_found_error")
        if route not in ROLES[role].routes:
            raise api.ApiError(400, f"model {model!r} ({role}) does not serve this route")
        return getattr(self.clients, role)

    async def check_health(self) -> None:
        """Answering at all is the check: it runs on the gateway's event loop, which a blocked loop never runs
        (Serve's health_check_timeout_s then fails it); the gateway only parses and forwards."""

    async def _model_call(self, coro: Any) -> Any:
        try:
            return await coro
        except ModelUnavailable as exc:
            raise api.ApiError(503, str(exc), "service_unavailable",
                               headers={"Retry-After": str(exc.retry_after_s)}) from None
        except ImageError as exc:  # the model replica's decode refused the image (it arrives wrapped by Ray)
            raise api.image_api_error(exc, "image") from None
        except ValueError as exc:  # the model's verdict on this input, raised in its replica
            raise api.engine_input_error(exc) from None

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
        if len(body.pairs) > self.max_batch_pairs:  # refused here, before the batch crosses to the judge
            raise api.ApiError(413, f"pairs: {len(body.pairs)} pairs; the limit is {self.max_batch_pairs}",
                               param="pairs")
        pairs = [{"query": p.query, "product": _images_to_refs(p.product)} for p in body.pairs]
        return _to_response(await self._judge("judge_batch", {"pairs": pairs, "request_id": request_id}), request_id)

    @gateway_api.get("/v1/models")
    async def http_models(self) -> dict:
        return api.models_list(self.listed)

    @gateway_api.post(roles.EMBEDDINGS)
    async def http_embeddings(self, body: api.EmbeddingRequest) -> Response:
        client = self._client(body.model, roles.EMBEDDINGS)
        texts = body.texts()
        vectors, tokens = await self._model_call(client.embed_with_usage(texts))
        body.check_dimensions(vectors)
        return api.json_response(api.embedding_response(body.model, vectors, tokens, body.encoding_format),
                                 body.ignored())

    @gateway_api.post(roles.CLASSIFY)
    async def http_classify(self, body: api.ClassifyRequest) -> dict:
        client = self._client(body.model, roles.CLASSIFY)
        return api.classify_response(body.model, await self._model_call(client.classify(body.pairs)))

    @gateway_api.post(roles.CHAT)
    async def http_chat(self, body: api.ChatRequest) -> Response:
        client = self._client(body.model, roles.CHAT)
        messages = body.to_messages()
        if any(m.images for m in messages) and not ROLES[client.target.role].reads_images:
            raise api.ApiError(400, f"model {body.model!r} does not read images; use armed-vl")
        options = body.sampling()
        if body.guided_choice:
            result = await self._model_call(client.choose(messages, body.guided_choice))
            completion, probs = api.choice_completion(result, options)
        else:
            completion, probs = await self._model_call(client.complete(messages, options)), None
        return api.json_response(api.chat_response(body.model, completion, probs), body.ignored())

    @gateway_api.post(roles.OCR)
    async def http_ocr(self, body: api.OcrRequest) -> dict:
        client = self._client(body.model, roles.OCR)
        return {"object": "ocr", "model": body.model, "lines": await self._model_call(client.read(body.image_bytes()))}
