"""`shipped:` checkpoints (cpu-ray-llm's SmolLM2) are built on the node where LLMServer loads them, not by the Serve
build task, which runs on whichever node Ray picks (issue 24, "Weights and nodes").

The conversion itself (GGUF -> safetensors, ~10-40 s of torch) is replaced by a recording double here (the real one
is tests/engines/test_shipped.py); what is under test is where and when it runs: the build task's resolution, the
LLM config it hands ray.serve.llm, Ray's own hook that runs the callback on the loading node, and the chart's init
container entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from armed.engines import shipped
from armed.serving.config import serve_config
from armed.serving.profiles import load_profile

MODEL = "shipped:smollm2-135m-instruct"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the conversion with one that records where it built (a config.json, as an HF folder has)."""
    calls: list[Path] = []

    def convert(out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    monkeypatch.setitem(shipped.SHIPPED_CHECKPOINTS, MODEL, shipped.ShippedCheckpoint("smollm2-test-v1", convert))
    return calls


def llm_configs() -> list[dict]:
    app = next(a for a in serve_config(load_profile("cpu-ray-llm"))["applications"] if a["name"] == "llm")
    assert app["import_path"] == "serve_apps.models:build_ray_llm_app"
    (cfg,) = app["args"]["llm_configs"]
    assert cfg["model_loading_config"]["model_source"] == MODEL  # the serve config keeps the name
    return app["args"]["llm_configs"]


def test_the_build_task_names_the_folder_and_builds_nothing(tmp_path, monkeypatch, builds):
    from serve_apps.models import resolve_llm_configs

    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path / "cache" / ".shipped"))
    (cfg,) = resolve_llm_configs(llm_configs())
    folder = tmp_path / "cache" / ".shipped" / "smollm2-test-v1"
    assert cfg["model_loading_config"]["model_source"] == str(folder)
    assert builds == [] and not folder.exists()  # before: converted here, on the build task's pod
    assert cfg["callback_config"] == {"callback_class": "deployments.shipped_checkpoint:BuildShippedCheckpoint",
                                      "callback_kwargs": {"model": MODEL, "path": str(folder)}}


def test_a_config_with_its_own_callback_is_refused_by_name(tmp_path, monkeypatch, builds):
    from serve_apps.models import resolve_llm_configs

    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path))
    (cfg,) = llm_configs()
    with pytest.raises(ValueError, match="brings its own callback_config"):
        resolve_llm_configs([{**cfg, "callback_config": {"callback_class": "x:Y"}}])


def test_rays_model_download_hook_builds_it_on_the_loading_node(tmp_path, monkeypatch, builds):
    """Ray 2.60's own path: LLMConfig parses the callback, and download_model_files (run by initialize_remote_node on
    every node of the replica's placement group before vLLM loads) calls it; the folder appears at the path the
    build task named, whatever the loading node's own environment says."""
    pytest.importorskip("ray.serve.llm", reason="ray.serve.llm needs vLLM + pyarrow installed")
    from ray.llm._internal.common.utils.download_utils import download_model_files
    from ray.llm._internal.common.utils.import_utils import load_class
    from ray.serve.llm import LLMConfig

    from serve_apps.models import resolve_llm_configs

    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path / "named-by-the-build-task"))
    (cfg,) = resolve_llm_configs(llm_configs())
    llm_config = LLMConfig(**cfg)
    folder = Path(llm_config.model_loading_config.model_source)
    assert not folder.exists()

    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path / "the-loading-nodes-own"))
    callback_class = load_class(llm_config.callback_config.callback_class)
    # how llm_config.py get_or_create_callback instantiates it (that method also builds a placement group)
    callback = callback_class(raise_error_on_callback=llm_config.callback_config.raise_error_on_callback,
                              llm_config=llm_config, ctx_kwargs={}, **llm_config.callback_config.callback_kwargs)
    assert download_model_files(model_id=str(folder), callback=callback) == str(folder)
    assert builds and (folder / "config.json").is_file()
    assert not (tmp_path / "the-loading-nodes-own").exists()
    download_model_files(model_id=str(folder), callback=callback)  # a second replica on the node: nothing rebuilt
    assert len(builds) == 1


def test_the_init_container_entry_point_builds_where_the_build_task_looks(tmp_path, monkeypatch, builds, capsys):
    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path / ".shipped"))
    assert shipped.main(["build", MODEL]) == 0
    assert (shipped.shipped_path(MODEL) / "config.json").is_file()
    assert shipped.main(["build", "shipped:nope"]) == 2
    assert "unknown shipped model" in capsys.readouterr().err


def test_a_cache_it_cannot_write_says_what_should_have_built_it(tmp_path, monkeypatch, builds):
    (tmp_path / "ro").write_text("a file where the cache folder should be")  # the test runs as root: no chmod
    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path / "ro" / ".shipped"))
    with pytest.raises(RuntimeError, match="build-shipped init container"):
        shipped.build_shipped(MODEL)


def test_local_callers_still_get_a_built_folder(tmp_path, monkeypatch, builds):
    monkeypatch.setenv(shipped.SHIPPED_DIR_ENV, str(tmp_path))
    assert shipped.resolve_model_source(MODEL) == str(tmp_path / "smollm2-test-v1")
    assert (tmp_path / "smollm2-test-v1" / "config.json").is_file()
    assert shipped.resolve_model_source("/models/x") == "/models/x"
