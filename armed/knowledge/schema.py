"""The seed knowledge file's schema: lexicons, query expansions, name-cleaning lists and expert rules.

The seed is hand-written YAML that changes judgments, so it is validated strictly (unknown keys are errors,
cross-references must resolve) and a broken seed fails at load time with the offending field named, never
silently on a request.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from armed.domain import EntityField, RelevanceLevel


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _nonblank(values: list[str], what: str) -> list[str]:
    for v in values:
        if not v or not v.strip():
            raise ValueError(f"{what} contains an empty string")
    return values


class BrandEntry(_Strict):
    """A brand / maker: its canonical name and the other ways a name or query writes it."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list, description="Other spellings: 北京同仁堂, 三九, Durex.")
    categories: list[str] = Field(default_factory=list, description="Categories the brand alone implies.")
    note: str | None = None

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: list[str]) -> list[str]:
        return _nonblank(v, "aliases")


class CommonNameEntry(_Strict):
    """A drug / product by its common (generic) name, without the dosage-form suffix (消栓通络, not 消栓通络片)."""

    name: str = Field(min_length=1)
    synonyms: list[str] = Field(default_factory=list, description="Other Chinese names: 扑热息痛.")
    trade_names: list[str] = Field(default_factory=list, description="Trade names that mean this drug: 芬必得.")
    english: list[str] = Field(default_factory=list, description="English / INN names: ibuprofen.")
    efficacy: list[str] = Field(default_factory=list, description="Efficacy terms or efficacy group names.")
    categories: list[str] = Field(default_factory=list)
    dosage_forms: list[str] = Field(default_factory=list, description="Canonical dosage forms it is sold in.")
    populations: list[str] = Field(default_factory=list, description="Populations it is made for, if specific.")
    regions: list[str] = Field(default_factory=list)
    ingredients: list[str] = Field(default_factory=list)
    trade_makers: dict[str, str] = Field(
        default_factory=dict,
        description="Trade name → the brand of its maker (芬必得: 中美史克): a trade-name query is answered by that "
        "maker's product, another maker's same drug is less relevant.")
    note: str | None = None

    def surfaces(self) -> list[str]:
        return [self.name, *self.synonyms, *self.trade_names, *self.english]


class DosageFormEntry(_Strict):
    """A canonical dosage form and its surface variants (片/片剂/薄膜衣片 → 片剂)."""

    name: str = Field(min_length=1)
    variants: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list, description="Body regions the form implies (滴眼液 → 眼).")


class EfficacyGroup(_Strict):
    """Terms that mean the same need for relevance purposes (退烧 and 发热 are both 解热镇痛)."""

    name: str = Field(min_length=1)
    terms: list[str] = Field(default_factory=list)
    complements: list[str] = Field(
        default_factory=list,
        description="Groups whose use complements this one (测血压 and 降压: a monitor for a blood-pressure need): "
        "Algorithm 1's 'complementary use', weakly relevant, never 'entirely different'.")


class CategoryEntry(_Strict):
    """A product category, the words that reveal it, and categories close enough not to count as a mismatch."""

    name: str = Field(min_length=1)
    triggers: list[str] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)


class PopulationEntry(_Strict):
    """A target population, its surface terms, and the populations a product for it cannot serve."""

    name: str = Field(min_length=1)
    terms: list[str] = Field(default_factory=list)
    conflicts: list[str] = Field(default_factory=list)


class RegionEntry(_Strict):
    name: str = Field(min_length=1)
    terms: list[str] = Field(default_factory=list)


class SourceGroup(_Strict):
    """What a source's own grouping says of every drug in a group: originator-drugs files its drugs by therapeutic
    category (高血压, 眼科用药); the drugs of such a group get these categories and efficacy in their records."""

    source: Literal["originator-drugs"]
    group: str = Field(min_length=1, description="The group as the source names it (the file name without 'NN-').")
    categories: list[str] = Field(default_factory=list)
    efficacy: list[str] = Field(default_factory=list, description="Only where the group is itself an indication "
                                "every drug of it treats (高血压 → 降压), never for mixed groups.")


