"""The lexical baseline every figure is read against: character overlap with two tuned thresholds.

score = share of the query's distinct characters (after normalisation) that also appear in the product name
(`armed.text.char_overlap`). score ≥ hi → highly relevant; lo ≤ score < hi → less relevant; else irrelevant.
The two thresholds are tuned on a *tuning* split only (grid over the observed scores, best macro-F1, ties to
the lower thresholds) and the baseline is reported on the disjoint held-out split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from armed.domain import BenchmarkLevel
from armed.eval.metrics import confusion, from_confusion
from armed.text import char_overlap


def score(query: str, name: str) -> float:
    return char_overlap(query, name)


@dataclass(frozen=True)
class LexicalBaseline:
    lo: float
    hi: float

    def predict_score(self, s: float) -> BenchmarkLevel:
        if s >= self.hi:
            return BenchmarkLevel.highly
        if s >= self.lo:
            return BenchmarkLevel.less
        return BenchmarkLevel.irrelevant

    def predict(self, query: str, name: str) -> BenchmarkLevel:
        return self.predict_score(score(query, name))

    @classmethod
    def tune(cls, pairs: Sequence[tuple[str, str]], gold: Sequence[BenchmarkLevel]) -> LexicalBaseline:
        """Thresholds maximising macro-F1 on (pairs, gold): every pair of candidate cut points is tried."""
        if not pairs:
            return cls(lo=0.5, hi=1.0)
        scores = [score(q, n) for q, n in pairs]
        # Candidate cuts: each distinct score (a cut at s puts s itself above), plus one above the maximum.
        cuts = [*sorted({round(s, 6) for s in scores}), 1.000001]
        if len(cuts) > 60:  # keep the grid small: quantiles of the scores
            step = len(cuts) / 60
            cuts = sorted({cuts[int(i * step)] for i in range(60)} | {cuts[-1]})
        best: tuple[float, float, float] | None = None
        for i, lo in enumerate(cuts):
            for hi in cuts[i:]:
                b = cls(lo=lo, hi=hi)
                m = from_confusion(confusion(gold, [b.predict_score(s) for s in scores]))
                key = float(m["macro_f1"])
                if best is None or key > best[0] + 1e-12:
                    best = (key, lo, hi)
        assert best is not None
        return cls(lo=best[1], hi=best[2])
