"""A knowledge-base artefact is data, never code: its state is tagged JSON, its indexes plain .npy, and a pickled state
(artefact format 2 and before) is refused without being read. The chart syncs artefacts from buckets, so whoever can
write to one must not be able to run code in the judge."""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from armed.knowledge import KnowledgeBase, KnowledgeError
from armed.knowledge.artefact import (
    FORMAT,
    ArtefactError,
    decode_state,
    encode_state,
    load_artefact,
    load_knowledge,
    read_manifest,
    write_artefact,
)
from armed.knowledge.content import content_version
from armed.settings import KnowledgeSettings

PICKLE_MAGIC = b"\x80"  # protocol 2+ pickles start with PROTO


class _Touch:
    """Unpickling this creates `path`: the proof that a loader ran a pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


@pytest.fixture(scope="module")
def seed_kb() -> KnowledgeBase:
    return KnowledgeBase.load()


@pytest.fixture
def artefact(seed_kb: KnowledgeBase, tmp_path: Path) -> Path:
    out = tmp_path / "kb"
    write_artefact(seed_kb, out)
    return out


def _as_old_format(path: Path, payload: object) -> None:
    """What format 2 wrote: state.pkl beside a manifest of format 2."""
    (path / "state.json").unlink()
    (path / "state.pkl").write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    manifest["format"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_every_file_of_an_artefact_is_data(artefact: Path, seed_kb: KnowledgeBase) -> None:
    files = sorted(p for p in artefact.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"manifest.json", "state.json"} and not list(artefact.rglob("*.pkl"))
    for p in files:
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))  # plain JSON, nothing else
        else:
            assert p.suffix == ".npy", p
            arr = np.load(p, allow_pickle=False)  # raises on an object array (a pickle inside)
            assert arr.dtype != object
        assert not p.read_bytes().startswith(PICKLE_MAGIC), p
    loaded = load_artefact(artefact)
    assert loaded.version == seed_kb.version == content_version(loaded)
    assert read_manifest(artefact)["format"] == FORMAT == 3


def test_a_pickled_state_is_refused_unread(artefact: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _as_old_format(artefact, _Touch(marker))
    with pytest.raises(ArtefactError, match=r"pickled state \(state\.pkl"):
        load_artefact(artefact)
    with pytest.raises(KnowledgeError, match="refuses to load"):
        load_knowledge(KnowledgeSettings(artefact=str(artefact)))
    # a state.pkl beside a current manifest is refused too (the manifest is no licence for a pickle)
    manifest = json.loads((artefact / "manifest.json").read_text(encoding="utf-8"))
    (artefact / "manifest.json").write_text(json.dumps({**manifest, "format": FORMAT}), encoding="utf-8")
    with pytest.raises(ArtefactError, match="pickled state"):
        load_artefact(artefact)
    assert not marker.exists()


def test_the_state_names_only_the_allowed_models(artefact: Path) -> None:
    state_file = artefact / "state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["seed"]["$"] == "model" and state["seed"]["cls"] == "Seed"
    state["seed"]["cls"] = "Path"
    state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ArtefactError, match="'Path' is not a model a knowledge-base state may hold"):
        load_artefact(artefact)
    state["seed"] = {"$": "call", "v": ["os", "system", "true"]}
    state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ArtefactError, match=r"seed: not state data \(tag 'call'\)"):
        load_artefact(artefact)


def test_state_values_round_trip_with_their_types() -> None:
    value = {
        "tuple": ("a", 1), "set": {"b", "a"}, "frozen": frozenset({"x"}), "list": [1.5, None, True],
        "pairs": {("a", "b"): 1, 2: "two"}, "re": re.compile(r"\d+片", re.IGNORECASE), "inf": math.inf,
        "order": {"z": 1, "a": 2},
    }
    back = decode_state(json.loads(json.dumps(encode_state(value), allow_nan=False)))
    assert back == value
    assert type(back["tuple"]) is tuple and type(back["frozen"]) is frozenset and type(back["set"]) is set
    assert list(back["order"]) == ["z", "a"]  # dict order kept: first-match lookups depend on it
    assert back["re"].flags == value["re"].flags


def test_a_field_without_a_data_form_fails_the_build_by_name(seed_kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\[0\]: a object has no data form"):
        encode_state([object()])
    kb = KnowledgeBase.load()
    kb._callback = len  # type: ignore[attr-defined]  (not print: a Ray driver replaces builtins.print)
    with pytest.raises(TypeError, match="_callback: a builtin_function_or_method has no data form"):
        write_artefact(kb, tmp_path / "kb")


def test_an_old_artefact_of_the_same_content_is_rewritten_as_data(artefact: Path, seed_kb: KnowledgeBase) -> None:
    _as_old_format(artefact, {"harmless": True})
    manifest = write_artefact(seed_kb, artefact)  # same version: replaced without --force
    assert manifest["format"] == FORMAT and manifest["version"] == seed_kb.version
    assert not (artefact / "state.pkl").exists() and load_artefact(artefact).version == seed_kb.version
    _as_old_format(artefact, {"harmless": True})
    other = KnowledgeBase.load(sources=[f"register:{Path(__file__).parent / 'data' / 'register-example.jsonl'}"])
    with pytest.raises(ArtefactError, match="pass --force"):  # another version still needs force
        write_artefact(other, artefact)
