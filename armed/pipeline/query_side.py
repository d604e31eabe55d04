"""Query understanding: QI → IS → ISPI → TF → CN → QC → NER, cacheable by the normalised query.

Every fact this side adds comes from the knowledge base, a kept document, or the query itself: an LLM answer
is only accepted when what it says can be found in one of those.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from armed.domain import DocDecision, Entities, EntityField, SideUnderstanding, WebDoc
from armed.engines.base import ModelClients, consistency_pair, cosine
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.doc_vectors import DocVectors, DocVectorsError, filter_text, open_doc_vectors, split_known
from armed.log import get_logger
from armed.pipeline import prompts
from armed.pipeline.intent import QueryIntent, query_intent
from armed.pipeline.search import SearchProvider
from armed.pipeline.stages import Detailed, StageRecorder, ground_in_knowledge
from armed.settings import ArmedSettings
from armed.text import char_overlap, jaccard, ngrams, normalise

log = get_logger(__name__)

# Document vectors kept in memory per query side (least recently used go first): a few MB.
DOC_CACHE_ENTRIES = 4096


class QueryUnderstanding(BaseModel):
    """All the query side established; the judge deployment caches it by normalised query and versions."""

    model_config = ConfigDict(extra="forbid")

    side: SideUnderstanding
    effective_text: str = Field(description="The text the rest of the pipeline reads (rewrite or original).")
    specificity: str = Field(description="generic or specific (see KnowledgeBase.query_specificity).")
    knowledge: list[WebDoc] = Field(default_factory=list)
    documents: list[DocDecision] = Field(default_factory=list)
    intent: QueryIntent | None = Field(default=None, description="QI: product, need or question (None: not run).")


@dataclass
class _Rewrite:
    text: str | None
    categories: list[str]
    notes: list[str]


def _grounded(values: list[str], sources: list[str]) -> list[str]:
    """Keep only entity strings that literally occur in one of the sources (no invented entities)."""
    norm_sources = [normalise(s) for s in sources]
    return [v for v in values if v and any(normalise(v) in s for s in norm_sources)]


class QuerySide:
    def __init__(
        self,
        settings: ArmedSettings,
        kb: KnowledgeBase,
        clients: ModelClients,
        search: SearchProvider,
        doc_vectors_model: str | None = None,
    ) -> None:
        self.s = settings
        self.kb = kb
        self.clients = clients
        self.search_provider = search
        self._doc_vectors: DocVectors | None = None
        # Documents this side's embedder has embedded, by the exact text it embedded (the same text is the same
        # vector for the same engine): the seed's and a register's documents are few and come back on every query.
        self._doc_cache: OrderedDict[str, list[float]] = OrderedDict()
        if doc_vectors_model and clients.embedder is not None and getattr(kb, "artefact_path", None) is not None:
            try:  # an accelerator only: without it the filter embeds every document, as before
                self._doc_vectors = open_doc_vectors(kb.artefact_path, doc_vectors_model)
            except DocVectorsError as exc:
                log.warning("doc_vectors_unusable", error=str(exc))

    async def run(self, query: str, rec: StageRecorder) -> QueryUnderstanding:
        st = self.s.stages
        notes: list[str] = []

        intent = await rec.run(
            "query_intent",
            lambda: self._intent(query),
            self.s,
            default=None,
        )
        rw = await rec.run(
            "query_rewrite",
            lambda: self._rewrite(query),
            self.s,
            default=_Rewrite(None, [], []),
        )
        notes += rw.notes
        base_entities = self.kb.extract(query)
        if intent is not None and intent.spelled:
            # A pinyin / homophone query means the name it spells (QI): read it as that name from here on.
            notes.append(f"the query spells {intent.spelled} ({intent.spelled_how})")
            spelt = self.kb.extract(intent.spelled)
            # Misspelt as a whole, the typed text's own reading (a piece taken for a maker or a form) is no reading,
            # and a form word that is the spelled name's own (肝浸膏) is no form asked: the intent says which are.
            base_entities = (spelt.model_copy(update={"dosage_form": list(intent.forms)}) if intent.spelled_whole
                             else base_entities.merge(spelt))
        rewritten = rw.text

        if rewritten is not None:
            keep = await rec.run(
                "query_change",
                lambda: self._query_change(query, base_entities, rewritten),
                self.s,
                default=True,
            )
            if not keep:
                notes.append(f"rewrite {rewritten!r} changed what was asked: kept the original query")
                rewritten = None
        effective = rewritten or query
        entities = base_entities.merge(self.kb.extract(effective)) if rewritten else base_entities

        entities = await rec.run(
            "common_name",
            lambda: self._common_names(entities, notes),
            self.s,
            default=entities,
        )

        found: list[WebDoc] = await rec.run(
            "search",
            lambda: self._search(effective),
            self.s,
            default=[],
        )
        decisions: list[DocDecision] = [DocDecision(doc=d, kept=True, reason="retrieved") for d in found]
        decisions = await rec.run(
            "identical_page",
            lambda: self._identical_pages(decisions),
            self.s,
            default=decisions,
            skip_reason=None if decisions else "nothing retrieved",
        )
        decisions = await rec.run(
            "two_stage_filter",
            lambda: self._two_stage_filter(effective, entities, decisions),
            self.s,
            default=decisions,
            skip_reason=None if any(d.kept for d in decisions) else "no documents to filter",
        )

        llm_entities = await rec.run(
            "ner_llm",
            lambda: self._llm_ner(effective),
            self.s,
            default=Entities(),
            skip_reason=(
                "no LLM configured" if self.clients.llm is None else (None if st.llm_text else "stages.llm_text is off")
            ),
        )
        entities = entities.merge(llm_entities)
        entities = self._knowledge_grounding(entities, decisions, notes)
        categories = list(dict.fromkeys(rw.categories + entities.category))
        if categories != entities.category:
            entities = entities.model_copy(update={"category": categories})

        return QueryUnderstanding(
            side=SideUnderstanding(
                original=query, rewritten=rewritten, categories=categories, entities=entities, notes=notes
            ),
            effective_text=effective,
            specificity=self.kb.query_specificity(entities, query),
            knowledge=[d.doc for d in decisions if d.kept and d.doc.source.startswith("kb:")],
            documents=decisions,
            intent=intent,
        )

    async def _intent(self, query: str) -> Detailed[QueryIntent]:
        """QI's intent: product, need or question, from the query as typed (never a rewrite)."""
        intent = query_intent(query, self.kb)
        return Detailed(intent, f"{intent.kind}: {intent.reason}")

    async def _rewrite(self, query: str) -> Detailed[_Rewrite]:
        """QI: the knowledge base's expansions first (verified), then the LLM for the rest."""
        expansion = self.kb.expand_query(query)
        if expansion is not None:
            note = f"query expansion from the knowledge base: {query!r} → {expansion.expanded!r}"
            if expansion.note:
                note += f" ({expansion.note})"
            return Detailed(_Rewrite(expansion.expanded, list(expansion.categories), [note]), "kb expansion")
        if self.clients.llm is None or not self.s.stages.llm_text:
            return Detailed(_Rewrite(None, [], []), "no knowledge-base expansion (LLM rewrite off)")
        text = (await self.clients.llm.generate(prompts.rewrite(query), max_tokens=32)).strip()
        text = text.splitlines()[0].strip().strip("\"'“”") if text else ""
        if not text or len(text) > 2 * len(query) + 20:
            return Detailed(_Rewrite(None, [], []), "LLM rewrite rejected (empty or too long)")
        if normalise(text) == normalise(query):
            return Detailed(_Rewrite(None, [], []), "LLM rewrite identical to the query")
        return Detailed(_Rewrite(text, [], []), f"LLM rewrite {text!r}")

    async def _query_change(self, query: str, original: Entities, rewritten: str) -> Detailed[bool]:
        """QC: a rewrite may clarify a query, never change it. Core entities must survive, and nothing new."""
        new = self.kb.extract(rewritten)
        for f in (EntityField.common_name, EntityField.brand, EntityField.dosage_form, EntityField.population):
            lost = set(original.get(f)) - set(new.get(f))
            if lost:
                return Detailed(False, f"rewrite lost {f.value} {sorted(lost)}")
        for f in (EntityField.common_name, EntityField.brand):
            added = set(new.get(f)) - set(original.get(f))
            if added and self.kb.expand_query(query) is None:
                return Detailed(False, f"rewrite added {f.value} {sorted(added)}")
        if self.kb.expand_query(query) is None and char_overlap(query, rewritten) < 0.5:
            return Detailed(False, "rewrite shares less than half of the query's characters")
        return Detailed(True, "rewrite keeps the query's intent")

    async def _common_names(self, entities: Entities, notes: list[str]) -> Detailed[Entities]:
        """CN: trade names and synonyms → the common (generic) name, so 芬必得 meets 布洛芬."""
        terms = entities.brand + entities.common_name
        resolved = self.kb.resolve_common_names(terms)
        added = [cn for term, cn in resolved.items() if cn not in entities.common_name]
        for term, cn in resolved.items():
            if term != cn:
                notes.append(f"common name: {term} → {cn}")
        if not added:
            return Detailed(entities, "nothing to resolve")
        merged = entities.model_copy(update={"common_name": list(dict.fromkeys(entities.common_name + added))})
        return Detailed(merged, f"resolved {added}")

    async def _search(self, text: str) -> Detailed[list[WebDoc]]:
        docs = await self.search_provider.search(text, self.s.search.top_k)
        return Detailed(docs, f"{self.search_provider.name}: {len(docs)} documents")

    async def _identical_pages(self, decisions: list[DocDecision]) -> Detailed[list[DocDecision]]:
        """ISPI: the same page found twice is one piece of evidence, not two."""
        out: list[DocDecision] = []
        kept_grams: list[tuple[str, set[str]]] = []
        dropped = 0
        for d in decisions:
            grams = ngrams(d.doc.title + d.doc.text, 3)
            dup = next((i for i, g in kept_grams if jaccard(grams, g) >= self.s.filter.duplicate_jaccard), None)
            if dup is not None:
                out.append(d.model_copy(update={"kept": False, "reason": f"identical page: duplicate of {dup}"}))
                dropped += 1
            else:
                kept_grams.append((d.doc.id, grams))
                out.append(d)
        return Detailed(out, f"{dropped} duplicates dropped")

    async def _two_stage_filter(
        self, query: str, entities: Entities, decisions: list[DocDecision]
    ) -> Detailed[list[DocDecision]]:
        """TF: stage 1 keeps documents similar enough to the query; stage 2 asks the consistency model
        whether each is about what the user meant (the knowledge-base check when no model is configured)."""
        live = [d for d in decisions if d.kept]
        sims: dict[str, float] = {}
        stored_note = ""
        if self.clients.embedder is not None:
            texts = [filter_text(d.doc.title, d.doc.text, self.s.search.max_doc_chars) for d in live]
            known, missing = split_known(self._doc_vectors, texts)
            for i in list(missing):
                if texts[i] in self._doc_cache:
                    known[i] = self._doc_cache[texts[i]]
                    self._doc_cache.move_to_end(texts[i])
                    missing.remove(i)
            fresh = await self.clients.embedder.embed([query] + [texts[i] for i in missing])
            for i, vec in zip(missing, fresh[1:], strict=True):
                self._doc_cache[texts[i]] = vec
                if len(self._doc_cache) > DOC_CACHE_ENTRIES:
                    self._doc_cache.popitem(last=False)
            vecs = {**known, **dict(zip(missing, fresh[1:], strict=True))}
            sims = {d.doc.id: cosine(fresh[0], vecs[i]) for i, d in enumerate(live)}
            stored_note = f" ({len(known)} document vectors precomputed)" if known else ""
        thr = self.s.filter.similarity_threshold
        stage1 = [d for d in live if d.doc.id not in sims or sims[d.doc.id] >= thr]
        cons: dict[str, float] = {}
        if stage1:
            if self.clients.consistency is not None:
                pairs = [consistency_pair(query, d.doc.title, d.doc.text) for d in stage1]
                dists = await self.clients.consistency.classify(pairs)
                label = self.clients.consistency.labels[0]
                cons = {d.doc.id: dist.get(label, 0.0) for d, dist in zip(stage1, dists, strict=True)}
            else:
                cons = {d.doc.id: self._kb_consistency(entities, d.doc) for d in stage1}
        out = []
        for d in decisions:
            if not d.kept:
                out.append(d)
                continue
            sim = sims.get(d.doc.id)
            if sim is not None and sim < thr:
                out.append(
                    d.model_copy(update={"kept": False, "similarity": sim, "reason": f"similarity {sim:.2f} < {thr}"})
                )
                continue
            c = cons.get(d.doc.id, 0.0)
            ok = c >= self.s.filter.consistency_threshold
            reason = f"consistency {c:.2f} {'≥' if ok else '<'} {self.s.filter.consistency_threshold}"
            out.append(d.model_copy(update={"kept": ok, "similarity": sim, "consistency": c, "reason": reason}))
        kept = sum(d.kept for d in out)
        return Detailed(out, f"kept {kept}/{len(decisions)}{stored_note}")

    def _kb_consistency(self, entities: Entities, doc: WebDoc) -> float:
        """Knowledge-base stand-in for the consistency model: a document is about the query when it names the
        query's core entity (common name, else brand, else efficacy)."""
        doc_entities = self.kb.extract(doc.title + " " + doc.text)
        for f in (EntityField.common_name, EntityField.brand):
            if entities.get(f):
                return 0.9 if set(entities.get(f)) & set(doc_entities.get(f)) else 0.1
        if entities.efficacy:
            rel = self.kb.efficacy_relation(entities.efficacy, doc_entities.efficacy)
            return 0.5 if rel is None and doc_entities.efficacy else (0.9 if rel else 0.1)
        return 0.5

    async def _llm_ner(self, text: str) -> Detailed[Entities]:
        """LLM NER on top of the lexicon; only strings that occur in the query are accepted."""
        assert self.clients.llm is not None
        raw = await self.clients.llm.generate(prompts.ner(text), max_tokens=96)
        start, end = raw.find("{"), raw.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("LLM NER answer holds no JSON object")
        data = json.loads(raw[start : end + 1])
        if not isinstance(data, dict):
            raise ValueError("LLM NER answer is not an object")
        clean = {}
        for f in EntityField:
            vals = data.get(f.value, [])
            vals = [vals] if isinstance(vals, str) else vals
            if isinstance(vals, list):
                clean[f.value] = _grounded([str(v)[:40] for v in vals if isinstance(v, str | int)], [text])
        ents = Entities(**clean)
        return Detailed(ents, f"{sum(len(ents.get(f)) for f in EntityField)} grounded entities")

    def _knowledge_grounding(self, entities: Entities, decisions: list[DocDecision], notes: list[str]) -> Entities:
        """Add what verified knowledge says about the query's common names (efficacy, category, population)."""
        grounded = ground_in_knowledge(self.kb, entities, notes)
        kept_kb = [d for d in decisions if d.kept and d.doc.source.startswith("kb:")]
        if kept_kb and not grounded.efficacy:
            # No common name to look up (a symptom or brand query): the top kept record's efficacy stands in.
            doc_entities = self.kb.extract(kept_kb[0].doc.title + " " + kept_kb[0].doc.text)
            if doc_entities.efficacy:
                notes.append(f"knowledge ({kept_kb[0].doc.source}): efficacy {'/'.join(doc_entities.efficacy[:5])}")
                return grounded.merge(Entities(efficacy=doc_entities.efficacy[:5]))
        return grounded
