"""`armed up / down / status / serve-config`: the serving commands, for the main `armed` CLI to register.

`add_serving_commands(subparsers)` adds the four subcommands; each sets `func(args) -> int` (exit code).
`up` starts (or joins) armed's own local Ray (armed/serving/local_ray.py: loopback, Ray token auth, a record of
the ARMED_API_KEY it was started with), deploys exactly the applications `serve-config` writes, waits until they
are healthy and, with a key set, checks that every application refuses a request without it; ray is imported
only inside the handlers (after the driver's environment is set), so `serve-config` runs without starting anything.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from armed.errors import InputError, from_validation_error
from armed.roles import ROLES
from armed.serving import local_ray, ray_compat
from armed.serving.config import HTTP_PORT, serve_config, serve_config_text
from armed.serving.edge import EdgeSettings, http_options
from armed.serving.profiles import load_profile
from armed.settings import EngineClass, ServingSettings

REPO = Path(__file__).resolve().parents[2]
# The Serve config builders of armed's own model deployments (armed/roles.py): the ones an injected engine_cls
# reaches. Read from the role table, so a new role is covered without an edit here.
MODEL_BUILDERS = frozenset(r.builder for r in ROLES.values())


def add_serving_commands(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up", help="start armed's local Ray (loopback, Ray token auth) and deploy the serving stack from a profile",
        description="Starts armed's own Ray (ARMED_RAY_DIR; 127.0.0.1 only, Ray token auth) or reuses it when it "
        "was started with the same ARMED_API_KEY; refuses (exit 2) when the running one has another key or none. "
        "With ARMED_API_KEY set, every data route is checked to refuse a request without it before this returns.",
    )
    up.add_argument("--profile", default="cpu", help="profile name (gpu_profiles/) or YAML path [cpu]")
    up.add_argument("--port", type=int, default=HTTP_PORT, help="HTTP port of Serve's proxy, on 127.0.0.1 [8000]")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every app to be healthy")
    up.add_argument("--ray-node-ip", default=local_ray.LOOPBACK,
                    help="node IP of a newly started Ray [127.0.0.1]. Any other address makes Ray listen on all "
                    "interfaces (GCS, raylet, agents: token auth still applies) and exposes its Prometheus "
                    "metrics, which Ray serves without auth; Ray 2.60 cannot expose the metrics alone.")
    up.set_defaults(func=cmd_up)
    down = subparsers.add_parser("down", help="delete the Serve applications and stop armed's local Ray")
    down.add_argument("--keep-ray", action="store_true", help="shut Serve down but leave Ray running")
    down.set_defaults(func=cmd_down)
    status = subparsers.add_parser("status", help="apps, deployments, replicas and autoscaling bounds")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    sc = subparsers.add_parser("serve-config", help="write the Serve config (serveConfigV2) of a profile")
    sc.add_argument("--profile", required=True, help="profile name or YAML path")
    sc.add_argument("--out", type=Path, help="file to write (stdout when omitted)")
    sc.set_defaults(func=cmd_serve_config)


def _serving(keep_key: bool = True) -> ServingSettings:
    """ARMED_API_KEY / ARMED_RAY_DIR; `down` and `status` ignore the key (a blank one must not block them)."""
    try:
        return ServingSettings() if keep_key else ServingSettings(api_key=None)
    except ValidationError as exc:
        err = from_validation_error(exc)
        raise ValueError(f"setting ARMED_{err.field.upper()}: {err.message}") from None


def _edge() -> EdgeSettings:
    """ARMED_EDGE_* (armed/serving/edge.py), or a ValueError naming the variable."""
    try:
        return EdgeSettings()
    except ValidationError as exc:
        err = from_validation_error(exc)
        raise ValueError(f"setting ARMED_EDGE_{err.field.upper()}: {err.message}") from None


def _connect(home: local_ray.RayHome, record: local_ray.RayRecord) -> Any:
    """Join armed's Ray as a driver, with its token; workers import this checkout's packages."""
    local_ray.prepare_driver(home, record.node_ip)
    import ray

    if ray.is_initialized():
        return ray
    env = {"PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    ray.init(address=record.address, runtime_env={"env_vars": env}, log_to_driver=False)
    return ray


def _running(home: local_ray.RayHome) -> local_ray.RayRecord | None:
    record = home.read_record()
    return record if record is not None and local_ray.is_running(record) else None


LocalRayCommand = Callable[[argparse.Namespace, local_ray.RayHome, local_ray.RayRecord | None], int]


def _on_local_ray(command: LocalRayCommand) -> Callable[[argparse.Namespace], int]:
    """A command that acts on armed's local Ray (`down`, `status`): given its home (ARMED_RAY_DIR, the key ignored)
    and its running Ray (None when none runs); a setting that names no usable home is exit 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            home = local_ray.home(_serving(keep_key=False).ray_dir)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return command(args, home, _running(home))

    return run


