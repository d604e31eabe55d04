"""`armed vote`: majority and agreement, prompt variants at the LLM boundary, review file, a real tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armed.domain import BenchmarkLevel as B
from armed.engines.base import ChatMessage, ModelClients
from armed.errors import InputError
from armed.eval.vote import PromptVariantLLM, VoterSpec, majority, run_vote
from armed.pipeline import prompts
from tests.eval.conftest import factory_for, judge_llm, settings


def test_majority_rules() -> None:
    assert majority([B.highly, B.highly, B.highly]) == (B.highly, "unanimous", {"highly_relevant": 3})
    assert majority([B.highly, B.less, B.highly])[:2] == (B.highly, "split")
    assert majority([B.highly, B.less, B.irrelevant])[:2] == (B.irrelevant, "split")  # tie → lower level
    assert majority([B.less, B.less, None])[:2] == (B.less, "split")  # a FAILED vote breaks unanimity
    assert majority([None, None]) == (None, "failed", {})


def test_voter_spec_parsing() -> None:
    v = VoterSpec.parse("prompt=strict,weight=0.6")
    assert v.prompt == "strict" and v.weight == 0.6 and v.slug == "prompt=strict_weight=0.6"
    for bad in ("prompt=nope", "weight=2", "colour=red", "endpoint=http://x,prompt=zh"):
        with pytest.raises(InputError):
            VoterSpec.parse(bad)


async def test_prompt_variant_rewrites_only_the_judge() -> None:
    inner = judge_llm(lambda text: "highly_relevant")
    wrapped = PromptVariantLLM(inner, "zh")
    msgs = [ChatMessage("system", prompts.SYSTEM), ChatMessage("user", "Judge ...")]
    await wrapped.choose(msgs, prompts.JUDGE_CHOICES)
    await wrapped.choose(msgs, prompts.CHEATING_CHOICES)
    (_, (judge_msgs, _)), (_, (other_msgs, _)) = inner.calls
    assert judge_msgs[0].content != prompts.SYSTEM and "只回答一个等级" in judge_msgs[-1].content
    assert other_msgs == msgs
    assert wrapped.model_id == "scripted-judge+prompt:zh"


async def test_vote_end_to_end_with_scripted_models(armed_set: Path, tmp_path: Path, kb) -> None:
    # The default prompt says weakly; the strict variant says irrelevant for pairs naming a population.
    def rule(text: str) -> str:
        if "Be strict" in text and ("儿童" in text or "孕妇" in text or "小孩" in text):
            return "irrelevant"
        return "weakly_relevant"

    make = factory_for(kb, ModelClients(llm=judge_llm(rule)))
    s = await run_vote(f"armed:{armed_set}", tmp_path, ["prompt=default", "prompt=strict", "prompt=default,weight=0.9"],
                       settings=settings(stages={"product_search": False}), factory=make, progress=False)
    votes = [json.loads(x) for x in (tmp_path / "votes.jsonl").read_text().splitlines()]
    review = [json.loads(x) for x in (tmp_path / "review.jsonl").read_text().splitlines()]
    assert len(votes) == 18 and s["n"] == 18
    assert {v["agreement"] for v in votes} <= {"unanimous", "split"}
    assert review and all(v["agreement"] == "split" for v in review)
    assert len(review) == s["agreement"]["split"] and 0 < s["unanimous_share"] < 1
    assert s["per_voter_vs_gold"]["prompt=default"]["n"] == 18
    assert "majority accuracy vs gold" in (tmp_path / "vote.md").read_text()
    for v in review:
        assert v["votes"]["prompt=strict"] == "irrelevant"


@pytest.mark.slow
async def test_vote_with_a_real_tiny_model(armed_set: Path, tmp_path: Path, kb, tiny_checkpoints) -> None:
    """One voter is a real (tiny, random) Qwen3 through the transformers label-scoring path."""
    make = factory_for(kb, ModelClients(llm=judge_llm(lambda t: "weakly_relevant")))
    s = await run_vote(f"armed:{armed_set}", tmp_path, ["prompt=default", f"llm={tiny_checkpoints.causal}"],
                       settings=settings(stages={"query_rewrite": False, "ner_llm": False, "standardise": False,
                                                 "cheating_check": False}),
                       factory=make, progress=False, limit=6)
    rows = [json.loads(x) for x in (tmp_path / "voters").glob("llm=*/predictions.jsonl").__next__().read_text()
            .splitlines()]
    assert len(rows) == 6 and all(r["pred"] for r in rows)
    assert any(r["versions"]["models"]["llm"] == "tiny-qwen3" for r in rows)
    assert s["n"] == 6
