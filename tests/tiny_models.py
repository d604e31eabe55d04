"""Session fixtures' helpers: the tiny Qwen checkpoints, generated once per test session (never committed)."""

from __future__ import annotations

import io
from pathlib import Path

from armed.engines.tiny import TinyCheckpoints, make_tiny_checkpoints

CLASSIFIER_LABELS = ("relevant", "partial", "irrelevant")


def generate(root: Path) -> TinyCheckpoints:
    return make_tiny_checkpoints(root, labels=CLASSIFIER_LABELS)


def png_bytes(size: tuple[int, int] = (120, 90), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small solid-colour PNG, for vision-language inputs."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()
