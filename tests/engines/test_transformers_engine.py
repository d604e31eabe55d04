"""The transformers engines on tiny random Qwen checkpoints: real architectures and tokenizer, noise weights."""

from __future__ import annotations

import math

import pytest

from armed.engines.base import ChatMessage, ChatModel, Embedder, PairClassifier
from armed.engines.tiny import TinyCheckpoints
from armed.engines.transformers_engine import (
    TransformersChatModel,
    TransformersEmbedder,
    TransformersPairClassifier,
    TransformersVisionChatModel,
    _continuation_ids,
    score_continuations,
    score_continuations_cached,
    strip_think,
)
from tests.tiny_models import CLASSIFIER_LABELS, png_bytes

CHOICES = ["相关", "不相关", "部分相关"]
MESSAGES = [
    ChatMessage("system", "你是医药搜索相关性评审。"),
    ChatMessage("user", "查询：感冒发烧\n商品：布洛芬缓释胶囊"),
]


@pytest.fixture(scope="module")
def chat(tiny_checkpoints: TinyCheckpoints) -> TransformersChatModel:
    return TransformersChatModel(tiny_checkpoints.causal)


@pytest.fixture(scope="module")
def vl(tiny_checkpoints: TinyCheckpoints) -> TransformersVisionChatModel:
    return TransformersVisionChatModel(tiny_checkpoints.vl)


def test_strip_think() -> None:
    assert strip_think("<think>\nhm\n</think>\n\n相关") == "相关"
    assert strip_think("相关<think>unfinished") == "相关"


async def test_choose_returns_a_choice_with_a_distribution(chat: TransformersChatModel) -> None:
    assert isinstance(chat, ChatModel)
    assert chat.model_id == "tiny-qwen3"
    result = await chat.choose(MESSAGES, CHOICES)
    assert result.label in CHOICES
    assert set(result.probabilities) == set(CHOICES)
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-6)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.prompt_tokens == len(chat.prompt_ids(MESSAGES)) and result.output_tokens >= 2


def test_batched_scores_equal_single_rows(chat: TransformersChatModel) -> None:
    """Left padding must not change a choice's score (padding leaking into attention or positions would)."""
    prompt = chat.prompt_ids(MESSAGES)
    conts = _continuation_ids(chat.tokenizer, ["相关", "这个商品与查询部分相关"])
    batched = score_continuations(chat.model, prompt, conts, chat._pad_id)
    single = [score_continuations(chat.model, prompt, [c], chat._pad_id)[0] for c in conts]
    assert batched == pytest.approx(single, abs=1e-3)
    assert batched[0] != pytest.approx(batched[1], abs=1e-3)


def test_prefix_cached_scores_equal_batched(chat: TransformersChatModel) -> None:
    """`choose` runs the prompt once into a KV cache; the scores must be the batched ones."""
    prompt = chat.prompt_ids(MESSAGES)
    conts = _continuation_ids(chat.tokenizer, ["相关", "这个商品与查询部分相关", "不"])
    batched = score_continuations(chat.model, prompt, conts, chat._pad_id)
    cached = score_continuations_cached(chat.model, prompt, conts)
    assert cached == pytest.approx(batched, abs=1e-3)


async def test_prompt_disables_thinking(chat: TransformersChatModel) -> None:
    text = chat.tokenizer.decode(chat.prompt_ids(MESSAGES))
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


async def test_choose_rejects_empty_choices(chat: TransformersChatModel) -> None:
    with pytest.raises(ValueError):
        await chat.choose(MESSAGES, [])


async def test_generate_is_greedy_text(chat: TransformersChatModel) -> None:
    import torch

    out = await chat.generate(MESSAGES, max_tokens=6)
    assert isinstance(out, str)
    prompt = chat.prompt_ids(MESSAGES)
    ids = torch.tensor([prompt])
    ref = chat.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    assert out == strip_think(chat.tokenizer.decode(ref[0, len(prompt) :], skip_special_tokens=True))
    assert out == await chat.generate(MESSAGES, max_tokens=6)


async def test_text_model_rejects_images(chat: TransformersChatModel) -> None:
    with pytest.raises(ValueError, match="text-only"):
        await chat.choose([ChatMessage("user", "x", images=(png_bytes(),))], CHOICES)


@pytest.mark.parametrize("pooling", ["last", "mean"])
async def test_embedder_unit_vectors(tiny_checkpoints: TinyCheckpoints, pooling: str) -> None:
    emb = TransformersEmbedder(tiny_checkpoints.embedder, pooling=pooling, batch_size=2)
    assert isinstance(emb, Embedder)
    texts = ["感冒发烧", "布洛芬缓释胶囊 0.3g*20粒", "眼药水", "a"]
    vecs = await emb.embed(texts)
    assert len(vecs) == 4 and all(len(v) == 64 for v in vecs)
    assert all(math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-5) for v in vecs)
    alone = await emb.embed([texts[1]])  # batching and padding must not change a vector
    assert alone[0] == pytest.approx(vecs[1], abs=1e-4)
    assert vecs[0] != pytest.approx(vecs[2], abs=1e-3)
    assert await emb.embed([]) == []
    # usage: the real tokenizer's count of what the model reads (Qwen BPE: "a" is one token), pooling token included
    extra = 1 if pooling == "last" else 0
    assert await emb.count_tokens(["a"]) == 1 + extra
    assert await emb.count_tokens(texts) == sum(len(emb.tokenizer(t, add_special_tokens=False)["input_ids"]) + extra
                                          for t in texts)


