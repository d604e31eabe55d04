"""A pharmacy's own drug register / catalogue as a knowledge source (`register:FILE.jsonl` or `register:FILE.csv`).

The schema is documented in docs/knowledge-register.md (one row per product or registered drug); this module
validates it strictly: a misspelt column would otherwise drop a field silently and quietly change judgments, so
unknown keys are errors (columns prefixed `x_` are the exception: kept for the curator, ignored here), and every
error names the file, the line and the field.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# CSV cells hold lists separated by any of these (a JSONL file gives real arrays).
LIST_SEPARATORS = r"[|;；、]"
_LIST_FIELDS = ("efficacy", "category", "population", "contraindications", "ingredients", "synonyms")


class RegisterRow(BaseModel):
    """One registered drug / catalogue product. Only common_name is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default="", description="The pharmacy's id (SKU, approval number); the line number when empty.")
    common_name: str = Field(min_length=1, description="通用名, with or without its dosage form: 消栓通络片.")
    brand: str = Field(default="", description="Brand as products and queries write it: 康恩贝.")
    maker: str = Field(default="", description="Marketing-authorisation holder / maker: 浙江康恩贝制药股份有限公司.")
    trade_name: str = Field(default="", description="商品名 that means this drug: 芬必得.")
    dosage_form: str = Field(default="", description="剂型: 片剂, 胶囊, 颗粒 ... (a variant is mapped to the seed's).")
    specification: str = Field(default="", description="规格 / pack: 0.35g*60片.")
    efficacy: tuple[str, ...] = Field(default=(), description="功能主治 terms: 活血化瘀, 通络.")
    category: tuple[str, ...] = Field(default=(), description="Catalogue categories: 心脑血管用药.")
    population: tuple[str, ...] = Field(default=(), description="Who it is made for: 儿童, 成人, 孕妇.")
    contraindications: tuple[str, ...] = Field(default=(), description="禁忌, as written.")
    ingredients: tuple[str, ...] = Field(default=(), description="Active ingredients / 成分.")
    synonyms: tuple[str, ...] = Field(default=(), description="Other names of the same drug.")

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(p.strip() for p in re.split(LIST_SEPARATORS, v) if p.strip())
        if isinstance(v, list):
            return tuple(str(x).strip() for x in v if str(x).strip())
        return v

    @field_validator("id", "common_name", "brand", "maker", "trade_name", "dosage_form", "specification",
                     mode="before")
    @classmethod
    def _strip(cls, v: object) -> object:
        if isinstance(v, int):
            return str(v)
        return v.strip() if isinstance(v, str) else v


def _row(raw: object, where: str, line: int) -> RegisterRow:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}:{line}: not an object")
    data = {k: v for k, v in raw.items() if not str(k).startswith("x_") and v not in (None, "")}
    data.setdefault("id", str(line))
    try:
        return RegisterRow.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<row>'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{where}:{line}: {details}") from None


def read_register(path: Path) -> list[RegisterRow]:
    """Rows of a .jsonl (one object a line) or .csv (a header row with the field names) register file.

    Raises ValueError naming file:line and the field; an empty register is an error too (a silently empty
    source would change nothing while the curator believes it loaded).
    """
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    rows: list[RegisterRow] = []
    try:
        if path.suffix == ".jsonl":
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        raw = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
                    rows.append(_row(raw, str(path), n))
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                for n, raw in enumerate(csv.DictReader(fh), 2):  # line 1 is the header
                    rows.append(_row(dict(raw), str(path), n))
        else:
            raise ValueError(f"{path}: a register is .jsonl or .csv")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows
