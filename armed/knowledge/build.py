"""Building a knowledge base: the seed's lexicons and every loaded source folded into the state a `KnowledgeBase`
answers from (armed/knowledge/base.py holds the queries and the loading that calls this).

`KnowledgeBuilder` takes the validated seed, then each source (`read_source`) in order, and `build()` returns the
fields by name: lexicon matchers, the surface → canonical maps, drug records, documents, the pinyin index, the BM25
index. `KnowledgeBase.__init__` sets exactly these fields and versions them (armed/knowledge/content.py hashes every
field by name), and an artefact stores and restores the same fields (armed/knowledge/artefact.py), so a field added
here is content, state and version at once.

Order matters and is part of the content: the seed is registered before any source (the first registration of a
surface wins), and sources are folded in the order given. The conventions (a common name without its dosage form,
canonical outputs) are those described in base.py.

This module imports nothing of base.py (base.py imports it): the record the build makes, `DrugRecord`, is defined
here and re-exported there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from armed.domain import WebDoc
from armed.knowledge import spelling
from armed.knowledge.brands import PLACES, plausible_brand
from armed.knowledge.index import BM25, Matcher, Payload, is_cjk, normalise
from armed.knowledge.schema import HijackPattern, Rule, Seed
from armed.knowledge.sources import InsertRow, LoadedSource

# Place names (one list, in brands.py): a maker prefix reduced to one of these alone is not a brand.
_PLACES = PLACES
_MAKER_SUFFIX_RE = re.compile(r"(?:集团)?(?:股份)?有限(?:责任)?公司.*$|(?:集团)?股份公司.*$")
_MAKER_WORD_RE = re.compile(r"(?:制药厂|制药|药业|药厂|医药|科技|生物|集团|股份|实业|中药|总厂|工业|有限)$")

class DrugRecord(BaseModel):
    """What the knowledge base knows about one common name: used to extend a product's information (SI)."""

    model_config = ConfigDict(extra="forbid")

    common_name: str
    synonyms: list[str] = Field(default_factory=list, description="Synonyms, trade and English names.")
    efficacy: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    dosage_forms: list[str] = Field(default_factory=list)
    populations: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    ingredients: list[str] = Field(default_factory=list)
    contraindications: list[str] = Field(default_factory=list, description="禁忌, as a register writes them.")
    sources: list[str] = Field(default_factory=list, description="'seed', 'drug-inserts', ...")



def add_unique(target: list[str], values: Sequence[str]) -> None:
    """Append each non-empty value not yet in `target`, in order (records and term lists keep first-seen order)."""
    for v in values:
        if v and v not in target:
            target.append(v)


def _sha12(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "big"))
        h.update(c)
    return h.hexdigest()[:12]


def rules_hash(rules: Sequence[Rule]) -> str:
    """Hash of the rule set alone (lexicon edits do not change it)."""
    payload = json.dumps([r.model_dump(mode="json") for r in rules], sort_keys=True, ensure_ascii=False)
    return _sha12(payload.encode())



def form_suffixes(forms: Mapping[str, str]) -> list[str]:
    """The dosage-form variants longest first (the order `split_form` tries them; stable for equal lengths)."""
    return sorted(forms, key=len, reverse=True)


def split_form(name: str, suffixes: Sequence[str], forms: Mapping[str, str]) -> tuple[str, str | None]:
    """Split a drug name into (core common name, canonical dosage form): 布洛芬缓释胶囊 → (布洛芬, 胶囊). `suffixes`
    are the variants to try (`form_suffixes`), `forms` maps each to its canonical form."""
    text = re.sub(r"[（(][^）)]*[）)]", "", normalise(name)).strip()
    form = None
    if text.startswith("注射用") and len(text) > 3:
        text, form = text[3:], "注射液"
    for suffix in suffixes:
        if text.endswith(suffix) and len(text) - len(suffix) >= 2:
            return text[: -len(suffix)], form or forms[suffix]
    return text, form


