"""GPU smoke check of the model engines: `python -m ops.gpu_check --out DIR [--device cuda|cpu] [--no-vllm]`.

CI has no GPU, so this is the script to run on a lent single-GPU machine: it generates the tiny Qwen
checkpoints (no hub needed), runs every transformers engine on the device, optionally the vLLM engines, checks
the single-GPU profile (gpu_profiles/h100-x1.yaml) against the card, and
writes DIR/gpu_check.json (also printed). It exits 0 only when every check that ran passed; vLLM checks are
reported as skipped, not failed, when `import vllm` fails there. A couple of minutes end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from armed.engines.base import ChatMessage

CHOICES = ["相关", "不相关", "部分相关"]
MESSAGES = [
    ChatMessage("system", "判断查询与商品的相关性。"),
    ChatMessage("user", "查询：感冒发烧\n商品：布洛芬缓释胶囊"),
]


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def _sums_to_one(d: dict[str, float]) -> bool:
    return math.isclose(sum(d.values()), 1.0, abs_tol=1e-4)


async def _check(results: dict[str, Any], name: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    start = time.perf_counter()
    try:
        detail = await fn()
        results[name] = {"status": "ok", "seconds": round(time.perf_counter() - start, 3), **detail}
    except Exception as exc:  # report every failure, keep checking the rest
        results[name] = {
            "status": "failed",
            "seconds": round(time.perf_counter() - start, 3),
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(limit=6),
        }


async def run_checks(work: Path, device: str, with_vllm: bool) -> dict[str, Any]:
    import torch

    from armed.engines import transformers_engine as te
    from armed.engines.tiny import make_tiny_checkpoints

    summary: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
    }
    t = time.perf_counter()
    tiny = make_tiny_checkpoints(work / "tiny")
    summary["checkpoints_s"] = round(time.perf_counter() - t, 2)
    checks: dict[str, Any] = {}

    async def chat() -> dict[str, Any]:
        m = te.TransformersChatModel(tiny.causal, device=device)
        r = await m.choose(MESSAGES, CHOICES)
        assert r.label in CHOICES and _sums_to_one(r.probabilities), r
        assert str(m.model.device).startswith(device.split(":")[0])
        t0 = time.perf_counter()
        for _ in range(5):
            await m.choose(MESSAGES, CHOICES)
        per_call = (time.perf_counter() - t0) / 5
        text = await m.generate(MESSAGES, max_tokens=8)
        return {"label": r.label, "choose_ms": round(per_call * 1000, 2), "generated_chars": len(text)}

    async def embed() -> dict[str, Any]:
        e = te.TransformersEmbedder(tiny.embedder, device=device)
        vecs = await e.embed(["感冒发烧", "布洛芬", "眼药水"])
        assert all(math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-4) for v in vecs)
        return {"dim": len(vecs[0])}

    async def classify() -> dict[str, Any]:
        c = te.TransformersPairClassifier(tiny.classifier, device=device)
        dists = await c.classify([("感冒发烧", "布洛芬"), ("眼睛干涩", "滴眼液")])
        assert all(_sums_to_one(d) and tuple(d) == c.labels for d in dists)
        return {"labels": list(c.labels)}

    async def vision() -> dict[str, Any]:
        v = te.TransformersVisionChatModel(tiny.vl, device=device)
        r = await v.choose([ChatMessage("user", "名称与图片一致吗？", images=(_png(),))], ["一致", "不一致"])
        assert r.label in ("一致", "不一致") and _sums_to_one(r.probabilities)
        try:
            await v.choose([ChatMessage("user", "x", images=(b"broken",))], ["一致", "不一致"])
            raise AssertionError("broken image bytes were accepted")
        except ValueError:
            pass
        return {"label": r.label, "prompt_tokens": r.prompt_tokens}

    await _check(checks, "transformers_chat", chat)
    await _check(checks, "transformers_embed", embed)
    await _check(checks, "transformers_classify", classify)
    await _check(checks, "transformers_vision", vision)

    if not with_vllm:
        checks["vllm"] = {"status": "skipped", "reason": "--no-vllm"}
    elif importlib.util.find_spec("vllm") is None:
        checks["vllm"] = {"status": "skipped", "reason": "vllm is not installed"}
    else:
        try:
            import vllm  # noqa: F401  (an installed but unimportable vLLM is a skip, with the reason)
        except Exception as exc:
            checks["vllm"] = {"status": "skipped", "reason": f"import vllm failed: {type(exc).__name__}: {exc}"}
        else:

            # The slim vLLM 0.29 of ../shared/gpu-vllm (ops/gpu_vllm_carry.sh) runs only with Triton attention and
            # no custom-op warm-up (its README); harmless on a full vLLM, so always passed on a GPU.
            slim = ({"attention_config": {"backend": "TRITON_ATTN"}, "compilation_config": {"custom_ops": ["none"]},
                     "enforce_eager": True} if device.startswith("cuda") else {})

            async def vllm_chat() -> dict[str, Any]:
                from armed.engines.vllm_engine import VLLMChatModel

                m = VLLMChatModel(tiny.causal, max_model_len=512, max_num_seqs=4, gpu_memory_utilization=0.2,
                                  **slim)
                r = await m.choose(MESSAGES, CHOICES)
                assert r.label in CHOICES and _sums_to_one(r.probabilities), r
                ref = await te.TransformersChatModel(tiny.causal, device=device).choose(MESSAGES, CHOICES)
                return {"label": r.label, "transformers_label": ref.label, "probabilities": r.probabilities,
                        "transformers_probabilities": ref.probabilities}

            async def vllm_embed() -> dict[str, Any]:
                from armed.engines.vllm_engine import VLLMEmbedder

                texts = ["感冒发烧", "布洛芬", "眼药水"]
                e = VLLMEmbedder(tiny.embedder, max_model_len=512, max_num_seqs=4, gpu_memory_utilization=0.1, **slim)
                got = await e.embed(texts)
                ref = await te.TransformersEmbedder(tiny.embedder, device=device, pooling="last",
                                                    append_token=None).embed(texts)
                cosines = [sum(a * b for a, b in zip(g, r, strict=True)) for g, r in zip(got, ref, strict=True)]
                assert min(cosines) > 0.99, cosines
                return {"dim": len(got[0]), "min_cosine_vs_transformers": round(min(cosines), 5)}

            async def vllm_classify() -> dict[str, Any]:
                from armed.engines.vllm_engine import VLLMPairClassifier

                pairs = [("感冒发烧", "布洛芬"), ("眼睛干涩", "滴眼液")]
                c = VLLMPairClassifier(tiny.classifier, labels=tiny.classifier_labels, max_model_len=512,
                                       max_num_seqs=4, gpu_memory_utilization=0.1, **slim)
                got = await c.classify(pairs)
                ref = await te.TransformersPairClassifier(tiny.classifier, device=device).classify(pairs)
                gap = max(abs(g[k] - r[k]) for g, r in zip(got, ref, strict=True) for k in g)
                assert gap < 2e-2, gap  # bf16/fp32 kernels differ; the CPU bound is 2e-3
                return {"max_abs_diff_vs_transformers": round(gap, 5)}

            await _check(checks, "vllm_chat", vllm_chat)
            await _check(checks, "vllm_embed", vllm_embed)
            await _check(checks, "vllm_classify", vllm_classify)

    async def single_gpu_profile() -> dict[str, Any]:
        """The h100-x1 profile puts every model on one GPU: its memory shares must fit, and on a GPU machine the
        card must have the memory the shares were sized for."""
        from armed.serving.profiles import load_profile

        profile = load_profile("h100-x1")
        shares = {r: m.engine.gpu_memory_utilization for r, m in profile.models.items() if m.resources.num_gpus}
        assert sum(shares.values()) <= 1.0, f"GPU memory shares add up to {sum(shares.values()):.2f}"
        detail: dict[str, Any] = {"profile": profile.name, "memory_shares": shares}
        if device.startswith("cuda"):
            import torch

            total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
            detail["device_memory_gib"] = round(total_gib, 1)
            assert total_gib >= 75, f"h100-x1 is sized for an 80 GB card; this one has {total_gib:.0f} GiB"
        return detail

    await _check(checks, "single_gpu_profile", single_gpu_profile)

    summary["checks"] = checks
    summary["ok"] = all(c["status"] in ("ok", "skipped") for c in checks.values())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM checks")
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "device cuda requested but torch sees no CUDA GPU"}))
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="armed-gpu-check-") as work:
        summary = asyncio.run(run_checks(Path(work), device, with_vllm=not args.no_vllm))
    summary["total_s"] = round(time.perf_counter() - start, 2)
    text = json.dumps(summary, ensure_ascii=False, indent=2)
    (args.out / "gpu_check.json").write_text(text, encoding="utf-8")
    print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
