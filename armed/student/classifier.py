"""`armed distill --student classifier:BASE`: the GPU profiles' Qwen3 sequence classifiers.

`train_pair_classifier` fine-tunes `Qwen3ForSequenceClassification` from a causal or classification checkpoint
for one `ClassifierTask` — the labels of its head (`id2label`), how it reads a pair (the same text
`TransformersPairClassifier` and `VLLMPairClassifier` send at serving time) and how its tuning split is scored —
on human labels and teacher soft labels. Two tasks use it:
- the student (`STUDENT`, here): four outputs = Algorithm 1's levels, pairs read as `STUDENT_TEMPLATE`;
- the consistency check (`--task consistency`, armed/student/consistency.py): consistent / inconsistent.
The temperature fitted on the tuning split is folded into the score head (logits/T = (W/T)·h: the head has no
bias), so vLLM's pooling runner, which applies a plain softmax, serves calibrated probabilities too.

The output folder is exactly what a profile's `models.<role>` loads (kind vllm or transformers): config,
weights, tokenizer, plus `<role>.json` and `MODEL_CARD.md`. On a GPU: `ops/train_student_gpu.sh`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from armed.errors import InputError
from armed.student import data as D
from armed.student import model as M
from armed.student.engine import LABELS, STUDENT_TEMPLATE
from armed.text import escape_markup


@dataclass(frozen=True)
class ClassifierTask:
    """What makes one pair classifier differ from another; the training loop is the same for all of them."""

    role: str  # the profile role that loads the output folder (models.<role>); also names <role>.json
    title: str  # the model card's heading
    labels: tuple[str, ...]  # the head's outputs, in order (config id2label)
    template: str  # how the serving engines read a pair (recorded in the summary)
    render: Callable[[D.StudentPair], str]  # a training pair as the serving engine's template renders it
    evaluate: Callable[[np.ndarray, np.ndarray], dict[str, Any]]  # (probabilities, targets) of the tuning split
    max_length: int  # tokens per pair in training
    # Reading the training data: human labels from a FORMAT:PATH spec (spec, limit, seed), the file a spec names,
    # teacher judgments from a file, each as pairs with targets over `labels`; `data_hint` says what to give.
    load_human: Callable[[str, int | None, int], list[D.StudentPair]]
    spec_path: Callable[[str], Path]
    load_teacher: Callable[[Path], list[D.StudentPair]]
    data_hint: str


@dataclass(frozen=True)
class FineTune:
    """How one fine-tuning run goes, whatever the task: the keyword options `train_classifier_student` and
    `train_consistency_classifier` take (`armed distill --student classifier:BASE` sets them from its flags), kept in
    one place so the two commands cannot drift apart."""

    teacher_weight: float = 0.5  # the teacher's soft labels against the human ones (D.mix)
    tune_fraction: float = 0.1  # held out by query for the temperature and the metrics
    seed: int = 0
    limit: int | None = None  # human pairs per training set, sampled with `seed`
    steps: int = 200
    lr: float = 2e-5
    batch_size: int = 16
    device: str = "cpu"
    max_length: int | None = None  # tokens per pair; None: the task's own
    command: str = ""  # the command line, recorded in the summary and the model card
    log: Callable[[str], None] | None = print


def render(pair: D.StudentPair) -> str:
    """The pair as the template reads it, escaped the way serving escapes it (armed.pipeline.hierarchy): a text
    cannot close <query> or <product> nor carry a chat-template token."""
    return STUDENT_TEMPLATE.format(query=escape_markup(pair.query[:256]), document=escape_markup(pair.product[:512]))


def _evaluate_student(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from armed.student.distill import evaluate

    return evaluate(probs, y)


STUDENT = ClassifierTask(role="student", title="armed student (Qwen3 sequence classifier)", labels=LABELS,
                         template=STUDENT_TEMPLATE, render=render, evaluate=_evaluate_student, max_length=256,
                         load_human=D.load_human, spec_path=lambda spec: D.parse_spec(spec)[1],
                         load_teacher=D.load_teacher, data_hint="at least one training set (FORMAT:PATH)")


def _load_base(base: str | Path, labels: Sequence[str], device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)}, ignore_mismatched_sizes=True, dtype=torch.float32,
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
    return np.concatenate(out) if out else np.zeros((0, int(model.config.num_labels)), dtype=np.float32)


def train_classifier(
    task: ClassifierTask,
    base: str,
    train_specs: Sequence[str],
    out: Path,
    *,
    teacher_files: Sequence[Path] = (),
    **options: Any,
) -> dict[str, Any]:
    """`armed distill --student classifier:BASE [--task ...]`: read `task`'s human labels (FORMAT:PATH specs) and
    teacher judgments, then fine-tune `base` (a Qwen3 checkpoint folder, or "tiny") into the folder the profile's
    `models.<task.role>` loads. `options` are FineTune's fields."""
    if not train_specs and not teacher_files:
        raise InputError("--train", f"give {task.data_hint} or a --teacher-predictions file")
    run = FineTune(**options)
    human = [p for spec in train_specs for p in task.load_human(spec, run.limit, run.seed)]
    teacher = []
    for f in teacher_files:
        rows = task.load_teacher(Path(f))
        if not rows:  # a file of the wrong shape would otherwise train on the human labels alone, silently
            raise InputError("--teacher-predictions", f"{f}: no row with a query, a product and votes or "
                                                      "probabilities")
        teacher += rows
    files = {s: task.spec_path(s) for s in train_specs} | {str(f): Path(f) for f in teacher_files}
    return train_pair_classifier(task, base, human, teacher, out, files=files, run=run)


