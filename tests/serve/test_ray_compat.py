"""The Ray pin: armed/serving/ray_compat.py, the one module that uses Ray's private API, against the installed Ray.

It pins the Ray version the module was read against (RAY_CHECKED) to the installed Ray and to pyproject's pin, keeps
every other shipped module off Ray's private API, and calls every function of the module for real: the driver
ones first, without a Ray; then one small local Serve instance (tests/serve/conftest.py `serve_port`) with a
0.1-CPU deployment for the handle, controller and session functions; the ray.serve.llm pieces where ray[llm] is
installed. A Ray upgrade that moves any of it fails here, by name, before it fails anywhere else.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import tomllib
from pathlib import Path

import pytest

from armed.serving import ray_compat

pytestmark = pytest.mark.ray_cluster

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("armed", "deployments", "serve_apps", "ops")
# Ray objects' private attributes armed once read outside the compat module (the handle's router).
PRIVATE_ATTRS = {"_router", "_asyncio_router", "_request_router", "_global_node", "_private", "_internal"}


def _private_ray_uses(path: Path) -> list[str]:
    """Imports of a private Ray module or name, and reads of known private Ray attributes, in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ray":
            private_module = any(part.startswith("_") for part in node.module.split("."))
            private_names = [a.name for a in node.names if a.name.startswith("_")]
            if private_module or private_names:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "ray" and any(p.startswith("_") for p in parts):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRS:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and name.value in PRIVATE_ATTRS:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} getattr(..., {name.value!r})")
    return found


def test_the_checked_ray_is_the_installed_and_the_pinned_one() -> None:
    import ray

    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = [d for d in [*deps["dependencies"], *deps["optional-dependencies"]["gpu"]] if d.startswith("ray[")]
    assert pins == ["ray[serve]==2.60.0", "ray[llm]==2.60.0"]  # both of pyproject's Ray pins, one version
    assert {re.sub(r"^ray\[\w+\]==", "", p) for p in pins} == {ray_compat.RAY_CHECKED}
    assert ray.__version__ == ray_compat.RAY_CHECKED


def test_no_shipped_module_but_the_compat_module_uses_rays_private_api() -> None:
    compat = REPO / "armed" / "serving" / "ray_compat.py"
    uses = {p: _private_ray_uses(p) for pkg in SHIPPED for p in sorted((REPO / pkg).rglob("*.py"))}
    assert len(uses[compat]) >= 8  # the scan does see private uses where they are
    assert [u for p, found in uses.items() if p != compat for u in found] == []


# --- the driver, no Ray started -------------------------------------------------------------------------------------


def test_auto_connect_is_off_so_a_ray_call_without_ray_fails_instead_of_starting_one() -> None:
    import ray
    from ray.exceptions import RaySystemError

    ray_compat.disable_auto_connect()  # tests/conftest.py did already; idempotent
    assert ray_compat.auto_connect_enabled() is False
    assert not ray.is_initialized()
    with pytest.raises(RaySystemError, match="Ray has not been started yet"):
        ray.put(1)
    assert not ray.is_initialized()


def test_refresh_driver_auth_rereads_what_import_ray_froze(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import ray_constants, services
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    was_cluster, had_token = ray_constants.ENABLE_RAY_CLUSTER, loader.has_token()
    token = "f" * 64
    try:
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)
        ray_compat.refresh_driver_auth(cluster=False)
        assert loader.has_token() and loader.get_raw_token() == token  # the cached "no token" is gone
        assert ray_constants.ENABLE_RAY_CLUSTER is False
        assert services.get_node_ip_address() == "127.0.0.1"  # what Ray derives from it: a loopback node
    finally:
        monkeypatch.undo()  # the environment back before Ray re-reads it
        ray_compat.refresh_driver_auth(cluster=was_cluster)
    assert ray_constants.ENABLE_RAY_CLUSTER is was_cluster and loader.has_token() is had_token


def _listening(port: int) -> set[str]:
    """The addresses this process listens on at `port`, IPv4-mapped IPv6 ones as IPv4 (gRPC binds dual-stack)."""
    import ipaddress

    import psutil

    out = set()
    for c in psutil.Process().net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port:
            ip = ipaddress.ip_address(c.laddr.ip)
            out.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return out


def test_the_replica_grpc_server_binds_loopback_through_rays_own_function() -> None:
    from concurrent import futures

    import grpc
    from ray.serve._private import replica

    # Ray still starts each replica's inter-deployment server through this module-level name, on every interface
    assert 'add_port_to_grpc_server(self._server, "[::]:0")' in inspect.getsource(replica)
    original = replica.add_port_to_grpc_server
    servers = [grpc.server(futures.ThreadPoolExecutor(max_workers=1)) for _ in range(2)]
    try:
        unpatched = original(servers[0], "[::]:0")  # the control: Ray's own function binds every interface
        assert ray_compat.bind_replica_grpc_to_loopback() is True
        assert ray_compat.bind_replica_grpc_to_loopback() is True  # idempotent: one wrapper, not a stack
        assert replica.add_port_to_grpc_server.__closure__[0].cell_contents is original  # type: ignore[index]
        patched = replica.add_port_to_grpc_server(servers[1], "[::]:0")  # what the replica calls
        for server in servers:
            server.start()
        assert _listening(unpatched) == {"::"}
        assert _listening(patched) == {"127.0.0.1"}
    finally:
        for server in servers:
            server.stop(None)
        replica.add_port_to_grpc_server = original


