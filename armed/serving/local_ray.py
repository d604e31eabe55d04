"""armed's own local Ray for `armed up`: on loopback, with Ray's token auth, recorded, found again, stopped alone.

Why each part:
- Loopback. `ray start --node-ip-address=127.0.0.1` alone does not keep Ray local: Ray 2.60 swaps a loopback node
  IP for the host's real address (`services.resolve_ip_for_localhost`), and the GCS and raylet then listen on all
  interfaces. With `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (the switch Ray uses on laptops) the node IP stays
  127.0.0.1 and the GCS, raylet, workers, dashboard agent, runtime-env agent and every metrics exporter listen on
  127.0.0.1 only (measured: tests/security/test_auth_ray.py). The price: no other node can join; `armed up` is a
  one-machine command (clusters are the Helm chart's job).
- Token auth. `RAY_AUTH_MODE=token` with a random token in ARMED_RAY_DIR/auth_token (0600), named by
  `RAY_AUTH_TOKEN_PATH`: a Ray driver (and so a Serve handle) without that token cannot connect. Not Ray's
  default ~/.ray/auth_token: once that file exists, every later `ray.init()` of the same user switches to token
  mode (`maybe_enable_token_auth_if_token_available`), which would break their unrelated local clusters.
- The record. ARMED_RAY_DIR/cluster.json says how the running Ray was started: its address, session and a salted
  hash of the ARMED_API_KEY its processes got. Replicas read the key from the environment they inherit from
  `ray start`, so a reused Ray serves with the key it was started with, whatever the environment of a later
  `armed up`; `reuse_refusal` refuses a reuse whose key differs instead of serving with the old one.
- Stopping. `ray stop` kills every Ray of the user on the machine; `stop` ends only the processes of this Ray's
  session directory and their children.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from armed.serving.edge import proxy_env
from armed.serving.limits import InputLimits
from armed.serving.proxy_guard import PROXY_ENV

LOOPBACK = "127.0.0.1"
# Ray puts unix sockets at <temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store; Linux allows 107
# bytes for a socket path, and the session part is about 60.
MAX_TEMP_DIR_CHARS = 45


class KeyRecord(BaseModel):
    """A salted SHA-256 of ARMED_API_KEY: enough to tell "same key" from "another key", never the key."""

    model_config = ConfigDict(extra="forbid")

    salt: str
    sha256: str

    @classmethod
    def of(cls, key: SecretStr) -> KeyRecord:
        salt = secrets.token_hex(16)
        return cls(salt=salt, sha256=_digest(salt, key))

    def matches(self, key: SecretStr) -> bool:
        return hmac.compare_digest(self.sha256, _digest(self.salt, key))


def _digest(salt: str, key: SecretStr) -> str:
    return hashlib.sha256(f"{salt}:{key.get_secret_value()}".encode()).hexdigest()


class RayRecord(BaseModel):
    """How armed's running Ray was started (ARMED_RAY_DIR/cluster.json)."""

    model_config = ConfigDict(extra="forbid")

    address: str
    node_ip: str
    temp_dir: str
    auth_mode: str
    api_key: KeyRecord | None
    metrics_port: int
    started_at: float


