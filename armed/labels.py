"""The label vocabularies every layer speaks: Algorithm 1's four levels, the benchmark's three, and the consistency
role's two labels.

Ground floor: this module imports nothing of armed's, so settings, the role table, the domain models and the engines
can all name a label without importing one another.
"""

from __future__ import annotations

import enum


class RelevanceLevel(enum.StrEnum):
    """Algorithm 1's four levels, best first."""

    highly = "highly_relevant"
    moderately = "moderately_relevant"
    weakly = "weakly_relevant"
    irrelevant = "irrelevant"

    @property
    def rank(self) -> int:
        """3 for highly down to 0 for irrelevant: higher is more relevant."""
        return {"highly_relevant": 3, "moderately_relevant": 2, "weakly_relevant": 1, "irrelevant": 0}[self.value]

    @classmethod
    def from_rank(cls, rank: int) -> RelevanceLevel:
        return {3: cls.highly, 2: cls.moderately, 1: cls.weakly, 0: cls.irrelevant}[rank]

    def cap(self, ceiling: RelevanceLevel) -> RelevanceLevel:
        """This level, lowered to `ceiling` if it is above it."""
        return self if self.rank <= ceiling.rank else ceiling

    def to_benchmark(self) -> BenchmarkLevel:
        return LEVEL_TO_BENCHMARK[self]


class BenchmarkLevel(enum.StrEnum):
    """The benchmark's three levels (the paper's Table 4 columns)."""

    highly = "highly_relevant"
    less = "less_relevant"
    irrelevant = "irrelevant"


# The one documented mapping between the two scales: moderately and weakly relevant products are both "less
# relevant" in the benchmark; the two ends map to themselves.
LEVEL_TO_BENCHMARK: dict[RelevanceLevel, BenchmarkLevel] = {
    RelevanceLevel.highly: BenchmarkLevel.highly,
    RelevanceLevel.moderately: BenchmarkLevel.less,
    RelevanceLevel.weakly: BenchmarkLevel.less,
    RelevanceLevel.irrelevant: BenchmarkLevel.irrelevant,
}


# The consistency role's contract, shared by serving (armed/pipeline/query_side.py, both pair-classifier engines, the
# profiles' `models.consistency.engine.labels`) and training (`armed distill --task consistency --student
# classifier:`, armed/student/consistency.py). The pipeline reads P(labels[0]) as "this document is about what the
# user meant", so "consistent" comes first.
CONSISTENCY_LABELS: tuple[str, ...] = ("consistent", "inconsistent")