def _build(import_path: str, args: dict[str, Any], engine_cls: EngineClass | None = None) -> Any:
    """The app of a Serve config entry, as `serve deploy` builds it; `engine_cls` goes to armed's model builders."""
    module, _, attr = import_path.partition(":")
    builder = getattr(importlib.import_module(module), attr)
    if engine_cls is None:
        return builder(args)
    if import_path not in MODEL_BUILDERS:  # the judge, and ray.serve.llm's LLM app, build no armed engine
        return builder(args)
    return builder(args, engine_cls=engine_cls)


def data_routes(cfg: dict[str, Any]) -> list[str]:
    """One data route per deployed application (its OpenAI `GET .../v1/models`), for the key check of `up`."""
    return [f"{app['route_prefix'].rstrip('/')}/v1/models" for app in cfg["applications"]]


def unguarded_routes(base: str, routes: list[str], key: SecretStr) -> list[str]:
    """Routes that do not answer 401 without the key, or do not answer with it: each is a side door or broken."""
    import urllib.error
    import urllib.request

    def status(url: str, headers: dict[str, str]) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return -1  # no answer at all

    bad = []
    for route in routes:
        without = status(base + route, {})
        with_key = status(base + route, {"Authorization": f"Bearer {key.get_secret_value()}"})
        if without != 401 or with_key == 401:
            bad.append(f"{route} (without the key: {without}, with it: {with_key})")
    return bad


