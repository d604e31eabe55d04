"""Benchmark inputs: armed's own JSONL format, adapters for the public KUAKE medical-search sets, and the pharmacy
benchmark built from the public drug lists (armed/eval/pharmacy.py).

Every row becomes a `BenchItem` whose gold label is on the benchmark's three levels; each format carries its
documented mapping (`LABEL_MAPPINGS`), which every report prints next to its figures.

armed JSONL, one object a line:
    {"id"?: str, "query": str, "product": {"name": str, "images"?: [...], "cpv"?: {...}, "category"?: str}
     | "product_name": str, "label": "highly_relevant" | "less_relevant" | "irrelevant"
     | "moderately_relevant" | "weakly_relevant", "category"?: str}
KUAKE-QTR (CBLUE): JSON array of {id, query, title, label "0".."3"}; the title is the "product" side.
KUAKE-QQR (CBLUE): JSON array of {id, query1, query2, label "0".."2"}; query2 is the "product" side.
pharmacy (armed/eval/pharmacy.py, `armed eval pharmacy`): JSONL, one object a line:
    {"id": str, "query": str, "product": {"name": str}, "label": one of the four levels, "clause": a clause id of
     armed/guideline.py whose level is the label, "query_type": one of QUERY_TYPES, "product_category": one of
     PRODUCT_CATEGORIES, "common_name": str, "split": "tune" | "report", "source"?: str, "note"?: str}
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armed.domain import LEVEL_TO_BENCHMARK, BenchmarkLevel, RelevanceLevel
from armed.errors import InputError
from armed.guideline import CLAUSE, PRODUCT_CATEGORIES, QUERY_TYPES
from armed.images import local_images_to_data

FORMATS = ("armed", "kuake-qtr", "kuake-qqr", "pharmacy")
PHARMACY_SPLITS = ("tune", "report")

_ARMED_LABELS: dict[str, BenchmarkLevel] = {b.value: b for b in BenchmarkLevel}
_ARMED_LABELS.update({r.value: LEVEL_TO_BENCHMARK[r] for r in RelevanceLevel})

# The documented mapping of each format's raw labels to the three benchmark levels.
LABEL_MAPPINGS: dict[str, dict[str, BenchmarkLevel]] = {
    "armed": _ARMED_LABELS,
    "kuake-qtr": {
        "3": BenchmarkLevel.highly,
        "2": BenchmarkLevel.less,
        "1": BenchmarkLevel.less,
        "0": BenchmarkLevel.irrelevant,
    },
    "kuake-qqr": {"2": BenchmarkLevel.highly, "1": BenchmarkLevel.less, "0": BenchmarkLevel.irrelevant},
    "pharmacy": {r.value: LEVEL_TO_BENCHMARK[r] for r in RelevanceLevel},
}
MAPPING_TEXT = {
    "armed": "labels are armed levels; moderately and weakly relevant → less relevant",
    "kuake-qtr": "KUAKE-QTR 3 → highly relevant; 2, 1 → less relevant; 0 → irrelevant",
    "kuake-qqr": "KUAKE-QQR 2 → highly relevant; 1 → less relevant; 0 → irrelevant",
    "pharmacy": "pharmacy labels are the four guideline levels, each its clause's level (by construction, not "
                "annotated); moderately and weakly relevant → less relevant",
}


@dataclass(frozen=True)
class BenchItem:
    """One labelled pair. `product` is what `Pipeline.judge` accepts (at least {'name': ...})."""

    id: str
    query: str
    product: dict[str, Any]
    label: BenchmarkLevel | None
    raw_label: str | None = None
    category: str | None = None
    query_type: str | None = None  # pharmacy: the kind of pair (armed.guideline.QUERY_TYPES)
    clause: str | None = None  # pharmacy: the guideline clause that gives the label

    @property
    def product_name(self) -> str:
        return str(self.product.get("name", ""))


@dataclass
class Dataset:
    format: str
    path: Path
    items: list[BenchItem]
    sha256: str
    total_rows: int
    sample: dict[str, Any] = field(default_factory=dict)

    @property
    def mapping(self) -> dict[str, str]:
        return {k: v.value for k, v in LABEL_MAPPINGS[self.format].items()}

    @property
    def mapping_text(self) -> str:
        return MAPPING_TEXT[self.format]

    @property
    def name(self) -> str:
        return f"{self.format}:{self.path.name}"


def shared_data_dir(repo_root: Path | None = None) -> Path:
    """`$ARMED_SHARED_DATA`, else `../shared/data` next to the repository root."""
    env = os.environ.get("ARMED_SHARED_DATA")
    if env:
        return Path(env)
    root = repo_root or Path(__file__).resolve().parents[2]
    return root.parent / "shared" / "data"


def parse_spec(spec: str) -> tuple[str, Path]:
    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in FORMATS or not path:
        raise InputError("--dataset", f"{spec!r} is not FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    return fmt, Path(path)


def _map_label(fmt: str, raw: Any, where: str) -> BenchmarkLevel:
    key = str(raw).strip()
    try:
        return LABEL_MAPPINGS[fmt][key]
    except KeyError:
        known = ", ".join(LABEL_MAPPINGS[fmt])
        raise InputError(f"{where}.label", f"{key!r} is not a {fmt} label ({known})") from None


def json_rows(
    path: Path, where: str = "line {n}", field: str | None = None
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, where, row) of each non-blank line of a JSON-lines file, `where` formatted with the line's
    number `n` and the `path`. A line that is not a JSON object is an InputError naming its line: `where` is the
    error's field, or, given a `field` (a command-line option), it leads the message."""
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        at = where.format(n=n, path=path)
        try:
            row = json.loads(raw)
        except ValueError as exc:
            problem = f"not JSON: {exc}"
        else:
            if isinstance(row, dict):
                yield n, at, row
                continue
            problem = f"expected an object, not a JSON {type(row).__name__}"
        raise InputError(field, f"{at}: {problem}") if field else InputError(at, problem)