async def test_pair_classifier_distributions(tiny_checkpoints: TinyCheckpoints) -> None:
    clf = TransformersPairClassifier(tiny_checkpoints.classifier, batch_size=2)
    assert isinstance(clf, PairClassifier)
    assert clf.labels == CLASSIFIER_LABELS  # read from the checkpoint's id2label
    pairs = [("感冒发烧", "布洛芬"), ("眼睛干涩", "玻璃酸钠滴眼液 很长的说明 " * 5), ("a", "b")]
    dists = await clf.classify(pairs)
    assert len(dists) == 3
    for d in dists:
        assert tuple(d) == CLASSIFIER_LABELS
        assert math.isclose(sum(d.values()), 1.0, abs_tol=1e-5)
    alone = await clf.classify([pairs[0]])
    assert list(alone[0].values()) == pytest.approx(list(dists[0].values()), abs=1e-4)


def test_pair_classifier_label_count_must_match(tiny_checkpoints: TinyCheckpoints) -> None:
    with pytest.raises(ValueError, match="3 outputs"):
        TransformersPairClassifier(tiny_checkpoints.classifier, labels=["consistent", "inconsistent"])


async def test_vl_choose_with_image(vl: TransformersVisionChatModel) -> None:
    image = png_bytes()
    msgs = [ChatMessage("user", "商品名：布洛芬。名称与图片是否一致？", images=(image,))]
    prompt, vision = vl.prepare(msgs)
    grid = vision["image_grid_thw"][0]
    assert prompt.count(151655) == int(grid.prod()) // 4  # <|image_pad|> expanded per merged patch
    result = await vl.choose(msgs, ["一致", "不一致"])
    # a tiny random model: which label wins is arbitrary, but it must be the one its distribution ranks first
    assert list(result.probabilities) == ["一致", "不一致"]
    assert result.label == max(result.probabilities, key=result.probabilities.__getitem__)
    assert math.isclose(sum(result.probabilities.values()), 1.0, abs_tol=1e-6)
    other = await vl.choose(
        [ChatMessage("user", msgs[0].content, images=(png_bytes(color=(10, 10, 240)),))], ["一致", "不一致"]
    )
    assert other.probabilities != result.probabilities  # the image reaches the model
    assert isinstance(await vl.generate(msgs, max_tokens=4), str)


async def test_vl_text_only_and_broken_image(vl: TransformersVisionChatModel) -> None:
    result = await vl.choose([ChatMessage("user", "只有文字")], ["是", "否"])
    assert list(result.probabilities) == ["是", "否"]
    assert result.label == max(result.probabilities, key=result.probabilities.__getitem__)
    with pytest.raises(ValueError, match=r"image 1 of message 0 .*not a readable image"):
        await vl.choose([ChatMessage("user", "x", images=(png_bytes(), b"\x89PNG broken"))], ["是", "否"])


def _half_transparent_png(size: tuple[int, int] = (120, 90)) -> bytes:
    """Left half opaque red, right half fully transparent over black (what many encoders store under alpha 0)."""
    import io

    from PIL import Image

    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.paste((200, 30, 30, 255), (0, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_vl_inputs_put_transparency_on_white_in_both_paths(vl: TransformersVisionChatModel) -> None:
    """The Qwen-VL family's preparation (qwen-vl-utils' to_rgb; vLLM's loader for URLs): transparent pixels are
    white, not the black stored under them, and the transformers and the vLLM engines hand the model the same
    pixels."""
    import io

    import torch
    from PIL import Image

    from armed.engines.vllm_engine import VLLMChatModel

    def msgs(data: bytes) -> list[ChatMessage]:
        return [ChatMessage("user", "名称与图片是否一致？", images=(data,))]

    white = io.BytesIO()
    expected = Image.new("RGB", (120, 90), (255, 255, 255))
    expected.paste((200, 30, 30), (0, 0, 60, 90))
    expected.save(white, "PNG")
    _, seen = vl.prepare(msgs(_half_transparent_png()))
    _, flat = vl.prepare(msgs(white.getvalue()))
    assert torch.equal(seen["pixel_values"], flat["pixel_values"])
    _, dropped = vl.prepare(msgs(png_bytes(color=(0, 0, 0))))
    assert not torch.equal(seen["pixel_values"], dropped["pixel_values"])
    # the vLLM engine's multimodal prompt (built without an engine: only its tokenizer is read)
    engine = object.__new__(VLLMChatModel)
    engine.tokenizer = vl.tokenizer
    prompt = engine.prompt(msgs(_half_transparent_png()))
    (image,) = prompt["multi_modal_data"]["image"]
    assert image.mode == "RGB" and image.getpixel((10, 10)) == (200, 30, 30) and image.getpixel((100, 10)) == (255,) * 3
    assert list(image.getdata()) == list(expected.getdata())
    assert prompt["prompt"].count("<|image_pad|>") == 1  # vLLM's processor expands the one placeholder
