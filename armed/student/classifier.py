"""`armed distill --student classifier:BASE`: the GPU profiles' student, a Qwen3 sequence classifier.

Fine-tunes `Qwen3ForSequenceClassification` (four outputs, `id2label` = Algorithm 1's levels) from a causal or
classification checkpoint on human labels and teacher soft labels, reading each pair as `STUDENT_TEMPLATE`
renders it — the same text `TransformersPairClassifier` and `VLLMPairClassifier` send at serving time.
The temperature fitted on the tuning split is folded into the score head (logits/T = (W/T)·h: the head has no
bias), so vLLM's pooling runner, which applies a plain softmax, serves calibrated probabilities too.

The output folder is exactly what a profile's `models.student` loads (kind vllm or transformers): config,
weights, tokenizer, plus `student.json` and `MODEL_CARD.md`. On a GPU: `ops/train_student_gpu.sh`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from armed.errors import InputError
from armed.student import data as D
from armed.student import model as M
from armed.student.engine import LABELS, STUDENT_TEMPLATE
from armed.text import escape_markup


def render(pair: D.StudentPair) -> str:
    """The pair as the template reads it, escaped the way serving escapes it (armed.pipeline.hierarchy): a text
    cannot close <query> or <product> nor carry a chat-template token."""
    return STUDENT_TEMPLATE.format(query=escape_markup(pair.query[:256]), document=escape_markup(pair.product[:512]))


def _load_base(base: str | Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={lab: i for i, lab in enumerate(LABELS)}, ignore_mismatched_sizes=True, dtype=torch.float32,
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model.to(device)


def _logits(model: Any, tokenizer: Any, texts: Sequence[str], device: str, batch: int = 32,
            max_length: int = 256) -> np.ndarray:
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tokenizer(list(texts[i : i + batch]), return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length).to(device)
            out.append(model(**enc).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), dtype=np.float32)


def train_classifier_student(
    base: str,
    train_specs: Sequence[str],
    out: Path,
    *,
    teacher_files: Sequence[Path] = (),
    teacher_weight: float = 0.5,
    tune_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    steps: int = 200,
    lr: float = 2e-5,
    batch_size: int = 16,
    device: str = "cpu",
    max_length: int = 256,
    command: str = "",
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    import torch

    if not train_specs and not teacher_files:
        raise InputError("--train", "give at least one training set (FORMAT:PATH) or --teacher-predictions file")
    started = time.perf_counter()
    if base == "tiny":
        from armed.engines.tiny import make_tiny_qwen3

        base = str(make_tiny_qwen3(out.parent / f".{out.name}-tiny-base"))
    human = [p for spec in train_specs for p in D.load_human(spec, limit, seed)]
    teacher = [p for f in teacher_files for p in D.load_teacher(Path(f))]
    pairs, weights = D.mix(human, teacher, teacher_weight)
    if not pairs:
        raise InputError("--train", "no training pairs")
    train_idx, tune_idx = D.group_split(pairs, tune_fraction, seed)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer, model = _load_base(base, device)
    texts = [render(p) for p in pairs]
    y = torch.from_numpy(D.targets(pairs))
    w = torch.from_numpy(weights)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses: list[float] = []
    order: list[int] = []
    model.train()
    for step in range(steps):
        if len(order) < batch_size:
            fresh = list(train_idx)
            rng.shuffle(fresh)
            order += fresh
        idx = [order.pop() for _ in range(min(batch_size, len(order)))]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(device)
        logp = torch.log_softmax(model(**enc).logits.float(), dim=1)
        bw = w[idx].to(device)
        loss = -(bw * (y[idx].to(device) * logp).sum(dim=1)).sum() / bw.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log and (step % 50 == 0 or step == steps - 1):
            log(f"step {step}: loss {float(loss):.4f}")
    tune_y = D.targets([pairs[i] for i in tune_idx])
    tune_logits = _logits(model, tokenizer, [texts[i] for i in tune_idx], device, max_length=max_length)
    uncalibrated = _metrics(M.softmax(tune_logits), tune_y)
    temperature = M.fit_temperature(tune_logits, tune_y) if len(tune_idx) else 1.0
    with torch.no_grad():  # fold 1/T into the bias-free score head
        model.score.weight.mul_(1.0 / temperature)
    calibrated = _metrics(M.softmax(tune_logits, temperature), tune_y)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    summary = {
        "kind": "qwen3-sequence-classifier",
        "labels": list(LABELS),
        "template": STUDENT_TEMPLATE,
        "temperature_folded_into_head": temperature,
        "base": str(base),
        "training": {"pairs": D.describe(pairs), "teacher_weight": teacher_weight if teacher else 0.0,
                     "files_sha256": {s: D.file_sha256(D.parse_spec(s)[1]) for s in train_specs},
                     "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed, "limit": limit,
                     "losses_first_last": [losses[0], losses[-1]] if losses else None,
                     "seconds": time.perf_counter() - started, "device": device, "command": command},
        "tuning_split": {"uncalibrated": uncalibrated, "calibrated": calibrated},
    }
    (out / "student.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(_card(summary), encoding="utf-8")
    return summary


def _metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from armed.student.distill import evaluate

    return evaluate(probs, y) if len(y) else {"n": 0}


def _card(s: dict[str, Any]) -> str:
    t = s["training"]
    c = s["tuning_split"]["calibrated"]
    return "\n".join([
        "# armed student (Qwen3 sequence classifier) — model card",
        "",
        f"- base: `{s['base']}`; labels {s['labels']}; input template `{s['template']!r}`",
        f"- command: `{t['command']}`" if t.get("command") else "- command: (library call)",
        f"- data: {json.dumps(t['pairs']['by_source'], ensure_ascii=False)}; teacher weight {t['teacher_weight']}",
        f"- files (sha256): {json.dumps(t['files_sha256'])}",
        f"- {t['steps']} steps, lr {t['lr']}, batch {t['batch_size']}, seed {t['seed']}, device {t['device']}, "
        f"{t['seconds']:.0f} s",
        f"- temperature {s['temperature_folded_into_head']:.3f}, folded into the score head",
        f"- tuning split: {json.dumps(c)}",
        "",
        "Serve it with `models.student: {kind: vllm, model: <this folder>}` (or kind transformers).",
        "",
    ])
