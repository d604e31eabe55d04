"""Therapeutic areas: which body system an indication belongs to, and when two uses are entirely different.

The efficacy lexicon (kb.yaml's efficacy_groups) only asserts "entirely different" between curated groups; most
symptoms a shopper types (尿血, 肠炎, 骨蒸劳热) are free terms from the sources, so the guideline's irrelevant.efficacy
had no evidence for them. The seed's `therapeutic_areas` table (schema.TherapeuticAreas) reads an area from an
indication's words; two sides whose every area pair is listed as disjoint have entirely different uses. One table:
the pharmacy benchmark's generator reads the same one (armed/eval/pharmacy.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from armed.knowledge.schema import TherapeuticAreas


class AreaTable:
    """The seed's therapeutic-area table, ready to answer."""

    def __init__(self, table: TherapeuticAreas | None) -> None:
        self.keywords: dict[str, tuple[str, ...]] = (
            {a: tuple(ws) for a, ws in table.keywords.items()} if table else {})
        self.disjoint: frozenset[frozenset[str]] = frozenset(
            frozenset(p) for p in (table.disjoint if table else ()))
        self.unknown_names: tuple[str, ...] = tuple(table.unknown_names) if table else ()
        self.categories: dict[str, tuple[str, ...]] = (
            {c: tuple(a) for c, a in table.categories.items()} if table else {})

    def text_areas(self, text: str) -> set[str]:
        """Every area one of whose words the text holds."""
        return {area for area, words in self.keywords.items() if any(w in text for w in words)}

    def category_areas(self, categories: Iterable[str]) -> set[str]:
        """The areas the drugs of these categories treat (the table's `categories`, never their names' words)."""
        return {a for c in categories for a in self.categories.get(c, ())}

    def spans_areas(self, name: str) -> bool:
        """A drug whose uses span areas (or are not its group's: 激素, 阿司匹林): it has no area."""
        return any(k in name for k in self.unknown_names)

    def disjoint_areas(self, a: Iterable[str], b: Iterable[str]) -> bool:
        """Every area of one is listed as disjoint from every area of the other (both non-empty)."""
        a, b = set(a), set(b)
        return bool(a) and bool(b) and all(frozenset((x, y)) in self.disjoint for x in a for y in b)
