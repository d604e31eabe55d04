"""The hierarchy as a table of branches (armed/pipeline/hierarchy.py): the table's order is the documented one, each
branch is named for the `Branch` it reports, `decide` returns the first decision of the table it walks, and the
models behind the context run once however many branches ask. Real knowledge base and pipeline; model doubles."""

from __future__ import annotations

import re

import pytest

from armed.domain import Branch, RelevanceLevel
from armed.engines.base import ModelClients
from armed.knowledge.base import KnowledgeBase
from armed.knowledge.rules import recall
from armed.pipeline import hierarchy
from armed.pipeline.dag import parse_pair
from armed.pipeline.hierarchy import (
    HIERARCHY,
    Decision,
    DecisionContext,
    Fallback,
    Guideline,
    HierarchyBranch,
    decide,
)
from armed.pipeline.levels import query_chars_in_name, query_in_name
from armed.pipeline.stages import StageRecorder
from armed.student.engine import LABELS
from armed_testing.scripted import ScriptedChatModel, ScriptedPairClassifier
from tests.pipeline.conftest import make_pipeline

# A product-search pair the guideline's clause decides (exact.generic) and a pair its branches leave open.
GUIDELINE_PAIR = ("布洛芬", "布洛芬缓释胶囊 0.3g*20粒")
UNDECIDED = ("儿童感冒药", "[999] 感冒灵颗粒 10g*9袋")


def documented_order() -> list[str]:
    """The branch names the module docstring's numbered steps start with (`1. \\`cheating\\` — …`, `a. …`)."""
    return re.findall(r"^\s*(?:\d+[a-z]?|[a-z])\.\s+`([a-z_]+)`", hierarchy.__doc__ or "", re.MULTILINE)


def test_table_order_is_the_documented_order():
    assert [b.name for b in HIERARCHY] == documented_order()
    assert documented_order() == [
        "cheating", "rule_veto", "guideline", "name_containment", "all_characters", "core_match",
        "student", "llm_judge", "student_stands", "fallback",
    ]


def test_each_branch_is_named_for_the_branch_it_reports():
    names = [b.name for b in HIERARCHY]
    assert len(set(names)) == len(names)
    enum_values = {b.value for b in Branch}
    for b in HIERARCHY:
        if b.name in enum_values:
            assert b.branch is Branch(b.name), b
    # The one entry without its own Branch: the student's answer standing after the LLM judge failed.
    assert {b.name: b.branch for b in HIERARCHY if b.name not in enum_values} == {"student_stands": Branch.student}
    # Every Branch a judgment can carry has a table entry.
    assert {b.branch for b in HIERARCHY} == set(Branch)


async def understood(kb: KnowledgeBase, query: str, product: str, **overrides: object) -> dict:
    """decide's arguments for one pair, understood by the real pipeline."""
    pipe = make_pipeline(kb, **overrides)
    q_in, p_in = parse_pair(query, product, kb)
    rec = StageRecorder()
    q = await pipe.understand_query(q_in.text, rec)
    p = await pipe.understand_product(p_in, rec)
    hits = recall(kb, q.side.entities, p.side.entities, q.specificity)
    return {"q": q, "p": p, "hits": hits, "clients": pipe.clients, "settings": pipe.settings, "kb": kb,
            "rec": StageRecorder()}


async def test_decide_returns_the_first_decision_of_the_table(kb):
    args = await understood(kb, *GUIDELINE_PAIR)
    d = await decide(**args)
    assert (d.branch, d.guideline) == (Branch.guideline, "exact.generic")
    assert d.reason.startswith("exact.generic: ") and d.reason.endswith("(product query)")
    d = await decide(**args, table=(Fallback(), Guideline()))
    assert d.branch is Branch.fallback and d.reason == "no judge configured: knowledge-base evidence decided"


class Never(HierarchyBranch):
    name = "never"
    branch = Branch.fallback

    async def try_decide(self, ctx: DecisionContext) -> Decision | None:
        return None


async def test_a_table_where_no_branch_decides_raises(kb):
    args = await understood(kb, *UNDECIDED)
    with pytest.raises(LookupError, match=r"\['never'\]"):
        await decide(**args, table=(Never(),))


async def test_an_untrusted_reading_goes_to_the_student_not_the_next_deterministic_branch(kb):
    """布洛芬 stands inside the product name (name containment) and its characters appear there too (all
    characters): with a student and judge.branches trusting only all_characters, the pair's reading is name
    containment, which is not trusted, so the student decides."""
    q, name = GUIDELINE_PAIR
    assert query_in_name(q, [name]) and query_chars_in_name(q, [name], 2)
    clients = ModelClients(student=ScriptedPairClassifier(labels=LABELS, default="irrelevant", confidence=0.9,
                                                          model_id="scripted-student"))
    pipe = make_pipeline(kb, clients, stages={"product_search": False}, judge={"branches": ["all_characters"]})
    j = await pipe.judge(*GUIDELINE_PAIR)
    assert (j.branch, j.level) == (Branch.student, RelevanceLevel.irrelevant)


async def test_the_student_runs_once_when_several_branches_ask(kb):
    """An unsure student escalates, the LLM fails: the student, LLM and student-stands branches each ask for the
    student's reading; it ran once, and the LLM once."""
    student = ScriptedPairClassifier(labels=LABELS, default="weakly_relevant", confidence=0.4,
                                     model_id="scripted-student")
    llm = ScriptedChatModel(fail=True)
    pipe = make_pipeline(kb, ModelClients(student=student, llm=llm), judge={"escalate_below": 0.7})
    j = await pipe.judge(*UNDECIDED)
    assert j.branch is Branch.student and j.reason == "the LLM judge failed; the student's answer stands"
    assert len(student.calls) == 1 and len([c for c in llm.calls if c[0] == "choose"]) == 1
    assert [s.name for s in j.stages if s.name in ("student", "llm_judge")] == ["student", "llm_judge"]
