"""`python -m ops.fuzz` / `armed-ops fuzz`: fuzz every route of a running armed, or of a private local stack.

  python -m ops.fuzz --url http://127.0.0.1:8000 --out benchmarks/security/run
  python -m ops.fuzz --local-stack cpu --out benchmarks/security/run          # starts and stops its own Ray
  python -m armed_testing.cli fuzz --local-stack cpu --all-roles --out ...     # every role, zero-work engines

The API key, if the server needs one, is read from $ARMED_API_KEY (never from the command line, which `ps` shows)
and is written nowhere. Exit code: 0 the gate passed (no response >= 500, none slower than --slow, judging
afterwards), 1 it did not, 2 bad arguments or no OpenAPI document found.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

from ops.fuzz import cases as C
from ops.fuzz import runner as R
from ops.fuzz.report import ReportWriter

if TYPE_CHECKING:
    from armed.settings import EngineClass


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running armed (Serve's proxy), e.g. http://127.0.0.1:8000")
    where.add_argument("--local-stack", metavar="PROFILE",
                       help="start a private local Ray, deploy PROFILE as `armed up` does, fuzz it, stop it")
    p.add_argument("--all-roles", action="store_true",
                   help="--local-stack: deploy every role, so the chat, classify and vl routes have a model behind "
                        "them; the roles the profile does not deploy have no real model, so this needs engines "
                        "passed in: run it as `python -m armed_testing.cli fuzz` (zero-work engines)")
    p.add_argument("--out", type=Path, required=True, help="report directory (report.json, report.md, cases/)")
    p.add_argument("--max-requests", type=int, default=2500, help="requests to send, shrinking aside [2500]")
    p.add_argument("--max-seconds", type=float, default=1800, help="no new request after this many seconds [1800]")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight [4]")
    p.add_argument("--timeout", type=float, default=60, help="per-request timeout, seconds [60]")
    p.add_argument("--slow", type=float, default=30, help="slower than this is a finding, seconds [30]")
    p.add_argument("--seed", type=int, default=0, help="generation seed: same seed and documents, same cases [0]")
    p.add_argument("--no-big-bodies", action="store_true", help="leave out the 17 MB and 20 MB bodies")
    p.add_argument("--local-files", action="store_true",
                   help="also plant files on this host (a FIFO, a 300 MB sparse file, a PNG) and name them in image "
                        "fields: only meaningful when the server runs on this host (the default for loopback URLs)")
    p.add_argument("--no-local-files", action="store_true", help="never plant files, even for a loopback URL")
    p.add_argument("--shrink-budget", type=int, default=40, help="requests spent shrinking each distinct failure")
    p.add_argument("--api-key-env", default="ARMED_API_KEY", help="environment variable holding the API key")


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plant_files(directory: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """Files on the server's host that HTTP input must never make it open: (name -> path, FIFOs to release)."""
    from ops.fuzz.values import png

    directory.mkdir(parents=True, exist_ok=True)
    canary = directory / "canary.png"
    canary.write_bytes(png(64, 64, (10, 200, 30)))
    big = directory / "sparse-300mb.png"
    with big.open("wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # sparse: no disk used, but a reader gets 300 MB of zeros
    fifo = directory / "fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    return {"canary_png": str(canary), "sparse_300mb": str(big), "fifo": str(fifo)}, (str(fifo),)


class Listener:
    """A loopback HTTP listener: any connection to it means the server fetched a URL taken from HTTP input."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        from ops.fuzz.values import png

        body = png()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await asyncio.wait_for(reader.readline(), 5)
            except TimeoutError:
                line = b""
            self.hits.append({"time": time.time(), "request_line": line.decode("latin-1").strip()[:200]})
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


async def fuzz(url: str, args: argparse.Namespace, extra_meta: dict[str, Any] | None = None,
               annotate: Callable[[list[R.Record]], None] | None = None) -> dict[str, Any]:
    """Discover, plan, run, report. `annotate` may add server-side detail to the records (see runner.run)."""
    api_key = os.environ.get(args.api_key_env) or None
    local = (args.local_files or _is_loopback(url)) and not args.no_local_files
    local_paths: dict[str, str] = {}
    fifos: tuple[str, ...] = ()
    if local:
        local_paths, fifos = plant_files(Path(tempfile.mkdtemp(prefix=f"armed-fuzz-{args.seed}-")))
    listener = Listener()
    listener_url = await listener.start() if _is_loopback(url) else None
    opts = R.Options(concurrency=args.concurrency, timeout_s=args.timeout, slow_s=args.slow,
                     max_seconds=args.max_seconds, seed=args.seed, api_key=api_key, shrink_budget=args.shrink_budget,
                     fifos=fifos)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout + 5, limits=limits) as client:
        apis, served = await R.discover(client, api_key)
        if not apis:
            raise SystemExit(f"error: no OpenAPI document at {url}/openapi.json (is armed up? is the key right?)")
        ctx = C.SeedContext(served_roles=served, listener_url=listener_url, local_paths=local_paths,
                            big_bodies=not args.no_big_bodies)
        started = time.perf_counter()
        planned = C.plan(apis, ctx, args.max_requests, args.seed)
        print(f"{len(planned)} cases over {sum(len(a.operations()) for a in apis)} operations of {len(apis)} "
              f"documents ({', '.join(a.prefix or '/' for a in apis)}), planned in "
              f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
        result = await R.run(client, planned, opts, progress=lambda s: print(s, file=sys.stderr), annotate=annotate)
    listener.stop()
    meta = {"commit": _git_commit(), "documents": {a.prefix or "/": [o.label for o in a.operations()] for a in apis},
            "served_roles": sorted(served), "cases_planned": len(planned), "local_files": sorted(local_paths),
            "listener": listener_url, "listener_hits": listener.hits, **(extra_meta or {})}
    report = ReportWriter(args.out, url, opts, meta).write(result)
    return report


def _local_stack(args: argparse.Namespace, engine_cls: EngineClass | None) -> dict[str, Any]:
    """A fresh private Ray (never a cluster someone else started), the profile deployed as `armed up` deploys it
    (with `engine_cls` in every model app when one is passed in), the fuzz run, the replicas' logs searched for the
    failures' tracebacks, then Serve and that Ray stopped."""
    from armed.serving.cli import deploy_and_wait
    from armed.serving.config import serve_config
    from armed.serving.profiles import load_profile
    from ops.fuzz.raylogs import tracebacks
    from ops.perf.stack import LocalStack, write_profile, zero_work_profile

    profile_ref = args.local_stack
    if args.all_roles:
        data = zero_work_profile(load_profile(profile_ref), name=f"fuzz-{load_profile(profile_ref).name}-all-roles",
                                 caches=True)
        profile_ref = write_profile(Path(tempfile.mkdtemp(prefix="armed-fuzz-profile-")), data)
    stack = LocalStack(num_cpus=os.cpu_count()).start()
    try:
        from armed.serving.ray_compat import session_dir

        logs = session_dir() / "logs"
        # The stack's own Ray and Serve are already up (LocalStack): deploy what `armed up` deploys onto them.
        cfg = serve_config(load_profile(profile_ref), port=stack.port)
        problem = deploy_and_wait(cfg, 900, engine_cls=engine_cls)
        if problem:
            raise SystemExit(f"error: the local stack did not come up: {problem}")

        def annotate(records: list[R.Record]) -> None:
            # The replicas' logs name the exception and where it was raised: failures are grouped by that.
            found = tracebacks(logs, [r.request_id for r in records if r.is_error()])
            for r in records:
                r.server = found.get(r.request_id, "")

        meta = {"local_stack": {"profile": args.local_stack, "all_roles": args.all_roles,
                                "engines": "profile" if engine_cls is None else f"injected {engine_cls!r}"}}
        report = asyncio.run(fuzz(stack.url, args, meta, annotate))
        return report
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run_args(ap.parse_args(argv))


def run_args(args: argparse.Namespace, *, engine_cls: EngineClass | None = None) -> int:
    """Run the fuzz. `engine_cls` (Python callers only: armed_testing.cli) replaces the engines of a --local-stack's
    model apps; no flag can."""
    if importlib.util.find_spec("schemathesis") is None:  # generated cases need it; only the ops extra brings it
        print("error: armed-ops fuzz needs schemathesis: pip install 'armed[ops]'", file=sys.stderr)
        return 2
    if args.max_requests < 1 or args.concurrency < 1 or args.timeout <= 0:
        print("error: --max-requests, --concurrency and --timeout must be positive", file=sys.stderr)
        return 2
    if args.all_roles and engine_cls is None:
        print("error: --all-roles deploys roles the profile has no model for; run it as `python -m armed_testing.cli "
              "fuzz ...` (a source checkout), which passes zero-work engines in", file=sys.stderr)
        return 2
    try:
        report = _local_stack(args, engine_cls) if args.local_stack else asyncio.run(fuzz(args.url, args))
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    g = report["gate"]
    print(f"{'PASS' if g['pass'] else 'FAIL'}: {g['requests']} requests, {g['errors_5xx']} >= 500, {g['slow']} slow, "
          f"judging afterwards: {g['liveness_after']}; report in {args.out}/report.md")
    return 0 if g["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
