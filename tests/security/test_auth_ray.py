"""Auth without side doors: the key reaches every data route, a reused Ray cannot drop it, and armed's local Ray
answers no one without its token and listens on loopback only.

The first half tests the decisions (no Ray). The second half runs the real `armed up` (zero-work engines, its own
ARMED_RAY_DIR and ports) as a subprocess, once with a key, after a keyless Ray was refused; run this file under
`flock /tmp/armed-ray.lock` like every Ray test. Nothing here runs `ray stop`: only the Ray this file started is
stopped, by its session directory.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from armed.serving import local_ray
from armed.serving.cli import data_routes, unguarded_routes
from armed.serving.config import serve_config
from armed.serving.profiles import load_profile
from armed.settings import ServingSettings
from deployments import loopback

pytestmark = pytest.mark.ray_cluster

REPO = Path(__file__).resolve().parents[2]
KEY = "armed-test-key-6d1f"
LOOPBACK_IPS = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


# --- decisions (no Ray) -----------------------------------------------------------------------------------------


def _record(key: str | None, auth_mode: str = "token") -> local_ray.RayRecord:
    return local_ray.RayRecord(
        address="127.0.0.1:40000", node_ip="127.0.0.1", temp_dir="/tmp/x/t", auth_mode=auth_mode,
        api_key=local_ray.KeyRecord.of(SecretStr(key)) if key else None, metrics_port=40001, started_at=0.0,
    )


def test_reuse_is_refused_unless_the_running_ray_has_the_same_key() -> None:
    k, other = SecretStr("k1"), SecretStr("k2")
    assert local_ray.reuse_refusal(_record(None), None) is None
    assert local_ray.reuse_refusal(_record("k1"), k) is None
    refusal = local_ray.reuse_refusal(_record(None), k)
    assert refusal and "started without ARMED_API_KEY" in refusal and "armed down" in refusal
    assert "127.0.0.1:40000" in refusal
    assert "different ARMED_API_KEY" in (local_ray.reuse_refusal(_record("k1"), other) or "")
    assert "not set now" in (local_ray.reuse_refusal(_record("k1"), None) or "")
    assert "without Ray token auth" in (local_ray.reuse_refusal(_record(None, auth_mode="disabled"), None) or "")


def test_the_record_holds_a_salted_hash_never_the_key() -> None:
    a, b = local_ray.KeyRecord.of(SecretStr(KEY)), local_ray.KeyRecord.of(SecretStr(KEY))
    assert a.matches(SecretStr(KEY)) and not a.matches(SecretStr(KEY + "x"))
    assert a.sha256 != b.sha256  # salted: equal keys are not recognisable across records
    assert KEY not in _record(KEY).model_dump_json()


def test_ray_env_forces_token_auth_and_a_loopback_node(tmp_path: Path) -> None:
    home = local_ray.RayHome(tmp_path)
    base = {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "leaked", "RAY_ADDRESS": "10.0.0.9:6379",
            "ARMED_API_KEY": KEY, "PATH": "/bin"}
    env = local_ray.ray_env(home, "127.0.0.1", base)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(home.token_path)
    assert "RAY_AUTH_TOKEN" not in env and "RAY_ADDRESS" not in env  # nothing overrides our token / address
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # keeps Ray from swapping 127.0.0.1 for the host IP
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in local_ray.ray_env(home, "10.1.2.3", base)
    # `ray start` gets exactly the key that is recorded: every Ray process, so every replica, inherits it
    assert local_ray.start_env(home, "127.0.0.1", SecretStr("new"), base)["ARMED_API_KEY"] == "new"
    assert "ARMED_API_KEY" not in local_ray.start_env(home, "127.0.0.1", None, base)
    cmd = local_ray.start_command(home, port=1, node_ip="127.0.0.1", metrics_port=2, agent_port=3, client_port=4)
    assert "--node-ip-address=127.0.0.1" in cmd and f"--temp-dir={home.temp_dir}" in cmd
    assert "--include-dashboard=false" in cmd and "--ray-client-server-port=4" in cmd  # never the shared 10001


def test_ray_home_is_private_and_short_enough_for_sockets(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="arx-", dir="/tmp"))
    try:
        home = local_ray.home(short / "h")
        assert (home.root.stat().st_mode & 0o777) == 0o700
        record = _record(KEY)
        home.write_record(record)
        assert (home.record_path.stat().st_mode & 0o777) == 0o600
        assert home.read_record() == record
        home.record_path.write_text("{not json")
        assert home.read_record() is None
    finally:
        shutil.rmtree(short)
    with pytest.raises(ValueError, match="too long"):
        local_ray.home(tmp_path / ("x" * 60))


def test_the_key_check_covers_every_application() -> None:
    cpu = data_routes(serve_config(load_profile("cpu")))
    assert cpu == ["/models/embedder/v1/models", "/models/ocr/v1/models", "/models/student/v1/models", "/v1/models"]
    gpu = data_routes(serve_config(load_profile("l4")))
    assert "/models/llm/v1/models" in gpu  # the ray.serve.llm app too


class _Routes(http.server.BaseHTTPRequestHandler):
    """/guarded wants the key; /open answers everyone; /broken refuses even the key."""

    def do_GET(self) -> None:
        authorised = self.headers.get("Authorization") == f"Bearer {KEY}"
        code = {"/guarded": 200 if authorised else 401, "/open": 200, "/broken": 401}[self.path]
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_unguarded_routes_names_every_route_that_does_not_want_the_key() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        bad = unguarded_routes(base, ["/guarded", "/open", "/broken"], SecretStr(KEY))
        assert [b.split(" ")[0] for b in bad] == ["/open", "/broken"]
        assert "without the key: 200" in bad[0]
    finally:
        server.shutdown()


def test_replica_grpc_server_moves_to_loopback_only_on_a_loopback_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private import replica

    bound: list[str] = []
    monkeypatch.setattr(replica, "add_port_to_grpc_server", lambda server, address: bound.append(address) or 1)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    assert loopback.keep_replica_grpc_on_loopback() is False  # a cluster node: untouched
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    assert loopback.keep_replica_grpc_on_loopback() is True
    assert loopback.keep_replica_grpc_on_loopback() is True  # idempotent: one wrapper, not a stack
    replica.add_port_to_grpc_server(None, "[::]:0")
    replica.add_port_to_grpc_server(None, "10.0.0.1:7")
    assert bound == ["127.0.0.1:0", "10.0.0.1:7"]


@pytest.mark.slow
def test_ray_llm_ingress_requires_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU profiles' ray.serve.llm app: its frozen FastAPI app answers 401 without the key (no GPU needed)."""
    pytest.importorskip("ray.serve.llm", reason="ray.serve.llm needs vLLM + pyarrow installed")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from deployments import auth
    from serve_apps.models import build_ray_llm_app

    cfg = serve_config(load_profile("l4"))
    llm = next(a for a in cfg["applications"] if a["name"] == "llm")
    assert llm["import_path"] == "serve_apps.models:build_ray_llm_app"
    import ray

    # ray.serve.llm's builder reads the driver's runtime context; the tests run with auto-connect off
    # (tests/conftest.py), so it gets a Ray of its own, stopped right after the build.
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        app = build_ray_llm_app(llm["args"])
    finally:
        if started:
            ray.shutdown()
    ingress = app._bound_deployment.func_or_class
    # Serve freezes the app into the ingress wrapper's constructor (ray/serve/api.py `ingress`): find it there.
    cells = [c.cell_contents for c in ingress.__init__.__closure__ or ()]
    (frozen,) = [c for c in cells if isinstance(c, FastAPI)]
    auth.load_api_key(ServingSettings(api_key=KEY))
    try:
        client = TestClient(frozen, raise_server_exceptions=False)
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                             ("GET", "/docs")):
            r = client.request(method, path, json={"model": "armed-llm"})
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["type"] == "authentication_error"
    finally:
        auth.reset()


