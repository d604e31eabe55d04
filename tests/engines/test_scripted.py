"""The scripted doubles keep the protocols' promises, so pipeline tests built on them mean something."""

from __future__ import annotations

import asyncio
import math

import pytest

from armed.engines.base import ChatMessage, ChatModel, Embedder, ImageReader, PairClassifier, cosine
from armed_testing.scripted import (
    ScriptedChatModel,
    ScriptedEmbedder,
    ScriptedImageReader,
    ScriptedModelError,
    ScriptedPairClassifier,
)

CHOICES = ["相关", "不相关"]


async def test_chat_table_and_default() -> None:
    chat = ScriptedChatModel({"眼药水": "不相关"}, default="相关", generations={"改写": "感冒 退烧"})
    assert isinstance(chat, ChatModel)
    r = await chat.choose([ChatMessage("user", "查询：感冒 商品：眼药水")], CHOICES)
    assert r.label == "不相关" and r.probabilities["不相关"] == pytest.approx(0.9)
    assert math.isclose(sum(r.probabilities.values()), 1.0)
    assert (await chat.choose([ChatMessage("user", "布洛芬")], CHOICES)).label == "相关"
    assert await chat.generate([ChatMessage("user", "请改写")]) == "感冒 退烧"
    assert await chat.generate([ChatMessage("user", "别的")]) == ""
    assert [c[0] for c in chat.calls] == ["choose", "choose", "generate", "generate"]
    assert chat.calls[0][1][1] == CHOICES


async def test_chat_callable_and_distribution() -> None:
    chat = ScriptedChatModel(lambda msgs, choices: {"相关": 3.0, "不相关": 1.0})
    r = await chat.choose([ChatMessage("user", "x")], CHOICES)
    assert r.label == "相关" and r.probabilities == {"相关": 0.75, "不相关": 0.25}


async def test_chat_never_answers_outside_choices() -> None:
    chat = ScriptedChatModel({"x": "部分相关"})
    with pytest.raises(ValueError, match="not one of the choices"):
        await chat.choose([ChatMessage("user", "x")], CHOICES)


async def test_delay_and_failure() -> None:
    slow = ScriptedChatModel(default="相关", delay_s=0.5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow.choose([ChatMessage("user", "x")], CHOICES), timeout=0.05)
    broken = ScriptedChatModel(fail=True)
    with pytest.raises(ScriptedModelError):
        await broken.generate([ChatMessage("user", "x")])
    broken.fail = False
    assert await broken.generate([ChatMessage("user", "x")]) == ""
    with pytest.raises(ConnectionError):
        await ScriptedEmbedder(fail=ConnectionError).embed(["a"])


async def test_embedder_table_and_hash_similarity() -> None:
    emb = ScriptedEmbedder({"fixed": [1.0] + [0.0] * 63})
    assert isinstance(emb, Embedder)
    fixed, cold, cold_drug, eye = await emb.embed(["fixed", "感冒发烧", "感冒药 退烧", "眼药水"])
    assert fixed[0] == 1.0
    assert all(math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-9) for v in (cold, cold_drug, eye))
    assert cosine(cold, cold_drug) > cosine(cold, eye)
    assert (await emb.embed(["感冒发烧"]))[0] == cold  # deterministic


async def test_pair_classifier_rules() -> None:
    clf = ScriptedPairClassifier(table={("感冒", "眼药水"): "inconsistent"})
    assert isinstance(clf, PairClassifier)
    a, b = await clf.classify([("感冒", "眼药水"), ("感冒", "布洛芬")])
    assert max(a, key=a.get) == "inconsistent" and max(b, key=b.get) == "consistent"
    ruled = ScriptedPairClassifier(lambda q, d: {"consistent": 1.0} if q[0] in d else "inconsistent")
    same, other = await ruled.classify([("感冒", "感冒灵"), ("感冒", "眼药水")])
    assert same == {"consistent": 1.0, "inconsistent": 0.0} and other["inconsistent"] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        await ScriptedPairClassifier(lambda q, d: "maybe").classify([("a", "b")])


async def test_image_reader() -> None:
    ocr = ScriptedImageReader({b"img1": ["布洛芬缓释胶囊", "0.3g*20粒"]}, broken=[b"bad"])
    assert isinstance(ocr, ImageReader)
    assert await ocr.read(b"img1") == ["布洛芬缓释胶囊", "0.3g*20粒"]
    assert await ocr.read(b"other") == []
    with pytest.raises(ValueError):
        await ocr.read(b"bad")
    assert [c[1] for c in ocr.calls] == [b"img1", b"other", b"bad"]