@dataclass(frozen=True)
class RayHome:
    """ARMED_RAY_DIR and what lives in it."""

    root: Path

    @property
    def token_path(self) -> Path:
        return self.root / "auth_token"

    @property
    def record_path(self) -> Path:
        return self.root / "cluster.json"

    @property
    def temp_dir(self) -> Path:
        return self.root / "t"

    def read_record(self) -> RayRecord | None:
        try:
            return RayRecord.model_validate_json(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            # An unreadable record (older armed, hand-edited) proves nothing about the key: treat it as absent;
            # `is_running` still finds that Ray's processes, and `armed up` then refuses (see cmd_up).
            return None

    def write_record(self, record: RayRecord) -> None:
        _write_private(self.record_path, record.model_dump_json(indent=2))

    def forget(self) -> None:
        for path in (self.record_path, self.token_path):
            path.unlink(missing_ok=True)


def home(ray_dir: Path) -> RayHome:
    """The RayHome at `ray_dir`, created private (0700); refuses a path too long for Ray's sockets."""
    root = ray_dir.expanduser().resolve()
    if len(str(root / "t")) > MAX_TEMP_DIR_CHARS:
        raise ValueError(
            f"ARMED_RAY_DIR={root} is too long for Ray's unix socket paths (at most "
            f"{MAX_TEMP_DIR_CHARS - 2} characters); set a shorter ARMED_RAY_DIR"
        )
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return RayHome(root)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by this user only (created 0600, replaced atomically)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def reuse_refusal(record: RayRecord, key: SecretStr | None) -> str | None:
    """Why `armed up` must not deploy onto the running Ray `record` describes with `key` now, or None if it may.

    Replicas take ARMED_API_KEY from the environment `ray start` gave the Ray processes, so deploying onto a Ray
    started with another key (or none) would serve with that one: refuse, and say how to get a fresh Ray.
    """
    where = f"the Ray at {record.address} (ARMED_RAY_DIR record)"
    fix = "run `armed down` first, then `armed up` again"
    if record.auth_mode != "token":
        return f"{where} runs without Ray token auth; {fix}"
    if key is None and record.api_key is not None:
        return (f"{where} was started with ARMED_API_KEY, which is not set now; set the same key to reuse it, or "
                f"{fix} to serve without one")
    if key is not None and record.api_key is None:
        return f"{where} was started without ARMED_API_KEY; {fix}"
    if key is not None and record.api_key is not None and not record.api_key.matches(key):
        return f"{where} was started with a different ARMED_API_KEY; {fix}"
    return None


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_loopback(ip: str) -> bool:
    return ip in ("127.0.0.1", "localhost", "::1")


def ray_env(home_: RayHome, node_ip: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of armed's Ray processes and driver: token auth from our token file, loopback node."""
    env = dict(os.environ if base is None else base)
    for var in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        env.pop(var, None)  # RAY_AUTH_TOKEN would override the token file; RAY_ADDRESS would point elsewhere
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(home_.token_path)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(PROXY_ENV)  # Serve's proxy refuses non-UTF-8 headers with a 400, not a 500 (proxy_guard)
    if is_loopback(node_ip):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    else:
        env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return env


def start_env(home_: RayHome, node_ip: str, key: SecretStr | None, base: dict[str, str] | None = None,
              limits: InputLimits | None = None) -> dict[str, str]:
    """The environment of `ray start`: `ray_env`, ARMED_API_KEY exactly as recorded (`key`, or none), and the
    profile's body bounds for Serve's proxy (`limits`; armed/serving/edge.py).

    Every Ray process, and so every replica, inherits it; the record is written from the same `key`, so what
    `reuse_refusal` compares is what the replicas got.
    """
    env = ray_env(home_, node_ip, base)
    if limits is not None:
        env.update(proxy_env(limits))
    if key is None:
        env.pop("ARMED_API_KEY", None)
    else:
        env["ARMED_API_KEY"] = key.get_secret_value()
    return env


def start_command(home_: RayHome, *, port: int, node_ip: str, metrics_port: int, agent_port: int,
                  client_port: int) -> list[str]:
    return [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
        f"--node-ip-address={node_ip}", f"--port={port}", f"--temp-dir={home_.temp_dir}",
        f"--metrics-export-port={metrics_port}", f"--dashboard-agent-listen-port={agent_port}",
        "--include-dashboard=false", "--disable-usage-stats",
        # Ray Client's server (armed's drivers never use `ray://`, but `ray start` always starts it when its
        # dependencies are installed: ray/scripts/scripts.py ~918, and refuses port 0, parameter.py ~398) on a
        # free port, not the fixed 10001 that any other Ray on the machine also takes. Its command line names no
        # session dir (ray/_private/services.py `start_ray_client_server`: `--address=<gcs>`), and `ray start`
        # exits, leaving it parented to init: `stop` finds it by that address (issue 24: it outlived `armed down`).
        f"--ray-client-server-port={client_port}",
    ]


def start(home_: RayHome, key: SecretStr | None, node_ip: str = LOOPBACK, base_env: dict[str, str] | None = None,
          timeout_s: float = 120.0, limits: InputLimits | None = None) -> RayRecord:
    """Start a detached Ray head (it outlives this command, for `armed down` / `status`) and record it.

    A fresh token each time: a token of an earlier Ray opens nothing now.
    """
    home_.forget()
    _write_private(home_.token_path, secrets.token_hex(32))
    host = LOOPBACK if is_loopback(node_ip) else "0.0.0.0"
    port, metrics_port, agent_port = free_port(host), free_port(host), free_port(host)
    env = start_env(home_, node_ip, key, base_env, limits)
    # The autoscaler monitor's and the dashboard head's own Prometheus ports default to fixed numbers (44217,
    # 44227): another Ray on this machine would hold them. They bind to the node IP like the rest.
    env["AUTOSCALER_METRIC_PORT"] = str(free_port(host))
    env["DASHBOARD_METRIC_PORT"] = str(free_port(host))
    cmd = start_command(home_, port=port, node_ip=node_ip, metrics_port=metrics_port, agent_port=agent_port,
                        client_port=free_port(host))
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(home_)
        raise RuntimeError(f"`ray start` did not finish in {timeout_s:.0f}s") from None
    if done.returncode != 0:
        stop(home_)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"`ray start` failed (exit {done.returncode}):\n{tail}")
    record = RayRecord(
        address=f"{node_ip}:{port}", node_ip=node_ip, temp_dir=str(home_.temp_dir), auth_mode="token",
        api_key=KeyRecord.of(key) if key is not None else None, metrics_port=metrics_port, started_at=time.time(),
    )
    home_.write_record(record)
    return record


def prepare_driver(home_: RayHome, node_ip: str) -> None:
    """Make this process a driver of armed's Ray: token auth from our token file, loopback node IP.

    Must run before `import ray` reads its constants; when ray is already imported (tests), the two settings that
    were read at import are refreshed too.
    """
    env = ray_env(home_, node_ip, dict(os.environ))
    for var in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        if var not in env:
            os.environ.pop(var, None)
    os.environ.update(env)
    if "ray" in sys.modules:
        from armed.serving.ray_compat import refresh_driver_auth

        refresh_driver_auth(cluster=not is_loopback(node_ip))


def session_processes(temp_dir: str, address: str | None = None) -> list[Any]:
    """This user's processes of the Ray whose temp dir is `temp_dir`, and their children (agents, workers); with
    `address` (its GCS `ip:port`), also those started with `--address=<address>` and no session dir in their
    command line (Ray's client server, a Ray started by an older armed), which `ray start` leaves parented to init.
    """
    import psutil

    marker = f"{temp_dir.rstrip('/')}/session_"
    address_arg = f"--address={address}" if address else None  # compared whole: :5768 is not :57689
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    user = me.username()
    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "username"]):
        try:
            if proc.pid in skip or proc.info["username"] != user:
                continue
            args = proc.info["cmdline"] or ()
            if any(marker in arg for arg in args) or (address_arg is not None and address_arg in args):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(found.values())


def listening_sockets(procs: list[Any]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, ip, port) of every TCP socket the given processes listen on."""
    import psutil

    out = []
    for proc in procs:
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((proc.pid, name, conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return out


def is_running(record: RayRecord) -> bool:
    """Its processes exist and its GCS port answers (a dead Ray leaves its record behind)."""
    host, _, port = record.address.rpartition(":")
    return bool(session_processes(record.temp_dir)) and port_open(host, int(port))


def stop(home_: RayHome, grace_s: float = 5.0) -> int:
    """End this Ray's processes only (SIGTERM, then SIGKILL after `grace_s`); forget its record and token."""
    import psutil

    record = home_.read_record()
    procs = session_processes(str(home_.temp_dir), record.address if record else None)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    home_.forget()
    return len(procs)


def describe(record: RayRecord) -> str:
    key = "ARMED_API_KEY set" if record.api_key else "no ARMED_API_KEY"
    return (f"Ray {record.address} (token auth, {key}; metrics on {record.node_ip}:{record.metrics_port}; "
            f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.started_at))})")

