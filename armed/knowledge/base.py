"""The knowledge base: verified lexicons + public sources, with NER, CN resolution, retrieval and comparisons.

Everything the pipeline knows about drugs comes through here, so it is deterministic and versioned: the same
seed and source files always give the same `version`, and any edit gives a new one (recorded in every
judgment). Loading builds every index up front; a request only reads them.

This module is the query API and the loading (`load`, `from_sources`, `parse_seed`, `from_state`); the building
itself (seed and source ingestion) is armed/knowledge/build.py, which imports nothing of this module. `DrugRecord`,
the record the build makes and `drug_record` / `records()` answer, is defined there and importable from here.

Conventions (documented once, relied on everywhere):
- A common name is the drug's name WITHOUT its dosage-form suffix: 修正消栓通络片 → brand 修正, common name
  消栓通络, dosage form 片剂. A source name such as 布洛芬缓释胶囊 is split the same way (布洛芬 + 胶囊).
- Extraction is dictionary matching over the normalised text (NFKC, lower case) with longest match wins;
  specifications are found first by regex and masked, so 12片 in a pack size is not a dosage form.
- Outputs are canonical: synonyms / trade names / English → canonical common name, variants → canonical
  dosage form, aliases → canonical brand, population / region terms → their group. Efficacy terms are kept
  as written (comparisons map them to efficacy groups).
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from armed.domain import Entities, WebDoc
from armed.knowledge import spelling
from armed.knowledge.areas import AreaTable
from armed.knowledge.brands import (
    BrandGuess,
    bracket_brands,
    in_brand_position,
    maker_brands,
    maker_core,
    prefix_brand,
)
from armed.knowledge.build import DrugRecord, add_unique, build_state, split_form
from armed.knowledge.content import content_version
from armed.knowledge.index import Match, Payload, normalise
from armed.knowledge.schema import Seed
from armed.knowledge.sources import KnowledgeSourceError, LoadedSource, read_source

Specificity = Literal["generic", "specific"]

SEED_PACKAGE = "armed.knowledge.seed"
SEED_FILE = "kb.yaml"


def packaged_seed_bytes() -> bytes:
    """The seed that ships in the package (armed/knowledge/seed/kb.yaml), as bytes."""
    return resources.files(SEED_PACKAGE).joinpath(SEED_FILE).read_bytes()


_SPOKEN_PAIN = re.compile(r"疼(?!痛)")
_PROMO_BRACKET_RE = re.compile(r"【([^】]*)】|\[([^\]]*)\]|〔([^〕]*)〕|「([^」]*)」|『([^』]*)』")


# `efficacy_relation` of two lists whose uses only complement each other (a monitor and a medicine for one need): some
# agreement, below every rule's overlap threshold (0.5), and never "entirely different".
COMPLEMENTARY = 0.25


class KnowledgeError(ValueError):
    """The seed or a source could not be loaded; the message names it and the field or file."""


class TradeName(BaseModel):
    """A trade name found in a text: the surface, the common name it means, its maker's brand if a source says."""

    model_config = ConfigDict(frozen=True)

    surface: str
    common_name: str
    brand: str | None = None


