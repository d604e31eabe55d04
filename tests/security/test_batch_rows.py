"""`armed judge-batch` over every kind of broken row: one output row per input row, every id exactly once, with
its JSON type, duplicates refused by the documented policy, nothing that stops the batch, killed and resumed."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from armed.batch import MAX_ID_CHARS, plan_rows, run_batch
from armed.engines.base import ModelClients
from armed.settings import ArmedSettings
from tests.pipeline.conftest import make_pipeline

REPO = Path(__file__).resolve().parents[2]
GOOD_PRODUCT = {"name": "布洛芬缓释胶囊"}


def _j(row: Any) -> bytes:
    """A JSON line as a client writes it; lone surrogates stay `\\ud800` escapes (ASCII), as JSON allows."""
    return json.dumps(row, ensure_ascii=True).encode("ascii")


class Exploding:
    """The real pipeline (no models), except that query "BOOM" makes the engine raise with a lone surrogate in its
    message, as an engine echoing the text it choked on would."""

    def __init__(self, real: Any, delay_s: float = 0.0) -> None:
        self.real, self.delay_s = real, delay_s

    async def judge(self, query: str, product: Any) -> Any:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if query == "BOOM":
            raise RuntimeError("engine choked on \ud800" + "x" * 10_000)
        return await self.real.judge(query, product)


def mixed_rows() -> tuple[list[bytes], dict[str, Any]]:
    """Lines of every bad-row kind between good ones, and for each line its expected output key and field."""
    deep = b"[" * 100_000 + b"]" * 100_000
    lines: list[tuple[bytes, str | None, str | None]] = [  # (line, expected key or None = line:N, error field)
        (_j({"id": "a", "query": "布洛芬", "product": GOOD_PRODUCT}), "a", None),
        (b'{"id": "u", "query": "\xff\xfe", "product": "x"}', None, "line"),  # not UTF-8
        (b"{not json", None, "line"),
        (deep, None, "line"),  # JSON too deep for the parser
        (b"[1, 2]", None, "line"),  # JSON, not an object
        (b'"just a string"', None, "line"),
        (b"42", None, "line"),
        (b"null", None, "line"),
        (_j({"id": "nq", "product": GOOD_PRODUCT}), "nq", "query"),  # missing query
        (_j({"id": "qn", "query": 5, "product": GOOD_PRODUCT}), "qn", "query"),  # query not a string
        (_j({"id": "np", "query": "布洛芬"}), "np", "product"),  # product missing
        (_j({"id": "pt", "query": "布洛芬", "product": 5}), "pt", "product"),  # product of the wrong type
        (_j({"id": "pn", "query": "布洛芬", "product": {"name": 5}}), "pn", "product.name"),
        (_j({"id": "im", "query": "布洛芬", "product": {"name": "x", "images": "a.png"}}), "im", "product.images"),
        (_j({"id": "im0", "query": "布洛芬", "product": {"name": "x", "images": [5]}}), "im0", "product.images[0]"),
        (_j({"id": "sq", "query": "布洛\ud800芬", "product": GOOD_PRODUCT}), "sq", "query"),  # lone surrogates
        (_j({"id": "sn", "query": "布洛芬", "product": {"name": "x\udfff"}}), "sn", "product.name"),
        (_j({"id": "sc", "query": "布洛芬", "product": {"name": "x", "cpv": {"规格": "\udc80"}}}), "sc",
         "product.cpv.规格"),
        (_j({"id": "\udc00", "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),
        (_j({"id": 7, "query": "布洛芬", "product": GOOD_PRODUCT}), "7", None),  # a number id: kept a number
        (_j({"id": "7", "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),  # same text as 7: duplicate
        (_j({"id": "a", "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),  # the same id again
        (_j({"id": True, "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),
        (_j({"id": None, "query": "布洛芬", "product": GOOD_PRODUCT}), None, None),  # null: no id, still judged
        (_j({"id": "", "query": "布洛芬", "product": GOOD_PRODUCT}), None, None),
        (_j({"id": {"k": 1}, "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),
        (_j({"id": [1], "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),
        (_j({"id": 1.5, "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),
        (_j({"id": "line:3", "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),  # reserved form
        (_j({"id": "x" * (MAX_ID_CHARS + 1), "query": "布洛芬", "product": GOOD_PRODUCT}), None, "id"),
        (b"", None, None),  # blank lines are not rows
        (b"   \t", None, None),
        (_j({"id": "longq", "query": "布" * 1_000_000, "product": GOOD_PRODUCT}), "longq", "query"),
        (_j({"id": "longn", "query": "布洛芬", "product": {"name": "x" * 5_000_000}}), "longn", "product.name"),
        (_j({"id": "boom", "query": "BOOM", "product": GOOD_PRODUCT}), "boom", "judgment"),  # the judgment raises
        (_j({"id": 8, "query": "修正消栓通络片", "product": "[德济]消栓通络片"}), "8", None),
    ]
    raw, expected = [], {}
    for n, (line, key, field) in enumerate(lines, start=1):
        raw.append(line)
        if line.strip():
            expected[key or f"line:{n}"] = field
    return raw, expected


def _valid_text(value: Any) -> bool:
    """Every string of a decoded record (keys too) is valid Unicode: no lone surrogate, not even one that arrived
    as a JSON `\\ud800` escape (which Python reads back, but serde_json refuses)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_text(k) and _valid_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_text(v) for v in value)
    return True


