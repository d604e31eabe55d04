"""A custom profile file (not in gpu_profiles/, so not in the image) gives a release whose replicas build from
serveConfigV2 alone: every armed app's args carry the whole validated profile."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest
import yaml

from armed.errors import InputError
from armed.serving.cli import cmd_serve_config
from armed.serving.profiles import PROFILE_DIR, load_profile, resolve_profile
from ops import chart as ch
from ops.cli import main as ops_main

NAME = "my-l4"


@pytest.fixture()
def custom(tmp_path: Path) -> Path:
    doc = yaml.safe_load((PROFILE_DIR / "l4.yaml").read_text(encoding="utf-8"))
    doc["name"] = NAME
    doc["judge"]["max_batch_pairs"] = 17  # what only this file says (the shipped l4 has another value)
    doc["models"]["embedder"]["replicas"]["max"] = 3
    path = tmp_path / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _builder(import_path: str):
    module, name = import_path.split(":")
    return getattr(importlib.import_module(module), name)


def test_a_custom_profile_travels_whole_in_serve_config_v2(helm, tmp_path, custom, capsys):
    profile = load_profile(custom)
    assert load_profile("l4").judge.max_batch_pairs != 17
    with pytest.raises(InputError, match="no profile"):
        load_profile(NAME)  # the image's gpu_profiles/ does not have it: the name alone would fail "no profile"

    assert ops_main(["render-values", "--profile", str(custom)]) == 0
    values = tmp_path / "values.yaml"
    values.write_text(capsys.readouterr().out, encoding="utf-8")
    objs = ch.template(values_files=(values,), sets={"modelWeights.source": "pvc"})
    (rs,) = [o for o in objs if o["kind"] == "RayService"]
    assert rs["metadata"]["labels"]["armed.io/profile"] == NAME
    text = rs["spec"]["serveConfigV2"]

    out = tmp_path / "serve.yaml"  # `armed serve-config --profile ./my-l4.yaml` writes the same bytes
    assert cmd_serve_config(argparse.Namespace(profile=str(custom), out=out)) == 0
    assert out.read_text(encoding="utf-8") == text

    custom.unlink()  # from here on, only serveConfigV2 knows the profile
    apps = yaml.safe_load(text)["applications"]
    built = 0
    for app in apps:
        if app["import_path"] == "serve_apps.models:build_ray_llm_app":
            # ray.serve.llm's app carries its engine settings (llm_configs), not the profile.
            (llm_config,) = app["args"]["llm_configs"]
            assert llm_config["model_loading_config"]["model_source"] == profile.models[app["name"]].engine.model
            continue
        arg = app["args"]["profile"]
        assert isinstance(arg, dict) and arg == profile.model_dump(mode="json")
        assert resolve_profile(arg) == profile
        application = _builder(app["import_path"])(app["args"])  # the builder's own arg validation and build
        init = application._bound_deployment.init_args[0]
        if app["name"] == "judge":
            assert resolve_profile(init["profile"]).judge.max_batch_pairs == 17
        else:
            assert init["role"] == app["name"] and init["limits"] == profile.limits.model_dump()
        built += 1
    ray_llm = [a for a in apps if a["import_path"] == "serve_apps.models:build_ray_llm_app"]
    assert built == len(apps) - len(ray_llm) and {a["name"] for a in ray_llm} == {
        r for r in profile.deployed_roles() if profile.models[r].serving == "ray-llm"}

    # The judge app's HTTP replica, constructed as Serve would (the class under @serve.ingress), from those args.
    from deployments import auth
    from deployments.judge import Gateway

    judge_args = next(a for a in apps if a["name"] == "judge")["args"]
    cls = Gateway.func_or_class.__mro__[1]
    gateway = cls.__new__(cls)
    try:
        cls.__init__(gateway, judge_args)
    finally:
        auth.reset()
    assert gateway.max_batch_pairs == 17
    embedder = next(a for a in apps if a["name"] == "embedder")
    assert embedder["deployments"][0]["autoscaling_config"]["max_replicas"] == 3


def test_a_bad_profile_dict_is_an_input_error_naming_the_field():
    doc = load_profile("cpu").model_dump(mode="json")
    doc["judge"]["max_batch_pairs"] = 0
    with pytest.raises(InputError, match=r"profile\[cpu\]\.judge\.max_batch_pairs"):
        resolve_profile(doc)
