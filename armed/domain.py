"""Domain types shared by every part of armed: what goes into a judgment and what comes out.

These are plain pydantic models with no knowledge of Ray, HTTP or any engine, so the library, the Serve
deployments and the evaluation tools all speak the same language.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from armed import images
from armed.labels import LEVEL_TO_BENCHMARK as LEVEL_TO_BENCHMARK  # re-exported: the domain's vocabulary
from armed.labels import BenchmarkLevel, RelevanceLevel

# Limits on untrusted input. Merchant text is untrusted: the bounds keep a 10 MB product name from ever
# reaching a model, and they are part of the public contract (errors name the field and the bound).
MAX_QUERY_CHARS = 256
MAX_PRODUCT_NAME_CHARS = 1024
MAX_CPV_ITEMS = 64
MAX_CPV_VALUE_CHARS = 512
MAX_IMAGES = 8


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _clean_text(value: str, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text")
    if len(value) > max_chars:
        raise ValueError(f"{field} is {len(value)} characters; the limit is {max_chars}")
    # Control characters other than ordinary whitespace never carry meaning in a query or a product name;
    # dropping them also removes a class of prompt-smuggling tricks.
    cleaned = "".join(ch for ch in value if ch >= " " or ch in "\t\n").strip()
    if not cleaned:
        raise ValueError(f"{field} is empty")
    return cleaned


class Query(_Frozen):
    """What the user typed into the pharmacy's search box."""

    text: str = Field(description="The raw search query, as the user typed it.")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _clean_text(v, "query", MAX_QUERY_CHARS)