class QueryExpansion(BaseModel):
    """What an ambiguous or slang query means (QI stage evidence)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str
    expanded: str
    categories: list[str]
    note: str


@dataclass
class _Derived:
    """What the knowledge base answers from but does not hold: the seed's area table, and efficacy term → the drugs
    whose records list it (one pass over the records, on first use). Kept beside the KB, not in it, so it is
    neither content (the version) nor artefact state, and built once per KB, never per request."""

    areas: AreaTable
    efficacy_index: dict[str, tuple[str, ...]] | None = None


_DERIVED: weakref.WeakKeyDictionary[KnowledgeBase, _Derived] = weakref.WeakKeyDictionary()


def _derived(kb: KnowledgeBase) -> _Derived:
    d = _DERIVED.get(kb)
    if d is None:
        d = _DERIVED[kb] = _Derived(AreaTable(kb.seed.therapeutic_areas))
    return d


def _efficacy_index(kb: KnowledgeBase) -> dict[str, tuple[str, ...]]:
    d = _derived(kb)
    if d.efficacy_index is None:
        found: dict[str, list[str]] = {}
        for name in kb._records:
            for term in kb._records[name].efficacy:
                found.setdefault(term, []).append(name)
        d.efficacy_index = {t: tuple(ns) for t, ns in found.items()}
    return d.efficacy_index


class KnowledgeBase:
    """Lexicons, drug records and a BM25 index, built once by `load`; every method is read-only and cheap."""

    def __init__(self, seed: Seed, sources: Sequence[LoadedSource] = ()) -> None:
        """Build from a validated seed and sources already read, in order (armed/knowledge/build.py does the
        building; `load` and `from_sources` read the files first)."""
        vars(self).update(build_state(seed, sources))
        self.artefact_path: Path | None = None  # set when loaded from a built artefact (not content)
        # The version is a hash of what the KB answers from (lexicons, records, documents, rules), not of the
        # source files' bytes: a reformatted or reordered file keeps it, any change of content moves it, and a
        # built artefact carries the same version as this in-memory build (armed/knowledge/content.py).
        self.version = content_version(self)

    @property
    def areas(self) -> AreaTable:
        """The seed's therapeutic-area table (armed/knowledge/areas.py), derived from the seed once per knowledge
        base (the seed is both content and artefact state; the table is neither)."""
        return _derived(self).areas

    def record_areas(self, names: Sequence[str], efficacy: Sequence[str] = (),
                     category: Sequence[str] = ()) -> set[str] | None:
        """The therapeutic areas of a product: those its indications and categories name (its records' and the
        ones given). None when one of its drugs spans areas or nothing names an area: then no use is "entirely
        different" from it."""
        table = self.areas
        if any(table.spans_areas(n) for n in names):
            return None
        words, cats = list(efficacy), list(category)
        for n in names:
            rec = self._records.get(n)
            if rec is not None:
                words += rec.efficacy
                cats += rec.categories
        return (table.text_areas(" ".join(words)) | table.category_areas(cats)) or None

    def need_areas(self, terms: Sequence[str]) -> set[str]:
        """The therapeutic areas of a need: what its words name; for words that name none (骨蒸劳热), the areas of
        every drug whose indication lists them."""
        table = self.areas
        out = table.text_areas(" ".join(terms))
        if out:  # its own words say where it belongs
            return out
        index = _efficacy_index(self)
        for name in sorted({n for t in terms for n in index.get(t, ())}):
            out |= self.record_areas([name]) or set()
        return out

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, seed: Path | None = None, sources: Sequence[str] = ()) -> KnowledgeBase:
        """Load the seed (the packaged one when `seed` is None) and each `KIND:PATH` source.

        Raises KnowledgeError naming the seed field or the source when anything is missing or malformed.
        """
        loaded: list[LoadedSource] = []
        for spec in sources:
            try:
                loaded.append(read_source(spec))
            except KnowledgeSourceError as exc:
                raise KnowledgeError(str(exc)) from exc
        return cls.from_sources(loaded, seed)

    @classmethod
    def from_sources(cls, sources: Sequence[LoadedSource], seed: Path | None = None) -> KnowledgeBase:
        """The seed (the packaged one when `seed` is None) plus sources already read (`read_source`): for callers
        that filter rows before building, such as the NER evaluation leaving out the inserts it scores."""
        if seed is None:
            seed_bytes = packaged_seed_bytes()
            where = f"packaged seed {SEED_PACKAGE}/{SEED_FILE}"
        else:
            try:
                seed_bytes = Path(seed).read_bytes()
            except OSError as exc:
                raise KnowledgeError(f"seed {seed}: cannot read: {exc}") from exc
            where = f"seed {seed}"
        return cls(cls.parse_seed(seed_bytes, where), sources)

    @staticmethod
    def parse_seed(data: bytes, where: str = "seed") -> Seed:
        """Validate seed YAML bytes; errors name the field path (e.g. lexicons.brands.0.aliases)."""
        try:
            raw = yaml.safe_load(data.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise KnowledgeError(f"{where}: not valid UTF-8 YAML: {exc}") from exc
        try:
            return Seed.model_validate(raw)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
            )
            raise KnowledgeError(f"{where} is invalid: {details}") from exc

    # ------------------------------------------------------------------ extraction

    def split_form(self, name: str) -> tuple[str, str | None]:
        """Split a drug name into (core common name, canonical dosage form): 布洛芬缓释胶囊 → (布洛芬, 胶囊)."""
        return split_form(name, self._form_suffixes, self._form)

    def form_suffix(self, text: str) -> tuple[str, str] | None:
        """(the variant, its canonical form) that `text` ends with (钙片 → 片, 片剂), however short the rest; None."""
        key = normalise(text)
        for suffix in self._form_suffixes:
            if key.endswith(suffix) and len(key) > len(suffix):
                return suffix, self._form[suffix]
        return None

    def specifications(self, text: str) -> list[tuple[int, int, str]]:
        """Pack-size / strength spans in normalised text (longest first, non-overlapping), in text order."""
        found: list[tuple[int, int, str]] = []
        for rx in self._spec_res:
            for m in rx.finditer(text):
                if m.end() > m.start():
                    found.append((m.start(), m.end(), re.sub(r"\s+", "", m.group(0))))
        found.sort(key=lambda t: (-(t[1] - t[0]), t[0]))
        taken: list[tuple[int, int, str]] = []
        for s in found:
            if all(s[1] <= t[0] or s[0] >= t[1] for t in taken):
                taken.append(s)
        return sorted(taken)

    def extract(self, text: str) -> Entities:
        """Lexicon NER over Chinese (or mixed) text: every field the lexicons know, canonicalised.

        Noise terms and promo brackets are removed first (strip_noise); specifications are matched by regex
        and masked; the rest is longest-match dictionary matching (see Matcher).
        """
        clean = normalise(self.strip_noise(text))
        specs = self.specifications(clean)
        fields: dict[str, list[str]] = {}
        if specs:
            fields["specification"] = [s for _, _, s in specs]
        matches = self._positioned(clean, self._matcher.extract(clean, [(s, e) for s, e, _ in specs]))
        for m in matches:
            payloads = sorted(m.payloads, key=lambda p: p.priority)
            if any(p.field == "common_name" for p in payloads):
                # A full drug name from a source (消栓通络片) still states its dosage form.
                _, form = self.split_form(m.surface)
                if form:
                    payloads.append(Payload("dosage_form", form))
            for p in payloads:
                bucket = fields.setdefault(p.field, [])
                if p.value not in bucket:
                    bucket.append(p.value)
        if "common_name" in fields:
            fields["common_name"] = self._trades_as_listed(matches, fields["common_name"])
        if "brand" not in fields:
            guesses = self._guess_brands(text, clean, matches)
            if guesses:
                fields["brand"] = list(dict.fromkeys(g.brand for g in guesses))
        return Entities(**fields)

    def _trades_as_listed(self, matches: Sequence[Match], names: list[str]) -> list[str]:
        """`names` without the drug a trade name resolves to where the text states another drug the sources list
        that trade name for (美林 布洛伪麻混悬液: 美林 resolves to 布洛芬, here it is 强生's 布洛伪麻). The listing
        parser applies the same rule to its mentions (armed/pipeline/listing.py `_trades_as_listed`)."""
        def cns(m: Match) -> set[str]:
            return {p.value for p in m.payloads if p.field == "common_name"}

        drop: set[str] = set()
        for m in matches:
            key = normalise(m.surface)
            if key not in self._trade:
                continue
            others = {v for o in matches if o is not m and normalise(o.surface) not in self._trade for v in cns(o)}
            if others - cns(m) and self.lists_name_for(key, others - cns(m)):
                drop |= cns(m) - others
        return [n for n in names if n not in drop]

    def guess_brands(self, text: str) -> list[BrandGuess]:
        """Brands of a name the lexicon does not know, found by where they stand (see armed.knowledge.brands):
        a bracketed tag, a maker's name, the word heading a known common name. Empty when the lexicon finds a brand."""
        clean = normalise(self.strip_noise(text))
        specs = self.specifications(clean)
        matches = self._positioned(clean, self._matcher.extract(clean, [(s, e) for s, e, _ in specs]))
        if any(p.field == "brand" for m in matches for p in m.payloads):
            return []
        return self._guess_brands(text, clean, matches)

    def lexicon_matches(self, normalised_text: str) -> list[Match]:
        """The lexicon's matches in already normalised text, specifications masked and source brands kept only in
        brand position: what `extract` reads, with positions (used by the span-level NER evaluation)."""
        specs = self.specifications(normalised_text)
        return self._positioned(normalised_text,
                                self._matcher.extract(normalised_text, [(s, e) for s, e, _ in specs]))

    def _positioned(self, clean: str, matches: list[Match]) -> list[Match]:
        """The matches with each source-learned brand kept only where a maker's name stands (长红 in 头上长红疙瘩 is
        not 长红制药; see brands.in_brand_position). Seed brands are curated and always count."""
        out: list[Match] = []
        for m in matches:
            brand = [p for p in m.payloads if p.field == "brand"]
            if brand and min(p.priority for p in brand) >= 1 and not in_brand_position(clean, m, matches):
                rest = tuple(p for p in m.payloads if p.field != "brand")
                if not rest:
                    continue
                m = Match(m.start, m.end, m.surface, rest)
            out.append(m)
        return out

    def _guess_brands(self, raw: str, clean: str, matches: Sequence[Match]) -> list[BrandGuess]:
        # The finders in order of certainty; the first that finds anything decides (a bracket tag beats a word
        # that merely heads the drug name).
        def lexicon(s: str) -> list[Match]:
            return self._matcher.extract(normalise(s))

        def noise(s: str) -> bool:
            key = normalise(s)
            return any(n in key for n in self._noise)

        found: list[tuple[str, str]] = bracket_brands(raw, lexicon, noise)
        how = "bracket"
        if not found:
            found, how = maker_brands(clean, matches), "maker"
        if not found:
            one = prefix_brand(clean, matches, lambda m: any(p.field == "common_name" for p in m.payloads),
                               lambda m: self.split_form(m.surface)[1] is not None)
            found, how = ([one] if one else []), "prefix"
        return [BrandGuess(self._brand.get(core, core), surface, how) for core, surface in found]  # type: ignore[arg-type]

    def knows_brand(self, name: str) -> bool:
        """Is this brand (or an alias of it) in the lexicon? Guessed brands are not."""
        return normalise(name) in self._brand

    def enrich(self, entities: Entities) -> Entities:
        """Entities plus what the drug records say of their common names (efficacy, category, population).

        This is the product-side information extension (SI): a name rarely states its efficacy, but the
        knowledge base knows it for the common name, and the expert rules compare on it.
        """
        extra: dict[str, list[str]] = {"efficacy": [], "category": [], "population": [], "region": []}
        for name in entities.common_name:
            rec = self.drug_record(name)
            if rec is None:
                continue
            extra["efficacy"].extend(rec.efficacy)
            extra["category"].extend(rec.categories)
            extra["population"].extend(rec.populations)
            extra["region"].extend(rec.regions)
        return entities.merge(Entities(**extra))

    # ------------------------------------------------------------------ lookups

    def resolve_common_names(self, terms: Sequence[str]) -> dict[str, str]:
        """Trade name / synonym / English / full drug name → canonical common name (the CN stage).

        Unknown terms are left out of the result. A term that contains exactly one known common name
        (芬必得布洛芬缓释胶囊) resolves to it; one that contains several is ambiguous and left out.
        """
        out: dict[str, str] = {}
        for term in terms:
            key = normalise(term)
            if not key:
                continue
            if key in self._cn:
                out[term] = self._cn[key]
                continue
            core, _ = self.split_form(key)
            if core in self._cn:
                out[term] = self._cn[core]
                continue
            names = self.extract(term).common_name
            if len(names) == 1:
                out[term] = names[0]
        return out

    def trade_names_in(self, text: str) -> list[TradeName]:
        """The trade names a text states (芬必得), each with its common name and, where a source says, its maker's
        brand: a trade name is one maker's product, not just its drug."""
        clean = normalise(self.strip_noise(text))
        out: list[TradeName] = []
        for m in self.lexicon_matches(clean):
            key = normalise(m.surface)
            if key in self._trade:
                cn = self._trade[key]
                brand = self._trade_brand[key] if key in self._trade_brand else None
                if all(t.surface != key for t in out):
                    out.append(TradeName(surface=key, common_name=cn, brand=brand))
        return out

    def brand_surfaces(self, text: str) -> list[str]:
        """The surfaces of the brands in a normalised text, as written there (lexicon brands and guessed ones)."""
        clean = normalise(self.strip_noise(text))
        found = [m.surface for m in self.lexicon_matches(clean) if any(p.field == "brand" for p in m.payloads)]
        return found or [g.surface for g in self.guess_brands(text)]

    def is_trade_name(self, name: str) -> bool:
        return normalise(name) in self._trade

    def spelled(self, text: str) -> spelling.Spelled | None:
        """The known drug name, trade name or brand a pinyin or homophone-typo query spells (感冒零 → 感冒灵), or None.
        Only an unambiguous spelling answers (see armed/knowledge/spelling.py)."""

        def canonical(surface: str) -> str:
            return self._cn[surface] if surface in self._cn else self._brand[surface] if surface in self._brand \
                else surface

        return spelling.lookup(self._spelling, text, self._form_pinyin, canonical)

    def common_name_of(self, name: str) -> str | None:
        """The canonical common name a whole name is (a surface, or a surface + dosage form), else None: unlike
        `resolve_common_names`, a longer name that merely contains one (复方对乙酰氨基酚) is not that one."""
        key = normalise(name)
        if key in self._cn:
            return self._cn[key]
        core = self.split_form(key)[0]
        return self._cn[core] if core in self._cn else None

    def drug_record(self, common_name: str) -> DrugRecord | None:
        """The record of a common name (any synonym / trade name is resolved first), or None."""
        canonical = self._canonical(normalise(common_name))
        rec = self._records.get(canonical) if canonical else None
        return rec.model_copy(deep=True) if rec is not None else None

    def _canonical(self, key: str) -> str | None:
        """The canonical common name of a normalised name, as written or without its dosage form; None if unknown."""
        return self._cn.get(key) or self._cn.get(self.split_form(key)[0])

    def lists_name_for(self, name: str, common_names: Iterable[str]) -> bool:
        """Does a source list `name` (a trade name or synonym) for one of these drugs? A trade name may be listed for
        several drugs (舒发泰: 恩曲他滨替诺福韦片 and 恩曲他滨丙酚替诺福韦片) although it resolves to one of them."""
        key = normalise(name)
        for cn in common_names:
            canonical = self._canonical(normalise(cn))
            rec = self._records.get(canonical) if canonical else None
            if rec is not None and any(normalise(s) == key for s in rec.synonyms):
                return True
        return False

    def expand_query(self, query: str) -> QueryExpansion | None:
        """The seed's expansion of an ambiguous / slang query ("001" → 成人用品), exact matches first."""
        q = normalise(query)
        for mode in ("exact", "contains"):
            for e in self.seed.query_expansions:
                key = normalise(e.query)
                if e.match == mode and (q == key if mode == "exact" else key in q):
                    return QueryExpansion(query=query, expanded=e.expansion, categories=list(e.categories), note=e.note)
        return None

    def search(self, text: str, top_k: int = 5, max_chars: int = 600) -> list[WebDoc]:
        """BM25 over every knowledge record (seed, inserts, originator rows); best first, ids stable."""
        if top_k <= 0 or not text.strip():
            return []
        out = []
        for idx, score in self._bm25.top(text, top_k):
            d = self._docs[idx]
            out.append(d.model_copy(update={"score": round(score, 4), "text": d.text[:max_chars]}))
        return out

    # ------------------------------------------------------------------ read API
    # What tools outside this class (the artefact writer, `armed kb inspect|diff|lookup`, the bench, the document
    # embedder) read of a built KB. They go through these, never the private fields, so the fields can change shape
    # (a dict in memory, a memory-mapped index in an artefact) without them (tests/test_structure.py enforces it).

    @property
    def documents(self) -> int:
        """How many documents `search` ranks."""
        return len(self._docs)

    def docs(self) -> Sequence[WebDoc]:
        """Every document `search` ranks, in index order (a lazily decoded sequence in an artefact)."""
        return self._docs

    def records(self) -> Mapping[str, DrugRecord]:
        """Common name → its drug record, every record the KB holds (read-only: a memory-mapped map in an
        artefact)."""
        return self._records

    def lexicon_entries(self) -> Iterator[tuple[str, tuple[Payload, ...]]]:
        """Every lexicon surface with its payloads (field, canonical value, priority: 0 seed, 1+ a source)."""
        return self._matcher.entries()

    def lexicon_lookup(self, surface: str) -> list[Payload]:
        """The lexicon's payloads for exactly this surface (normalised first); empty when it is not a surface."""
        return self._matcher.lookup(surface)

    def brand_names(self) -> set[str]:
        """The canonical brands (aliases folded onto them)."""
        return set(self._brand.values())

    def common_names(self) -> set[str]:
        """The canonical common names (synonyms, trade and English names folded onto them)."""
        return set(self._cn.values())

    def counts(self) -> dict[str, int]:
        """What a curator checks after a build: lexicon surfaces per entity type, brands, common names, records,
        documents and rules (the artefact manifest's `counts`)."""
        out: dict[str, int] = {}
        for _, payloads in self.lexicon_entries():
            for field in sorted({p.field for p in payloads}):
                out[f"surfaces.{field}"] = out.get(f"surfaces.{field}", 0) + 1
        out["brands"] = len(self.brand_names())
        out["common_names"] = len(self.common_names())
        out["records"] = len(self._records)
        out["documents"] = len(self._docs)
        out["rules"] = len(self.rules)
        return dict(sorted(out.items()))

    def state(self) -> dict[str, object]:
        """Every field by name, as the artefact writer stores it (armed/knowledge/artefact.py) and the version
        hashes it (armed/knowledge/content.py): a shallow copy, so the caller cannot add or drop a field."""
        return dict(vars(self))

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> KnowledgeBase:
        """A KB from the fields `state` gave (the artefact loader's way in): nothing is rebuilt or re-versioned."""
        kb = cls.__new__(cls)
        vars(kb).update(state)
        return kb

    # ------------------------------------------------------------------ comparisons

    def canonical_brands(self, names: Sequence[str]) -> set[str]:
        return {self._brand.get(normalise(n), normalise(n)) for n in names if normalise(n)}

    def same_brand(self, a: Sequence[str], b: Sequence[str]) -> bool:
        """Do the two sides share a brand, aliases resolved (北京同仁堂 = 同仁堂, 三九 = 999), and a maker's seat and
        company words set aside (安徽永生堂 = 永生堂, 维威制药 = 维威)?"""
        ca, cb = self.canonical_brands(a), self.canonical_brands(b)
        if ca & cb:
            return True
        ka = {k for x in ca if len(k := maker_core(x)) >= 2}
        kb_ = {k for x in cb if len(k := maker_core(x)) >= 2}
        return bool(ka & kb_) or any(x in y or y in x for x in ka for y in kb_)

    def canonical_forms(self, forms: Sequence[str]) -> set[str]:
        return {self._form.get(normalise(f), normalise(f)) for f in forms if normalise(f)}

    def dosage_forms_equal(self, a: Sequence[str], b: Sequence[str]) -> bool:
        """Do the two sides share a canonical dosage form (片 = 片剂 = 薄膜衣片)? False if either is empty."""
        return bool(self.canonical_forms(a) & self.canonical_forms(b))

    def canonical_common_names(self, names: Sequence[str]) -> set[str]:
        out = set()
        for n in names:
            key = normalise(n)
            if key:
                out.add(self._canonical(key) or key)
        return out

    def efficacy_groups_of(self, terms: Sequence[str]) -> set[str]:
        """Efficacy keys: a term's group; else the groups of group terms inside it (活血止痛 → 活血化瘀,
        解热镇痛); else the term itself (an indication the seed does not group is only equal to itself)."""
        return {key for key, _ in self.efficacy_keys(terms)}

    def efficacy_keys(self, terms: Sequence[str]) -> set[tuple[str, bool]]:
        """(key, grouped) per term: grouped keys are the seed's curated efficacy groups; a free key is a term no
        group covers (most of what public sources bring: diseases, symptoms, annotated indications)."""
        keys: set[tuple[str, bool]] = set()
        for t in terms:
            key = normalise(t)
            if not key:
                continue
            if key not in self._eff_group:
                # 疼 is the spoken spelling of 痛 in a symptom (牙疼 = 牙痛, 胃疼 = 胃痛; symptom lists hold both): one
                # key for both, so a 疼 term meets the group or free term its 痛 spelling is. 疼痛 stays as it is.
                key = _SPOKEN_PAIN.sub("痛", key)
            if key in self._eff_group:
                keys.add((self._eff_group[key], True))
                continue
            inner = {p.value for m in self._eff_matcher.extract(key) for p in m.payloads}
            keys |= {(g, True) for g in inner} if inner else {(key, False)}
        return keys

    def efficacy_relation(self, a: Sequence[str], b: Sequence[str]) -> float | None:
        """How much two efficacy lists agree, or None when the knowledge base cannot tell.

        The overlap coefficient |A∩B| / min(|A|,|B|) of efficacy keys; a free key (a term outside the curated
        groups) also meets a key it contains or that contains it (脱发 ~ 脂溢性脱发). 0 ("entirely different") is
        only asserted when every key on both sides is a curated group: two free terms that differ as strings
        may still name one thing (心率失常 / 心律失常), so their disagreement is unknown, not evidence. (A 疼
        spelling is keyed as its 痛 spelling: 胃疼 = 胃痛, see `efficacy_keys`.)
        """
        ka, kb_ = self.efficacy_keys(a), self.efficacy_keys(b)
        if not ka or not kb_:
            return None

        def meets(x: tuple[str, bool], others: set[tuple[str, bool]]) -> bool:
            if x in others:
                return True
            key, grouped = x
            return not grouped and any(
                not g2 and len(min(key, k2, key=len)) >= 2 and (key in k2 or k2 in key) for k2, g2 in others
            )

        hits = min(sum(meets(x, kb_) for x in ka), sum(meets(y, ka) for y in kb_))
        if hits:  # hits counts one side's keys, so it never exceeds the smaller side
            return hits / min(len(ka), len(kb_))
        if self.efficacy_complements(a, b):
            return COMPLEMENTARY
        return 0.0 if all(g for _, g in ka | kb_) else None

    def efficacy_complements(self, a: Sequence[str], b: Sequence[str]) -> bool:
        """Do the two efficacy lists have complementary uses (a seed group's `complements`: 测血压 and 降压)?"""
        ga = {k for k, grouped in self.efficacy_keys(a) if grouped}
        gb = {k for k, grouped in self.efficacy_keys(b) if grouped}
        return any(y in self._eff_complements.get(x, ()) for x in ga for y in gb)

    def efficacy_overlap(self, a: Sequence[str], b: Sequence[str]) -> float:
        """`efficacy_relation` as a number in [0, 1]: 0 when either side is empty or the relation is unknown.

        The overlap coefficient (not Jaccard) is used so a product that lists many indications is not
        penalised for treating more than the query asked.
        """
        return self.efficacy_relation(a, b) or 0.0

    def canonical_populations(self, terms: Sequence[str]) -> set[str]:
        return {self._pop.get(normalise(t), normalise(t)) for t in terms if normalise(t)}

    def population_conflict(self, a: Sequence[str], b: Sequence[str]) -> bool:
        """True when the sides share no population and one side's population excludes the other's
        (儿童 vs 成人, 男性 vs 女性). Unknown or missing populations never conflict."""
        pa, pb = self.canonical_populations(a), self.canonical_populations(b)
        if not pa or not pb or pa & pb:
            return False
        return any(y in self._pop_conflicts.get(x, set()) for x in pa for y in pb)

    def category_overlap(self, a: Sequence[str], b: Sequence[str]) -> float:
        """Overlap coefficient of categories where related categories (感冒用药 ~ 解热镇痛药) count as shared."""
        ca = {c for c in a if c}
        cb = {c for c in b if c}
        if not ca or not cb:
            return 0.0
        hits_a = sum(1 for x in ca if any(y in self._cat_related.get(x, {x}) for y in cb))
        hits_b = sum(1 for y in cb if any(x in self._cat_related.get(y, {y}) for x in ca))
        return max(hits_a / len(ca), hits_b / len(cb)) if min(hits_a, hits_b) else 0.0

    # ------------------------------------------------------------------ product-name hygiene

    def strip_noise(self, name: str) -> str:
        """The name without selling noise: promo brackets whose content is noise (or empty) are dropped,
        other brackets are unwrapped ([德济]消栓通络片 → 德济 消栓通络片), then noise terms are removed."""

        def bracket(m: re.Match[str]) -> str:
            content = next(g for g in m.groups() if g is not None).strip()
            key = normalise(content)
            if not key or any(n in key for n in self._noise):
                return " "
            return f" {content} "

        text = unicodedata.normalize("NFKC", name)
        text = _PROMO_BRACKET_RE.sub(bracket, text)
        for n in self._noise:
            text = re.sub(re.escape(n), " ", text, flags=re.IGNORECASE)
        return re.sub(r"\s+", " ", text).strip(" -_|/,，·")

    def hijack_terms(self, name: str) -> list[str]:
        """Traffic-hijacking phrases in a product name (同款, 平替, 替代 …; X配方 where X is not the maker).

        A `{brand}` pattern fires only when that brand appears nowhere else in the name: a maker citing its
        own formula is not hijacking.
        """
        text = normalise(name)
        found: list[str] = []
        brand_matches = [m for m in self._matcher.extract(text) if any(p.field == "brand" for p in m.payloads)]
        for pat in self._hijack:
            p = normalise(pat.pattern)
            if "{brand}" not in p:
                if p in text:
                    add_unique(found, [pat.pattern])
                continue
            before, _, after = p.partition("{brand}")
            for m in brand_matches:
                if not text.startswith(after, m.end) or not text[: m.start].endswith(before):
                    continue
                brands = {pl.value for pl in m.payloads if pl.field == "brand"}
                elsewhere = any(
                    o is not m and brands & {pl.value for pl in o.payloads if pl.field == "brand"}
                    for o in brand_matches
                )
                if not elsewhere:
                    add_unique(found, [text[m.start - len(before) : m.end + len(after)]])
        return found

    # ------------------------------------------------------------------ specificity

    def query_specificity(self, query_entities: Entities, query_text: str) -> Specificity:
        """Does the query name one product, or a need?

        specific: (brand and common name) or (common name and dosage form or specification) — the user
        wants that product, so brand and dosage form decide.
        generic: everything else — a symptom, efficacy, category, brand alone or a common name alone, and
        any query the seed lists as an ambiguous / slang expansion ("001", 感冒药), whatever its entities.
        """
        if self.expand_query(query_text) is not None:
            return "generic"
        e = query_entities
        if e.common_name and (e.brand or e.dosage_form or e.specification):
            return "specific"
        return "generic"
