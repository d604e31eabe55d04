"""The serving CLI commands: registration and `serve-config` (the up/down/status handlers need a Ray cluster)."""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from armed.serving.cli import add_serving_commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armed")
    add_serving_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_commands_are_registered() -> None:
    p = _parser()
    for argv in (["up"], ["down"], ["status"], ["serve-config", "--profile", "cpu"]):
        args = p.parse_args(argv)
        assert callable(args.func)
    assert p.parse_args(["up"]).profile == "cpu"


def test_serve_config_writes_a_deployable_document(tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "serve.yaml"
    args = _parser().parse_args(["serve-config", "--profile", "h100-80g", "--out", str(out)])
    assert args.func(args) == 0
    doc = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(doc)
    assert doc["applications"][-1]["name"] == "judge"
    bad = _parser().parse_args(["serve-config", "--profile", "nope"])
    assert bad.func(bad) == 2


def test_up_refuses_a_bad_edge_setting_before_starting_anything(tmp_path: Path, capsys, monkeypatch) -> None:
    """Serve's proxy reads ARMED_EDGE_* in its own process, where a bad value would only stop the proxy: `up` checks
    them first and names the variable (exit 2), before any Ray starts."""
    ray_dir = Path(tempfile.mkdtemp(prefix="aru-", dir="/tmp"))  # short: Ray's socket paths would live under it
    monkeypatch.setenv("ARMED_RAY_DIR", str(ray_dir))
    monkeypatch.setenv("ARMED_EDGE_HEADER_TIMEOUT_S", "soon")
    with socket.socket() as busy:  # were the setting not checked first, `up` would stop here, starting nothing
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = _parser().parse_args(["up", "--port", str(busy.getsockname()[1])])
        try:
            assert args.func(args) == 2
        finally:
            shutil.rmtree(ray_dir, ignore_errors=True)
    err = capsys.readouterr().err
    assert "ARMED_EDGE_HEADER_TIMEOUT_S" in err and "number" in err, err
