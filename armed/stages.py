"""The pipeline's stages: one table, everything about a stage in one entry.

A stage is one step of a judgment that armed/pipeline/stages.py's `StageRecorder.run` times, cuts off and reports
(`judgment.stages`, `judgment.degraded`). Each entry below says, for its stage: its name (the report's name), which
side of the DAG runs it (query, product, or the join after both), which `stages.*` switch turns it on or off
(`ARMED_STAGES__<SWITCH>=false`) and which `timeouts.*` field bounds it (`ARMED_TIMEOUTS__<FIELD>`). The recorder
takes a stage's switch and timeout from this table, never from its caller, and refuses a name that is not here.
Every module that used to keep its own list of stages reads this table instead (the perf scenarios' per-side sums,
the bench's ablation ladder); `tests/test_stages.py` fails when a tuple or set of stage names appears anywhere
else in the source tree, when a stage is run under a name that is not here, and when a switch or timeout field of
the settings is neither a stage's nor listed below as one that owns no stage.

This is armed/stages.py, the table; armed/pipeline/stages.py is the machinery that runs a stage (no other import
between them than that one reading this). The table imports nothing from armed but armed/registry.py (its lookup,
which imports nothing): the settings read it too.

Adding a stage: a `Stage(...)` entry here (its place in the tuple is its place on its side), a field for its
switch in `armed.settings.StageSwitches` and for its timeout in `armed.settings.TimeoutSettings` unless it shares
existing ones (the test holds the settings to this table), and a `rec.run("<name>", ...)` where it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from armed.registry import registry_entry

# Where a stage runs: the query side and the product side run concurrently; the join runs after both.
Side = Literal["query", "product", "join"]
SIDES: tuple[Side, ...] = ("query", "product", "join")


@dataclass(frozen=True)
class Stage:
    """One stage. `doc` says what it does and where it runs."""

    name: str  # the StageReport's name, what `judgment.degraded` lists
    doc: str
    side: Side
    # StageSwitches fields; the stage runs when any of them is on (reading the images serves two stages).
    switches: tuple[str, ...]
    timeout: str  # the TimeoutSettings field that bounds one run of it

    def __post_init__(self) -> None:
        if not self.switches:
            raise ValueError(f"stage {self.name}: a stage needs a switch")
        if self.side not in SIDES:
            raise ValueError(f"stage {self.name}: side {self.side!r} is not one of {SIDES}")

    def enabled(self, switches: object) -> bool:
        """Whether a StageSwitches (`settings.stages`) turns this stage on."""
        return any(getattr(switches, s) for s in self.switches)

    def timeout_s(self, timeouts: object) -> float:
        """This stage's bound in seconds, from a TimeoutSettings (`settings.timeouts`)."""
        return float(getattr(timeouts, self.timeout))


_TABLE: tuple[Stage, ...] = (
    Stage("query_intent", "QI's intent: product, need or question, from the query as typed "
          "(armed/pipeline/intent.py).", "query", ("product_search",), "ner"),
    Stage("query_rewrite", "QI: the knowledge base's expansion, else the LLM's rewrite (with stages.llm_text).",
          "query", ("query_rewrite",), "query_rewrite"),
    Stage("query_change", "QC: undo a rewrite that changed what was asked.", "query", ("query_change",),
          "query_rewrite"),
    Stage("common_name", "CN: trade names and synonyms to common names.", "query", ("common_name",), "ner"),
    Stage("search", "IS: look the query up (knowledge base or web search).", "query", ("search",), "search"),
    Stage("identical_page", "ISPI: drop duplicate pages among what IS found.", "query", ("identical_page",),
          "search"),
    Stage("two_stage_filter", "TF: embedding similarity, then the consistency model, over the kept documents.",
          "query", ("two_stage_filter",), "two_stage_filter"),
    Stage("ner_llm", "The LLM's entities on top of the lexicon NER (with stages.llm_text), kept when grounded.",
          "query", ("ner_llm",), "ner"),
    Stage("read_images", "OCR of the product's images, for the cheating check and the extension.", "product",
          ("cheating_check", "extend"), "extend"),
    Stage("cheating_check", "Does the product name tell the truth about its images (VL model or OCR + knowledge).",
          "product", ("cheating_check",), "cheating_check"),
    Stage("standardise", "The standard product name: noise removed, the LLM's name with stages.llm_text.",
          "product", ("standardise",), "standardise"),
    Stage("extend", "SI: the product extended with CPV, image text and knowledge.", "product", ("extend",),
          "extend"),
    Stage("rules", "Expert-rule recall over both sides' entities (armed/knowledge/rules.py).", "join", ("rules",),
          "rules"),
    Stage("student", "The student judge on a pair the branches leave open (armed/pipeline/hierarchy.py).", "join",
          ("student",), "judge"),
    Stage("llm_judge", "The constrained LLM judge, where the student escalates or there is none.", "join",
          ("llm_judge",), "judge"),
)

# By name, in the table's order: each side's stages in the order they run.
STAGES: Mapping[str, Stage] = MappingProxyType({s.name: s for s in _TABLE})
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)

# Switches of StageSwitches that own no stage: they change what stages or branches do.
MODIFIER_SWITCHES: Mapping[str, str] = MappingProxyType({
    "llm_text": "lets the LLM write text in query_rewrite, ner_llm and standardise",
    "deterministic_branches": "Algorithm 1's non-LLM branches in the hierarchy (no stage of their own)",
})
# Timeouts of TimeoutSettings that bound no single stage.
JUDGMENT_TIMEOUTS: Mapping[str, str] = MappingProxyType({
    "image_read": "fetching and decoding a product's images, before any stage runs",
    "total": "the whole judgment",
})

# Table 5: each rung switches one more module on (cumulative), in this order; switches not in the ladder keep
# their settings. (label, switch); the first rung switches nothing on.
ABLATION_LADDER: tuple[tuple[str, str | None], ...] = (
    ("base Q+S", None),
    ("+QI", "query_rewrite"),
    ("+SI", "extend"),
    ("+IS", "search"),
    ("+ISPI", "identical_page"),
    ("+TF", "two_stage_filter"),
    ("+CN", "common_name"),
    ("+QC", "query_change"),
    # QI's intent and the guideline's clauses for product-search pairs (armed/pipeline/product_search.py).
    ("+PS", "product_search"),
    # Beyond the paper: the distilled student takes the undecided pairs (and, with it on, only the deterministic
    # branches in judge.branches decide before it).
    ("+student", "student"),
)
LADDER_SWITCHES: tuple[str, ...] = tuple(s for _, s in ABLATION_LADDER if s)

STAGE_SWITCHES: frozenset[str] = frozenset(sw for s in _TABLE for sw in s.switches)
STAGE_TIMEOUTS: frozenset[str] = frozenset(s.timeout for s in _TABLE)
if not set(LADDER_SWITCHES) <= STAGE_SWITCHES:  # import-time: a ladder rung must switch a stage
    raise ValueError(f"ablation rungs switch no stage: {sorted(set(LADDER_SWITCHES) - STAGE_SWITCHES)}")


def get_stage(name: str) -> Stage:
    """The table entry of a stage; ValueError naming it when there is none."""
    return registry_entry(STAGES, name, "stage", "armed/stages.py")


def stage_names(side: Side) -> tuple[str, ...]:
    """The stages one side runs, in the table's order."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}")
    return tuple(s.name for s in _TABLE if s.side == side)