def test_up_refuses_a_port_already_in_use_before_starting_anything() -> None:
    """An older Serve (or anything) on the port: exit 2, and no Ray was started for nothing."""
    import socket

    ray_dir = Path(tempfile.mkdtemp(prefix="arx-", dir="/tmp"))
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            r = _armed(["up", "--port", str(busy.getsockname()[1])], ray_dir, None, timeout=120)
        assert r.returncode == 2 and "already in use" in r.stderr, r.stderr[-500:]
        assert not local_ray.session_processes(str(local_ray.RayHome(ray_dir).temp_dir))
        assert not (ray_dir / "cluster.json").exists()
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


# --- the real `armed up` ----------------------------------------------------------------------------------------


def _armed(args: list[str], ray_dir: Path, key: str | None, timeout: float = 600,
           module: str = "armed.cli") -> subprocess.CompletedProcess:
    """The real CLI in a subprocess; `module="armed_testing.cli"` is `armed up` with zero-work engines injected."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARMED_RAY_DIR": str(ray_dir), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("ARMED_API_KEY", None)
    if key is not None:
        env["ARMED_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def keyed_stack() -> Iterator[dict[str, Any]]:
    """A keyless Ray that `ARMED_API_KEY=k armed up` refuses to reuse; then `armed up` with the key, for real."""
    ray_dir = Path(tempfile.mkdtemp(prefix="arx-", dir="/tmp"))
    home = local_ray.home(ray_dir)
    port = local_ray.free_port()
    up = ["up", "--profile", "cpu", "--port", str(port), "--timeout", "300"]
    try:
        keyless = local_ray.start(home, None)  # what an earlier keyless `armed up` leaves running
        refused = _armed(up, ray_dir, KEY, module="armed_testing.cli")
        assert refused.returncode == 2, refused.stderr
        assert f"the Ray at {keyless.address}" in refused.stderr
        assert "was started without ARMED_API_KEY; run `armed down` first" in refused.stderr
        assert local_ray.is_running(keyless)  # refused, not restarted behind the user's back
        down = _armed(["down"], ray_dir, None)
        assert down.returncode == 0 and "armed is down" in down.stdout, down.stderr
        assert not local_ray.session_processes(keyless.temp_dir)

        started = _armed(up, ray_dir, KEY, module="armed_testing.cli")
        assert started.returncode == 0, started.stderr[-3000:]
        record = home.read_record()
        assert record is not None and record.api_key is not None and record.api_key.matches(SecretStr(KEY))
        yield {"base": f"http://127.0.0.1:{port}", "ray_dir": ray_dir, "home": home, "record": record, "up": up,
               "stdout": started.stdout}
    finally:
        _armed(["down"], ray_dir, None, timeout=120)
        local_ray.stop(home)  # whatever is left of this file's Ray, and only of it
        shutil.rmtree(ray_dir, ignore_errors=True)


PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC"


def _data_requests() -> list[tuple[str, str, dict | None]]:
    judge = {"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊"}}
    reqs: list[tuple[str, str, dict | None]] = [
        ("POST", "/v1/judge", judge),
        ("POST", "/v1/judge/batch", {"pairs": [judge]}),
        ("GET", "/v1/models", None),
        ("POST", "/v1/embeddings", {"model": "armed-embedder", "input": ["布洛芬"]}),
        ("POST", "/v1/classify", {"model": "armed-student", "pairs": [["布洛芬", "布洛芬缓释胶囊"]]}),
        ("POST", "/v1/chat/completions", {"model": "armed-llm", "messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/v1/ocr", {"model": "armed-ocr", "image": PNG_1PX}),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("GET", "/no-such-route", None),
    ]
    for role, body in (("embedder", {"model": "armed-embedder", "input": "x"}),
                       ("student", {"model": "armed-student", "pairs": [["a", "b"]]}),
                       ("ocr", {"model": "armed-ocr", "image": PNG_1PX})):
        route = {"embedder": "embeddings", "student": "classify", "ocr": "ocr"}[role]
        reqs += [("GET", f"/models/{role}/v1/models", None), ("POST", f"/models/{role}/v1/{route}", body),
                 ("GET", f"/models/{role}/docs", None)]
    return reqs


@pytest.mark.slow
def test_every_data_route_needs_the_key_and_health_stays_open(keyed_stack: dict) -> None:
    assert "auth:    Authorization: Bearer $ARMED_API_KEY" in keyed_stack["stdout"]
    with httpx.Client(base_url=keyed_stack["base"], timeout=60) as c:
        for method, path, body in _data_requests():
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text[:200])
                assert r.json()["error"]["type"] == "authentication_error"
        ok = {"Authorization": f"Bearer {KEY}"}
        r = c.post("/v1/judge", json={"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊"}}, headers=ok)
        assert r.status_code == 200 and r.json()["level"], r.text[:300]
        assert c.get("/models/embedder/v1/models", headers=ok).status_code == 200
        # Serve's own health and route table: open by design (probes carry no key), and they serve no data
        assert c.get("/-/healthz").status_code == 200
        routes = c.get("/-/routes")
        assert routes.status_code == 200 and "/models/embedder" in routes.text


@pytest.mark.slow
def test_every_socket_of_armeds_ray_listens_on_loopback(keyed_stack: dict) -> None:
    record = keyed_stack["record"]
    procs = local_ray.session_processes(record.temp_dir, record.address)  # Ray Client's server too
    sockets = local_ray.listening_sockets(procs)
    names = {name for _, name, _, _ in sockets}
    # not vacuous: the GCS, the raylet, the agents, Serve's proxy and the replicas are all there and listening
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::ProxyActor"} <= names, names
    assert any(n.startswith("ray::ServeReplica:judge:Gateway") for n in names), names
    exposed = [s for s in sockets if s[2] not in LOOPBACK_IPS]
    assert exposed == [], exposed
    ports = {port for *_, port in sockets}
    assert keyed_stack["record"].metrics_port in ports  # the ray_armed_* metrics: there, on 127.0.0.1 only


_DRIVER = textwrap.dedent("""
    import sys, ray
    from ray import serve
    try:
        ray.init(address=sys.argv[1], log_to_driver=False)
        handle = serve.get_deployment_handle("Judge", app_name="judge")
        pair = {"query": "布洛芬", "product": {"name": "布洛芬缓释胶囊"}}
        print("JUDGED", handle.judge.remote(pair).result(timeout_s=120)["status"])
    except BaseException as exc:
        print("REFUSED", type(exc).__name__)
