"""`armed judge` and `armed judge-batch` as a user runs them: exit codes, messages naming the field, resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from armed import cli
from armed.batch import run_batch
from armed.engines.base import ModelClients
from armed.settings import ArmedSettings
from tests.pipeline.conftest import make_pipeline


@pytest.fixture
def no_model_pipeline(kb, monkeypatch):
    """`Pipeline.from_settings` builds real engines; these CLI tests are about the CLI, so they get a pipeline
    with no models (the embedded default's real engines run in tests/test_embedded_default.py)."""
    from armed.pipeline import dag

    pipe = make_pipeline(kb, ModelClients())
    monkeypatch.setattr(dag.Pipeline, "from_settings", classmethod(lambda cls, s=None: pipe))
    return pipe


def test_judge_prints_level_and_evidence(no_model_pipeline, capsys):
    assert cli.main(["judge", "--query", "修正消栓通络片", "--product", "[德济]消栓通络片1.8g*12片*3板/盒"]) == 0
    out = capsys.readouterr().out
    assert "moderately_relevant" in out and "less_relevant" in out
    assert "rule:" in out and "versions:" in out


def test_judge_json_is_a_judgment(no_model_pipeline, capsys):
    assert cli.main(["judge", "--query", "布洛芬", "--product", "布洛芬缓释胶囊", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["level"] == "highly_relevant" and data["branch"] == "guideline"
    assert data["guideline"] == "exact.generic" and data["intent"] == "product"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["judge", "--query", "", "--product", "x"], "query"),
        (["judge", "--query", "a", "--product", "x", "--image", "/nonexistent.png"], "--image"),
        (["judge", "--query", "a", "--product", "x", "--cpv", "novalue"], "--cpv"),
        (["judge", "--query", "a\udcff", "--product", "x"], "--query: not valid UTF-8"),
    ],
)
def test_bad_cli_input_exits_2_naming_the_field(no_model_pipeline, capsys, argv, needle):
    assert cli.main(argv) == 2
    assert needle in capsys.readouterr().err


def test_broken_image_file(no_model_pipeline, tmp_path, capsys):
    bad = tmp_path / "label.png"
    bad.write_bytes(b"\x89PNG broken")
    assert cli.main(["judge", "--query", "布洛芬", "--product", "布洛芬片", "--image", str(bad)]) == 2
    assert f"--image {bad}: not a readable image file" in capsys.readouterr().err


def test_bad_settings_are_named(monkeypatch, capsys):
    monkeypatch.setenv("ARMED_SEARCH__PROVIDER", "http")
    assert cli.main(["judge", "--query", "a", "--product", "b"]) == 2
    assert "search.url" in capsys.readouterr().err


async def test_batch_resumes_and_records_bad_rows(kb, tmp_path):
    rows = [
        json.dumps({"id": "a", "query": "布洛芬", "product": {"name": "布洛芬缓释胶囊"}}, ensure_ascii=False),
        json.dumps({"id": "b", "query": "", "product": "布洛芬片"}, ensure_ascii=False),
        "{not json",
        json.dumps({"query": "修正消栓通络片", "product": "[德济]消栓通络片"}, ensure_ascii=False),
        json.dumps({"id": "big", "query": "布洛芬", "product": "x" * 10_000_000}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes("\n".join(rows).encode() + b"\n\xff\xfe broken utf8\n")
    out = tmp_path / "out.jsonl"
    pipe = make_pipeline(kb, ModelClients())
    counts = await run_batch(src, out, ArmedSettings(), concurrency=2, progress=False, pipeline=pipe)
    assert counts == {"total": 6, "skipped": 0, "judged": 2, "errors": 4}
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["a"]["judgment"]["level"] == "highly_relevant"
    assert records["b"]["error"]["field"].startswith("query")
    assert records["line:3"]["error"]["field"] == "line 3"
    assert records["line:4"]["judgment"]["benchmark_level"] == "less_relevant"
    assert records["big"]["error"]["field"] == "product.name"
    assert "UTF-8" in records["line:6"]["error"]["message"]

    # A crash mid-write leaves half a line: resume cuts it, redoes that row only, and skips the rest.
    lines = out.read_text().splitlines()
    kept, lost = lines[:-1], json.loads(lines[-1])["id"]
    out.write_text("\n".join(kept) + "\n" + lines[-1][:20])
    again = await run_batch(src, out, ArmedSettings(), concurrency=2, progress=False, pipeline=pipe)
    assert again["skipped"] == 5 and again["judged"] + again["errors"] == 1
    final = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(final) == sorted(records) and final.count(lost) == 1


def test_console_script_help():
    proc = subprocess.run([sys.executable, "-m", "armed.cli", "--help"], capture_output=True, text=True, check=True)
    assert "judge-batch" in proc.stdout