def _read(out: Path) -> list[dict]:
    text = out.read_bytes().decode("utf-8")  # strict: the output is always valid UTF-8
    records = [json.loads(line) for line in text.splitlines()]
    assert all(_valid_text(r) for r in records), [r for r in records if not _valid_text(r)]
    return records


async def test_every_broken_row_becomes_one_record_and_every_id_appears_once(kb: Any, tmp_path: Path) -> None:
    raw, expected = mixed_rows()
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(raw) + b"\n")  # with a BOM, as spreadsheet exports write it
    pipe = Exploding(make_pipeline(kb, ModelClients()))
    counts = await run_batch(src, out, ArmedSettings(), concurrency=4, progress=False, pipeline=pipe)
    records = _read(out)
    keys = [str(r["id"]) for r in records]
    assert len(keys) == len(set(keys)) == len(expected) == counts["total"]  # one row each, no id twice
    assert set(keys) == set(expected)
    by_key = {str(r["id"]): r for r in records}
    for key, field in expected.items():
        rec = by_key[key]
        if field is None:
            assert "judgment" in rec, (key, rec)
        else:
            assert rec["error"]["field"].startswith(field), (key, rec["error"])
            assert rec["error"]["message"]
    judged = [k for k, f in expected.items() if f is None]
    errors = len(expected) - len(judged)
    assert counts == {"total": len(expected), "skipped": 0, "judged": len(judged), "errors": errors}
    # ids keep their JSON type; every row says which line it came from
    assert by_key["7"]["id"] == 7 and by_key["8"]["id"] == 8 and by_key["a"]["id"] == "a"
    assert all(isinstance(r["line"], int) for r in records)
    # the policy speaks for itself: which line has the id, and that ids are compared as text
    dup7 = next(r for r in records if r["error"]["field"] == "id" and '"7"' in r["error"]["message"])
    assert "line 20 has the id 7" in dup7["error"]["message"] and "compared as text" in dup7["error"]["message"]
    dup_a = next(r for r in records if r["error"]["field"] == "id" and 'duplicate id "a"' in r["error"]["message"])
    assert "line 1 has the same id" in dup_a["error"]["message"]
    assert "lone surrogate" in by_key["sq"]["error"]["message"]
    # an engine's message with a lone surrogate is written (escaped as text, bounded), not a crash of every rerun
    assert by_key["boom"]["error"]["message"].startswith("RuntimeError: engine choked on \\ud800")
    assert len(by_key["boom"]["error"]["message"]) <= 500
    assert by_key["a"]["judgment"]["level"] == "highly_relevant"

    again = await run_batch(src, out, ArmedSettings(), concurrency=4, progress=False, pipeline=pipe)
    assert again == {"total": len(expected), "skipped": len(expected), "judged": 0, "errors": 0}
    assert len(_read(out)) == len(expected)