class TherapeuticAreas(_Strict):
    """Body systems / therapeutic areas (妇科, 消化, 心脑血管 ...) an indication belongs to, read from its words,
    and the pairs of areas whose uses are entirely different: a product of one never answers a need of the other.
    The expert table behind the guideline's irrelevant.efficacy where the efficacy lexicon cannot tell (尿血 vs
    降压)."""

    keywords: dict[str, list[str]] = Field(
        min_length=1, description="Area → words whose presence in an indication puts it there (TCM wording too). "
        "A text gets every area any of its words names: more areas, fewer 'disjoint' pairs, so over-matching errs "
        "on the safe side.")
    disjoint: list[tuple[str, str]] = Field(
        default_factory=list, description="Pairs of areas written out one by one; a pair not listed (妇科–泌尿, "
        "疼痛–骨伤风湿, 呼吸–抗感染) is never read as entirely different. An area in no pair (男科, 补益) never is.")
    categories: dict[str, list[str]] = Field(
        default_factory=dict, description="A category (lexicons.categories) → the areas its drugs treat; a category "
        "in no entry (营养补充, 抗肿瘤药, 医疗器械) names no area. Category names are not read by keyword: 糖尿病用药 "
        "holds 尿 and is not 泌尿.")
    unknown_names: list[str] = Field(
        default_factory=list, description="Name parts of drugs whose uses span areas or are not what their group "
        "says (激素, 阿司匹林, 加巴林): a product holding one has no area.")

    @model_validator(mode="after")
    def _known_areas(self) -> TherapeuticAreas:
        for a, b in self.disjoint:
            for x in (a, b):
                if x not in self.keywords:
                    raise ValueError(f"therapeutic_areas.disjoint: unknown area {x!r}")
        for cat, areas in self.categories.items():
            for x in areas:
                if x not in self.keywords:
                    raise ValueError(f"therapeutic_areas.categories[{cat}]: unknown area {x!r}")
        for area, words in self.keywords.items():
            _nonblank(words, f"therapeutic_areas.keywords[{area}]")
        return self


class Lexicons(_Strict):
    brands: list[BrandEntry] = Field(default_factory=list)
    common_names: list[CommonNameEntry] = Field(default_factory=list)
    dosage_forms: list[DosageFormEntry] = Field(default_factory=list)
    efficacy_groups: list[EfficacyGroup] = Field(default_factory=list)
    categories: list[CategoryEntry] = Field(default_factory=list)
    populations: list[PopulationEntry] = Field(default_factory=list)
    regions: list[RegionEntry] = Field(default_factory=list)


class QueryExpansionEntry(_Strict):
    """An ambiguous or slang query and what it means on a pharmacy platform."""

    query: str = Field(min_length=1)
    match: Literal["exact", "contains"] = "exact"
    expansion: str = Field(min_length=1)
    categories: list[str] = Field(default_factory=list)
    note: str = Field(min_length=1, description="Why this expansion is right; shown as evidence.")


class HijackPattern(_Strict):
    """A traffic-hijacking phrase. `{brand}` in the pattern stands for any known brand other than the maker."""

    pattern: str = Field(min_length=1)
    note: str | None = None


ConditionTest = Literal[
    "both_present",  # both sides name the field
    "query_only",  # the query names it, the product does not
    "query_absent",  # the query does not name it
    "same",  # both present and equal under the field's comparator
    "not_same",  # not (both present and equal): true when either side is missing
    "differs",  # both present and not equal
    "overlap_gte",  # both present and overlap score >= value
    "overlap_lt",  # both present and overlap score < value
    "disjoint",  # both present and overlap score == 0
    "conflict",  # population only: the sides' populations exclude each other
    "no_conflict",  # population only: no exclusion
]
_VALUE_TESTS = {"overlap_gte", "overlap_lt"}
_POPULATION_TESTS = {"conflict", "no_conflict"}


class Condition(_Strict):
    """One comparison of a field between the query's and the product's entities."""

    field: EntityField
    test: ConditionTest
    value: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        if self.test in _VALUE_TESTS and self.value is None:
            raise ValueError(f"test {self.test!r} needs a value in [0, 1]")
        if self.test not in _VALUE_TESTS and self.value is not None:
            raise ValueError(f"test {self.test!r} takes no value")
        if self.test in _POPULATION_TESTS and self.field is not EntityField.population:
            raise ValueError(f"test {self.test!r} is defined for the population field only")
        return self


class RuleWhen(_Strict):
    specificity: Literal["generic", "specific", "any"] = "any"
    all: list[Condition] = Field(default_factory=list, description="Every condition must hold.")


