"""Numpy-only helpers shared by the student's training code here and the GPU training script (which has no Ray or
pydantic): the four levels folded into the benchmark's three bands, the band macro-F1, a tempered softmax."""

from __future__ import annotations

import numpy as np


def to_benchmark(probs: np.ndarray) -> np.ndarray:
    """(n, 4) level probabilities → (n, 3) benchmark probabilities (moderately + weakly → less)."""
    return np.stack([probs[:, 0], probs[:, 1] + probs[:, 2], probs[:, 3]], axis=1)


def macro_f1_3(probs4: np.ndarray, gold4: np.ndarray) -> float:
    """Macro-F1 over the three benchmark levels, predicted by `data.decide_level`'s band rule."""
    return macro_f1(to_benchmark(probs4), to_benchmark(gold4))


def macro_f1(probs: np.ndarray, gold: np.ndarray) -> float:
    """Macro-F1 of the argmax over the classes (probs and gold (n, k); gold one-hot or soft)."""
    pred, gold_idx = probs.argmax(axis=1), gold.argmax(axis=1)
    f1s = []
    for c in range(probs.shape[1]):
        tp = float(np.sum((pred == c) & (gold_idx == c)))
        fp = float(np.sum((pred == c) & (gold_idx != c)))
        fn = float(np.sum((pred != c) & (gold_idx == c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
