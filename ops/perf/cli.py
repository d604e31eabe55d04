"""`armed-ops perf --out DIR [--endpoint URL | --local] [--profile P]`: measure, then write perf.json, perf.md and
capacity.json (the benchmark file `armed-ops capacity` reads).

--local (the default) starts a fresh local Ray and deploys each stack it measures: zero-work engines for the DAG
overhead, batching mechanics and autoscaling; the profile's own engines for end to end, caching, batching of the
real embedder and per-model throughput. --endpoint measures an already deployed stack over HTTP only (end to end
and the repeated-pair mix). The cost table is computed in-process for every profile either way.

armed ships no zero-work engine (they are test doubles): the scenarios that need them (DOUBLES_SCENARIOS) run
when the caller passes them in, which `python -m armed_testing.cli perf ...` does from a source checkout. A plain
`armed-ops perf` measures the profile's own engines only, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from armed.settings import EngineClass
    from ops.perf.stack import ZeroWorkFamily

SCENARIOS = ("dag", "e2e", "batching", "caching", "autoscaling", "engines", "cost")
# Scenarios that deploy or trace zero-work engines (the DAG overhead, synthetic batching, autoscaling, the cost
# traces, the captured judge prompts of `engines`): they need cmd_perf's `zero_work`.
DOUBLES_SCENARIOS = ("dag", "batching", "autoscaling", "engines", "cost")


def add_perf_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("perf", help="load-test the serving stack; write perf.json / perf.md / capacity.json")
    p.add_argument("--out", required=True, type=Path, help="folder for the results")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="start a local Ray and deploy what is measured [default]")
    where.add_argument("--endpoint", help="base URL of a deployed stack (HTTP scenarios only)")
    p.add_argument("--profile", default="cpu", help="profile name or YAML path [cpu]")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement (medians over runs) [3]")
    p.add_argument("--seed", type=int, default=7, help="seed of every request stream [7]")
    plain = ",".join(s for s in SCENARIOS if s not in DOUBLES_SCENARIOS)
    p.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)} [all that the engines allow: "
                   f"without zero-work engines passed in, {plain}]")
    p.add_argument("--concurrency", default="1,8,32", help="end-to-end concurrencies [1,8,32]")
    p.add_argument("--delay", type=float, default=0.05, help="zero-work seconds per model call (DAG overhead)")
    p.add_argument("--images-every", type=int, default=4, help="every n-th product carries a label image [4]")
    p.add_argument("--cache-concurrency", type=int, default=8, help="concurrency of the caching scenario [8]")
    p.add_argument("--merge", action="store_true",
                   help="keep the scenarios of an existing DIR/perf.json that this run does not measure")
    p.add_argument("--quick", action="store_true", help="tiny request counts (smoke test, numbers meaningless)")
    p.add_argument("--no-tokens", action="store_true", help="skip the Qwen tokenizer (token counts become 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_perf)


def cmd_perf(
    args: argparse.Namespace, *, zero_work: ZeroWorkFamily | None = None, engine_cls: EngineClass | None = None
) -> int:
    """`armed-ops perf`. Python callers only (armed_testing.cli) pass `zero_work`, the zero-work engine classes by
    delay, which the DOUBLES_SCENARIOS need, and `engine_cls`, which replaces the profile's engines in the profile
    stack (e2e, caching, per-model); no flag can."""
    import logging

    from armed.log import configure_logging
    from armed.settings import LoggingSettings
    from ops.perf import report

    configure_logging(LoggingSettings(level="error"))
    logging.getLogger("ray").setLevel(logging.ERROR)
    available = SCENARIOS if zero_work is not None else tuple(s for s in SCENARIOS if s not in DOUBLES_SCENARIOS)
    only = {s.strip() for s in (args.only or ",".join(available)).split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        print(f"armed-ops perf: unknown scenarios {sorted(unknown)}", file=sys.stderr)
        return 2
    needs_doubles = sorted(only - set(available))
    if needs_doubles:
        print(f"armed-ops perf: {','.join(needs_doubles)} run on zero-work engines, which armed does not ship: from a "
              "source checkout, run `python -m armed_testing.cli perf ...`", file=sys.stderr)
        return 2
    started = time.time()
    meta: dict[str, Any] = {
        "command": "armed-ops " + " ".join(sys.argv[1:]) if sys.argv and "perf" in sys.argv else "armed-ops perf",
        "profile": args.profile, "mode": "endpoint" if args.endpoint else "local", "endpoint": args.endpoint,
        "repeats": args.repeats, "seed": args.seed, "quick": args.quick, "images_every": args.images_every,
        "profile_engines": "profile" if engine_cls is None else f"injected {engine_cls!r}",
        "machine": report.machine(), "load_before": report.load_avg(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": report.git_commit(Path(__file__).resolve().parents[2]),
    }
    try:
        import ray

        meta["ray"] = ray.__version__
    except ImportError:
        pass
    result: dict[str, Any] = {"meta": meta, "scenarios": {}, "notes": []}
    old = args.out / "perf.json"
    if args.merge and old.is_file():
        prev = json.loads(old.read_text(encoding="utf-8"))
        result["scenarios"] = prev.get("scenarios", {})
        result["notes"] = prev.get("notes", [])
        meta["merged_from"] = [*prev["meta"].get("merged_from", []), {k: prev["meta"].get(k) for k in (
            "command", "started", "duration_s", "load_before", "load_after", "commit", "repeats")}]
    try:
        asyncio.run(_run(args, only, result, zero_work, engine_cls))
    finally:
        meta["load_after"] = report.load_avg()
        meta["duration_s"] = round(time.time() - started, 1)
        report.write(args.out, result)
    print(f"wrote {args.out / 'perf.json'}, {args.out / 'perf.md'}"
          + (f", {args.out / 'capacity.json'}" if (args.out / "capacity.json").exists() else ""))
    for t in result.get("targets", []):
        print(f"  [{ {True: 'met', False: 'MISSED', None: 'n/a'}[t['met']] }] {t['target']}: "
              f"{json.dumps(t['value'], ensure_ascii=False)}")
    return 0


async def _run(args: argparse.Namespace, only: set[str], result: dict[str, Any], zero_work: ZeroWorkFamily | None,
               engine_cls: EngineClass | None) -> None:
    from armed.roles import ROLES
    from armed.serving import ray_compat
    from armed.serving.profiles import load_profile
    from ops.perf import scenarios as sc
    from ops.perf.stack import LocalStack, ModelApp, variant, write_profile, zero_work_profile
    from ops.perf.trace import qwen_token_counter

    profile = load_profile(args.profile)
    S = result["scenarios"]
    ctx = sc.Ctx(out=args.out, profile_ref=args.profile, repeats=args.repeats, seed=args.seed,
                 progress=not args.no_progress and sys.stderr.isatty(), quick=args.quick,
                 images_every=args.images_every, endpoint=args.endpoint, zero_work=zero_work)
    concurrencies = tuple(int(c) for c in args.concurrency.split(","))
    work = args.out / "profiles"

    if "cost" in only:
        ctx.token_counter = None if args.no_tokens else qwen_token_counter()
        from armed.serving.profiles import profile_names

        refs = sorted(set(profile_names()) | {args.profile}, key=lambda r: (r != args.profile, r))
        S["cost"] = await sc.cost_per_judgment(ctx, refs)

    if args.endpoint:
        url = args.endpoint.rstrip("/")
        if "e2e" in only:
            S["end_to_end"] = await sc.end_to_end(ctx, url, None, concurrencies)
        if "caching" in only:
            S["caching"] = await sc.caching(ctx, url, None, args.cache_concurrency)
        result["notes"].append("--endpoint: the DAG overhead, batching, autoscaling and per-model scenarios deploy "
                               "their own stacks and run only with --local; hit rates and in-judge latency need the "
                               "probe judge that --local deploys.")
        return

    stack = LocalStack().start()
    try:
        from ray import serve

        zw = zero_work_profile(profile)
        zw_path = write_profile(work, zw)
        if only & {"dag", "batching", "autoscaling"}:
            stack.deploy_models(zw_path, list(ROLES), ctx.doubles(args.delay))
            if "dag" in only:
                stack.deploy_judge(zw_path)
                stack.deploy_relay()
                S["dag_overhead"] = await sc.dag_overhead(ctx, zw_path, stack.url, args.delay)
            if "batching" in only:
                # Zero-work engines with a fixed time per engine call whatever the batch size, like one forward
                # pass of a small model on a GPU: 10 ms (both roles), 30 ms, and 0 ms (no engine time at all: the
                # per-request ceiling of this machine, which caps every batched figure)
                one = variant(zw, "perf-zw-nobatch", embedder={"batching": {"max_batch_size": 1,
                              "batch_wait_timeout_s": 0}}, consistency={"batching": {"max_batch_size": 1,
                                                                                     "batch_wait_timeout_s": 0}})
                p_one = write_profile(work, one)
                rows = [("embedder", 0.01, "embedder (synthetic)"), ("consistency", 0.01, "consistency (synthetic)"),
                        ("embedder", 0.03, "embedder (synthetic, 30 ms)"),
                        ("embedder", 0.0, "embedder (synthetic, 0 ms: per-request ceiling)")]
                S["batching"] = {"roles": {}}
                for i, (r, delay, label) in enumerate(rows):
                    stack.deploy_model_apps([ModelApp(zw_path, r, ctx.doubles(delay), f"syn{i}-b-"),
                                             ModelApp(p_one, r, ctx.doubles(delay), f"syn{i}-u-")])
                    part = await sc.batching(ctx, {label: (serve.get_deployment_handle(r, f"syn{i}-b-{r}"),
                                                           serve.get_deployment_handle(r, f"syn{i}-u-{r}"))},
                                             {label: f"zero-work, {delay * 1000:.0f} ms per engine call"})
                    S["batching"]["what"] = part["what"]
                    S["batching"]["roles"].update(part["roles"])
                    ray_compat.delete_apps([f"syn{i}-b-{r}", f"syn{i}-u-{r}"])
            if "autoscaling" in only:
                auto = variant(zw, "perf-zw-autoscale", embedder={
                    "replicas": {"min": 1, "max": 3, "initial": 1},
                    "autoscaling": {"target_ongoing_requests": 1, "upscale_delay_s": 1, "downscale_delay_s": 5,
                                    "metrics_interval_s": 1, "look_back_period_s": 2},
                    "batching": {"max_batch_size": 1, "batch_wait_timeout_s": 0}})
                stack.deploy_models(write_profile(work, auto), ["embedder"], ctx.doubles(0.2))
                watched = [f"{r}/{r}" for r in ROLES if r != "embedder"]
                S["autoscaling"] = await sc.autoscaling(ctx, "embedder", watched)
            stack.delete_all()

        if only & {"e2e", "caching", "engines", "batching"}:
            roles = profile.deployed_roles()
            stack.deploy_models(args.profile, roles, engine_cls)
            stack.deploy_judge(args.profile)
            judge = serve.get_deployment_handle("Judge", "judge")
            if "e2e" in only:
                S["end_to_end"] = await sc.end_to_end(ctx, stack.url, judge, concurrencies)
            if "caching" in only:
                S["caching"] = await sc.caching(ctx, stack.url, judge, args.cache_concurrency)
            if "batching" in only and "embedder" in roles:
                one = profile.model_dump(mode="json")
                one["name"] = f"{profile.name}-nobatch"
                one["models"]["embedder"]["batching"] = {"max_batch_size": 1, "batch_wait_timeout_s": 0}
                stack.deploy_models(write_profile(work, one), ["embedder"], engine_cls, app_prefix="nobatch-")
                real = await sc.batching(ctx, {"embedder": (serve.get_deployment_handle("embedder", "embedder"),
                                                            serve.get_deployment_handle("embedder",
                                                                                        "nobatch-embedder"))},
                                         {"embedder": f"{profile.models['embedder'].engine.kind} "
                                                      f"({result['meta']['profile_engines']})"})
                S.setdefault("batching", {"roles": {}})["roles"] = {**real["roles"],
                                                                    **S.get("batching", {}).get("roles", {})}
                S["batching"]["what"] = real["what"]
                ray_compat.delete_apps(["nobatch-embedder"])
            if "engines" in only:
                prompts = await sc.judge_prompts(profile, args.images_every, ctx.doubles())
                S["engines"] = await sc.engine_throughput(ctx, profile, prompts)
                calls = (S.get("cost", {}).get("profiles", {}).get(profile.name, {}).get("all", {})
                         .get("per_role", {}))
                cap = sc.capacity_file(profile, S["engines"], S.get("end_to_end"),
                                       {r: v["calls"] for r, v in calls.items()},
                                       f"armed-ops perf on {result['meta']['machine']['cpu_model']} "
                                       f"({os.cpu_count()} cores), {result['meta']['started']}")
                (args.out).mkdir(parents=True, exist_ok=True)
                (args.out / "capacity.json").write_text(json.dumps(cap, ensure_ascii=False, indent=2),
                                                        encoding="utf-8")
                if "cost" in S and calls:
                    S["cost"]["cpu_replica_seconds_per_judgment"] = {
                        r: round(v["calls"] / S["engines"][r]["throughput_rps"], 4)
                        for r, v in calls.items() if S["engines"].get(r, {}).get("throughput_rps")}
    finally:
        stack.stop()