# --- on a local Serve instance --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo(serve_port: int) -> str:
    """One 0.1-CPU deployment with an autoscaling config (what `armed status` reads back from serve_details)."""
    from ray import serve

    @serve.deployment(name="echo", ray_actor_options={"num_cpus": 0.1},
                      autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 3})
    class Echo:
        async def __call__(self, x: str) -> str:
            return x

    serve.run(Echo.bind(), name="echo-app", route_prefix=None)
    return "echo-app"


@pytest.mark.slow
def test_serve_details_and_controller_on_a_running_serve(serve_port: int, echo: str) -> None:
    assert ray_compat.serve_controller_alive() is True
    details = ray_compat.serve_details()
    assert details["http_options"]["port"] == serve_port  # what `armed up` compares with --port
    conf = details["applications"][echo]["deployments"]["echo"]["deployment_config"]
    auto = conf["autoscaling_config"]
    assert auto["max_replicas"] == 2 and auto["target_ongoing_requests"] == 3


@pytest.mark.slow
def test_session_dir_holds_the_replicas_logs(echo: str) -> None:
    session = ray_compat.session_dir()
    assert session.name.startswith("session_") and (session / "logs").is_dir()
    assert any(p.name.startswith("replica_") for p in (session / "logs" / "serve").iterdir())  # the fuzz reads these


@pytest.mark.slow
def test_handle_running_replicas_reads_the_handles_router(echo: str) -> None:
    from ray.serve.handle import DeploymentHandle

    from tests.serve.conftest import replica_count

    handle = DeploymentHandle("echo", echo)  # a fresh handle (get_deployment_handle may reuse one)
    assert ray_compat.handle_running_replicas(handle) is None  # no router before the first call: ask the controller

    async def call_then_read() -> int | None:
        try:
            assert await handle.remote("布洛芬") == "布洛芬"
            return ray_compat.handle_running_replicas(handle)
        finally:
            # Not in Serve's handle cache, so serve.shutdown() would not stop its router: its metrics pusher would
            # outlive Ray and log "Ray has not been started yet" at interpreter exit.
            await handle.shutdown_async()

    assert asyncio.run(call_then_read()) == replica_count(echo, "echo") == 1


@pytest.mark.slow
def test_the_ray_serve_llm_pieces(echo: str) -> None:
    """Each private piece deployments/llm_ingress.py and ray_llm_client.py use, on the l4 profile's LLM config (no
    GPU: only building, not serving)."""
    pytest.importorskip("ray.serve.llm", reason="ray.serve.llm needs vLLM + pyarrow installed")
    from fastapi import FastAPI
    from ray.serve import Application

    from armed.serving.config import serve_config
    from armed.serving.profiles import load_profile

    request = ray_compat.llm_embedding_completion_request()(model="m", input=["维生素C"], encoding_format="float")
    assert request.input == ["维生素C"] and request.encoding_format == "float"

    parts = ray_compat.llm_ingress_parts()
    assert parts.direct_streaming is False  # RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING unset: the ingress is ours
    llm = next(a for a in serve_config(load_profile("l4"))["applications"] if a["name"] == "llm")
    args = parts.serving_args.model_validate(llm["args"])
    (cfg,) = args.llm_configs
    assert issubclass(args.ingress_cls_config.ingress_cls, parts.ingress_base)
    options = parts.apply_deployment_defaults(parts.ingress_base.get_deployment_options(args.llm_configs),
                                              args.ingress_deployment_config)
    assert options["ray_actor_options"]["num_cpus"] == llm["args"]["ingress_deployment_config"]["ray_actor_options"][
        "num_cpus"]
    app = parts.new_app()
    assert isinstance(app, FastAPI)
    ingress = parts.make_fastapi_ingress(parts.ingress_base, app=app)
    assert issubclass(ingress, parts.ingress_base)
    assert parts.model_metadata(cfg.model_id, cfg).id == cfg.model_id
    server = parts.build_llm_deployment(cfg, override_serve_options={"name": "armed-llm-pin"})
    assert isinstance(server, Application)
    assert server._bound_deployment.name == "armed-llm-pin"


@pytest.mark.slow
def test_delete_apps_deletes_them_all_and_only_them(echo: str) -> None:
    from ray import serve

    @serve.deployment(name="noop", ray_actor_options={"num_cpus": 0.01})
    class Noop:
        async def __call__(self) -> str:
            return "ok"

    serve.run_many([serve.RunTarget(Noop.bind(), name=n, route_prefix=None) for n in ("gone-a", "gone-b")])
    assert {"gone-a", "gone-b"} <= set(serve.status().applications)
    ray_compat.delete_apps(["gone-a", "gone-b"], timeout_s=60)
    left = set(serve.status().applications)
    assert "gone-a" not in left and "gone-b" not in left and echo in left


@pytest.mark.slow
def test_controller_alive_is_false_once_serve_is_shut_down(echo: str) -> None:
    """Last in this module (the fixture's own shutdown then finds nothing to stop)."""
    from ray import serve

    serve.shutdown()
    assert ray_compat.serve_controller_alive() is False
