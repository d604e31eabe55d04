"""`armed up / down / status / serve-config`: the serving commands, for the main `armed` CLI to register.

`add_serving_commands(subparsers)` adds the four subcommands; each sets `func(args) -> int` (exit code).
`up` starts (or joins) a local Ray, deploys exactly the applications `serve-config` writes, and waits until
they are healthy; ray is imported only inside the handlers, so `serve-config` runs without starting anything.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from armed.errors import InputError
from armed.serving.config import HTTP_PORT, serve_config
from armed.serving.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]


def add_serving_commands(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="start local Ray and deploy the serving stack from a profile")
    up.add_argument("--profile", default="cpu", help="profile name (gpu_profiles/) or YAML path [cpu]")
    up.add_argument("--port", type=int, default=HTTP_PORT, help="HTTP port of Serve's proxy [8000]")
    up.add_argument("--engine-source", choices=["factory", "zero-work"], default="factory",
                    help="zero-work: no-op engines, to measure serving overhead without models")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every app to be healthy")
    up.set_defaults(func=cmd_up)
    down = subparsers.add_parser("down", help="delete the Serve applications and stop the local Ray")
    down.add_argument("--keep-ray", action="store_true", help="shut Serve down but leave Ray running")
    down.set_defaults(func=cmd_down)
    status = subparsers.add_parser("status", help="apps, deployments, replicas and autoscaling bounds")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    sc = subparsers.add_parser("serve-config", help="write the Serve config (serveConfigV2) of a profile")
    sc.add_argument("--profile", required=True, help="profile name or YAML path")
    sc.add_argument("--out", type=Path, help="file to write (stdout when omitted)")
    sc.add_argument("--engine-source", choices=["factory", "zero-work"], default="factory")
    sc.set_defaults(func=cmd_serve_config)


def _env() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _connect(start: bool) -> Any:
    import ray

    _env()
    if ray.is_initialized():
        return ray
    env = {"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"], "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        ray.init(address="auto", runtime_env={"env_vars": env}, log_to_driver=False)
    except ConnectionError:
        if not start:
            raise
        # A detached local head that outlives this command (so `armed down` / `status` can reach it later).
        import subprocess

        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--include-dashboard=false",
                        "--disable-usage-stats"], check=True, env={**os.environ}, capture_output=True)
        ray.init(address="auto", runtime_env={"env_vars": env}, log_to_driver=False)
    return ray


def _build(import_path: str, args: dict[str, Any]) -> Any:
    module, _, attr = import_path.partition(":")
    return getattr(importlib.import_module(module), attr)(args)


def cmd_up(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = serve_config(profile, profile_ref=args.profile, engine_source=args.engine_source, port=args.port)
    _connect(start=True)
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    for app in cfg["applications"]:
        serve.run(_build(app["import_path"], app["args"]), name=app["name"], route_prefix=app["route_prefix"],
                  blocking=False)
    names = [a["name"] for a in cfg["applications"]]
    deadline = time.monotonic() + args.timeout
    while True:
        apps = serve.status().applications
        states = {n: str(getattr(apps[n].status, "value", apps[n].status)) if n in apps else "MISSING" for n in names}
        if all(s == "RUNNING" for s in states.values()):
            break
        failed = {n: s for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed or time.monotonic() > deadline:
            print(f"error: not healthy: {states}", file=sys.stderr)
            return 1
        time.sleep(1)
    base = f"http://127.0.0.1:{args.port}"
    print(f"armed is up (profile {profile.name}):")
    print(f"  judge:   POST {base}/v1/judge, {base}/v1/judge/batch   (OpenAPI: {base}/docs)")
    print(f"  OpenAI:  {base}/v1  (models, embeddings, chat/completions, classify)")
    for app in cfg["applications"]:
        if app["name"] != "judge":
            print(f"  {app['name']:<12} {base}{app['route_prefix']}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        ray = _connect(start=False)
    except ConnectionError:
        print("no local Ray running")
        return 0
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    if not args.keep_ray:
        import subprocess

        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop"], check=False, capture_output=True)
    print("armed is down")
    return 0


def status_rows() -> list[dict[str, Any]]:
    """One row per deployment: app, deployment, status, running replicas, autoscaling bounds."""
    from ray import serve
    from ray.serve.context import _get_global_client  # its details carry the deployed autoscaling config

    details = _get_global_client().get_serve_details()
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


def cmd_status(args: argparse.Namespace) -> int:
    try:
        _connect(start=False)
    except ConnectionError:
        print("armed is down (no local Ray)")
        return 1
    rows = status_rows()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
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
    text = yaml.safe_dump(serve_config(profile, profile_ref=args.profile, engine_source=args.engine_source),
                          sort_keys=False, allow_unicode=True)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