class RuleDescription(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


_LEVELS = "|".join(level.value for level in RelevanceLevel)
_FIELDS = "|".join(f.value for f in EntityField)
EFFECT_RE = re.compile(rf"^(?:(cap|set):({_LEVELS})|(emphasise|deemphasise):({_FIELDS}))$")


class Rule(_Strict):
    """An expert rule: when the conditions hold (for this query specificity), apply the effect."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: RuleDescription
    when: RuleWhen
    effect: str = Field(description="cap:<level>, set:<level>, emphasise:<field> or deemphasise:<field>.")

    @field_validator("effect")
    @classmethod
    def _effect(cls, v: str) -> str:
        if not EFFECT_RE.match(v):
            raise ValueError(
                f"effect {v!r} is not cap:<level>, set:<level>, emphasise:<field> or deemphasise:<field> "
                f"(levels: {_LEVELS}; fields: {_FIELDS})"
            )
        return v


class Seed(_Strict):
    """The whole seed file."""

    version_note: str = Field(min_length=1, description="What changed in this revision, for humans.")
    lexicons: Lexicons
    query_expansions: list[QueryExpansionEntry] = Field(default_factory=list)
    noise_terms: list[str] = Field(default_factory=list)
    not_efficacy: list[str] = Field(
        default_factory=list,
        description="Words a source may annotate as an indication that name no condition (治疗, 预防): never "
        "taken from a source as an efficacy term.",
    )
    hijack_patterns: list[HijackPattern] = Field(default_factory=list)
    source_groups: list[SourceGroup] = Field(default_factory=list)
    therapeutic_areas: TherapeuticAreas | None = None
    specification_patterns: list[str] = Field(default_factory=list, min_length=1)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("specification_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for i, pattern in enumerate(v):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"specification_patterns[{i}] is not a valid regex: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _references(self) -> Seed:
        """Cross-references must resolve: a typo in a category name would otherwise silently disable a rule."""
        lx = self.lexicons
        problems: list[str] = []

        def unique(names: list[str], where: str) -> None:
            seen: set[str] = set()
            for n in names:
                if n in seen:
                    problems.append(f"{where}: duplicate name {n!r}")
                seen.add(n)

        unique([b.name for b in lx.brands], "lexicons.brands")
        unique([c.name for c in lx.common_names], "lexicons.common_names")
        unique([d.name for d in lx.dosage_forms], "lexicons.dosage_forms")
        unique([e.name for e in lx.efficacy_groups], "lexicons.efficacy_groups")
        unique([c.name for c in lx.categories], "lexicons.categories")
        unique([p.name for p in lx.populations], "lexicons.populations")
        unique([r.name for r in lx.regions], "lexicons.regions")
        unique([r.id for r in self.rules], "rules")

        forms = {d.name for d in lx.dosage_forms}
        cats = {c.name for c in lx.categories}
        pops = {p.name for p in lx.populations}
        regions = {r.name for r in lx.regions}
        efficacy = {g.name for g in lx.efficacy_groups} | {t for g in lx.efficacy_groups for t in g.terms}
        brands = {b.name for b in lx.brands}
        groups = {g.name for g in lx.efficacy_groups}

        def check(values: list[str], known: set[str], where: str, what: str) -> None:
            for v in values:
                if v not in known:
                    problems.append(f"{where}: unknown {what} {v!r}")

        for b in lx.brands:
            check(b.categories, cats, f"lexicons.brands[{b.name}].categories", "category")
        for c in lx.common_names:
            where = f"lexicons.common_names[{c.name}]"
            check(c.dosage_forms, forms, f"{where}.dosage_forms", "dosage form")
            check(c.categories, cats, f"{where}.categories", "category")
            check(c.populations, pops, f"{where}.populations", "population")
            check(c.regions, regions, f"{where}.regions", "region")
            check(c.efficacy, efficacy, f"{where}.efficacy", "efficacy term (add it to an efficacy group)")
            for trade, maker in c.trade_makers.items():
                if trade not in c.trade_names:
                    problems.append(f"{where}.trade_makers: {trade!r} is not one of its trade_names")
                if maker not in brands:
                    problems.append(f"{where}.trade_makers[{trade}]: unknown brand {maker!r}")
        for g in lx.efficacy_groups:
            check(g.complements, groups, f"lexicons.efficacy_groups[{g.name}].complements", "efficacy group")
        for i, sg in enumerate(self.source_groups):
            check(sg.categories, cats, f"source_groups[{i}].categories", "category")
            check(sg.efficacy, efficacy, f"source_groups[{i}].efficacy", "efficacy term")
        if self.therapeutic_areas is not None:
            check(list(self.therapeutic_areas.categories), cats, "therapeutic_areas.categories", "category")
        for d in lx.dosage_forms:
            check(d.regions, regions, f"lexicons.dosage_forms[{d.name}].regions", "region")
        for c in lx.categories:
            check(c.related, cats, f"lexicons.categories[{c.name}].related", "category")
        for p in lx.populations:
            check(p.conflicts, pops, f"lexicons.populations[{p.name}].conflicts", "population")
        for i, q in enumerate(self.query_expansions):
            check(q.categories, cats, f"query_expansions[{i}].categories", "category")
        if problems:
            raise ValueError("; ".join(problems))
        return self
