"""ops.hub_fetch: the chart's hub download step puts each repo in <dest>/<folder>, and refuses a bad spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops import hub_fetch
from ops.hub_fetch import Fetch, fetch


def test_parse_folder_repo_and_revision():
    assert Fetch.parse("Qwen3-32B=Qwen/Qwen3-32B") == Fetch("Qwen3-32B", "Qwen/Qwen3-32B", None)
    assert Fetch.parse("s=me/armed-student@v2") == Fetch("s", "me/armed-student", "v2")


@pytest.mark.parametrize("bad", ["Qwen/Qwen3-32B", "../x=a/b", "a/b=c/d", "..=a/b", "x=notarepo", "x=a/b/c", "x="])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        Fetch.parse(bad)


def test_fetch_downloads_each_repo_into_its_folder(tmp_path: Path):
    calls: list[dict] = []

    def fake_download(**kw):
        calls.append(kw)
        Path(kw["local_dir"]).mkdir(parents=True)
        return kw["local_dir"]

    out = fetch([Fetch.parse("A=o/a"), Fetch.parse("B=o/b@rev")], tmp_path, download=fake_download)
    assert out == [tmp_path / "A", tmp_path / "B"]
    assert calls == [{"repo_id": "o/a", "revision": None, "local_dir": str(tmp_path / "A")},
                     {"repo_id": "o/b", "revision": "rev", "local_dir": str(tmp_path / "B")}]


def test_main_exits_2_on_a_bad_spec_before_downloading(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(hub_fetch, "_snapshot_download", lambda **kw: pytest.fail("downloaded"))
    assert hub_fetch.main(["--dest", str(tmp_path), "ok=o/a", "bad"]) == 2
    assert "FOLDER=ORG/REPO" in capsys.readouterr().err


def test_snapshot_download_takes_the_arguments_fetch_passes():
    import inspect

    from huggingface_hub import snapshot_download

    params = inspect.signature(snapshot_download).parameters
    assert {"repo_id", "revision", "local_dir"} <= set(params)