def _read_armed(path: Path) -> list[BenchItem]:
    items = []
    for n, where, row in json_rows(path):
        query = row.get("query")
        if not isinstance(query, str):
            raise InputError(f"{where}.query", "missing or not text")
        product = row.get("product")
        if product is None and isinstance(row.get("product_name"), str):
            product = {"name": row["product_name"]}
        if isinstance(product, str):
            product = {"name": product}
        if not isinstance(product, dict) or not isinstance(product.get("name"), str):
            raise InputError(f"{where}.product", "give product: {name, ...} or product_name")
        if product.get("images"):  # image paths are the dataset's own, relative to it: read here, into bytes
            product = {**product, "images": local_images_to_data(product["images"], path.parent, None,
                                                                 f"{where}.product.images")}
        label = row.get("label")
        gold = _map_label("armed", label, where) if label is not None else None
        category = row.get("category") or product.get("category")
        items.append(
            BenchItem(
                id=str(row.get("id") or f"line:{n}"),
                query=query,
                product=dict(product),
                label=gold,
                raw_label=None if label is None else str(label),
                category=str(category) if category else None,
            )
        )
    return items


def _text_field(row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}.{key}", "missing or not text")
    return value


def read_pharmacy(path: Path) -> list[dict[str, Any]]:
    """The rows of a pharmacy benchmark file, each checked (its label is its clause's level); an InputError names
    the line and the field."""
    rows = []
    for _, where, row in json_rows(path):
        for key in ("id", "query", "label", "clause", "query_type", "product_category", "common_name", "split"):
            _text_field(row, key, where)
        product = row.get("product")
        if not isinstance(product, dict) or not isinstance(product.get("name"), str) or not product["name"].strip():
            raise InputError(f"{where}.product", "give product: {name, ...}")
        label, clause_id = row["label"], row["clause"]
        if label not in LABEL_MAPPINGS["pharmacy"]:
            raise InputError(f"{where}.label", f"{label!r} is not a pharmacy label "
                                               f"({', '.join(LABEL_MAPPINGS['pharmacy'])})")
        if clause_id not in CLAUSE:
            raise InputError(f"{where}.clause", f"{clause_id!r} is not a clause of armed/guideline.py "
                                                f"({', '.join(CLAUSE)})")
        if CLAUSE[clause_id].level.value != label:
            raise InputError(f"{where}.label", f"{label!r} is not the level of clause {clause_id!r} "
                                               f"({CLAUSE[clause_id].level.value})")
        if row["query_type"] not in QUERY_TYPES:
            raise InputError(f"{where}.query_type", f"{row['query_type']!r} is not one of {', '.join(QUERY_TYPES)}")
        if row["product_category"] not in PRODUCT_CATEGORIES:
            raise InputError(f"{where}.product_category",
                             f"{row['product_category']!r} is not one of {', '.join(PRODUCT_CATEGORIES)}")
        if row["split"] not in PHARMACY_SPLITS:
            raise InputError(f"{where}.split", f"{row['split']!r} is not tune or report")
        rows.append(row)
    return rows


def _read_pharmacy(path: Path) -> list[BenchItem]:
    return [
        BenchItem(
            id=row["id"],
            query=row["query"],
            product={"name": row["product"]["name"]},
            label=LABEL_MAPPINGS["pharmacy"][row["label"]],
            raw_label=row["label"],
            category=row["product_category"],
            query_type=row["query_type"],
            clause=row["clause"],
        )
        for row in read_pharmacy(path)
    ]


