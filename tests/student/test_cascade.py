"""The hierarchy with a student: who decides, the cascade to the LLM, degradation, and the bench's curve.

Scripted student / LLM doubles stand at the model boundary (the real student is tested in test_packaged_student.py);
the knowledge base, the pipeline and the hierarchy are real."""

from __future__ import annotations

from armed.domain import Branch, RelevanceLevel
from armed.engines.base import ModelClients
from armed.eval.cascade import calibration, cascade_curve
from armed.student.engine import LABELS, QUERY_PAIR_PREFIX
from armed_testing.scripted import ScriptedChatModel, ScriptedPairClassifier
from tests.pipeline.conftest import make_pipeline

# A pair the guideline's branches leave open (a need for children, a product that states no population).
UNDECIDED = ("儿童感冒药", "[999] 感冒灵颗粒 10g*9袋")
# Algorithm 1's own branches, tested with the product-search branches off (those decide product pairs first).
ALGORITHM_1 = {"product_search": False}


def student(level: str, confidence: float, **kw) -> ScriptedPairClassifier:
    return ScriptedPairClassifier(labels=LABELS, default=level, confidence=confidence, model_id="scripted-student",
                                  **kw)


def llm(label: str, **kw) -> ScriptedChatModel:
    return ScriptedChatModel(lambda m, c: label if label in c else c[0], **kw)


async def test_confident_student_answers_without_the_llm(kb):
    judge_llm = llm("irrelevant")
    clients = ModelClients(student=student("weakly_relevant", 0.9), llm=judge_llm)
    j = await make_pipeline(kb, clients, judge={"escalate_below": 0.6}).judge(*UNDECIDED)
    assert j.branch is Branch.student and j.level is RelevanceLevel.weakly
    assert j.student is not None and not j.student.escalated and j.student.confidence > 0.9
    assert not [c for c in judge_llm.calls if c[0] == "choose"]
    assert j.versions.models["student"] == "scripted-student"


async def test_unsure_student_escalates_to_the_llm(kb):
    # 0.4 on weakly, 0.2 on each other level: the "less" band holds 0.6 < 0.7 → the LLM judges.
    judge_llm = llm("irrelevant")
    clients = ModelClients(student=student("weakly_relevant", 0.4), llm=judge_llm)
    j = await make_pipeline(kb, clients, judge={"escalate_below": 0.7, "llm_weight": 1.0}).judge(*UNDECIDED)
    assert j.branch is Branch.llm_judge and j.level is RelevanceLevel.irrelevant
    assert j.student is not None and j.student.escalated and abs(j.student.confidence - 0.6) < 1e-6
    assert "escalated" in j.reason


async def test_failed_llm_leaves_the_students_answer_and_says_degraded(kb):
    clients = ModelClients(student=student("weakly_relevant", 0.4), llm=llm("irrelevant", fail=True))
    j = await make_pipeline(kb, clients, judge={"escalate_below": 0.7}).judge(*UNDECIDED)
    assert j.branch is Branch.student and j.level is RelevanceLevel.weakly
    assert "llm_judge" in j.degraded


async def test_failed_student_falls_back_to_the_knowledge_prior(kb):
    clients = ModelClients(student=student("highly_relevant", 0.9, fail=True))
    j = await make_pipeline(kb, clients).judge(*UNDECIDED)
    assert j.branch is Branch.fallback and "student" in j.degraded and "student failed" in j.reason


async def test_branches_only_decide_when_listed(kb):
    clients = ModelClients(student=student("irrelevant", 0.9))
    pair = ("布洛芬", "布洛芬缓释胶囊 0.3g*20粒")
    j = await make_pipeline(kb, clients, stages=ALGORITHM_1).judge(*pair)  # default: no branch before the student
    assert j.branch is Branch.student and j.level is RelevanceLevel.irrelevant
    j = await make_pipeline(kb, clients, stages=ALGORITHM_1, judge={"branches": ["name_containment"]}).judge(*pair)
    assert j.branch is Branch.name_containment
    j = await make_pipeline(kb, ModelClients(), stages=ALGORITHM_1).judge(*pair)  # no student: Algorithm 1 as before
    assert j.branch is Branch.name_containment
    j = await make_pipeline(kb, clients).judge(*pair)  # the guideline's clause decides a product-search pair first
    assert j.branch is Branch.guideline and j.guideline == "exact.generic" and j.student is None


async def test_rule_caps_bound_the_student(kb):
    clients = ModelClients(student=student("highly_relevant", 0.95))
    j = await make_pipeline(kb, clients, stages=ALGORITHM_1).judge("修正消栓通络片", "[德济]消栓通络片1.8g*12片*3板/盒")
    assert j.branch is Branch.student and j.level is RelevanceLevel.moderately  # brand differs: capped
    j = await make_pipeline(kb, clients, stages=ALGORITHM_1, judge={"rule_caps": False}).judge(
        "修正消栓通络片", "[德济]消栓通络片1.8g*12片*3板/盒")
    assert j.level is RelevanceLevel.highly


async def test_query_pairs_reach_the_student_marked(kb):
    s = student("highly_relevant", 0.9)
    await make_pipeline(kb, ModelClients(student=s)).judge("头痛怎么办", {"name": "头痛吃什么药", "kind": "query"})
    await make_pipeline(kb, ModelClients(student=s)).judge("头痛怎么办", "头痛吃什么药")
    sent = [c[1][0][1] for c in s.calls if c[0] == "classify"]
    assert sent == [QUERY_PAIR_PREFIX + "头痛吃什么药", "头痛吃什么药"]


def test_cascade_curve_from_rows():
    def row(i, gold, probs, conf):
        return {"id": str(i), "gold": gold, "student": {"probabilities": probs, "confidence": conf}}

    hi = {"highly_relevant": 0.9, "moderately_relevant": 0.05, "weakly_relevant": 0.0, "irrelevant": 0.05}
    ir = {"highly_relevant": 0.3, "moderately_relevant": 0.1, "weakly_relevant": 0.1, "irrelevant": 0.5}
    rows = [row(0, "highly_relevant", hi, 0.9), row(1, "less_relevant", ir, 0.5), row(2, "irrelevant", ir, 0.5)]
    teacher = {"1": {"pred": "less_relevant"}, "2": {"pred": "irrelevant"}}
    curve = cascade_curve(rows, teacher=teacher, thresholds=(0.3, 0.6, 1.0))
    p = {pt["threshold"]: pt for pt in curve["points"]}
    assert p[0.3]["escalation_rate"] == 0 and abs(p[0.3]["kept_accuracy"] - 2 / 3) < 1e-9
    assert abs(p[0.6]["escalation_rate"] - 2 / 3) < 1e-9 and p[0.6]["kept_accuracy"] == 1.0
    assert p[0.6]["cascade_accuracy"] == 1.0 and p[1.0]["escalation_rate"] == 1.0
    cal = calibration(rows)
    assert cal["n"] == 3 and 0 <= cal["ece"] <= 1
