"""Pipeline fixtures: the packaged knowledge base (real) and model doubles at the engine boundary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from armed.engines.base import ModelClients
from armed.knowledge.base import KnowledgeBase
from armed.pipeline.dag import Pipeline
from armed.settings import ArmedSettings

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


def make_pipeline(kb: KnowledgeBase, clients: ModelClients | None = None, **overrides: object) -> Pipeline:
    """A pipeline over the real knowledge base; `overrides` are nested settings, e.g. stages={'search': False}."""
    return Pipeline(ArmedSettings(**overrides), kb, clients or ModelClients())


def label_image(lines: list[str], size: tuple[int, int] = (640, 220)) -> bytes:
    """A product label drawn with a CJK font (skips the test when the machine has none)."""
    if not CJK_FONT.exists():
        pytest.skip("no CJK font (Debian fonts-wqy-microhei); .ci/run installs it")
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(CJK_FONT), 40)
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((20, 25 + 80 * i), line, fill="black", font=font)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def kb_with_drugs(folder: Path, *names: str) -> KnowledgeBase:
    """The seed plus a drug-dicts source listing `names` (a drug.txt written in `folder`): names the seed lacks."""
    (folder / "drug.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return KnowledgeBase.load(sources=[f"drug-dicts:{folder}"])