def deploy_and_wait(cfg: dict[str, Any], timeout_s: float, *, engine_cls: EngineClass | None = None) -> str | None:
    """Deploy a Serve config's applications on the Ray and Serve this process is connected to, and wait until all
    run. None when healthy, else what is wrong (`armed up`, and `armed-ops fuzz --local-stack`, use it).
    `engine_cls` (Python callers only: armed_testing's entry points) replaces the engine of every armed model app."""
    from ray import serve

    # All applications in one request, none waited for on its own: serve.run waits until its application runs
    # whatever `blocking` says (that flag only keeps the caller in a loop afterwards), so one serve.run per app
    # started each app's build only when the one before it was serving (vLLM engines one after the other).
    serve.run_many([serve.RunTarget(_build(app["import_path"], app["args"], engine_cls), name=app["name"],
                                    route_prefix=app["route_prefix"]) for app in cfg["applications"]],
                   wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    names = [a["name"] for a in cfg["applications"]]
    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {n: str(getattr(apps[n].status, "value", apps[n].status)) if n in apps else "MISSING" for n in names}
        if all(s == "RUNNING" for s in states.values()):
            return None
        failed = {n: s for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed or time.monotonic() > deadline:
            return f"not healthy: {states}"
        time.sleep(1)


def cmd_up(args: argparse.Namespace, *, engine_cls: EngineClass | None = None) -> int:
    """`armed up`; `engine_cls` is for Python callers only (`python -m armed_testing.cli up` injects doubles)."""
    try:
        profile = load_profile(args.profile)
        serving = _serving()
        home = local_ray.home(serving.ray_dir)
        edge = _edge()  # checked before any Ray starts: Serve's proxy reads the same variables, with no one to tell
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key = serving.api_key
    cfg = serve_config(profile, port=args.port)
    record = _running(home)
    if record is not None:
        refusal = local_ray.reuse_refusal(record, key)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
    else:
        if local_ray.session_processes(str(home.temp_dir)):
            # Ray processes of our session dir but no usable record: how they were started (key) is unknown.
            print(f"error: a Ray is running under {home.temp_dir} with no record of how it was started; "
                  "run `armed down` first", file=sys.stderr)
            return 2
        if local_ray.port_open(local_ray.LOOPBACK, args.port):
            print(f"error: port {args.port} is already in use (another Serve or an older armed? stop it, or "
                  "pass --port)", file=sys.stderr)
            return 2
        try:
            record = local_ray.start(home, key, node_ip=args.ray_node_ip, limits=profile.limits)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        _connect(home, record)
    except ConnectionError as exc:
        print(f"error: cannot join armed's Ray at {record.address} with the token in {home.token_path}: {exc}; "
              "run `armed down` first", file=sys.stderr)
        return 1
    from ray import serve

    if not ray_compat.serve_controller_alive() and local_ray.port_open(local_ray.LOOPBACK, args.port):
        # A reused Ray without Serve (`down --keep-ray`): the port is someone else's, and the checks below would
        # be talking to them.
        print(f"error: port {args.port} is already in use by something that is not armed's Serve; stop it, or "
              "pass --port", file=sys.stderr)
        return 2
    serve.start(http_options=http_options(local_ray.LOOPBACK, args.port, edge))  # with the edge's keep-alive
    serve_port = ray_compat.serve_details().get("http_options", {}).get("port", args.port)
    if serve_port != args.port:
        print(f"error: Serve on armed's Ray listens on port {serve_port}, not {args.port}: pass --port {serve_port}"
              " or run `armed down` first", file=sys.stderr)
        return 2
    problem = deploy_and_wait(cfg, args.timeout, engine_cls=engine_cls)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    base = f"http://127.0.0.1:{args.port}"
    if key is not None:
        # Verify, do not assume: a replica that did not get the key would serve everyone. Nothing stays up open.
        bad = unguarded_routes(base, data_routes(cfg), key)
        if bad:
            serve.shutdown()
            print("error: ARMED_API_KEY is set but these routes do not require it; Serve was shut down: "
                  + "; ".join(bad), file=sys.stderr)
            return 1
    print(f"armed is up (profile {profile.name}):")
    print(f"  judge:   POST {base}/v1/judge, {base}/v1/judge/batch   (OpenAPI: {base}/docs)")
    print(f"  OpenAI:  {base}/v1  (models, embeddings, chat/completions, classify)")
    for app in cfg["applications"]:
        if app["name"] != "judge":
            print(f"  {app['name']:<12} {base}{app['route_prefix']}")
    auth = ("Authorization: Bearer $ARMED_API_KEY on every route but /-/healthz and /-/routes" if key
            else "none: ARMED_API_KEY is not set, every local caller is served")
    print(f"  auth:    {auth}")
    print(f"  ray:     {local_ray.describe(record)}")
    return 0


@_on_local_ray
def cmd_down(args: argparse.Namespace, home: local_ray.RayHome, record: local_ray.RayRecord | None) -> int:
    if args.keep_ray:
        if record is None:
            print("no armed Ray running")
            return 0
        ray = _connect(home, record)
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        print("Serve is down; armed's Ray keeps running")
        return 0
    # Only this Ray's processes (`ray stop` would end every Ray of this user on the machine).
    stopped = local_ray.stop(home)
    print("armed is down" if stopped else "no armed Ray running")
    return 0


def status_rows() -> list[dict[str, Any]]:
    """One row per deployment: app, deployment, status, running replicas, autoscaling bounds."""
    from ray import serve

    details = ray_compat.serve_details()  # serve.status() lacks the deployed autoscaling config
    status = serve.status()
    rows = []
    for app_name, app in status.applications.items():
        app_details = details.get("applications", {}).get(app_name, {})
        for dep_name, dep in app.deployments.items():
            states = {str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()}
            conf = app_details.get("deployments", {}).get(dep_name, {}).get("deployment_config", {})
            auto = conf.get("autoscaling_config") or {}
            rows.append({
                "app": app_name,
                "route_prefix": app_details.get("route_prefix"),
                "deployment": dep_name,
                "status": str(getattr(dep.status, "value", dep.status)),
                "replicas": states.get("RUNNING", 0),
                "replica_states": states,
                "min": auto.get("min_replicas"),
                "max": auto.get("max_replicas"),
                "target_ongoing_requests": auto.get("target_ongoing_requests"),
            })
    return rows


@_on_local_ray
def cmd_status(args: argparse.Namespace, home: local_ray.RayHome, record: local_ray.RayRecord | None) -> int:
    if record is None:
        print("armed is down (no armed Ray running)")
        return 1
    try:
        _connect(home, record)
    except ConnectionError as exc:
        print(f"error: cannot join armed's Ray at {record.address}: {exc}", file=sys.stderr)
        return 1
    rows = status_rows()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(local_ray.describe(record))
    print(f"{'app':<12} {'deployment':<24} {'status':<12} {'replicas':>8} {'min':>4} {'max':>4} {'target':>7}")
    for r in rows:
        print(f"{r['app']:<12} {r['deployment']:<24} {r['status']:<12} {r['replicas']:>8} {r['min']!s:>4} "
              f"{r['max']!s:>4} {r['target_ongoing_requests']!s:>7}")
    return 0


def cmd_serve_config(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = serve_config_text(profile)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