class ImageRef(_Frozen):
    """A product image: its bytes (raw, base64 or a data: URI), or an http(s) URL the server may fetch.

    A local path is never an ImageRef: the command line reads files into `data` itself (armed/images.py), so
    nothing that reaches the pipeline over HTTP can name a file. Any other uri is refused here, with the one
    message every unreadable image gets, whether or not something exists at that name.
    """

    data: bytes | None = Field(default=None, description="Encoded image bytes (PNG/JPEG/WebP/GIF/BMP); over JSON "
                               "base64 or a data: URI.")
    uri: str | None = Field(default=None, description="An http(s) URL, fetched only from hosts on the server's "
                            "images.fetch_hosts (none by default); a data: URI is taken as data.")

    @model_validator(mode="before")
    @classmethod
    def _data_uri_is_data(cls, v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("uri"), str) and v["uri"][:5].lower() == "data:":
            if v.get("data") is not None:
                raise ValueError("an image needs exactly one of data or uri")
            v = {**v, "data": images.from_data_uri(v["uri"]), "uri": None}
        return v

    @field_validator("data", mode="before")
    @classmethod
    def _decode(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v[:5].lower() == "data:":
                return images.from_data_uri(v)
            return images.from_base64(v)
        return v

    @field_validator("uri")
    @classmethod
    def _remote_only(cls, v: str | None) -> str | None:
        if v is not None and not images.is_fetchable_uri(v):
            raise images.ImageError()
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ImageRef:
        if (self.data is None) == (self.uri is None):
            raise ValueError("an image needs exactly one of data or uri")
        if self.data is not None and len(self.data) > images.MAX_IMAGE_BYTES:
            raise images.too_many_bytes(images.MAX_IMAGE_BYTES)
        return self

    def digest(self) -> str:
        payload = self.data if self.data is not None else (self.uri or "").encode()
        return hashlib.sha256(payload).hexdigest()[:16]


class Product(_Frozen):
    """The SPU as a merchant listed it. Everything here is untrusted merchant input."""

    id: str | None = Field(default=None, max_length=128, description="The platform's product (SPU) id.")
    name: str = Field(description="The merchant-written product name.")
    images: tuple[ImageRef, ...] = Field(default=(), description="Product images, main image first.")
    cpv: dict[str, str] = Field(
        default_factory=dict,
        description="Category-property-value attributes, e.g. {'品牌': '修正', '剂型': '片剂'}.",
    )
    category: str | None = Field(default=None, max_length=128, description="The platform category path.")
    kind: Literal["title", "query"] = Field(
        default="title",
        description="What the name is: a product title (always, for products), or another search query "
        "(query-query relevance such as the KUAKE-QQR benchmark), whose levels the student reads differently.",
    )
    # What armed's merchant-text sanitiser removed before judging (kinds, never the text); armed.pipeline.merchant_text
    # sets it where the pair enters the pipeline. Private: no client can claim or clear it.
    _sanitised: tuple[str, ...] = PrivateAttr(default=())

    @property
    def sanitised(self) -> tuple[str, ...]:
        return self._sanitised

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _clean_text(v, "product.name", MAX_PRODUCT_NAME_CHARS)

    @field_validator("images")
    @classmethod
    def _images(cls, v: tuple[ImageRef, ...]) -> tuple[ImageRef, ...]:
        if len(v) > MAX_IMAGES:
            raise ValueError(f"{len(v)} images; the limit is {MAX_IMAGES}")
        return v

    @field_validator("cpv")
    @classmethod
    def _cpv(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_CPV_ITEMS:
            raise ValueError(f"{len(v)} CPV attributes; the limit is {MAX_CPV_ITEMS}")
        out = {}
        for key, value in v.items():
            k = _clean_text(str(key), "product.cpv key", 64)
            out[k] = _clean_text(str(value), f"product.cpv[{k}]", MAX_CPV_VALUE_CHARS)
        return out

    def content_hash(self) -> str:
        """A stable hash of everything the product side reads: the key of its cache."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        for k in sorted(self.cpv):
            h.update(f"\x1f{k}\x1e{self.cpv[k]}".encode())
        h.update(f"\x1d{self.category or ''}\x1d{self.kind}\x1c{','.join(self._sanitised)}".encode())
        for img in self.images:
            h.update(img.digest().encode())
        return h.hexdigest()[:24]


class WebDoc(_Frozen):
    """One piece of outside information about the query: a web page or a knowledge-base record."""

    id: str = Field(description="Stable id of the document within its source.")
    source: str = Field(description="Where it came from: 'kb:seed', 'kb:drug-inserts', 'http', ...")
    title: str = Field(description="Title or name of the document.")
    text: str = Field(description="Body text (truncated to a bounded length by the provider).")
    url: str | None = Field(default=None, description="Where to read it, when it has an address.")
    score: float = Field(default=0.0, description="The provider's retrieval score.")


class EntityField(enum.StrEnum):
    """The entity slots extracted from both query and product."""

    brand = "brand"
    common_name = "common_name"
    dosage_form = "dosage_form"
    specification = "specification"
    efficacy = "efficacy"
    category = "category"
    ingredients = "ingredients"
    population = "population"
    region = "region"


class Entities(BaseModel):
    """Medical entities of one side (query or product). Lists, since a name can carry several."""

    model_config = ConfigDict(extra="forbid")

    brand: list[str] = Field(default_factory=list, description="Brand / maker names, e.g. 修正, 同仁堂.")
    common_name: list[str] = Field(default_factory=list, description="Core / generic (common) drug names.")
    dosage_form: list[str] = Field(default_factory=list, description="Dosage forms, normalised (片剂, 气雾剂).")
    specification: list[str] = Field(default_factory=list, description="Pack size / strength (0.25g*24片).")
    efficacy: list[str] = Field(default_factory=list, description="Efficacy / indication terms.")
    category: list[str] = Field(default_factory=list, description="Product categories (感冒用药, 成人用品).")
    ingredients: list[str] = Field(default_factory=list, description="Active ingredients.")
    population: list[str] = Field(default_factory=list, description="Target population (儿童, 孕妇, 成人).")
    region: list[str] = Field(default_factory=list, description="Body region / site (眼, 鼻, 皮肤).")

    def get(self, f: EntityField | str) -> list[str]:
        return list(getattr(self, EntityField(f).value))

    def merge(self, other: Entities) -> Entities:
        data = {}
        for f in EntityField:
            seen = dict.fromkeys(self.get(f) + other.get(f))
            data[f.value] = list(seen)
        return Entities(**data)

    def is_empty(self) -> bool:
        return not any(self.get(f) for f in EntityField)


class Branch(enum.StrEnum):
    """Which branch of the hierarchy decided the level."""

    cheating = "cheating"  # the product name lies about what the images show
    rule_veto = "rule_veto"  # an expert rule forces irrelevant
    name_containment = "name_containment"  # the (normalised) query stands inside the product name
    all_characters = "all_characters"  # every character of the query appears in the product name
    core_match = "core_match"  # core name + efficacy + category agree
    guideline = "guideline"  # a product-search pair decided by an annotation-guideline clause (Judgment.guideline)
    student = "student"  # the distilled student judge, confident enough to answer (cascade)
    llm_judge = "llm_judge"  # the constrained LLM judge
    fallback = "fallback"  # the judge was unavailable: knowledge-base evidence alone decided (degraded)


class DocDecision(_Frozen):
    """What the two-stage filter and identical-page check did with one retrieved document."""

    doc: WebDoc
    kept: bool
    reason: str = Field(description="Why: 'similarity 0.41 < 0.55', 'consistency 0.93', 'duplicate of kb:12'...")
    similarity: float | None = None
    consistency: float | None = None


class RuleHit(_Frozen):
    """An expert rule that fired, with what made it fire."""

    id: str
    description: str
    effect: str = Field(description="'cap:weakly_relevant', 'set:irrelevant', 'emphasise:brand', ...")
    because: str = Field(description="The entity comparison that triggered it, in words.")


class StageReport(_Frozen):
    """How one stage went: its status, how long it took, and what it used."""

    name: str
    status: Literal["ok", "skipped", "disabled", "failed", "timeout"]
    seconds: float = 0.0
    detail: str = ""


class SideUnderstanding(BaseModel):
    """What the pipeline understood of one side (query or product): the texts it derived and the entities."""

    model_config = ConfigDict(extra="forbid")

    original: str
    rewritten: str | None = Field(default=None, description="Query rewrite / standardised product name.")
    categories: list[str] = Field(default_factory=list)
    entities: Entities = Field(default_factory=Entities)
    notes: list[str] = Field(default_factory=list, description="Human-readable facts the stages established.")


class Evidence(BaseModel):
    """Everything the judgment rests on, so a reviewer can check it without rerunning anything."""

    model_config = ConfigDict(extra="forbid")

    query: SideUnderstanding
    product: SideUnderstanding
    knowledge: list[WebDoc] = Field(default_factory=list, description="Knowledge-base records retrieved.")
    documents: list[DocDecision] = Field(default_factory=list, description="Search results kept / dropped.")
    image_text: list[str] = Field(default_factory=list, description="Text read from the product images.")
    sanitised: list[str] = Field(
        default_factory=list,
        description="What armed removed from the merchant's text before judging it, as kinds (instruction, "
        "template_token, negated_query, stuffed_query, ...; armed.pipeline.merchant_text.KINDS), never the text.",
    )


class StudentOpinion(_Frozen):
    """What the student said of the pair, and what the cascade did with it (kept even when another branch decided,
    so `armed bench` can draw the cascade curve from one run)."""

    model: str
    probabilities: dict[RelevanceLevel, float] = Field(description="The student's calibrated level distribution.")
    confidence: float = Field(description="Probability of the student's benchmark band (moderately+weakly = less).")
    threshold: float = Field(description="judge.escalate_below at the time.")
    escalated: bool = Field(description="True when the pair went to the LLM judge.")


class LLMOpinion(_Frozen):
    """What the LLM judge said of the pair, where it ran: its constrained answer and its own label distribution
    (before the judge blends it with the student's or the knowledge prior's)."""

    model: str
    label: RelevanceLevel = Field(description="The constrained decode's answer (always one of the levels).")
    probabilities: dict[RelevanceLevel, float] = Field(description="The engine's distribution over the levels.")


class Versions(_Frozen):
    knowledge_base: str = Field(description="Content hash of the knowledge base (seed + loaded sources).")
    rules: str = Field(description="Content hash of the expert rule set.")
    models: dict[str, str] = Field(description="Model id per role (llm, embedder, consistency, vl, ocr).")
    armed: str


class Judgment(BaseModel):
    """The answer: a level, the probabilities behind it, which branch decided, and all the evidence."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    query: str
    product_name: str
    level: RelevanceLevel
    benchmark_level: BenchmarkLevel
    probabilities: dict[RelevanceLevel, float] = Field(description="Label distribution; sums to 1.")
    branch: Branch
    reason: str = Field(description="One sentence saying why, built from the evidence.")
    guideline: str | None = Field(
        default=None, description="The annotation-guideline clause that decided (armed/guideline.py), where one did.")
    intent: str | None = Field(
        default=None,
        description="What the query is (QI): product, need, question or other (armed/pipeline/intent.py).")
    rules_fired: list[RuleHit] = Field(default_factory=list)
    student: StudentOpinion | None = Field(default=None, description="The student's answer, where it ran.")
    llm: LLMOpinion | None = Field(default=None, description="The LLM judge's answer, where it ran.")
    cheating: bool = False
    cheating_reason: str | None = None
    degraded: list[str] = Field(default_factory=list, description="Stages that failed or timed out.")
    evidence: Evidence
    stages: list[StageReport] = Field(default_factory=list, description="Per-stage status and timing.")
    versions: Versions
    seconds: float = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Judgment:
        if self.benchmark_level != self.level.to_benchmark():
            raise ValueError("benchmark_level must follow the documented mapping from level")
        return self
