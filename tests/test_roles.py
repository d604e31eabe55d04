"""The role table (armed/roles.py) is the one place roles are enumerated, and everything it names is real."""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import typing

import pytest
import yaml

from armed.engines.base import ChatModel, ModelClients
from armed.roles import (
    BATCHED_ROLES,
    IN_PROCESS_KINDS,
    ROLE_NAMES,
    ROLES,
    PairClassifier,
    get_role,
    resolve,
    roles_for_route,
)
from armed.serving.profiles import PROFILE_DIR, Profile
from armed.settings import EngineKind, EngineSpec, ModelsSettings
from tests.source_tree import REPO, source_trees

TABLE = REPO / "armed" / "roles.py"


def _protocol_methods(protocol: type, *, remote_only: bool = False) -> list[str]:
    """The protocol's methods; `remote_only`: its async ones, the calls that cross a deployment handle (every
    method of a role protocol is async, so the deployment and its handle client implement all of it)."""
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")
            and (not remote_only or inspect.iscoroutinefunction(v))]


def _role_literals(node: ast.AST) -> list[str]:
    """The role names among a collection literal's string elements (a dict's keys)."""
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in ROLES]


def test_no_role_list_outside_the_table() -> None:
    """A tuple, list, set or dict (or Literal[...]) naming two or more roles anywhere in the source tree is a second
    list of roles, which drifts from the table: read armed.roles instead (ROLE_NAMES, a Role's fields, ...)."""
    found = [f"{path.relative_to(REPO)}:{node.lineno}: {names}"
             for path, tree in source_trees(skip=TABLE) for node in ast.walk(tree)
             if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and len(names := _role_literals(node)) >= 2]
    assert not found, "role names enumerated outside armed/roles.py:\n" + "\n".join(found)


def test_the_check_catches_a_role_list() -> None:
    tree = ast.parse('if role in ("llm", "vl"):\n    pass\nX = {"embedder": 1, "ocr": 2}\n')
    hits = [_role_literals(n) for n in ast.walk(tree) if isinstance(n, (ast.Tuple, ast.Dict))]
    assert ["llm", "vl"] in hits and ["embedder", "ocr"] in hits


def test_typed_fields_are_the_tables_roles() -> None:
    """ModelsSettings and ModelClients keep one typed field per role (attribute access, defaults, docs): the same
    roles as the table, no more, no fewer."""
    assert set(ModelsSettings.model_fields) == set(ROLE_NAMES)
    assert {f.name for f in dataclasses.fields(ModelClients)} - {"extra_ids"} == set(ROLE_NAMES)
    # the profile's own role type is the table's, in its order (the Serve config's order of model apps)
    role_type = typing.get_args(Profile.model_fields["models"].annotation)[0]
    assert typing.get_args(role_type) == ROLE_NAMES


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_settings_accept_exactly_the_tables_kinds(name: str) -> None:
    role = ROLES[name]
    assert set(role.engine_kinds) <= set(typing.get_args(EngineKind))
    for kind in typing.get_args(EngineKind):
        spec = EngineSpec(kind=kind, model="/models/x" if kind in ("vllm", "transformers") else None)
        others = {r: EngineSpec(kind="none") for r in ROLE_NAMES if r != name}
        if kind in role.engine_kinds:
            assert getattr(ModelsSettings(**others, **{name: spec}), name).kind == kind
        else:
            with pytest.raises(ValueError, match="cannot serve that role"):
                ModelsSettings(**others, **{name: spec})


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_every_import_path_resolves_and_implements_the_protocol(name: str) -> None:
    from armed_testing.zero_work import ZeroWork
    from deployments.clients import HandleClient, ReplicaAvailability, Target
    from tests.security.serve_inprocess import user_class

    role = ROLES[name]
    remote = _protocol_methods(role.protocol, remote_only=True)
    assert remote, f"{role.protocol.__name__} has no async methods?"
    assert remote == _protocol_methods(role.protocol), "a sync protocol method cannot cross a deployment handle"
    for kind in role.engines:
        assert callable(role.engine_builder(kind)), (name, kind)
    # the deployment and the judge's clients over it answer every call that crosses the handle
    cls = user_class(role.deployment_class())
    assert all(callable(getattr(cls, m, None)) for m in remote), f"{cls.__name__} lacks one of {remote}"
    for serving in role.serving:
        client_cls = role.client_class(serving)
        assert issubclass(client_cls, HandleClient)
        extra = {"labels": role.labels} if role.labels else {}
        client = client_cls(Target(name, name, name), role.model_name, ReplicaAvailability(), **extra)
        assert all(callable(getattr(client, m, None)) for m in remote), f"{client_cls.__name__} lacks one of {remote}"
        assert client.model_id == role.model_name and getattr(client, "labels", ()) == role.labels
    builder = role.builder_function()
    assert callable(builder) and role.builder.endswith(":" + builder.__name__)
    # an engine (here the zero-work one the Serve tests inject) implements the whole protocol
    assert isinstance(ZeroWork()(name, EngineSpec(kind="none")), role.protocol)


def _post_routes(app: typing.Any, cls: type | None = None) -> set[str]:
    return {r.path for r in app.routes if "POST" in getattr(r, "methods", ()) and (
        cls is None or getattr(r.endpoint, "__qualname__", "").startswith(cls.__qualname__ + "."))}


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_each_deployment_answers_the_roles_routes(name: str) -> None:
    from deployments.judge import gateway_api
    from tests.security.serve_inprocess import _ingress_app, user_class

    role = ROLES[name]
    app = _ingress_app(role.deployment_class())
    assert _post_routes(app, user_class(role.deployment_class())) == set(role.routes)
    assert "/v1/models" in {r.path for r in app.routes}
    assert set(role.routes) <= _post_routes(gateway_api)  # the gateway routes each by the request's `model`
    for route in role.routes:
        assert name in roles_for_route(route)


def test_table_facts() -> None:
    for role in ROLES.values():
        assert role.model_name == f"armed-{role.name}" and role.doc.strip() and role.routes
        assert bool(role.labels) == (role.protocol is PairClassifier)
        assert role.stand_in is None or role.stand_in in IN_PROCESS_KINDS
        assert "armed" in role.serving
    assert ROLES["student"].labels == ("highly_relevant", "moderately_relevant", "weakly_relevant", "irrelevant")
    assert IN_PROCESS_KINDS == {"none", "kb", "ocr-kb"}
    assert BATCHED_ROLES == {r.name for r in ROLES.values() if r.batched}
    assert [r for r in ROLE_NAMES if "ray-llm" in ROLES[r].serving] == ["llm", "embedder", "vl"]
    # vLLM's runner follows the protocol: chat generates, embedders and classifiers pool
    for role in ROLES.values():
        if role.vllm_runner:
            assert role.vllm_runner == ("generate" if role.protocol is ChatModel else "pooling"), role.name
    with pytest.raises(ValueError, match="unknown role 'tts'"):
        get_role("tts")
    with pytest.raises(ValueError, match="not an import path"):
        resolve("armed.roles")


def test_a_profile_may_serve_only_what_the_table_allows() -> None:
    data = yaml.safe_load((PROFILE_DIR / "a100-80g.yaml").read_text())
    ok = copy.deepcopy(data)
    ok["models"]["llm"]["serving"] = "ray-llm"
    Profile.model_validate(ok)
    bad = copy.deepcopy(data)
    bad["models"]["student"]["serving"] = "ray-llm"  # vllm, but LLMServer has no classify route
    with pytest.raises(ValueError, match="the student role is served by armed"):
        Profile.model_validate(bad)
