"""Model weights (values `modelWeights`): a GPU profile never renders without a weight source, and each source
brings only the profile's folders, only to the pools whose roles load them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from armed.serving.profiles import load_profile, profile_names
from ops import chart as ch
from ops.profile_values import CHART_DIR, REPO_ROOT, pool_model_paths

PROFILES = profile_names()
GPU = [n for n in PROFILES if any(pool_model_paths(load_profile(n), p.name) for p in load_profile(n).pools)]
NO_WEIGHTS = [n for n in PROFILES if n not in GPU]
# The armed-trained classifiers are not on the Hub; a user uploads them and names the repos.
TRAINED = {"armed-student-qwen3-0.6b": "me/armed-student", "armed-consistency-qwen3-0.6b": "me/armed-consistency"}
HUB = {"modelWeights.source": "hub", "modelWeights.hub.tokenSecret.name": "hf-token",
       **{f"modelWeights.hub.repos.{k.replace('.', chr(92) + '.')}": v for k, v in TRAINED.items()}}


def groups(objs: list[dict]) -> dict[str, dict]:
    (rs,) = [o for o in objs if o["kind"] == "RayService"]
    return {g["groupName"]: g["template"]["spec"] for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}


def folders(profile: str, pool: str) -> list[str]:
    return [p.removeprefix("/models/") for p in pool_model_paths(load_profile(profile), pool)]


def test_the_split_is_the_one_the_issue_names():
    assert NO_WEIGHTS == ["cpu", "cpu-ray-llm"] and len(GPU) == 6


@pytest.mark.parametrize("name", GPU)
def test_a_gpu_profile_without_a_weight_source_fails_at_render_time(helm, name):
    with pytest.raises(RuntimeError) as exc:
        ch.template(profile=name)  # modelWeights.source: none, the default
    msg = str(exc.value)
    assert f'profile "{name}" loads model weights from /models that nothing provides' in msg
    assert "modelWeights.source" in msg and all(s in msg for s in ("hub", "pvc", "objectStore"))
    assert "Qwen3-Embedding-0.6B (pool" in msg


def test_the_cpu_profile_renders_with_no_weight_source_and_mounts_nothing(helm):
    # (cpu-ray-llm builds its shipped SmolLM2 into the weight cache: tests/k8s/test_chart_weight_cache.py)
    for spec in groups(ch.template(profile="cpu")).values():
        assert "initContainers" not in spec
        assert all(v["name"] != "models" for v in spec["volumes"])


@pytest.mark.parametrize("name", GPU)
def test_hub_downloads_only_the_pools_folders_on_the_pools_that_load_them(helm, name):
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    repos = {**values["modelWeights"]["hub"]["repos"], **TRAINED}
    profile = load_profile(name)
    specs = groups(ch.template(profile=name, sets=HUB))
    for pool in profile.pools:
        spec, want = specs[pool.name], folders(name, pool.name)
        (ray,) = spec["containers"]
        if not want:  # the CPU pool: no download, no volume, no mount
            assert pool.gpus_per_node == 0
            assert "initContainers" not in spec and all(v["name"] != "models" for v in spec["volumes"])
            assert all(m["name"] != "models" for m in ray["volumeMounts"])
            continue
        assert pool.gpus_per_node > 0
        (init,) = spec["initContainers"]
        assert init["command"][:5] == ["python", "-m", "ops.hub_fetch", "--dest", "/models"]
        assert init["command"][5:] == [f"{f}={repos[f]}" for f in want]
        assert init["image"] == ray["image"]  # the pool's own armed image (it has huggingface_hub)
        env = {e["name"]: e for e in init["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
        assert init["resources"]["requests"] and init["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in ray["volumeMounts"]
        (vol,) = [v for v in spec["volumes"] if v["name"] == "models"]
        assert vol["persistentVolumeClaim"] == {"claimName": "armed-model-cache"}  # the default cache, shared


def test_hub_without_a_repo_for_a_folder_fails_naming_it(helm):
    with pytest.raises(RuntimeError) as exc:
        ch.template(profile="a100-80g", sets={"modelWeights.source": "hub"})
    msg = str(exc.value)
    assert "modelWeights.hub.repos has no Hugging Face repo for /models/armed-" in msg
    assert "upload yours" in msg


def test_object_store_copies_only_the_pools_folders(helm):
    specs = groups(ch.template(profile="l4", sets={"modelWeights.source": "objectStore"}))
    assert "initContainers" not in specs["cpu"]  # before: every group, the CPU pool too, copied every model
    (init,) = specs["l4"]["initContainers"]
    includes = [init["args"][i + 1] for i, a in enumerate(init["args"]) if a == "--include"]
    assert includes == [f"/{f}/**" for f in folders("l4", "l4")]
    assert "/Qwen3-32B/**" not in includes  # the l4 profile loads the AWQ build only
    assert init["args"][-2:] == [":s3:armed-models/models", "/models"]


def test_pvc_is_mounted_only_where_models_are_loaded(helm):
    specs = groups(ch.template(profile="a100-80g", sets={"modelWeights.source": "pvc"}))
    assert all(v["name"] != "models" for v in specs["cpu"]["volumes"])
    (vol,) = [v for v in specs["a100-80g"]["volumes"] if v["name"] == "models"]
    assert vol["persistentVolumeClaim"] == {"claimName": "armed-models", "readOnly": True}
    assert "initContainers" not in specs["a100-80g"]


def test_hub_render_is_valid(helm, crds):
    assert ch.validate_objects(ch.template(profile="h100-x1", sets=HUB), crds) == {}


def test_hub_repos_agree_with_the_documented_model_table():
    """values.yaml's default repos are the `huggingface-cli download` rows of docs/serving.md's model-source table."""
    readme = (REPO_ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"`huggingface-cli download ([\w.-]+/[\w.-]+) --local-dir /models/([\w.-]+)`", readme))
    documented = {folder: repo for repo, folder in table.items()}
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    repos = values["modelWeights"]["hub"]["repos"]
    profile_folders = {f for n in GPU for p in load_profile(n).pools for f in folders(n, p.name)}
    assert repos == {f: r for f, r in documented.items() if f in profile_folders}
    assert profile_folders - set(repos) == set(TRAINED)  # only armed's own classifiers need a repo of yours


def test_chart_files_carry_the_pool_model_paths():
    for name in PROFILES:
        doc = yaml.safe_load((CHART_DIR / "files" / "profiles" / f"{name}.yaml").read_text(encoding="utf-8"))
        for pool in doc["pools"]:
            assert pool["modelPaths"] == pool_model_paths(load_profile(name), pool["name"])


def test_hub_fetch_runs_from_the_image_source_tree():
    assert (Path(REPO_ROOT) / "ops" / "hub_fetch.py").is_file()
    assert "COPY --chown=1000:100 ops ./ops" in (REPO_ROOT / "k8s" / "Dockerfile").read_text(encoding="utf-8")
