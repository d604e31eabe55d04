"""Metric code against hand-computed confusion matrices (loss rate and w/o-FAILED included)."""

from __future__ import annotations

import pytest

from armed.domain import BenchmarkLevel as B
from armed.eval import metrics as M

H, L, X = B.highly, B.less, B.irrelevant


def test_confusion_by_hand() -> None:
    gold = [H, H, H, L, L, X, X, X, H, L]
    pred = [H, L, None, L, X, X, X, H, H, None]
    # rows gold H/L/X, columns pred H/L/X/FAILED
    assert M.confusion(gold, pred) == [
        [2, 1, 0, 1],
        [0, 1, 1, 1],
        [1, 0, 2, 0],
    ]


def test_table4_figures_by_hand() -> None:
    gold = [H, H, H, L, L, X, X, X, H, L]
    pred = [H, L, None, L, X, X, X, H, H, None]
    m = M.compute(gold, pred)
    assert m["n"] == 10 and m["failed"] == 2
    assert m["loss_rate"] == pytest.approx(0.2)
    # correct: H,H (2) + L (1) + X,X (2) = 5
    assert m["accuracy_all"] == pytest.approx(5 / 10)  # FAILED count as wrong
    assert m["accuracy_wo_failed"] == pytest.approx(5 / 8)  # FAILED left out
    # highly: TP 2, predicted 3 (2 gold-H + 1 gold-X), gold 4 (one of them FAILED)
    assert m["highly_precision"] == pytest.approx(2 / 3)
    assert m["highly_recall"] == pytest.approx(2 / 4)
    assert m["highly_f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    # less: TP 1, predicted 2, gold 3
    assert m["less_precision"] == pytest.approx(1 / 2)
    assert m["less_recall"] == pytest.approx(1 / 3)
    # irrelevant: TP 2, predicted 3, gold 3
    assert m["irrelevant_precision"] == pytest.approx(2 / 3)
    assert m["irrelevant_recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((m["highly_f1"] + m["less_f1"] + m["irrelevant_f1"]) / 3)
    assert m["confusion"]["columns_pred"][-1] == "FAILED"


def test_all_failed_and_zero_divisions() -> None:
    m = M.compute([H, L], [None, None])
    assert m["loss_rate"] == 1.0 and m["accuracy_all"] == 0.0 and m["accuracy_wo_failed"] == 0.0
    assert m["highly_precision"] == 0.0 and m["macro_f1"] == 0.0


def test_unlabelled_ignored_hard_and_categories() -> None:
    gold = [H, None, L, X, X]
    pred = [H, H, X, X, None]
    m = M.compute(gold, pred, hard=[True, True, True, False, True], categories=["a", "a", "b", "b", "a"])
    assert m["n"] == 4
    # HARD: ids 0, 2, 4 labelled → H✓, L✗, X FAILED → 1/3
    assert m["accuracy_hard"] == pytest.approx(1 / 3) and m["n_hard"] == 3
    cat = m["per_category"]
    assert cat["a"]["n"] == 2 and cat["a"]["accuracy_all"] == 0.5 and cat["a"]["loss_rate"] == 0.5
    assert cat["a"]["accuracy_wo_failed"] == 1.0
    assert cat["b"]["n"] == 2 and cat["b"]["accuracy_all"] == 0.5


def test_table4_markdown() -> None:
    m = M.compute([H, L, X], [H, L, None], hard=[True, True, True])
    md = M.table4([("x", m)])
    assert "loss rate" in md and "acc w/o FAILED" in md and "| x | 33.3 |" in md
