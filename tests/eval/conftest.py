"""Evaluation fixtures: tiny synthetic sets in tmp dirs, pipelines over the real knowledge base with doubles."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from armed.engines.base import ChatMessage, ModelClients
from armed.knowledge.base import KnowledgeBase
from armed.pipeline import prompts
from armed.pipeline.dag import Pipeline
from armed.settings import ArmedSettings
from armed_testing.scripted import ScriptedChatModel

REPO = Path(__file__).resolve().parents[2]

# (query, product name, label): deterministic branches decide some, the LLM judge the rest.
ROWS = [
    ("布洛芬", "布洛芬缓释胶囊 0.3g*24粒", "highly_relevant"),
    ("感冒药", "999感冒灵颗粒 10袋", "less_relevant"),
    ("退烧药 儿童", "美林 布洛芬混悬液 儿童退烧", "highly_relevant"),
    ("维生素c", "汤臣倍健 维生素C咀嚼片", "highly_relevant"),
    ("止咳糖浆", "板蓝根颗粒 清热解毒", "irrelevant"),
    ("避孕套", "杜蕾斯 避孕套 12只", "highly_relevant"),
    ("眼药水", "珍视明 滴眼液 缓解眼疲劳", "less_relevant"),
    ("胃药", "奥美拉唑肠溶胶囊 胃酸过多", "less_relevant"),
    ("钙片 孕妇", "钙尔奇 碳酸钙D3片 成人", "less_relevant"),
    ("口罩", "维生素B族片", "irrelevant"),
    ("创可贴", "云南白药 创可贴 100片", "highly_relevant"),
    ("降压药", "硝苯地平缓释片 高血压", "less_relevant"),
    ("牙膏", "布洛芬缓释胶囊", "irrelevant"),
    ("感冒灵", "感冒灵颗粒 999", "highly_relevant"),
    ("咳嗽 小孩", "小儿止咳糖浆 儿童咳嗽", "less_relevant"),
    ("皮炎平", "复方醋酸地塞米松乳膏 皮炎平", "highly_relevant"),
    ("洗发水", "阿莫西林胶囊 0.25g", "irrelevant"),
    ("头痛", "头孢克肟片 抗感染", "irrelevant"),
]


def write_armed(path: Path, rows: Sequence[tuple[str, str, str]] = ROWS) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i, (q, name, label) in enumerate(rows):
            fh.write(json.dumps({"id": f"r{i}", "query": q, "product": {"name": name}, "label": label},
                                ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def armed_set(tmp_path: Path) -> Path:
    return write_armed(tmp_path / "set.jsonl")


def judge_llm(rule: Callable[[str], str], model_id: str = "scripted-judge") -> ScriptedChatModel:
    """A scripted LLM: `rule(last user message)` answers the relevance judge; other choices get the first."""

    def answer(messages: Sequence[ChatMessage], choices: Sequence[str]) -> str:
        if tuple(choices) == prompts.JUDGE_CHOICES:
            return rule(messages[-1].content)
        return choices[0]

    return ScriptedChatModel(answer, model_id=model_id)


def factory_for(kb: KnowledgeBase, clients: ModelClients | None = None):
    def make(settings: ArmedSettings) -> Pipeline:
        return Pipeline(settings, kb, clients or ModelClients())

    return make


def settings(**overrides: object) -> ArmedSettings:
    """Settings that trust the LLM fully (so a scripted judge decides undecided pairs)."""
    base: dict[str, object] = {"judge": {"llm_weight": 1.0}}
    base.update(overrides)
    return ArmedSettings(**base)


def shared_data() -> Path | None:
    from armed.eval.datasets import shared_data_dir

    d = shared_data_dir(REPO) / "eval"
    return d if (d / "kuake-qtr-dev.json").is_file() else None
