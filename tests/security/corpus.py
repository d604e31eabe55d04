"""The injection corpus (injection_corpus.yaml, injection_heldout.yaml) expanded into variants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "injection_corpus.yaml"
HELDOUT = HERE / "injection_heldout.yaml"
HELDOUT_2 = HERE / "injection_heldout_2.yaml"

_REP = re.compile(r"\{rep:(\d+):((?:[^{}]|\{(?:name|query)\})*)\}")


@dataclass(frozen=True)
class BasePair:
    id: str
    query: str
    name: str
    source: str


@dataclass(frozen=True)
class Variant:
    family: str
    template: str
    base: BasePair
    name: str  # the product name with the injected text

    @property
    def id(self) -> str:
        return f"{self.family}/{self.base.id}/{self.template[:24]!r}"


def render(template: str, base: BasePair) -> str:
    text = _REP.sub(lambda m: m.group(2) * int(m.group(1)), template)
    return text.replace("{name}", base.name).replace("{query}", base.query)


def base_pairs(path: Path = CORPUS) -> list[BasePair]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [BasePair(b["id"], str(b["query"]), str(b["name"]), b["source"]) for b in data["base_pairs"]]


def variants(path: Path = CORPUS, bases: list[BasePair] | None = None) -> list[Variant]:
    """Every template of every family, each on `per_template` base pairs picked by a fixed rotation over the file's
    templates (so consecutive templates land on different pairs and every base pair is used)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    bases = bases or base_pairs(CORPUS)
    k = int(data["per_template"])
    out: list[Variant] = []
    g = 0
    for family, spec in data["families"].items():
        for template in spec["templates"]:
            for j in range(k):
                base = bases[(g * k + j) % len(bases)]
                out.append(Variant(family, template, base, render(template, base)))
            g += 1
    return out


def families(path: Path = CORPUS) -> list[str]:
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["families"])