class KnowledgeBuilder:
    """Folds the seed and then each source into lexicons, records and documents; `build()` gives the fields."""

    # tcm-insert-ner types → what the KB keeps. SYMPTOM / DISEASE / SYNDROME are efficacy-lexicon terms (what a
    # drug treats, as drug-dicts' disease and symptom lists are); they and PERSON_GROUP go to no drug record,
    # because an insert names them as often in its contraindications (孕妇禁用) as in its indications.
    _NER_EFFICACY = ("DRUG_EFFICACY", "SYMPTOM", "DISEASE", "SYNDROME")

    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self._source_specs: list[str] = []
        self._built = False
        self._matcher = Matcher()
        self._eff_matcher = Matcher()  # seed efficacy-group terms only: maps free text to groups
        self._brand: dict[str, str] = {}
        self._cn: dict[str, str] = {}
        self._form: dict[str, str] = {}
        self._eff_group: dict[str, str] = {}
        self._pop: dict[str, str] = {}
        self._region: dict[str, str] = {}
        self._cat_related: dict[str, set[str]] = {}
        # Words that name a class of drugs (感冒药, 抗生素: the seed's category names and triggers), which sources
        # annotate as DRUG where an insert says 不宜与感冒药同时服用: never a drug's common name.
        self._class_words: set[str] = set()
        self._pop_conflicts: dict[str, set[str]] = {}
        self._records: dict[str, DrugRecord] = {}
        # Trade names (芬必得) → their common name, and → the brand of their maker where a source says: a trade name
        # is one maker's product, so the product search asks for it (or its maker) in the product, not just the drug.
        self._trade: dict[str, str] = {}
        self._trade_brand: dict[str, str] = {}
        self._eff_complements: dict[str, set[str]] = {}
        self._docs: list[WebDoc] = []
        self._not_efficacy = {normalise(t) for t in seed.not_efficacy if normalise(t)}
        # The dosage-form variants _split_form tries, sorted on its first call and then kept for the rest of the
        # build, even when a tcm-insert-ner source adds variants later (糖衣片), as the build always did: re-sorting
        # then would be a change of behaviour (it leaves the public sources' version as it is, other sources may
        # split differently), not part of moving the build here. build() sorts them afresh for the queries.
        self._form_suffixes: list[str] = []
        self._build_seed()

    def ingest(self, src: LoadedSource) -> None:
        """Fold one source in (after the seed and every source ingested before it)."""
        if self._built:
            raise RuntimeError("KnowledgeBuilder.ingest after build(): a builder builds one knowledge base")
        self._source_specs.append(src.spec)
        self._ingest(src)

    def build(self) -> dict[str, object]:
        """The knowledge base's fields by name, in the order a KnowledgeBase holds them (without `artefact_path`
        and `version`, which the KB sets: one says where it was loaded from, the other hashes these)."""
        if self._built:
            raise RuntimeError("KnowledgeBuilder.build() twice: a builder builds one knowledge base")
        self._built = True
        seed = self.seed
        rules: list[Rule] = list(seed.rules)
        form_suffix_list = form_suffixes(self._form)
        # Pinyin of every drug name, trade name and brand (armed/knowledge/spelling.py), and of the dosage forms a
        # spelled query may end in: built here so an artefact carries it (a pypinyin pass over every surface).
        spelling_index = spelling.build_index(
            s for s, payloads in self._matcher.entries() if any(p.field in ("common_name", "brand") for p in payloads))
        form_pinyin = sorted(((spelling.pinyin_key(v), v) for v in self._form if spelling.pinyin_key(v)),
                             key=lambda t: (-len(t[0]), t))
        hijack: list[HijackPattern] = list(seed.hijack_patterns)
        return {
            "seed": seed,
            "rules": rules,
            "rules_version": rules_hash(rules),
            "source_names": ["seed", *self._source_specs],
            "_matcher": self._matcher,
            "_eff_matcher": self._eff_matcher,
            "_brand": self._brand,
            "_cn": self._cn,
            "_form": self._form,
            "_eff_group": self._eff_group,
            "_pop": self._pop,
            "_region": self._region,
            "_cat_related": self._cat_related,
            "_class_words": self._class_words,
            "_pop_conflicts": self._pop_conflicts,
            "_records": self._records,
            "_trade": self._trade,
            "_trade_brand": self._trade_brand,
            "_eff_complements": self._eff_complements,
            "_docs": self._docs,
            "_not_efficacy": self._not_efficacy,
            "_form_suffixes": form_suffix_list,
            "_spelling": spelling_index,
            "_form_pinyin": form_pinyin,
            "_spec_res": [re.compile(p) for p in seed.specification_patterns],
            # Longest first, then by text: a set's order varies with PYTHONHASHSEED, and the version hashes this.
            "_noise": sorted({normalise(n) for n in seed.noise_terms if normalise(n)}, key=lambda n: (-len(n), n)),
            "_hijack": hijack,
            "_bm25": BM25(f"{d.title} {d.text}" for d in self._docs),
        }

    def _add_group(self, field: str, table: dict[str, str], canonical: str, surfaces: Sequence[str],
                   priority: int, skip: Callable[[str], bool] = lambda key: False) -> str:
        """Register a canonical name and its surfaces in `table` (normalised surface → canonical) and the lexicon
        under `field`; a surface already known maps the whole group onto the existing canonical, and the first
        registration of a surface wins (seed before sources), so extract and the lookups agree. Surfaces under two
        characters, and those `skip` refuses, are left out. Returns the canonical name the group got."""
        for s in (canonical, *surfaces):
            known = table.get(normalise(s))
            if known:
                canonical = known
                break
        for s in (canonical, *surfaces):
            key = normalise(s)
            if len(key) < 2 or skip(key):
                continue
            table.setdefault(key, canonical)
            self._matcher.add(s, Payload(field, table[key], priority))
        return canonical

    def _add_brand(self, canonical: str, surfaces: Sequence[str], priority: int) -> str:
        # A source never turns a known trade / common name (芬必得) into a brand.
        return self._add_group("brand", self._brand, canonical, surfaces, priority,
                               skip=lambda key: priority > 0 and key in self._cn and key not in self._brand)

    def _add_common_name(self, canonical: str, surfaces: Sequence[str], priority: int) -> str:
        return self._add_group("common_name", self._cn, canonical, surfaces, priority)

    def _record(self, name: str) -> DrugRecord:
        rec = self._records.get(name)
        if rec is None:
            rec = self._records[name] = DrugRecord(common_name=name)
        return rec

    def _source_efficacy(self, term: str) -> bool:
        """Whether a source's efficacy term may enter the lexicon: 2-12 CJK characters, not a generic word
        (seed `not_efficacy`: 治疗, 预防 name no condition)."""
        key = normalise(term)
        return 2 <= len(key) <= 12 and all(is_cjk(ch) for ch in key) and key not in self._not_efficacy

    def _build_seed(self) -> None:
        lx = self.seed.lexicons
        for pop in lx.populations:
            self._pop_conflicts[pop.name] = set(pop.conflicts)
            for t in (pop.name, *pop.terms):
                self._pop[normalise(t)] = pop.name
                self._matcher.add(t, Payload("population", pop.name))
        for name, conflicts in list(self._pop_conflicts.items()):  # conflicts are symmetric
            for other in conflicts:
                self._pop_conflicts.setdefault(other, set()).add(name)
        for reg in lx.regions:
            for t in (reg.name, *reg.terms):
                self._region[normalise(t)] = reg.name
                if len(normalise(t)) >= 2:
                    self._matcher.add(t, Payload("region", reg.name))
        for form in lx.dosage_forms:
            for v in (form.name, *form.variants):
                self._form[normalise(v)] = form.name
                self._matcher.add(v, Payload("dosage_form", form.name))
                for r in form.regions:
                    self._matcher.add(v, Payload("region", r))
        for group in lx.efficacy_groups:
            for other in group.complements:  # complementary use is symmetric
                self._eff_complements.setdefault(group.name, set()).add(other)
                self._eff_complements.setdefault(other, set()).add(group.name)
            for t in (group.name, *group.terms):
                self._eff_group[normalise(t)] = group.name
                self._matcher.add(t, Payload("efficacy", t))
                self._eff_matcher.add(t, Payload("efficacy", group.name))
        for cat in lx.categories:
            self._cat_related[cat.name] = {cat.name, *cat.related}
            for t in (cat.name, *cat.triggers):
                self._matcher.add(t, Payload("category", cat.name))
                self._class_words.add(normalise(t))
        for name, related in list(self._cat_related.items()):  # relatedness is symmetric
            for other in related:
                self._cat_related.setdefault(other, {other}).add(name)
        for b in lx.brands:
            self._add_brand(b.name, b.aliases, 0)
            for s in (b.name, *b.aliases):
                for c in b.categories:
                    self._matcher.add(s, Payload("category", c))
        for c in lx.common_names:
            self._add_common_name(c.name, c.surfaces()[1:], 0)
            for trade in c.trade_names:
                self._trade.setdefault(normalise(trade), c.name)
                if trade in c.trade_makers:
                    self._trade_brand.setdefault(normalise(trade), self._brand.get(normalise(c.trade_makers[trade]),
                                                                                    c.trade_makers[trade]))
            rec = self._record(c.name)
            add_unique(rec.synonyms, c.surfaces()[1:])
            add_unique(rec.efficacy, c.efficacy)
            add_unique(rec.categories, c.categories)
            add_unique(rec.dosage_forms, c.dosage_forms)
            add_unique(rec.populations, c.populations)
            add_unique(rec.regions, c.regions)
            add_unique(rec.ingredients, c.ingredients)
            add_unique(rec.sources, ["seed"])
            for ing in c.ingredients:
                self._matcher.add(ing, Payload("ingredients", ing))
            parts = [f"通用名：{c.name}"]
            for label, values in (
                ("别名", c.synonyms),
                ("商品名", c.trade_names),
                ("英文名", c.english),
                ("功效", c.efficacy),
                ("类别", c.categories),
                ("剂型", c.dosage_forms),
                ("适用人群", c.populations),
            ):
                if values:
                    parts.append(f"{label}：{'、'.join(values)}")
            if c.note:
                parts.append(c.note)
            self._docs.append(WebDoc(id=f"seed:{c.name}", source="kb:seed", title=c.name, text="；".join(parts)))

    def _split_form(self, name: str) -> tuple[str, str | None]:
        """`split_form` with the variants as first sorted during this build (see `_form_suffixes` in __init__)."""
        if not self._form_suffixes:
            self._form_suffixes = form_suffixes(self._form)
        return split_form(name, self._form_suffixes, self._form)

    def _canonical_core(self, name: str) -> tuple[str, str | None]:
        core, form = self._split_form(name)
        return self._cn.get(core, self._cn.get(normalise(name), core)), form

    def _maker_brand(self, company: str) -> str | None:
        """Brand of a maker's full name: 北京同仁堂股份有限公司同仁堂制药厂 → 同仁堂; 山东沃华医药科技… → 沃华."""
        name = _MAKER_SUFFIX_RE.sub("", normalise(company)).strip()
        for _ in range(4):
            if name in self._brand:
                return self._brand[name]
            stripped = _MAKER_WORD_RE.sub("", name)
            if stripped == name:
                break
            name = stripped
        for place in sorted(_PLACES, key=len, reverse=True):
            for form in (place + "省", place + "市", place):
                if name.startswith(form) and len(name) - len(form) >= 2:
                    name = name[len(form) :]
                    break
            else:
                continue
            break
        if name in self._brand:
            return self._brand[name]
        if len(name) < 2 or name in _PLACES or not all(is_cjk(ch) for ch in name) or not plausible_brand(name):
            return None
        return name

    def _producer_brand(self, prefix: str) -> str | None:
        name = prefix
        for _ in range(3):
            if normalise(name) in self._brand:
                return self._brand[normalise(name)]
            stripped = _MAKER_WORD_RE.sub("", name)
            if stripped == name:
                break
            name = stripped
        if len(name) < 2 or name in _PLACES:
            name = prefix
        if len(name) < 2 or name in _PLACES or not all(is_cjk(ch) for ch in name) or not plausible_brand(name):
            return None
        return name

    def _ingest(self, src: LoadedSource) -> None:
        if src.kind == "register":
            self._ingest_register(src)
        elif src.kind == "tcm-insert-ner":
            self._ingest_ner(src)
        elif src.kind == "drug-dicts" and src.dicts is not None:
            d = src.dicts
            drug_names = set(d.drugs)
            for name in d.drugs:
                core, form = self._canonical_core(name)
                if len(core) >= 2 and core not in self._form:
                    canonical = self._add_common_name(core, [name], 1)
                    rec = self._record(canonical)
                    add_unique(rec.sources, ["drug-dicts"])
                    if form:
                        add_unique(rec.dosage_forms, [form])
            for line in d.producers:
                for i in range(2, len(line) - 1):
                    if line[i:] in drug_names:
                        brand = self._producer_brand(line[:i])
                        if brand:
                            self._add_brand(brand, [line[:i]], 1)
                        break
            for term in (*d.diseases, *d.symptoms):
                if self._source_efficacy(term):
                    self._matcher.add(term, Payload("efficacy", term, 1))
        elif src.kind == "originator-drugs":
            seen: dict[str, tuple[str, str, str]] = {}
            groups = {g.group: g for g in self.seed.source_groups if g.source == "originator-drugs"}
            for row in src.originators:
                brand = None
                if row.abbreviation:
                    brand = self._add_brand(row.abbreviation, [row.company] if row.company else [], 1)
                core, form = self._canonical_core(row.generic)
                if len(core) < 2:
                    continue
                canonical = self._add_common_name(core, [row.generic], 1)
                # A trade name names its drug only where it names no other: 美林 is 强生's 布洛芬混悬液 and its
                # 布洛伪麻混悬液 (a cold medicine), and as one group it made the second plain ibuprofen.
                if row.trade and self._cn.get(normalise(row.trade), canonical) == canonical:
                    self._add_common_name(canonical, [row.trade], 1)
                rec = self._record(canonical)
                add_unique(rec.synonyms, [s for s in (row.generic, row.trade) if s and s != canonical])
                if form:
                    add_unique(rec.dosage_forms, [form])
                add_unique(rec.sources, ["originator-drugs"])
                group = groups.get(row.group)
                if group is not None:  # the source's therapeutic group, as the seed reads it
                    add_unique(rec.categories, group.categories)
                    add_unique(rec.efficacy, group.efficacy)
                trade = normalise(row.trade) if row.trade else ""
                if len(trade) >= 2 and trade not in self._form and trade != normalise(core):
                    self._trade.setdefault(trade, canonical)
                    if brand:
                        self._trade_brand.setdefault(trade, brand)
                doc_id = f"originator:{row.id}"
                content = (row.company, row.generic, row.trade)
                if seen.get(doc_id) == content:
                    continue  # the same row listed under two therapeutic categories
                if doc_id in seen:
                    doc_id = f"{doc_id}@{row.group}"
                seen[doc_id] = content
                title = f"{row.trade}（{row.generic}）" if row.trade else row.generic
                text = (
                    f"商品名：{row.trade or '-'}；通用名：{row.generic}；品牌：{brand or row.abbreviation or '-'}；"
                    f"生产企业：{row.company or '-'}；治疗类别：{row.group}"
                )
                self._docs.append(WebDoc(id=doc_id, source="kb:originator-drugs", title=title, text=text))
        elif src.kind == "drug-inserts":
            for row in src.inserts:
                brand = self._maker_brand(row.maker) if row.maker else None
                if brand:
                    brand = self._add_brand(brand, [], 1)
                core, form = self._canonical_core(self._insert_name(row, brand))
                efficacy = [t for t in row.efficacy_terms if self._source_efficacy(t)]
                for m in self._eff_matcher.extract(normalise(row.efficacy_text)):
                    add_unique(efficacy, [m.surface])
                if len(core) >= 2:
                    canonical = self._add_common_name(core, [row.name, row.title], 1)
                    rec = self._record(canonical)
                    add_unique(rec.efficacy, efficacy)
                    add_unique(rec.ingredients, list(row.ingredients))
                    if form:
                        add_unique(rec.dosage_forms, [form])
                    add_unique(rec.sources, ["drug-inserts"])
                for term in efficacy:
                    if self._source_efficacy(term):
                        self._matcher.add(term, Payload("efficacy", term, 1))
                for ing in row.ingredients:
                    if len(ing) >= 2:
                        self._matcher.add(ing, Payload("ingredients", ing, 1))
                text = "；".join(
                    f"{k}：{v}"
                    for k, v in (
                        ("品牌", brand or ""),
                        ("通用名", row.name),
                        ("规格", row.spec),
                        ("功能主治", row.efficacy_text),
                        ("生产企业", row.maker),
                    )
                    if v
                )
                self._docs.append(WebDoc(id=f"insert:{row.id}", source="kb:drug-inserts", title=row.title, text=text))

    def _insert_name(self, row: InsertRow, brand: str | None) -> str:
        """The drug's own name in an insert's name / title fields, which are often a listing: a maker, a spec
        glued on, a bracketed form, the name twice (凤凰制药 女珍颗粒 6g*12袋, 参茸鹿胎丸参茸鹿胎丸9g*12丸,
        一正 女金丸(水蜜丸), 八珍益母丸药品名称】 八珍益母丸, 兆誉隆舒泌通片). Of the tokens that end in a dosage
        form, a name the knowledge base knows, else the shortest; the field itself when none does."""
        candidates: list[str] = []
        for field in (row.name, row.title):
            bare = re.sub(r"[(（][^()（）]*[)）]", " ", normalise(field))
            for tok in re.split(r"[\s\-—【】\[\]/]+", bare):
                tok = re.sub(r"[\d.]+.*$", "", tok)  # a spec glued on: 泌淋清胶囊0.4g*36粒
                half = len(tok) // 2
                if len(tok) % 2 == 0 and tok[:half] == tok[half:]:
                    tok = tok[:half]
                if brand and tok.startswith(brand) and self._split_form(tok[len(brand) :])[1]:
                    tok = tok[len(brand) :]  # the maker glued before the name (兆誉隆舒泌通片)
                core, form = self._split_form(tok)
                if form and len(core) >= 2 and all(is_cjk(ch) for ch in core) and tok not in candidates:
                    candidates.append(tok)
        if not candidates:
            return row.name
        known = [c for c in candidates if self._canonical_core(c)[0] in self._records]
        return min(known or candidates, key=len)

    def _register_form(self, row_form: str, name_form: str | None) -> str | None:
        """The canonical form of a register's dosage_form cell (a variant, or a word ending in one: 薄膜衣片 → 片剂);
        the form the common name states when the cell is empty or unknown."""
        key = normalise(row_form)
        if key in self._form:
            return self._form[key]
        base = next((v for v in sorted(self._form, key=len, reverse=True) if key and key.endswith(v)), None)
        return self._form[base] if base else name_form

    def _ingest_register(self, src: LoadedSource) -> None:
        """A pharmacy's own register (armed/knowledge/register.py): brands, common names and their records."""
        for row in src.register:
            brand = None
            if row.brand:
                brand = self._add_brand(row.brand, [row.maker] if row.maker else [], 1)
            elif row.maker:
                brand = self._maker_brand(row.maker)
                if brand:
                    brand = self._add_brand(brand, [], 1)
            core, name_form = self._canonical_core(row.common_name)
            form = self._register_form(row.dosage_form, name_form)
            if len(core) < 2:
                continue
            surfaces = [row.common_name, *([row.trade_name] if row.trade_name else []), *row.synonyms]
            canonical = self._add_common_name(core, surfaces, 1)
            rec = self._record(canonical)
            add_unique(rec.synonyms, [s for s in surfaces if s != canonical])
            add_unique(rec.efficacy, [t for t in row.efficacy if normalise(t) not in self._not_efficacy])
            add_unique(rec.categories, list(row.category))
            add_unique(rec.populations, [self._pop.get(normalise(p), p) for p in row.population])
            add_unique(rec.ingredients, list(row.ingredients))
            add_unique(rec.contraindications, list(row.contraindications))
            if form:
                add_unique(rec.dosage_forms, [form])
            add_unique(rec.sources, ["register"])
            for term in row.efficacy:
                if len(normalise(term)) >= 2 and normalise(term) not in self._not_efficacy:
                    self._matcher.add(term, Payload("efficacy", term, 1))
            for ing in row.ingredients:
                if len(ing) >= 2:
                    self._matcher.add(ing, Payload("ingredients", ing, 1))
            for pop in row.population:
                if len(normalise(pop)) >= 2:
                    self._matcher.add(pop, Payload("population", self._pop.get(normalise(pop), pop), 1))
            title = row.trade_name or f"{row.brand}{row.common_name}"
            text = "；".join(
                f"{k}：{v}"
                for k, v in (
                    ("品牌", brand or row.brand),
                    ("通用名", row.common_name),
                    ("商品名", row.trade_name),
                    ("剂型", form or row.dosage_form),
                    ("规格", row.specification),
                    ("功能主治", "、".join(row.efficacy)),
                    ("类别", "、".join(row.category)),
                    ("适用人群", "、".join(row.population)),
                    ("禁忌", "、".join(row.contraindications)),
                    ("生产企业", row.maker),
                )
                if v
            )
            self._docs.append(WebDoc(id=f"register:{row.id}", source="kb:register", title=title, text=text))

    # tcm-insert-ner types → what the KB keeps. SYMPTOM / DISEASE / SYNDROME are efficacy-lexicon terms (what a
    # drug treats, as drug-dicts' disease and symptom lists are); they and PERSON_GROUP go to no drug record,
    # because an insert names them as often in its contraindications (孕妇禁用) as in its indications.
    def _names_a_class(self, key: str) -> bool:
        """A class of drugs, not a drug: a category word (感冒药, 抗生素) or a kind of one (四环素类抗生素)."""
        return key in self._class_words or any(key.endswith("类" + w) for w in self._class_words)

    def _seed_population(self, key: str) -> str | None:
        """The seed population an annotated person group belongs to (更年期妇女 → 女性, 孕期妇女 → 孕妇), or None.
        The inserts' PERSON_GROUP spans are mostly who must not take a drug (过敏体质者, 感冒发热病人, 糖尿病患者):
        none of the seed's populations, so no population at all: as one, 感冒 would make every 感冒 query a
        population query."""
        if key in self._pop:
            return self._pop[key]
        found = {self._pop[t] for t in self._pop if len(t) >= 2 and t in key}
        if len(found) > 1:  # 孕期妇女: 孕妇 and 女性; the narrower (the one that conflicts with more) is meant
            found = {max(found, key=lambda p: (len(self._pop_conflicts.get(p, ())), p))}
        return next(iter(found), None)

    def _ingest_ner(self, src: LoadedSource) -> None:
        """Annotated inserts (tcm-insert-ner, one split): lexicon entries from their spans, a record for each
        named drug (with the insert's DRUG_EFFICACY terms), and the insert text as a searchable document."""
        for doc in src.ner:
            drug: str | None = None
            efficacy: list[str] = []
            for span in doc.spans:
                term = span.text
                key = normalise(term)
                if span.label == "DRUG":
                    core, _ = self._canonical_core(term)
                    if len(core) >= 2 and core not in self._form and not self._names_a_class(key):
                        canonical = self._add_common_name(core, [term], 1)
                        drug = drug or canonical
                elif span.label in self._NER_EFFICACY:
                    if self._source_efficacy(term):
                        self._matcher.add(term, Payload("efficacy", term, 1))
                        if span.label == "DRUG_EFFICACY":
                            add_unique(efficacy, [term])
                elif span.label == "DRUG_INGREDIENT":
                    if len(key) >= 2:
                        self._matcher.add(term, Payload("ingredients", term, 1))
                elif span.label == "PERSON_GROUP":
                    pop = self._seed_population(key)
                    if len(key) >= 2 and pop is not None:
                        self._matcher.add(term, Payload("population", pop, 1))
                elif span.label == "DRUG_DOSAGE":
                    # A new variant of a known form (糖衣片 → 片剂); a word that is no form variant is left out.
                    if key not in self._form and 2 <= len(key) <= 6:
                        base = next((v for v in sorted(self._form, key=len, reverse=True) if key.endswith(v)), None)
                        if base:
                            self._form[key] = self._form[base]
                            self._matcher.add(term, Payload("dosage_form", self._form[base], 1))
            if drug:
                rec = self._record(drug)
                add_unique(rec.efficacy, efficacy)
                add_unique(rec.sources, ["tcm-insert-ner"])
            title = drug or f"说明书 {doc.id}"
            self._docs.append(WebDoc(id=f"tcm-insert:{doc.id}", source="kb:tcm-insert-ner", title=title,
                                     text=re.sub(r"\s+", " ", doc.text).strip()))


def build_state(seed: Seed, sources: Iterable[LoadedSource] = ()) -> dict[str, object]:
    """The fields of a knowledge base built from `seed` and then each of `sources`, in order (KnowledgeBuilder)."""
    builder = KnowledgeBuilder(seed)
    for src in sources:
        builder.ingest(src)
    return builder.build()
