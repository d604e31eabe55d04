"""`armed judge-batch`: many judgments from a JSONL file, written as they finish, resumable.

Every input row, however broken, gets exactly one output row: a judgment, or an error record naming the field.
Blank lines are not rows. The output row carries the row's key as `id` and its line number as `line`:

- the key of a row is its `id` compared as text, and the output keeps the id's JSON type (`7` stays a number);
- rows without a usable id are keyed `line:N`: no id, null or "", and ids that cannot be one (not a string or an
  integer, lone surrogates, longer than MAX_ID_CHARS, or of the reserved form `line:<digits>`; those get an error
  record saying why);
- duplicates: the first row with an id keeps it; a later row whose id has the same text (`7` after `"7"`, or the
  same id again) is not judged and gets an error record under `line:N` naming the line that has the id.
So no two output rows share an `id`, and every id of the input appears exactly once.

A rerun skips keys already in the output, so an interrupted batch loses nothing and repeats nothing; a
half-written last line from a crash is cut off before resuming. Writing never fails on a row, and every record is
valid UTF-8 text: a lone surrogate a record would quote (a refused key in `field`, an engine's message) is written
as the escape text `\\ud800` (armed.text.escape_surrogates), never as the surrogate itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from armed.errors import InputError, JudgmentTimeout
from armed.images import ImageSettings, local_images_to_data
from armed.log import get_logger
from armed.settings import ArmedSettings
from armed.text import escape_surrogates, escape_surrogates_in, invalid_unicode_path

log = get_logger("armed.batch")
MAX_ID_CHARS = 256  # a row id is a key, not a payload: longer ones get an error record
MAX_MESSAGE_CHARS = 500  # an error record quotes at most this much of an exception's text
_DERIVED_KEY = re.compile(r"line:[0-9]+")
_SURROGATE_MESSAGE = "not valid Unicode text: a lone surrogate (\\ud800-\\udfff), which no UTF-8 text can hold"


def _repair_tail(path: Path) -> None:
    """Drop a partial last line (a crash mid-write) so appended rows start on a line of their own."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def read_rows_by_id(path: Path) -> dict[str, dict[str, Any]]:
    """id → row of a JSONL output file (the last row of an id wins; unreadable lines are skipped)."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    with path.open("rb") as fh:
        for raw in fh:
            try:
                row = json.loads(raw)
            except ValueError:
                continue
            if isinstance(row, dict) and "id" in row:
                rows[str(row["id"])] = row
    return rows


def done_ids(path: Path) -> set[str]:
    return set(read_rows_by_id(path))


def parse_row(raw: bytes, lineno: int, base_dir: Path,
              image_settings: ImageSettings | None = None) -> tuple[str, str, dict[str, Any]]:
    """One input line → (id, query, product dict). Raises InputError naming the field."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"line {lineno}", f"not valid UTF-8 (byte {exc.start})") from None
    try:
        row = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise InputError(f"line {lineno}", f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(row, dict):
        raise InputError(f"line {lineno}", "a row must be a JSON object")
    bad = invalid_unicode_path(row)  # the one check HTTP shares: refused with the field named, never repaired
    if bad:
        raise InputError(bad, _SURROGATE_MESSAGE)
    query = row.get("query")
    if not isinstance(query, str):
        raise InputError("query", "missing or not text")
    product = row.get("product")
    if isinstance(product, str):
        product = {"name": product}
    if not isinstance(product, dict):
        raise InputError("product", "missing: give a name or an object with 'name'")
    product = dict(product)
    # The batch file is the operator's own: its image paths (relative to the file) are read and checked here,
    # into bytes. The pipeline itself never opens a path.
    product["images"] = local_images_to_data(product.get("images") or [], base_dir, image_settings)
    return str(row.get("id", "")) or "", query, product


@dataclass(frozen=True)
class Row:
    """One non-blank input line and the key it is judged, written and resumed under."""

    line: int
    raw: bytes
    key: str  # what duplicates and resume compare: the id as text, or `line:N`
    id: Any  # what the output row carries: the id with its JSON type, or the key
    problem: InputError | None = None  # an unusable or duplicate id: this row's error record, unjudged


def _given_id(raw: bytes) -> tuple[bool, Any]:
    """(present, value) of the row's `id`; not present when the line is not a JSON object (parse_row says why)."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(row, dict) or "id" not in row:
        return False, None
    return True, row["id"]


def _json_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A short, always-encodable quotation of an id for a message."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 80 else text[:77] + "..."


def id_problem(value: Any) -> str | None:
    """Why `value` cannot be a row id, or None. Strings and integers can; the key is their text."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"an id must be a string or an integer, not {_json_type(value)}"
    if isinstance(value, str):
        if invalid_unicode_path(value):
            return _SURROGATE_MESSAGE
        if _DERIVED_KEY.fullmatch(value):
            return f"{_show(value)} has the form line:N, which is reserved for rows without a usable id"
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        return f"an id of {len(text)} characters; the limit is {MAX_ID_CHARS}"
    return None


def plan_rows(lines: list[bytes]) -> list[Row]:
    """A Row per non-blank line, keys unique by construction (the policy in the module docstring)."""
    seen: dict[str, tuple[int, Any]] = {}
    rows: list[Row] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        derived = f"line:{n}"
        present, value = _given_id(raw)
        if not present or value is None or value == "":
            rows.append(Row(n, raw, derived, derived))
            continue
        problem = id_problem(value)
        if problem is None and str(value) in seen:
            first_line, first = seen[str(value)]
            same = "the same id" if first == value and type(first) is type(value) else f"the id {_show(first)}"
            problem = (f"duplicate id {_show(value)}: line {first_line} has {same} (ids are compared as text); "
                       "each id must appear once, so this row was not judged")
        if problem is not None:
            rows.append(Row(n, raw, derived, derived, InputError("id", problem)))
            continue
        seen[str(value)] = (n, value)
        rows.append(Row(n, raw, str(value), value))
    return rows


def encode_record(record: dict[str, Any]) -> bytes:
    """One output line, whatever the record holds (the writer must not be what fails a row, or every rerun)."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a refused row's key in an error's `field`, an engine echoing odd text): written as its
        # escape text. JSON's own `\ud800` escape would be valid ASCII, but it still denotes a lone surrogate, which
        # a strict consumer refuses (serde_json) or alters (Go's encoding/json: U+FFFD): the record must hold only
        # valid text, saying what the input held.
        return (json.dumps(escape_surrogates_in(record), ensure_ascii=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        fallback = {"id": record.get("id"), "line": record.get("line"),
                    "error": {"field": "output", "message": f"record not writable as JSON: {str(exc)[:200]}"}}
        return (json.dumps(fallback, ensure_ascii=True, default=str) + "\n").encode("ascii")


async def run_batch(
    input_path: Path,
    output_path: Path,
    settings: ArmedSettings,
    *,
    concurrency: int = 4,
    progress: bool = True,
    pipeline: Any = None,
) -> dict[str, int]:
    """Judge every row not yet in `output_path`. Returns counts: total, skipped, judged, errors."""
    if concurrency < 1:
        raise InputError("--concurrency", "must be at least 1")
    if not input_path.is_file():
        raise InputError("input", f"{input_path} is not a file")
    if pipeline is None:
        from armed.pipeline.dag import Pipeline

        pipeline = Pipeline.from_settings(settings)
    _repair_tail(output_path)
    already = done_ids(output_path)
    data = input_path.read_bytes()
    rows = plan_rows(data.removeprefix(b"\xef\xbb\xbf").splitlines())  # a UTF-8 BOM (spreadsheet exports)
    counts = {"total": len(rows), "skipped": 0, "judged": 0, "errors": 0}
    todo = [r for r in rows if r.key not in already]
    counts["skipped"] = len(rows) - len(todo)

    sem = asyncio.Semaphore(concurrency)
    write_lock = asyncio.Lock()
    bar = tqdm(total=len(todo), disable=not progress, unit="pair", desc="judging")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("ab") as out:

        async def one(row: Row) -> None:
            async with sem:
                head = {"id": row.id, "line": row.line}
                record: dict[str, Any]
                try:
                    if row.problem is not None:
                        raise row.problem
                    _, query, product = parse_row(row.raw, row.line, input_path.parent, settings.images)
                    judgment = await pipeline.judge(query, product)
                    record = {**head, "judgment": judgment.model_dump(mode="json")}
                    counts["judged"] += 1
                except InputError as exc:
                    record = {**head, "error": exc.to_dict()}
                    counts["errors"] += 1
                except JudgmentTimeout as exc:
                    record = {**head, "error": {"field": "judgment", "message": str(exc)}}
                    counts["errors"] += 1
                except Exception as exc:  # an engine crash on one row must not sink the batch
                    log.exception("row_failed", row=row.key, line=row.line)
                    # escaped before it is cut, so the record's bound holds for what is written
                    message = escape_surrogates(f"{type(exc).__name__}: {exc}")[:MAX_MESSAGE_CHARS]
                    record = {**head, "error": {"field": "judgment", "message": message}}
                    counts["errors"] += 1
                async with write_lock:
                    out.write(encode_record(record))
                    out.flush()
                bar.update(1)

        await asyncio.gather(*(one(r) for r in todo))
    bar.close()
    log.info("batch_done", **counts)
    return counts
