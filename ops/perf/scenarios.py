"""One function per measurement of `armed-ops perf`. Each returns a JSON-able section of perf.json.

Local scenarios deploy what they measure on a fresh local Ray (ops.perf.stack); `--endpoint` runs only what
HTTP alone can measure against an already deployed stack (end-to-end and the repeated-pair mix).
Every figure is a median over `repeats` runs of the run's own median / p99; every ratio is taken inside one run
(both sides measured back to back) and then its median over runs is reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armed.domain import Branch
from armed.settings import EngineClass
from armed.stages import stage_names
from ops.perf import workload
from ops.perf.loadgen import closed_loop, median_of, over_runs, percentile
from ops.perf.stack import ZeroWorkFamily
from ops.perf.trace import Tracer, cost_table, trace_pair, traced_pipeline

# Each side's stages, from the stage table: the concurrency figures sum their reported seconds.
QUERY_STAGES = stage_names("query")
PRODUCT_STAGES = stage_names("product")
JOIN_STAGES = stage_names("join")

# (figure, closed_loop's field) of the latencies every scenario reports.
LATENCIES: tuple[tuple[str, str], ...] = (("p50_ms", "p50_ms"), ("p99_ms", "p99_ms"))


def _medians(runs: Sequence[dict[str, Any]], modes: Sequence[str],
             figures: Sequence[tuple[str, str]]) -> dict[str, float | None]:
    """{mode}_{figure} → the median over the runs of run[mode][field], for each (figure, field), then each mode: the
    closed loops one run measures side by side (cold / zipf / hot, batched / unbatched, judge / relay / http)."""
    return {f"{mode}_{figure}": median_of([r[mode][field] for r in runs])
            for figure, field in figures for mode in modes}


@dataclass
class Ctx:
    out: Path
    profile_ref: str
    repeats: int = 3
    seed: int = 7
    progress: bool = True
    quick: bool = False
    images_every: int = 4
    endpoint: str | None = None
    token_counter: Any = None
    notes: list[str] = field(default_factory=list)
    zero_work: ZeroWorkFamily | None = None  # passed in by the caller (armed_testing); armed ships no double

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def doubles(self, delay_s: float = 0.0) -> EngineClass:
        """The zero-work engine class with `delay_s` per call (the scenarios that trace or measure overhead)."""
        if self.zero_work is None:
            raise RuntimeError("this scenario needs zero-work engines: run it as `python -m armed_testing.cli perf`")
        return self.zero_work(delay_s=delay_s)


def _ok_judge(result: Any) -> bool:
    return isinstance(result, dict) and result.get("status") == 200


async def _http_judge(client: Any, url: str, pair: workload.Pair) -> dict[str, Any]:
    r = await client.post(url + "/v1/judge", json=pair.payload())
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}")
    return r.json()


def _profile(ref: str) -> Any:
    from armed.serving.profiles import load_profile

    return load_profile(ref)


# --- 1. DAG overhead ------------------------------------------------------------------------------------------


async def dag_overhead(ctx: Ctx, zw_profile_path: str, base_url: str, delay_s: float) -> dict[str, Any]:
    """The judge with every role on a zero-work engine that sleeps `delay_s` per call, against a relay chain with
    the same number of sequential handle hops and the same sleeps (measured in the same run)."""
    import httpx
    from ray import serve

    prof = _profile(zw_profile_path)
    tracer = Tracer()
    pipe = traced_pipeline(prof, tracer, ctx.doubles())
    pairs = workload.all_pairs(ctx.images_every)
    traces = [await trace_pair(pipe, tracer, p.query, p.product) for p in pairs]
    ks = Counter(t["critical_path_calls"] for t in traces)
    k = max(ks)  # the longest critical path the workload has: both sides busy, then the LLM judge
    chosen = [p for p, t in zip(pairs, traces, strict=True) if t["critical_path_calls"] == k]
    sides = Counter(tuple(sorted(t["by_side"].items())) for t in traces if t["critical_path_calls"] == k)
    judge = serve.get_deployment_handle("Judge", "judge")
    relay = serve.get_deployment_handle("PerfRelay", "perf-relay")
    n = ctx.n(30, 6)
    bodies: list[dict[str, Any]] = []

    async def judge_call(i: int) -> bool:
        res = await judge.judge.remote(chosen[i % len(chosen)].payload())
        if _ok_judge(res):
            bodies.append(res["body"])
            return True
        return False

    async def relay_call(i: int) -> int:
        return await relay.chain.remote(k, delay_s)

    runs = []
    async with httpx.AsyncClient(timeout=60) as client:

        async def http_call(i: int) -> dict[str, Any]:
            return await _http_judge(client, base_url, chosen[i % len(chosen)])

        for r in range(ctx.repeats):
            j = await closed_loop(judge_call, concurrency=1, requests=n, warmup=3, progress=ctx.progress,
                                  desc=f"dag judge #{r}")
            b = await closed_loop(relay_call, concurrency=1, requests=n, warmup=3, progress=ctx.progress,
                                  desc=f"dag relay #{r}")
            h = await closed_loop(http_call, concurrency=1, requests=n, warmup=1, progress=ctx.progress,
                                  desc=f"dag http #{r}")
            model_ms = k * delay_s * 1000
            over = j["p50_ms"] - model_ms
            hops = b["p50_ms"] - model_ms
            runs.append({"judge": j, "relay": b, "http": h, "overhead_p50_ms": round(over, 3),
                         "hops_p50_ms": round(hops, 3), "ratio_p50": round(over / hops, 3) if hops > 0 else None,
                         "ratio_p99": round((j["p99_ms"] - model_ms) / (b["p99_ms"] - model_ms), 3)
                         if b["p99_ms"] and b["p99_ms"] > model_ms else None})

    def side_sum(body: dict[str, Any], names: tuple[str, ...]) -> float:
        return sum(s["seconds"] for s in body["stages"] if s["name"] in names)

    q = [side_sum(b, QUERY_STAGES) for b in bodies]
    p = [side_sum(b, PRODUCT_STAGES) for b in bodies]
    jn = [side_sum(b, JOIN_STAGES) for b in bodies]
    wall = [b["seconds"] for b in bodies]
    sum_sides = [a + c for a, c in zip(q, p, strict=True)]
    overlap = [w - x for w, x in zip(wall, jn, strict=True)]  # time the two sides took together
    return {
        "what": "judge via its handle (caches off) with every role on a zero-work engine sleeping delay_s per call; "
                "baseline: a relay deployment making the same number of sequential handle calls to a leaf that "
                "sleeps the same delay_s (driver→relay + k relay→leaf = k+1 hops, like driver→judge + k model "
                "hops). overhead = judge p50 − k·delay; hops = relay p50 − k·delay; ratio = overhead / hops, "
                "per run, median over runs. http = the same judgments through Serve's proxy and the Gateway.",
        "delay_s": delay_s,
        "critical_path_calls_k": k,
        "critical_path_histogram": dict(sorted(ks.items())),
        "side_calls_of_chosen_pairs": [dict(s) for s, _ in sides.most_common(3)],
        "pairs_used": len(chosen),
        "model_time_on_critical_path_ms": round(k * delay_s * 1000, 3),
        **_medians(runs, ("judge", "relay", "http"), LATENCIES),
        "overhead_p50_ms": median_of([r["overhead_p50_ms"] for r in runs]),
        "hops_p50_ms": median_of([r["hops_p50_ms"] for r in runs]),
        "per_hop_p50_ms": round(median_of([r["hops_p50_ms"] for r in runs]) / (k + 1), 3),
        "ratio_p50": median_of([r["ratio_p50"] for r in runs]),
        "ratio_p99": median_of([r["ratio_p99"] for r in runs]),
        "concurrency": {
            "what": "from the judgments' own stage reports (seconds of each stage): the query side's stages, the "
                    "product side's, and the wall time the two sides took together (judgment seconds − join)",
            "query_side_ms_p50": _ms(statistics.median(q)) if q else None,
            "product_side_ms_p50": _ms(statistics.median(p)) if p else None,
            "sum_of_sides_ms_p50": _ms(statistics.median(sum_sides)) if q else None,
            "both_sides_wall_ms_p50": _ms(statistics.median(overlap)) if q else None,
            "ideal_wall_over_sum_p50": round(statistics.median(max(a, c) / (a + c) for a, c in zip(q, p, strict=True)
                                                               if a + c > 0), 3) if q else None,
            "wall_over_sum_p50": round(statistics.median(w / s for w, s in zip(overlap, sum_sides, strict=True)
                                                         if s > 0), 3) if q else None,
        },
        "runs": runs,
    }


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


# --- 2. end to end ----------------------------------------------------------------------------------------------


async def end_to_end(ctx: Ctx, base_url: str, judge_handle: Any, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    """Cold judgments/s and latency through HTTP (/v1/judge) at each concurrency (caches off where local)."""
    import httpx

    if judge_handle is not None:
        await judge_handle.set_caches.remote(False)
    out: dict[str, Any] = {"what": "POST /v1/judge, closed loop, distinct pairs cycling through the workload, "
                                   "judge caches off (cold pipeline) when local", "by_concurrency": {}}
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=256)) as client:
        for c in concurrencies:
            n = ctx.n(max(5, 2 * c) if c <= 8 else c, max(2, c))
            runs = []
            for r in range(ctx.repeats):
                stream = workload.unique_stream(n + 2, ctx.seed + r, ctx.images_every)

                async def call(i: int, stream: list = stream) -> dict[str, Any]:
                    return await _http_judge(client, base_url, stream[i])

                runs.append(await closed_loop(call, concurrency=c, requests=n, warmup=min(2, n),
                                              progress=ctx.progress, desc=f"e2e c={c} #{r}"))
            out["by_concurrency"][str(c)] = over_runs(runs)
    return out


# --- 4. caching -------------------------------------------------------------------------------------------------


async def caching(ctx: Ctx, base_url: str, judge_handle: Any, concurrency: int = 8) -> dict[str, Any]:
    """Cold (caches off) vs a Zipf repeated-pair mix (caches on, empty at the start) vs all-hits (the mix replayed
    once warm), in one run; hit rates per cache; latency inside the judge for judgment-cache hits."""
    import httpx

    n_mix = ctx.n(40, 12)
    n_hot = ctx.n(400, 40)
    runs = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=256)) as client:
        for r in range(ctx.repeats):
            mix = workload.zipf_mix(n_mix + 2, ctx.seed + r, images_every=ctx.images_every)

            def caller(stream: list[workload.Pair]) -> Any:
                async def call(i: int) -> dict[str, Any]:
                    return await _http_judge(client, base_url, stream[i % len(stream)])
                return call

            run: dict[str, Any] = {}
            if judge_handle is not None:
                await judge_handle.set_caches.remote(False)
            run["cold"] = await closed_loop(caller(mix), concurrency=concurrency, requests=n_mix, warmup=2,
                                            progress=ctx.progress, desc=f"cache cold #{r}")
            if judge_handle is not None:
                await judge_handle.set_caches.remote(True)
                await judge_handle.perf_samples.remote(reset=True)
            run["zipf"] = await closed_loop(caller(mix), concurrency=concurrency, requests=n_mix, warmup=0,
                                            progress=ctx.progress, desc=f"cache zipf #{r}")
            if judge_handle is not None:
                run["hit_rates"] = _hit_rates(await judge_handle.stats.remote())
                await judge_handle.perf_samples.remote(reset=True)
            seen = list({(x.query, x.product["id"]): x for x in mix[:n_mix]}.values())
            run["hot"] = await closed_loop(caller(seen), concurrency=concurrency, requests=n_hot, warmup=0,
                                           progress=ctx.progress, desc=f"cache hot #{r}")
            if judge_handle is not None:
                samples = await judge_handle.perf_samples.remote(reset=True)
                hits = [s for s, cached in samples if cached]
                run["inside_judge_hit_p50_ms"] = _ms(percentile(hits, 50))
                run["inside_judge_hit_p99_ms"] = _ms(percentile(hits, 99))
                run["hot_hit_share"] = round(len(hits) / len(samples), 3) if samples else None
            run["hot_over_cold"] = _ratio(run["hot"]["throughput_rps"], run["cold"]["throughput_rps"])
            run["zipf_over_cold"] = _ratio(run["zipf"]["throughput_rps"], run["cold"]["throughput_rps"])
            runs.append(run)
    if judge_handle is not None:
        await judge_handle.set_caches.remote(True)
    return {
        "what": f"closed loop at concurrency {concurrency} over HTTP: cold = the Zipf mix with every judge cache "
                "off; zipf = the same mix with caches on (empty at the start); hot = the mix's distinct pairs "
                "replayed once warm (judgment-cache hits). inside_judge = time inside the Judge replica.",
        "zipf_s": 1.1,
        "requests": {"cold": n_mix, "zipf": n_mix, "hot": n_hot},
        **_medians(runs, ("cold", "zipf", "hot"), (("rps", "throughput_rps"), *LATENCIES)),
        "hot_over_cold": median_of([r["hot_over_cold"] for r in runs]),
        "zipf_over_cold": median_of([r["zipf_over_cold"] for r in runs]),
        "inside_judge_hit_p50_ms": median_of([r.get("inside_judge_hit_p50_ms") for r in runs]),
        "inside_judge_hit_p99_ms": median_of([r.get("inside_judge_hit_p99_ms") for r in runs]),
        "hit_rates_zipf": runs[-1].get("hit_rates"),
        "runs": runs,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _hit_rates(stats: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {name: {**s, "hit_rate": round(s["hits"] / (s["hits"] + s["misses"]), 3) if s["hits"] + s["misses"]
                   else None} for name, s in stats.items()}


# --- 3. batching ------------------------------------------------------------------------------------------------


async def batching(ctx: Ctx, handles: dict[str, tuple[Any, Any]], engines: dict[str, str],
                   concurrency: int = 32) -> dict[str, Any]:
    """For each role: (batched handle, unbatched handle), measured back to back in each run at `concurrency`."""
    out: dict[str, Any] = {"what": f"closed loop at concurrency {concurrency} through deployment handles, one "
                                   "single-item request each; batched = the profile's batching settings "
                                   "(armed/engines/batching.py), unbatched = max_batch_size 1; both deployed side "
                                   "by side, measured back to back in each run", "roles": {}}
    texts = [p.product["name"] + f" #{i}" for i, p in enumerate(workload.all_pairs())]
    n = ctx.n(320, 64)
    for role, (batched, single) in handles.items():
        runs = []
        for r in range(ctx.repeats):
            def caller(h: Any, role: str = role) -> Any:
                async def call(i: int) -> Any:
                    t = texts[i % len(texts)]
                    # keys are role names, optionally with a suffix ("embedder (synthetic)")
                    if role.split(" ", 1)[0] == "embedder":
                        return await h.embed.remote([t])
                    return await h.classify.remote([(t[:6], t)])
                return call

            b = await closed_loop(caller(batched), concurrency=concurrency, requests=n, warmup=concurrency,
                                  progress=ctx.progress, desc=f"{role} batched #{r}")
            s = await closed_loop(caller(single), concurrency=concurrency, requests=n, warmup=concurrency,
                                  progress=ctx.progress, desc=f"{role} unbatched #{r}")
            runs.append({"batched": b, "unbatched": s, "ratio": _ratio(b["throughput_rps"], s["throughput_rps"])})
        out["roles"][role] = {
            "engine": engines.get(role),
            **_medians(runs, ("batched", "unbatched"), (("rps", "throughput_rps"), *LATENCIES)),
            "ratio": median_of([x["ratio"] for x in runs]),
            "runs": runs,
        }
    return out


# --- 5. autoscaling ---------------------------------------------------------------------------------------------


async def autoscaling(ctx: Ctx, app: str, watched: list[str], clients: int = 12, step_s: float = 20.0,
                      settle_timeout_s: float = 90.0) -> dict[str, Any]:
    """A step load (`clients` closed-loop callers for `step_s`) on one model's handle, then a trickle (one caller
    with 0.2 s pauses) until its replicas are back at the minimum; every failed call is counted."""
    from ray import serve

    h = serve.get_deployment_handle(app, app)
    cycles = [await _scale_cycle(h, app, watched, clients, step_s, settle_timeout_s)
              for _ in range(max(1, min(ctx.repeats, 2 if ctx.quick else ctx.repeats)))]
    return {
        "what": f"{clients} closed-loop callers on the {app} handle for {step_s:.0f} s (zero-work engine, 0.2 s per "
                "call, batching off, target_ongoing_requests 1, upscale_delay 1 s, downscale_delay 5 s, metrics "
                "every 1 s), then one slow caller until replicas are back at the minimum; replica counts from "
                "serve.status() every 0.5 s; every exception of a call counts as failed",
        "scale_up_s": median_of([c["scale_up_s"] for c in cycles]),
        "back_to_min_s_after_step": median_of([c["back_to_min_s_after_step"] for c in cycles]),
        "failed": sum(c["failed"] for c in cycles),
        "others_untouched": all(c["others_untouched"] for c in cycles),
        "cycles": cycles,
    }


async def _scale_cycle(h: Any, app: str, watched: list[str], clients: int, step_s: float,
                       settle_timeout_s: float) -> dict[str, Any]:
    from ops.perf.stack import replica_counts

    base = await asyncio.to_thread(replica_counts)
    start_n = base[f"{app}/{app}"]
    timeline: list[tuple[float, dict[str, int]]] = []
    failures: Counter = Counter()
    sent: Counter = Counter()
    t0 = time.monotonic()
    phase = {"name": "step"}

    async def one(stop: float, pause: float = 0.0) -> None:
        while time.monotonic() < stop and phase["name"] != "done":
            name = phase["name"]
            sent[name] += 1
            try:
                await h.embed.remote([f"load {sent[name]}"])
            except Exception as exc:
                failures[f"{name}:{type(exc).__name__}"] += 1
            if pause:
                await asyncio.sleep(pause)

    async def watch(until: float) -> None:
        while time.monotonic() < until and phase["name"] != "done":
            counts = await asyncio.to_thread(replica_counts)
            timeline.append((round(time.monotonic() - t0, 2), counts))
            if phase["name"] == "down" and counts[f"{app}/{app}"] <= start_n:
                phase["name"] = "done"
            await asyncio.sleep(0.5)

    step_end = t0 + step_s
    await asyncio.gather(watch(step_end), *(one(step_end) for _ in range(clients)))
    phase["name"] = "down"
    limit = time.monotonic() + settle_timeout_s
    await asyncio.gather(watch(limit), one(limit, pause=0.2))
    series = [(t, c[f"{app}/{app}"]) for t, c in timeline]
    up_at = next((t for t, n in series if n > start_n), None)
    back_at = next((t for t, n in series if t >= step_s and n <= start_n), None)
    others = {w: sorted({c.get(w, 0) for _, c in timeline}) for w in watched}
    return {
        "start_replicas": start_n, "peak_replicas": max(n for _, n in series), "scale_up_s": up_at,
        "back_to_min_s_after_step": round(back_at - step_s, 2) if back_at is not None else None,
        "requests": dict(sent), "failed": sum(failures.values()), "errors": dict(failures),
        "other_deployments_replica_values": others,
        "others_untouched": all(len(v) == 1 for v in others.values()),
        "timeline": series[:: max(1, len(series) // 60)],
    }


# --- 6. per-model engine throughput ----------------------------------------------------------------------------


async def engine_throughput(ctx: Ctx, profile: Any, judge_prompts: list[Any]) -> dict[str, Any]:
    """Each deployed role of the profile, alone, through its handle at the concurrency it admits per replica."""
    from ray import serve

    from armed.engines.base import ChatMessage, ChatModel, Embedder, PairClassifier
    from armed.pipeline import prompts
    from armed.roles import ROLES

    label = workload.label_png(["布洛芬缓释胶囊", "0.3g*20粒"])
    texts = [p.product["name"] for p in workload.all_pairs()]
    out: dict[str, Any] = {}
    for role in profile.deployed_roles():
        h = serve.get_deployment_handle(role, role)
        rp = profile.models[role]
        tokens: dict[str, int] = {"prompt": 0, "output": 0}
        entry = ROLES[role]
        if entry.protocol is ChatModel:
            conc, n = min(rp.max_ongoing_requests, 8), ctx.n(12, 3)

            async def call(i: int, h: Any = h, role: str = role, tokens: dict = tokens,
                           images: tuple = (label,) if entry.reads_images else ()) -> Any:
                if role == "llm" and judge_prompts:
                    res = await h.choose.remote(judge_prompts[i % len(judge_prompts)], list(prompts.JUDGE_CHOICES))
                else:
                    msgs = [ChatMessage("user", "名称与图片一致吗？", images=images)]
                    res = await h.choose.remote(msgs, list(prompts.CHEATING_CHOICES))
                tokens["prompt"] += res.prompt_tokens
                tokens["output"] += res.output_tokens
                return res
        elif entry.protocol is Embedder:
            conc, n = 32, ctx.n(256, 64)

            async def call(i: int, h: Any = h) -> Any:
                return await h.embed.remote([texts[i % len(texts)]])
        elif entry.protocol is PairClassifier:
            conc, n = 32, ctx.n(256, 64)

            async def call(i: int, h: Any = h) -> Any:
                t = texts[i % len(texts)]
                return await h.classify.remote([(t[:4], t)])
        else:  # an ImageReader
            conc, n = min(rp.max_ongoing_requests, 4), ctx.n(8, 2)

            async def call(i: int, h: Any = h) -> Any:
                return await h.read.remote(label)
        runs = []
        for r in range(ctx.repeats):
            tokens.update(prompt=0, output=0)
            res = await closed_loop(call, concurrency=conc, requests=n, warmup=min(conc, 4), progress=ctx.progress,
                                    desc=f"{role} #{r}")
            wall = res["wall_s"] or 1
            res["prompt_tokens_per_s"] = round(tokens["prompt"] / wall, 2) if tokens["prompt"] else None
            res["output_tokens_per_s"] = round(tokens["output"] / wall, 2) if tokens["output"] else None
            runs.append(res)
        out[role] = {"engine": rp.engine.kind, "replicas": 1, "concurrency": conc, **over_runs(
            runs, ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "prompt_tokens_per_s", "output_tokens_per_s"))}
    return out


def capacity_file(profile: Any, engines: dict[str, Any], e2e: dict[str, Any] | None, calls: dict[str, float],
                  source: str) -> dict[str, Any]:
    """The benchmark file `armed-ops capacity` reads (format: ops/capacity.py's docstring)."""
    models: dict[str, Any] = {}
    for role, m in engines.items():
        if not m.get("throughput_rps"):
            continue
        models[role] = {"requests_per_s": m["throughput_rps"], "p50_ms": m["p50_ms"], "p95_ms": m["p95_ms"],
                        "concurrency": m["concurrency"], "calls_per_judgment": round(calls.get(role, 0.0), 3)}
    if e2e:
        best = max(e2e["by_concurrency"].items(), key=lambda kv: kv[1].get("throughput_rps") or 0)
        c, m = best
        if m.get("throughput_rps"):
            models["judge"] = {"requests_per_s": m["throughput_rps"], "p50_ms": m["p50_ms"],
                               "p95_ms": statistics.median([r["p95_ms"] for r in m["runs"] if r.get("p95_ms")]),
                               "concurrency": int(c), "calls_per_judgment": 1.0}
    return {"profile": profile.name, "source": source, "models": models}


# --- 7. cost per judgment ---------------------------------------------------------------------------------------


async def cost_per_judgment(ctx: Ctx, profile_refs: list[str]) -> dict[str, Any]:
    """Model calls and tokens per judgment by path, for every profile, from in-process traces of the workload."""
    out: dict[str, Any] = {
        "what": "in-process traces of every catalogue pair (zero-work engines in every deployed role; their "
                "answers decide which path a pair takes, so the path shares are this workload's, not production's); "
                "tokens on the real Qwen tokenizer (see ops/perf/trace.py); generate() output counted at its "
                "max_tokens budget (upper bound). No caching (multiply by the miss rate for cached traffic).",
        "paths": {"deterministic": "cheating, rule veto, name containment, all characters, core match: no LLM "
                                   "judge call", Branch.llm_judge.value: "the constrained LLM judge (the llm role)",
                  Branch.student.value: "the distilled student answered (its confidence cleared "
                                        "judge.escalate_below): one student call, no LLM",
                  "fallback": "knowledge-base prior when the judge is off or failed"},
        "student_teacher": "the student role answers the student path; pairs below the profile's escalate_below go "
                           "on to the LLM (the teacher-size model on GPU profiles: the llm_judge path, one student "
                           "call and one LLM call). Path shares here follow the zero-work engines' answers, not a "
                           "real student's confidence: read the real escalation rate from `armed bench`'s cascade "
                           "curve",
        "tokenizer": "qwen" if ctx.token_counter else "unavailable (tokens reported as 0)",
        "profiles": {},
    }
    pairs = workload.all_pairs(ctx.images_every)
    for ref in profile_refs:
        prof = _profile(ref)
        tracer = Tracer(ctx.token_counter)
        pipe = traced_pipeline(prof, tracer, ctx.doubles())
        traces = [await trace_pair(pipe, tracer, p.query, p.product) for p in pairs]
        out["profiles"][prof.name] = {"llm_text": prof.judge.llm_text, "deployed_roles": prof.deployed_roles(),
                                      **cost_table(traces)}
    return out


async def judge_prompts(profile: Any, images_every: int, engine_cls: EngineClass, limit: int = 16) -> list[Any]:
    """Real LLM-judge prompts of the workload (captured in-process on `engine_cls`'s engines, the zero-work
    doubles), to load the llm engine with."""
    captured: list[Any] = []

    class Capture:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def choose(self, messages: Any, choices: Any) -> Any:
            captured.append(list(messages))
            return await self.inner.choose(messages, choices)

    tracer = Tracer()
    pipe = traced_pipeline(profile, tracer, engine_cls)
    if pipe.clients.llm is None:
        return []
    pipe.clients.llm = Capture(pipe.clients.llm)  # the sides and the hierarchy share this ModelClients object
    for p in workload.all_pairs(images_every):
        await trace_pair(pipe, tracer, p.query, p.product)
        if len(captured) >= limit:
            break
    return captured
