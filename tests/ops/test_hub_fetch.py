"""ops.hub_fetch: the chart's hub download step makes each repo appear at <dest>/<folder>, downloads each (repo,
revision) once into a cache that outlives pods and that other pods fill at the same time, never shows a
half-written folder, and refuses a bad spec."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from ops import hub_fetch
from ops.hub_fetch import STORE, Fetch, fetch, snapshot_name

FILES = ("config.json", "model-00001.safetensors", "model-00002.safetensors")


def test_parse_folder_repo_and_revision():
    assert Fetch.parse("Qwen3-32B=Qwen/Qwen3-32B") == Fetch("Qwen3-32B", "Qwen/Qwen3-32B", None)
    assert Fetch.parse("s=me/armed-student@v2") == Fetch("s", "me/armed-student", "v2")


@pytest.mark.parametrize("bad", ["Qwen/Qwen3-32B", "../x=a/b", "a/b=c/d", "..=a/b", "x=notarepo", "x=a/b/c", "x="])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        Fetch.parse(bad)


def slow_download(log: Path, pause: float = 0.0, fail_after: int | None = None):
    """A Hub double: writes FILES one by one into local_dir (as snapshot_download does), appending to `log`."""

    def download(**kw):
        with log.open("a") as f:
            f.write(f"{kw['repo_id']}@{kw['revision']}\n")
        for i, name in enumerate(FILES):
            if fail_after is not None and i == fail_after:
                raise ConnectionError("connection reset mid-download")
            (Path(kw["local_dir"]) / name).write_text(f"{kw['repo_id']}@{kw['revision']}:{name}")
            time.sleep(pause)
        return kw["local_dir"]

    return download


def complete(folder: Path, ref: str) -> bool:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(FILES) and all(
        (folder / n).read_text() == f"{ref}:{n}" for n in FILES)


def test_fetch_publishes_each_repo_at_its_folder_through_the_store(tmp_path: Path):
    log = tmp_path / "log"
    dest = tmp_path / "models"
    out = fetch([Fetch.parse("A=o/a"), Fetch.parse("B=o/b@rev")], dest, download=slow_download(log))
    assert out == [dest / "A", dest / "B"]
    assert complete(dest / "A", "o/a@None") and complete(dest / "B", "o/b@rev")
    # each folder is a relative link into the store, so it resolves in every container that mounts the volume
    assert os.readlink(dest / "A") == f"{STORE}/{snapshot_name(Fetch.parse('A=o/a'))}"
    assert log.read_text().splitlines() == ["o/a@None", "o/b@rev"]
    assert (dest / "A").resolve().stat().st_mode & 0o777 == 0o755  # any reader's uid may load it


def test_a_later_pod_downloads_nothing(tmp_path: Path):
    log = tmp_path / "log"
    for _ in range(3):  # three pod starts on the node (or on the shared volume)
        fetch([Fetch.parse("A=o/a")], tmp_path / "models", download=slow_download(log))
    assert log.read_text().splitlines() == ["o/a@None"]


def _pod(dest: str, log: str) -> None:
    fetch([Fetch.parse("A=o/a")], Path(dest), download=slow_download(Path(log), pause=0.15))


def test_two_pods_at_once_download_once_and_no_reader_sees_a_partial_folder(tmp_path: Path):
    dest, log = tmp_path / "models", tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    pods = [ctx.Process(target=_pod, args=(str(dest), str(log))) for _ in range(2)]
    for p in pods:
        p.start()
    seen_partial = False
    while any(p.is_alive() for p in pods):  # a third party (a starting engine) looking at /models/A meanwhile
        if (dest / "A").exists() and not complete(dest / "A", "o/a@None"):
            seen_partial = True
        time.sleep(0.01)
    assert [p.exitcode for p in pods] == [0, 0]
    assert not seen_partial
    assert log.read_text().splitlines() == ["o/a@None"]  # the second pod waited for the first, then found it
    assert complete(dest / "A", "o/a@None")


def test_a_download_killed_midway_leaves_nothing_a_reader_trusts(tmp_path: Path):
    dest, log = tmp_path / "models", tmp_path / "log"
    with pytest.raises(ConnectionError):
        fetch([Fetch.parse("A=o/a")], dest, download=slow_download(log, fail_after=2))
    assert not (dest / "A").exists()
    assert not (dest / STORE / snapshot_name(Fetch.parse("A=o/a"))).exists()
    assert [p.name for p in (dest / STORE).iterdir() if not p.name.endswith(".lock")] == []  # no temp left behind
    fetch([Fetch.parse("A=o/a")], dest, download=slow_download(log))  # the pod's retry
    assert complete(dest / "A", "o/a@None")


def test_a_new_revision_is_a_new_snapshot_and_the_old_one_stays(tmp_path: Path):
    dest, log = tmp_path / "models", tmp_path / "log"
    fetch([Fetch.parse("A=o/a@v1")], dest, download=slow_download(log))
    old = (dest / "A").resolve()
    fetch([Fetch.parse("A=o/a@v2")], dest, download=slow_download(log))
    assert complete(dest / "A", "o/a@v2") and (dest / "A").resolve() != old
    assert complete(old, "o/a@v1")  # an engine still loading v1 keeps its files
    assert log.read_text().splitlines() == ["o/a@v1", "o/a@v2"]


def test_a_folder_it_did_not_publish_is_refused_not_trusted(tmp_path: Path):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "half.safetensors").write_text("?")
    with pytest.raises(RuntimeError, match="did not publish"):
        fetch([Fetch.parse("A=o/a")], tmp_path, download=slow_download(tmp_path / "log"))


def test_main_exits_2_on_a_bad_spec_before_downloading(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(hub_fetch, "_snapshot_download", lambda **kw: pytest.fail("downloaded"))
    assert hub_fetch.main(["--dest", str(tmp_path), "ok=o/a", "bad"]) == 2
    assert "FOLDER=ORG/REPO" in capsys.readouterr().err


def test_snapshot_download_takes_the_arguments_fetch_passes():
    import inspect

    from huggingface_hub import snapshot_download

    params = inspect.signature(snapshot_download).parameters
    assert {"repo_id", "revision", "local_dir"} <= set(params)
