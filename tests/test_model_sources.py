"""docs/serving.md's "Where each GPU profile's model path comes from": every `model:` path of every GPU profile has
a row whose producing command writes exactly that folder, and no row names a path that no profile loads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from armed.engines.shipped import SHIPPED_CHECKPOINTS, SHIPPED_PREFIX

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serving.md"
HEADING = "### Where each GPU profile's model path comes from"


def _table() -> dict[str, str]:
    """path → producing step, from the table under HEADING in DOC."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert HEADING in lines, f"{DOC.relative_to(ROOT)} has no {HEADING!r} section"
    rows: dict[str, str] = {}
    for line in lines[lines.index(HEADING) + 1:]:
        if line.startswith("#"):
            break
        m = re.match(r"\|\s*`(/[^`]+)`\s*\|[^|]*\|(.+)\|\s*$", line)
        if m:
            assert m.group(1) not in rows, f"two rows for {m.group(1)}"
            rows[m.group(1)] = m.group(2)
    return rows


def _profile_paths() -> dict[str, set[str]]:
    """model path → the profiles (file names) that load it, read from the YAML files as they are."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gpu_profiles").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for role in doc.get("models", {}).values():
            model = (role.get("engine") or {}).get("model")
            if model and not model.startswith(SHIPPED_PREFIX):  # built by armed itself (test below)
                out.setdefault(model, set()).add(path.stem)
    return out


def test_shipped_model_names_are_ones_armed_builds() -> None:
    for path in sorted((ROOT / "gpu_profiles").glob("*.yaml")):
        for role in yaml.safe_load(path.read_text(encoding="utf-8")).get("models", {}).values():
            model = (role.get("engine") or {}).get("model") or ""
            if model.startswith(SHIPPED_PREFIX):
                assert model in SHIPPED_CHECKPOINTS, (path.name, model)


def test_every_profile_model_path_has_a_documented_producer() -> None:
    rows, used = _table(), _profile_paths()
    assert used, "no model paths found in gpu_profiles/*.yaml"
    missing = sorted(set(used) - set(rows))
    assert not missing, f"{DOC.name}: no model-source row for {missing} (used by {[used[m] for m in missing]})"
    stale = sorted(set(rows) - set(used))
    assert not stale, f"{DOC.name}'s model-source table names paths no profile loads: {stale}"


def test_each_producer_writes_the_folder_its_row_names() -> None:
    for path, step in _table().items():
        commands = re.findall(r"`([^`]+)`", step)
        writes = [c for c in commands if re.search(rf"--(local-dir|out) {re.escape(path)}(\s|$)", c)]
        assert writes, f"{path}: no command in {step!r} writes it (--local-dir / --out {path})"
        cmd = writes[0]
        if cmd.startswith("huggingface-cli download "):
            repo = cmd.split()[2]
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo) and path == f"/models/{repo.split('/')[1]}", (path, cmd)
        else:
            assert cmd.startswith("armed distill ") and "--student classifier:" in cmd, (path, cmd)
    rows = _table()
    assert "--task consistency" in rows["/models/armed-consistency-qwen3-0.6b"]
    assert "--task consistency" not in rows["/models/armed-student-qwen3-0.6b"]
