"""The judgment DAG: query side ∥ product side → expert-rule recall → hierarchy → Judgment with evidence.

One definition, one flow, every runtime: the library runs `Pipeline.judge` in-process with local engines; the Serve
judge deployment runs the same `judge` with model clients that are deployment handles and hooks
(armed.pipeline.hooks) for its caches and its required-model check; the perf tracer with hooks that label each
side's calls. Nobody else strings `understand_query`, `understand_product` and `conclude` together, so the pair is
parsed, sanitised and judged the same way wherever it is judged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError

import armed
from armed.domain import Evidence, Judgment, Product, Query, Versions
from armed.engines.base import ModelClients
from armed.errors import InputError, JudgmentTimeout, from_validation_error
from armed.knowledge.artefact import load_knowledge
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.rules import recall
from armed.log import bound_request, get_logger, new_request_id
from armed.pipeline import product_search
from armed.pipeline.hierarchy import decide
from armed.pipeline.hooks import NO_HOOKS, JudgmentHooks, Understood
from armed.pipeline.merchant_text import clean_product
from armed.pipeline.product_side import ProductSide, ProductUnderstanding, resolve_images
from armed.pipeline.query_side import QuerySide, QueryUnderstanding
from armed.pipeline.search import SearchProvider, build_search
from armed.pipeline.stages import Detailed, StageRecorder
from armed.settings import ArmedSettings
from armed.student.engine import student_text

log = get_logger("armed.pipeline")
T = TypeVar("T")
U = TypeVar("U")


def parse_pair(query: object, product: object, kb: KnowledgeBase | None = None, *,
               keep_hijack: bool = True) -> tuple[Query, Product]:
    """Validate raw input (a str / dict) into domain objects; errors name the field. This is where merchant text enters
    armed: the product comes back sanitised against the query (armed.pipeline.merchant_text), so the branches, the
    rules, the student and every prompt read only the sanitised text. `kb` lets the stuffing rules keep a term the
    rest of the name is about too; the pipeline always passes its own. `keep_hijack`: leave traffic-hijacking phrases
    (X同款, 替代X) for the cheating check to judge (False when that check is switched off)."""
    try:
        q = query if isinstance(query, Query) else Query(text=query)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise from_validation_error(exc, "query") from None
    try:
        if isinstance(product, Product):
            p = product
        elif isinstance(product, str):
            p = Product(name=product)
        elif isinstance(product, dict):
            p = Product.model_validate(product)
        else:
            raise InputError("product", "must be a name or an object with at least 'name'")
    except ValidationError as exc:
        raise from_validation_error(exc, "product") from None
    return q, clean_product(p, q.text, kb, keep_hijack=keep_hijack)


class Pipeline:
    """Judges (query, product) pairs. Build once (models and knowledge load here), call `judge` many times."""

    def __init__(
        self,
        settings: ArmedSettings,
        kb: KnowledgeBase,
        clients: ModelClients,
        search: SearchProvider | None = None,
        doc_vectors_model: str | None = None,
    ) -> None:
        """`doc_vectors_model`: the identity (`EngineSpec.identity()`) of the engine behind `clients.embedder`, when
        the caller knows it; the filter then reuses that embedder's document vectors stored in the knowledge
        artefact (armed/knowledge/doc_vectors.py). None: every document is embedded per judgment."""
        self.settings = settings
        self.kb = kb
        self.clients = clients
        self.search = search or build_search(settings.search, kb, settings.timeouts.search)
        self.query_side = QuerySide(settings, kb, clients, self.search, doc_vectors_model)
        self.product_side = ProductSide(settings, kb, clients)

    @classmethod
    def from_settings(cls, settings: ArmedSettings | None = None) -> Pipeline:
        """Load the knowledge base and build every configured engine (the expensive start-up work)."""
        from armed.engines.factory import build_clients

        settings = settings or ArmedSettings()
        kb = load_knowledge(settings.knowledge)
        return cls(settings, kb, build_clients(settings.models), doc_vectors_model=settings.models.embedder.identity())

    def versions(self) -> Versions:
        return Versions(
            knowledge_base=self.kb.version,
            rules=self.kb.rules_version,
            models=self.clients.model_ids(),
            armed=armed.__version__,
        )

    async def understand_query(self, query: str, rec: StageRecorder) -> QueryUnderstanding:
        return await self.query_side.run(query, rec)

    async def understand_product(self, product: Product, rec: StageRecorder) -> ProductUnderstanding:
        if any(img.data is None for img in product.images):  # callers normally resolved them already
            product = await resolve_images(product, self.settings.images, self.settings.timeouts.image_read)
        return await self.product_side.run(product, [img.data for img in product.images if img.data], rec)

    async def conclude(
        self,
        request_id: str,
        query: Query,
        product: Product,
        q: QueryUnderstanding,
        p: ProductUnderstanding,
        rec: StageRecorder,
        started: float,
    ) -> Judgment:
        """The join: expert-rule recall over both sides' entities, then the hierarchy."""

        async def run_rules() -> Detailed[list]:
            q_entities, note = q.side.entities, ""
            if product.kind != "query":
                # A form word that is part of the name both sides share (膏 in 复方肝浸膏 / 复方肝浸膏片) is not a
                # dosage form the query asks for: no form cap for it.
                named = set(product_search.forms_in_name(q.side.original, p.side.original, self.kb))
                if named & set(q_entities.dosage_form):
                    q_entities = q_entities.model_copy(
                        update={"dosage_form": [f for f in q_entities.dosage_form if f not in named]})
                    note = f" (query form {'、'.join(sorted(named))} is part of the product's name)"
                sold = product_search.trade_as_sold(q.side.original, p.side.original, self.kb)
                if sold is not None and sold[0] in q_entities.common_name:
                    # The trade name asked means the drug the product sells under it: the rules compare that one.
                    typed = self.kb.extract(q.side.original)
                    q_entities = self.kb.enrich(typed.model_copy(update={
                        "common_name": [sold[1] if c == sold[0] else c for c in typed.common_name]}))
                    note += f" (query trade name read as {sold[1]}, as the product sells it)"
            hits = recall(self.kb, q_entities, p.side.entities, q.specificity)
            return Detailed(hits, (", ".join(h.id for h in hits) or "none fired") + note)

        hits = await rec.run("rules", run_rules, self.settings, default=[])
        decision = await decide(q, p, hits, self.clients, self.settings, self.kb, rec,
                                product_text=student_text(product.name, product.kind), product_kind=product.kind)
        return Judgment(
            request_id=request_id,
            query=query.text,
            product_name=product.name,
            level=decision.level,
            benchmark_level=decision.level.to_benchmark(),
            probabilities=decision.probabilities,
            branch=decision.branch,
            reason=decision.reason,
            guideline=decision.guideline,
            intent=q.intent.kind if q.intent is not None else None,
            rules_fired=hits,
            student=decision.student,
            llm=decision.llm,
            cheating=p.cheating,
            cheating_reason=p.cheating_reason,
            degraded=list(dict.fromkeys(rec.degraded)),
            evidence=Evidence(
                query=q.side,
                product=p.side,
                knowledge=q.knowledge,
                documents=q.documents,
                image_text=p.image_text,
                sanitised=list(product.sanitised),
            ),
            stages=rec.reports,
            versions=self.versions(),
            seconds=time.perf_counter() - started,
        )

    async def judge(self, query: object, product: object, request_id: str | None = None,
                    hooks: JudgmentHooks = NO_HOOKS) -> Judgment:
        """One judgment. Raises InputError for bad input and JudgmentTimeout past `timeouts.total`; whatever
        `hooks.admit` raises. `hooks`: what the runtime adds (caches, admission); the default adds nothing."""
        q_in, p_in = parse_pair(query, product, self.kb, keep_hijack=self.settings.stages.cheating_check)
        request_id = request_id or new_request_id()
        started = time.perf_counter()
        with bound_request(request_id):
            # Images are fetched and decoded once, before any model runs or any cache is read: a broken one is the
            # caller's error, and a cache key can then hash the images' bytes.
            p_in = await resolve_images(p_in, self.settings.images, self.settings.timeouts.image_read)
            await hooks.admit(q_in, p_in)
            cached = hooks.cached(q_in, p_in)
            if cached is not None:
                return cached.model_copy(update={"request_id": request_id, "seconds": 0.0})

            async def run() -> Judgment:
                (qs, q_hit), (ps, p_hit) = await asyncio.gather(
                    hooks.query_side(q_in, lambda: self._understood(self.understand_query, q_in.text)),
                    hooks.product_side(p_in, lambda: self._understood(self.understand_product, p_in)),
                )
                # Each side reports into its own recorder (a cache keeps them with the side), merged here in a
                # fixed order: query side, product side, then the join's stages.
                # A side another judgment made (a cache hit) says so instead of replaying its stages; what it
                # lacked still degrades this judgment (a cache keeps no degraded side, but concurrent judgments
                # of one query share the one in flight).
                rec = StageRecorder()
                for hit, side, name in ((q_hit, qs, "query_side"), (p_hit, ps, "product_side")):
                    if hit:
                        rec.skip(name, "cache hit")
                    else:
                        rec.reports.extend(side.reports)
                    rec.degraded.extend(side.degraded)
                return await self.conclude(request_id, q_in, p_in, qs.value, ps.value, rec, started)

            try:
                judgment = await asyncio.wait_for(run(), self.settings.timeouts.total)
            except TimeoutError:
                raise JudgmentTimeout(f"judgment took longer than {self.settings.timeouts.total}s") from None
            log.info(
                "judged",
                level=judgment.level.value,
                branch=judgment.branch.value,
                degraded=judgment.degraded,
                seconds=round(judgment.seconds, 4),
            )
            hooks.made(q_in, p_in, judgment)
            return judgment

    @staticmethod
    async def _understood(understand: Callable[[T, StageRecorder], Awaitable[U]], subject: T) -> Understood[U]:
        rec = StageRecorder()
        value = await understand(subject, rec)
        return Understood(value, rec.reports, rec.degraded)