def _read_kuake(path: Path, fmt: str) -> list[BenchItem]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError("--dataset", f"{path}: not JSON ({exc})") from None
    if not isinstance(rows, list):
        raise InputError("--dataset", f"{path}: expected a JSON array of rows")
    left, right = ("query", "title") if fmt == "kuake-qtr" else ("query1", "query2")
    items = []
    for i, row in enumerate(rows):
        where = f"row {i}"
        if not isinstance(row, dict) or not isinstance(row.get(left), str) or not isinstance(row.get(right), str):
            raise InputError(where, f"expected {{id, {left}, {right}, label}}")
        label = row.get("label")
        items.append(
            BenchItem(
                id=str(row.get("id") or f"row:{i}"),
                query=row[left],
                # KUAKE-QQR's second query is "the product" of a query-query pair: the student reads it as such.
                product={"name": row[right], **({"kind": "query"} if fmt == "kuake-qqr" else {})},
                label=_map_label(fmt, label, where) if label not in (None, "") else None,
                raw_label=None if label is None else str(label),
            )
        )
    return items


def sample_items(items: Sequence[BenchItem], limit: int | None, seed: int) -> list[BenchItem]:
    """A seeded random sample of `limit` items, kept in file order (all items when limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise InputError("--limit", "must be at least 1")
    picked = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in picked]


def load_dataset(spec: str, limit: int | None = None, seed: int = 0) -> Dataset:
    fmt, path = parse_spec(spec)
    if not path.is_file():
        raise InputError("--dataset", f"{path} is not a file")
    data = path.read_bytes()
    if fmt == "armed":
        items = _read_armed(path)
    elif fmt == "pharmacy":
        items = _read_pharmacy(path)
    else:
        items = _read_kuake(path, fmt)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise InputError("--dataset", f"{path}: ids are not unique")
    chosen = sample_items(items, limit, seed)
    return Dataset(
        format=fmt,
        path=path,
        items=chosen,
        sha256=hashlib.sha256(data).hexdigest(),
        total_rows=len(items),
        sample={"limit": limit, "seed": seed, "n": len(chosen), "of": len(items)},
    )


def derive_category(kb: Any, item: BenchItem) -> str:
    """The item's category: its own when given; else the knowledge base's reading of the query.

    Knowledge-base reading: the first extracted (and drug-record-enriched) product category of the query; else
    its first efficacy group; else its first body region; else "unknown". A coarse but label-blind grouping
    (it reads only the query text), so per-category figures never peek at gold labels.
    """
    if item.category:
        return item.category
    ents = kb.enrich(kb.extract(item.query))
    if ents.category:
        return ents.category[0]
    groups = sorted(kb.efficacy_groups_of(ents.efficacy)) if ents.efficacy else []
    if groups:
        return groups[0]
    if ents.region:
        return ents.region[0]
    return "unknown"


def split_ids(ids: Sequence[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """A seeded split into (tune, test): `fraction` of the ids go to tune. Stable for a given id set."""
    if not 0 < fraction < 1:
        raise InputError("--tune-fraction", "must be between 0 and 1")
    order = sorted(ids)
    random.Random(f"split:{seed}").shuffle(order)
    k = round(len(order) * fraction)
    return set(order[:k]), set(order[k:])


def hard_subset(items: Sequence[BenchItem], seed: int, per_label: int | None = None) -> list[str]:
    """The HARD subset, by the paper's rule: short queries, long product names, balanced 1:1:1 over labels.

    Short: query length (characters) at most the set's median; long: product-name length at least the set's
    median. From the labelled items that are both, the same number is drawn from each of the three levels (the
    smallest level's count, or `per_label` when smaller) with a seeded RNG. Returns the ids, sorted.
    """
    labelled = [it for it in items if it.label is not None]
    if not labelled:
        return []
    q_med = sorted(len(it.query) for it in labelled)[len(labelled) // 2]
    n_med = sorted(len(it.product_name) for it in labelled)[len(labelled) // 2]
    pool: dict[BenchmarkLevel, list[str]] = {lvl: [] for lvl in BenchmarkLevel}
    for it in labelled:
        if len(it.query) <= q_med and len(it.product_name) >= n_med:
            pool[it.label].append(it.id)  # type: ignore[index]
    k = min(len(v) for v in pool.values())
    if per_label is not None:
        k = min(k, per_label)
    rng = random.Random(f"hard:{seed}")
    chosen: list[str] = []
    for lvl in BenchmarkLevel:
        chosen += rng.sample(sorted(pool[lvl]), k)
    return sorted(chosen)
