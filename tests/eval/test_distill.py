"""`armed distill` end to end on the CPU: scripted teachers → chat SFT → a real training step on a tiny Qwen3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armed.engines.base import ModelClients
from armed.eval.distill import TASK_LABELS, build_sft, finetune, run_distill, task_label
from tests.eval.conftest import factory_for, judge_llm, settings

NO_GEN = {"query_rewrite": False, "ner_llm": False, "standardise": False, "cheating_check": False}


def _votes() -> list[dict]:
    out = []
    for i in range(10):
        out.append({"id": f"v{i}", "query": f"感冒{i}", "product": {"name": f"感冒灵颗粒{i}"},
                    "gold": "highly_relevant", "label": ["highly_relevant", "irrelevant"][i % 2],
                    "agreement": "unanimous" if i < 7 else "split"})
    return out


def test_build_sft_unanimous_only_and_chat_format() -> None:
    train, ev = build_sft(_votes(), "relevance", eval_fraction=0.3, seed=0)
    assert len(ev) == 3 and not {r["id"] for r in train} & {r["id"] for r in ev}
    assert all(r["agreement"] == "unanimous" for r in train)
    roles = [m["role"] for m in train[0]["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert train[0]["messages"][-1]["content"] in TASK_LABELS["relevance"]
    train_all, _ = build_sft(_votes(), "relevance", include_split=True, eval_fraction=0.3, seed=0)
    assert len(train_all) == 7 and len(train) < 7
    cons, _ = build_sft(_votes(), "consistency", eval_fraction=0.3, seed=0)
    assert {r["messages"][-1]["content"] for r in cons} <= {"consistent", "inconsistent"}
    assert task_label("consistency", "less_relevant") == "inconsistent"


@pytest.mark.slow
def test_finetune_lowers_the_loss_with_lora(tiny_checkpoints, tmp_path: Path) -> None:
    train, _ = build_sft(_votes(), "relevance", eval_fraction=0.3, seed=0)
    log = finetune(tiny_checkpoints.causal, train, tmp_path / "lora", steps=12, lr=5e-3, batch_size=4, lora=True)
    assert log["losses"][-1] < log["losses"][0]
    assert (tmp_path / "lora" / "config.json").exists()


@pytest.mark.slow
async def test_distill_end_to_end(armed_set: Path, tmp_path: Path, kb, tiny_checkpoints) -> None:
    llm = judge_llm(lambda text: "weakly_relevant" if "Be strict" not in text else "irrelevant")
    s = await run_distill(
        f"armed:{armed_set}", tmp_path, str(tiny_checkpoints.causal), task="relevance",
        teachers=["prompt=default", "prompt=zh", "prompt=default,weight=0.8"], steps=15, lr=3e-3, batch_size=4,
        eval_fraction=0.3, settings=settings(stages=NO_GEN), factory=factory_for(kb, ModelClients(llm=llm)),
        progress=False,
    )
    losses = s["train"]["losses"]
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # a real training run that lowers the loss
    train_rows = [json.loads(x) for x in (tmp_path / "sft_train.jsonl").read_text().splitlines()]
    assert train_rows and all(r["agreement"] == "unanimous" for r in train_rows)
    assert train_rows[0]["messages"][-1]["role"] == "assistant"
    e = s["evaluation"]
    assert e["student_vs_teacher"]["n"] == s["eval_rows"] > 0 and e["student_vs_teacher"]["failed"] == 0
    assert e["student_vs_gold"]["accuracy"] is not None and e["teacher_vs_gold"]["accuracy"] is not None
    assert "student_table4_vs_gold" in e
    assert (tmp_path / "student" / "config.json").exists() and (tmp_path / "distill.md").exists()
    md = (tmp_path / "distill.md").read_text()
    assert "student vs teacher" in md and "teacher vs gold" in md