""")


@pytest.mark.slow
def test_a_driver_without_the_token_gets_no_handle(keyed_stack: dict) -> None:
    """Any local Ray driver could call the judge through a Serve handle, past the HTTP key: not without the token."""
    record, home = keyed_stack["record"], keyed_stack["home"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    # Same loopback node setting as armed's driver, so a refusal is the token's doing, not a node-IP mismatch.
    base |= {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    cases = {
        "no auth mode, no token": {},
        "auth disabled": {"RAY_AUTH_MODE": "disabled"},
        "wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
        "armed's token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(home.token_path)},
    }
    procs = {name: subprocess.Popen([sys.executable, "-c", _DRIVER, record.address], env={**base, **extra},
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
             for name, extra in cases.items()}
    out = {}
    for name, proc in procs.items():
        try:
            out[name] = proc.communicate(timeout=240)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out[name] = "TIMEOUT"
    assert "JUDGED 200" in out["armed's token"], out  # the control: the same script works with the token
    for name in ("no auth mode, no token", "auth disabled", "wrong token"):
        assert "REFUSED" in out[name] and "JUDGED" not in out[name], (name, out[name])


@pytest.mark.slow
def test_a_running_keyed_ray_is_not_reused_with_another_key_or_none(keyed_stack: dict) -> None:
    for key, expected in ((KEY + "-rotated", "different ARMED_API_KEY"), (None, "which is not set now")):
        r = _armed(keyed_stack["up"], keyed_stack["ray_dir"], key, timeout=120)
        assert r.returncode == 2 and expected in r.stderr, (r.returncode, r.stderr[-500:])
    r = _armed(["up", "--port", "1"], keyed_stack["ray_dir"], "  ")
    assert r.returncode == 2 and "ARMED_API_KEY is set but empty" in r.stderr
    status = _armed(["status"], keyed_stack["ray_dir"], None, timeout=180)
    assert status.returncode == 0 and "token auth, ARMED_API_KEY set" in status.stdout, status.stderr[-500:]
    assert json.loads(keyed_stack["home"].record_path.read_text())["auth_mode"] == "token"
    assert time.time() - keyed_stack["record"].started_at < 3600
