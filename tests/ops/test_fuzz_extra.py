"""`armed-ops fuzz` needs schemathesis, which only the `ops` extra (and the test extra, through it) installs."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from ops.fuzz import cli

REPO = Path(__file__).resolve().parents[2]


def test_the_ops_extra_brings_the_fuzzers_dependency() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert [d for d in extras["ops"] if d.startswith("schemathesis==")] == ["schemathesis==4.32.5"]
    assert "armed[ops]" in extras["test"]  # one pin, not two that drift


def test_without_the_extra_the_fuzzer_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "schemathesis" else real(name, *a, **k))
    assert cli.main(["--url", "http://127.0.0.1:9", "--out", "unused"]) == 2
    assert "needs schemathesis: pip install 'armed[ops]'" in capsys.readouterr().err
