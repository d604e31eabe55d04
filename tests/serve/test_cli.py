"""The serving CLI commands: registration and `serve-config` (the up/down/status handlers need a Ray cluster)."""

from __future__ import annotations

import argparse
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
