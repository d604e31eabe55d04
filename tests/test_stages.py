"""The stage table (armed/stages.py) is the one place stages are enumerated, and the settings and the recorder
follow it: every stage has a switch and a timeout that exist, every switch and timeout belongs to a stage or is
listed as owning none, and every stage the code runs is in the table."""

from __future__ import annotations

import ast
import asyncio

import pytest

from armed.pipeline.stages import Detailed, StageRecorder
from armed.settings import ArmedSettings, StageSwitches, TimeoutSettings
from armed.stages import (
    ABLATION_LADDER,
    JUDGMENT_TIMEOUTS,
    LADDER_SWITCHES,
    MODIFIER_SWITCHES,
    STAGE_NAMES,
    STAGE_SWITCHES,
    STAGE_TIMEOUTS,
    STAGES,
    Stage,
    get_stage,
    stage_names,
)
from tests.source_tree import REPO, source_trees

TABLE = REPO / "armed" / "stages.py"


def _stage_literals(node: ast.AST) -> list[str]:
    """The stage names among a collection literal's string elements (a dict's keys)."""
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in STAGES]


def _stage_runs(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every `<x>.run("<name>", ...)` call that passes `default=`: StageRecorder.run's shape."""
    return [(n.lineno, n.args[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "run"
            and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)
            and any(k.arg == "default" for k in n.keywords)]


def test_no_stage_list_outside_the_table() -> None:
    """A tuple, list, set or dict naming two or more stages anywhere in the source tree is a second list of stages,
    which drifts from the table: read armed.stages instead (stage_names(side), ABLATION_LADDER, ...)."""
    found = [f"{path.relative_to(REPO)}:{node.lineno}: {names}"
             for path, tree in source_trees(skip=TABLE) for node in ast.walk(tree)
             if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict))
             and len(names := _stage_literals(node)) >= 2]
    assert not found, "stage names enumerated outside armed/stages.py:\n" + "\n".join(found)


def test_every_stage_the_code_runs_is_in_the_table() -> None:
    runs = [(path.relative_to(REPO), line, name)
            for path, tree in source_trees(skip=TABLE) for line, name in _stage_runs(tree)]
    unknown = [f"{p}:{line}: {name!r}" for p, line, name in runs if name not in STAGES]
    assert not unknown, "stages run that armed/stages.py does not list:\n" + "\n".join(unknown)
    # and the scan sees the pipeline's runs at all: every stage in the table is run somewhere, once
    assert sorted(name for _, _, name in runs) == sorted(STAGE_NAMES)


def test_the_checks_catch_a_stage_list_and_an_unlisted_stage() -> None:
    tree = ast.parse('if s in ("rules", "extend"):\n    pass\nX = {"search": 1, "student": 2}\n'
                     'await rec.run("spellcheck", fn, settings, default=None)\n')
    hits = [_stage_literals(n) for n in ast.walk(tree) if isinstance(n, (ast.Tuple, ast.Dict))]
    assert ["rules", "extend"] in hits and ["search", "student"] in hits
    assert _stage_runs(tree) == [(4, "spellcheck")]


def test_settings_fields_are_the_tables_switches_and_timeouts() -> None:
    """Every stage's switches and timeout are settings fields (so `ARMED_STAGES__<SWITCH>` and
    `ARMED_TIMEOUTS__<FIELD>` reach them), and every settings field is some stage's or listed as owning none."""
    switches, timeouts = set(StageSwitches.model_fields), set(TimeoutSettings.model_fields)
    assert STAGE_SWITCHES | set(MODIFIER_SWITCHES) == switches
    assert not STAGE_SWITCHES & set(MODIFIER_SWITCHES)
    assert STAGE_TIMEOUTS | set(JUDGMENT_TIMEOUTS) == timeouts
    assert not STAGE_TIMEOUTS & set(JUDGMENT_TIMEOUTS)


def test_table_facts() -> None:
    for stage in STAGES.values():
        assert stage.doc.strip() and stage.switches and stage.timeout
    # the rules stage has its own timeout (it ran under the NER one)
    assert get_stage("rules").timeout == "rules"
    assert get_stage("read_images").switches == ("cheating_check", "extend")
    assert stage_names("join") == ("rules", "student", "llm_judge")
    assert stage_names("query")[0] == "query_intent" and len(stage_names("product")) == 4
    assert sum(len(stage_names(side)) for side in ("query", "product", "join")) == len(STAGE_NAMES)
    # Table 5's order, as the bench has always run it
    assert LADDER_SWITCHES == ("query_rewrite", "extend", "search", "identical_page", "two_stage_filter",
                               "common_name", "query_change", "product_search", "student")
    assert [label for label, _ in ABLATION_LADDER][:2] == ["base Q+S", "+QI"]
    with pytest.raises(ValueError, match="unknown stage 'spellcheck'"):
        get_stage("spellcheck")
    with pytest.raises(ValueError, match="needs a switch"):
        Stage("x", "doc", "query", (), "ner")


def test_a_stage_is_on_when_any_of_its_switches_is() -> None:
    images = get_stage("read_images")
    assert images.enabled(StageSwitches(cheating_check=False, extend=True))
    assert not images.enabled(StageSwitches(cheating_check=False, extend=False))


def test_environment_variables_still_switch_and_bound_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `ARMED_STAGES__<NAME>=false` and the timeouts' environment names keep working."""
    monkeypatch.setenv("ARMED_STAGES__RULES", "false")
    monkeypatch.setenv("ARMED_STAGES__EXTEND", "false")
    monkeypatch.setenv("ARMED_TIMEOUTS__RULES", "3.5")
    s = ArmedSettings()
    assert not get_stage("rules").enabled(s.stages)
    assert get_stage("read_images").enabled(s.stages)  # the cheating check still reads the images
    assert get_stage("rules").timeout_s(s.timeouts) == 3.5
    assert get_stage("common_name").timeout_s(s.timeouts) == s.timeouts.ner == 20.0


async def test_the_recorder_takes_switch_and_timeout_from_the_table() -> None:
    """Each stage, run with a call that never finishes, is cut off at its own timeout field's value: every field
    gets a different value, so a stage bound by another field's timeout reports another number."""
    values = {f: round(0.01 * (i + 1), 2) for i, f in enumerate(TimeoutSettings.model_fields)}
    values["total"] = max(values.values())  # the model requires total >= judge
    settings = ArmedSettings(timeouts=values)
    never = asyncio.Event()

    async def hang() -> Detailed[int]:
        await never.wait()
        return Detailed(1)

    rec = StageRecorder()
    for name in STAGE_NAMES:
        assert await rec.run(name, hang, settings, default=-1) == -1
    assert [(r.name, r.status, r.detail) for r in rec.reports] == [
        (n, "timeout", f"> {values[get_stage(n).timeout]}s") for n in STAGE_NAMES]
    assert rec.degraded == list(STAGE_NAMES)
    # switched off by its switch: not run at all
    off = ArmedSettings(stages={"rules": False})
    rec = StageRecorder()
    assert await rec.run("rules", hang, off, default=[]) == []
    assert [(r.name, r.status) for r in rec.reports] == [("rules", "disabled")]
    with pytest.raises(ValueError, match="unknown stage 'spellcheck'"):
        await rec.run("spellcheck", hang, settings, default=None)
