"""`armed judge-batch`: many judgments from a JSONL file, written as they finish, resumable.

Every input row gets exactly one output row keyed by its `id` (or `line:N` when it has none): a judgment, or an
error record naming the field. A rerun skips ids already in the output, so an interrupted batch loses nothing
and repeats nothing; a half-written last line from a crash is cut off before resuming.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from armed.errors import InputError, JudgmentTimeout
from armed.images import ImageSettings, local_images_to_data
from armed.log import get_logger
from armed.settings import ArmedSettings

log = get_logger("armed.batch")


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
    except ValueError as exc:
        raise InputError(f"line {lineno}", f"not JSON: {exc}") from None
    if not isinstance(row, dict):
        raise InputError(f"line {lineno}", "a row must be a JSON object")
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
    lines = input_path.read_bytes().splitlines()
    counts = {"total": 0, "skipped": 0, "judged": 0, "errors": 0}
    todo: list[tuple[str, bytes, int]] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        counts["total"] += 1
        row_id = f"line:{n}"
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict) and parsed.get("id") not in (None, ""):
                row_id = str(parsed["id"])
        except ValueError:
            pass
        if row_id in already:
            counts["skipped"] += 1
            continue
        todo.append((row_id, raw, n))

    sem = asyncio.Semaphore(concurrency)
    write_lock = asyncio.Lock()
    bar = tqdm(total=len(todo), disable=not progress, unit="pair", desc="judging")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("a", encoding="utf-8") as out:

        async def one(row_id: str, raw: bytes, n: int) -> None:
            async with sem:
                record: dict[str, Any]
                try:
                    _, query, product = parse_row(raw, n, input_path.parent, settings.images)
                    judgment = await pipeline.judge(query, product)
                    record = {"id": row_id, "judgment": judgment.model_dump(mode="json")}
                    counts["judged"] += 1
                except InputError as exc:
                    record = {"id": row_id, "error": exc.to_dict()}
                    counts["errors"] += 1
                except JudgmentTimeout as exc:
                    record = {"id": row_id, "error": {"field": "judgment", "message": str(exc)}}
                    counts["errors"] += 1
                except Exception as exc:  # an engine crash on one row must not sink the batch
                    log.exception("row_failed", row=row_id)
                    record = {"id": row_id, "error": {"field": "judgment", "message": f"{type(exc).__name__}: {exc}"}}
                    counts["errors"] += 1
                async with write_lock:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                bar.update(1)

        await asyncio.gather(*(one(*t) for t in todo))
    bar.close()
    log.info("batch_done", **counts)
    return counts