def test_duplicate_policy_keys_are_unique_by_construction() -> None:
    lines = [_j({"id": v}) for v in ("x", 3, "3", "x", None, "line:9", 3)] + [b"{bad"]
    rows = plan_rows(lines)
    assert [r.key for r in rows] == ["x", "3", "line:3", "line:4", "line:5", "line:6", "line:7", "line:8"]
    assert [r.id for r in rows][:2] == ["x", 3]
    assert [r.problem is not None for r in rows] == [False, False, True, True, False, True, True, False]


_KILLABLE = textwrap.dedent("""
    import asyncio, sys
    from armed import cli
    from armed.engines.base import ModelClients
    from armed.knowledge.base import KnowledgeBase
    from armed.pipeline import dag
    from tests.pipeline.conftest import make_pipeline
    from tests.security.test_batch_rows import Exploding

    slow = Exploding(make_pipeline(KnowledgeBase.load(), ModelClients()), delay_s=0.15)
    dag.Pipeline.from_settings = classmethod(lambda cls, s=None: slow)
    sys.exit(cli.main(["judge-batch", sys.argv[1], sys.argv[2], "--concurrency", "3", "--quiet"]))
""")


def test_judge_batch_killed_twice_and_resumed_writes_every_id_once(tmp_path: Path) -> None:
    """The real CLI in a subprocess (a slowed pipeline so a kill lands mid-batch): SIGKILL, SIGKILL, finish."""
    raw, expected = mixed_rows()
    for i in range(60):  # enough good rows that the kills land while rows are still being judged
        row_id = 100 + i if i % 2 else f"r{i}"  # numbers and strings, none equal to an id above
        raw.append(_j({"id": row_id, "query": "布洛芬", "product": {"name": f"布洛芬片 {i}"}}))
        expected[str(row_id)] = None
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"\n".join(raw) + b"\n")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "ARMED_LOGGING__LEVEL": "error"}
    cmd = [sys.executable, "-c", _KILLABLE, str(src), str(out)]
    for kill_after in (len(expected) // 3, 2 * len(expected) // 3):
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= kill_after:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert out.read_bytes().count(b"\n") < len(expected)
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert summary["total"] == len(expected) and summary["skipped"] > 0
    records = _read(out)
    keys = [str(r["id"]) for r in records]
    assert sorted(keys) == sorted(expected)  # every id exactly once, across two kills
    assert all(("judgment" in r) != ("error" in r) for r in records)
    by_key = {str(r["id"]): r for r in records}
    assert by_key["7"]["id"] == 7 and by_key["r0"]["id"] == "r0" and by_key["101"]["id"] == 101


@pytest.mark.parametrize("row, field", [
    ({"id": "k", "\udc80": 1, "query": "布洛芬", "product": GOOD_PRODUCT}, "\\udc80"),
    ({"id": "k", "query": "布洛芬", "product": {"name": "x", "cpv": {"\ud800": "v"}}}, "product.cpv.\\ud800"),
])
async def test_a_lone_surrogate_key_is_quoted_as_escape_text(kb: Any, tmp_path: Path, row: dict, field: str) -> None:
    """Issue 24: a row whose JSON key is a lone surrogate got an error record whose `field` held that surrogate
    (as a `\\udc80` JSON escape: invalid text for a strict consumer). The field names it as escape text instead."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(_j(row) + b"\n")
    await run_batch(src, out, ArmedSettings(), progress=False, pipeline=make_pipeline(kb, ModelClients()))
    (record,) = _read(out)  # _read: strict UTF-8, and no string holds a lone surrogate
    assert record["error"]["field"] == field
    assert "lone surrogate" in record["error"]["message"]


@pytest.mark.parametrize("bad", [b'{"id": "z", "query": "\\ud83d", "product": "x"}', b'{"id": "z\\ud83d"}'])
async def test_a_lone_surrogate_never_blocks_later_rows(kb: Any, tmp_path: Path, bad: bytes) -> None:
    """The issue's crash: a lone surrogate stopped the batch on every rerun, so later rows were never judged."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    later = _j({"id": "later", "query": "布洛芬", "product": GOOD_PRODUCT})
    src.write_bytes(bad + b"\n" + later + b"\n")
    pipe = make_pipeline(kb, ModelClients())
    await run_batch(src, out, ArmedSettings(), progress=False, pipeline=pipe)
    records = {str(r["id"]): r for r in _read(out)}
    assert records["later"]["judgment"]["level"] == "highly_relevant"
    assert len(records) == 2