def train_classifier_student(base: str, train_specs: Sequence[str], out: Path, **kw: Any) -> dict[str, Any]:
    """The student: KUAKE human labels (FORMAT:PATH) and teacher judgments as four-level soft labels."""
    return train_classifier(STUDENT, base, train_specs, out, **kw)


def train_pair_classifier(
    task: ClassifierTask,
    base: str,
    human: Sequence[D.StudentPair],
    teacher: Sequence[D.StudentPair],
    out: Path,
    *,
    files: dict[str, Path],
    run: FineTune = FineTune(),
) -> dict[str, Any]:
    """Fine-tune `base` ("tiny": a tiny random Qwen3) into `task`'s classifier on the pairs (targets: distributions
    over task.labels), fold the tuning split's temperature into the head, save to `out`; return the summary.
    `files` (what the pairs were read from, by the name the command gave) go into the summary with their sha256."""
    import torch

    started = time.perf_counter()
    max_length = run.max_length or task.max_length
    if base == "tiny":
        from armed.engines.tiny import make_tiny_qwen3

        base = str(make_tiny_qwen3(out.parent / f".{out.name}-tiny-base"))
    pairs, weights = D.mix(human, teacher, run.teacher_weight)
    if not pairs:
        raise InputError("--train", "no training pairs")
    if any(p.target is None or len(p.target) != len(task.labels) for p in pairs):
        raise ValueError(f"every target must be a distribution over {list(task.labels)}")
    train_idx, tune_idx = D.group_split(pairs, run.tune_fraction, run.seed)
    torch.manual_seed(run.seed)
    rng = random.Random(run.seed)
    tokenizer, model = _load_base(base, task.labels, run.device)
    texts = [task.render(p) for p in pairs]
    y = torch.from_numpy(D.targets(pairs))
    w = torch.from_numpy(weights)
    opt = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=0.01)
    losses: list[float] = []
    order: list[int] = []
    model.train()
    for step in range(run.steps):
        if len(order) < run.batch_size:
            fresh = list(train_idx)
            rng.shuffle(fresh)
            order += fresh
        idx = [order.pop() for _ in range(min(run.batch_size, len(order)))]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(run.device)
        logp = torch.log_softmax(model(**enc).logits.float(), dim=1)
        bw = w[idx].to(run.device)
        loss = -(bw * (y[idx].to(run.device) * logp).sum(dim=1)).sum() / bw.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if run.log and (step % 50 == 0 or step == run.steps - 1):
            run.log(f"step {step}: loss {losses[-1]:.4f}")
    tune_y = D.targets([pairs[i] for i in tune_idx])
    tune_logits = _logits(model, tokenizer, [texts[i] for i in tune_idx], run.device, max_length=max_length)
    uncalibrated = _metrics(task, M.softmax(tune_logits), tune_y)
    temperature = M.fit_temperature(tune_logits, tune_y) if len(tune_idx) else 1.0
    with torch.no_grad():  # fold 1/T into the bias-free score head
        model.score.weight.mul_(1.0 / temperature)
    calibrated = _metrics(task, M.softmax(tune_logits, temperature), tune_y)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    summary = {
        "kind": "qwen3-sequence-classifier",
        "role": task.role,
        "labels": list(task.labels),
        "template": task.template,
        "temperature_folded_into_head": temperature,
        "base": str(base),
        "training": {"pairs": D.describe(pairs), "teacher_weight": run.teacher_weight if teacher else 0.0,
                     "files_sha256": {name: D.file_sha256(path) for name, path in files.items()},
                     "steps": run.steps, "lr": run.lr, "batch_size": run.batch_size, "max_length": max_length,
                     "seed": run.seed, "limit": run.limit,
                     "losses_first_last": [losses[0], losses[-1]] if losses else None,
                     "seconds": time.perf_counter() - started, "device": run.device, "command": run.command},
        "tuning_split": {"uncalibrated": uncalibrated, "calibrated": calibrated},
    }
    (out / f"{task.role}.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(_card(task, summary), encoding="utf-8")
    return summary


def _metrics(task: ClassifierTask, probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return task.evaluate(probs, y) if len(y) else {"n": 0}


def _card(task: ClassifierTask, s: dict[str, Any]) -> str:
    t = s["training"]
    c = s["tuning_split"]["calibrated"]
    return "\n".join([
        f"# {task.title} — model card",
        "",
        f"- base: `{s['base']}`; labels {s['labels']}; input template `{s['template']!r}`",
        f"- command: `{t['command']}`" if t.get("command") else "- command: (library call)",
        f"- data: {json.dumps(t['pairs']['by_source'], ensure_ascii=False)}; teacher weight {t['teacher_weight']}",
        f"- files (sha256): {json.dumps(t['files_sha256'])}",
        f"- {t['steps']} steps, lr {t['lr']}, batch {t['batch_size']}, {t['max_length']} tokens, seed {t['seed']}, "
        f"device {t['device']}, {t['seconds']:.0f} s",
        f"- temperature {s['temperature_folded_into_head']:.3f}, folded into the score head",
        f"- tuning split: {json.dumps(c)}",
        "",
        f"Serve it with `models.{task.role}: {{kind: vllm, model: <this folder>}}` (or kind transformers).",
        "",
    ])
