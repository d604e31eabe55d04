"""The embedded default's student: a small MLP over `features.pair_features`, temperature-calibrated.

Training (`train`): standardised features → Linear → GELU → Dropout → Linear → four logits, soft-label
cross-entropy with per-pair weights (human and teacher labels mixed at a stated ratio), AdamW, early stopping on
the tuning split's macro-F1 (three benchmark levels). Calibration (`fit_temperature`): one temperature that
minimises the tuning split's negative log-likelihood. Everything is seeded; the tuning split is part of train/.

Trees (`armed.student.trees`) over the hand-made features are fitted beside it, and the two are blended with the
weight that maximises the tuning split's macro-F1.

The artefact is a folder: `student.safetensors` (weights, feature mean and scale, tree arrays) and `student.json`
(layout, feature spec, temperature, blend, embedder and knowledge-base versions, metrics); `MODEL_CARD.md` beside.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from armed.student.metrics import macro_f1_3, softmax, to_benchmark

ARTEFACT_WEIGHTS = "student.safetensors"
ARTEFACT_META = "student.json"
# The seed knowledge base the features were computed with, kept beside the weights: the features are defined by it,
# so editing the packaged seed must not move a trained student's inputs (it is read back at load and checked).
ARTEFACT_SEED = "kb.yaml"
FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the artefact)."""

    # Chosen on train/'s tuning split (macro-F1 0.702 against 0.693 for lr 1e-3 / dropout 0.2 and 0.699 for
    # 64 hidden units / lr 3e-4: one-off runs of this training code, not a committed command); never on a dev set.
    hidden: int = 256
    dropout: float = 0.5
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 6
    seed: int = 0
    threads: int | None = None


def _net(dim: int, hidden: int, dropout: float) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(dim, hidden),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, 4),
    )


def fit_temperature(logits: np.ndarray, gold4: np.ndarray) -> float:
    """The temperature minimising NLL of the (soft) gold on these logits: a golden-section search on log T."""
    def nll(log_t: float) -> float:
        p = softmax(logits, math.exp(log_t))
        return float(-np.mean(np.sum(gold4 * np.log(np.clip(p, 1e-9, 1.0)), axis=1)))

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(60):
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return math.exp((lo + hi) / 2)


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-class confidence (probs and gold over the same classes; gold one-hot or soft)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == gold.argmax(axis=1)).astype(np.float64)
    ece = 0.0
    for i in range(bins):
        m = (conf > i / bins) & (conf <= (i + 1) / bins)
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)


class StudentNet:
    """The MLP (weights, standardisation, temperature) and, where trained, the tree ensemble it is blended with;
    numpy inference (no torch or scikit-learn needed to serve)."""

    def __init__(self, state: dict[str, np.ndarray], temperature: float, mlp_weight: float = 1.0) -> None:
        from armed.student.trees import TreeEnsemble

        self.mean = state["feature_mean"]
        self.scale = state["feature_scale"]
        self.w1, self.b1 = state["0.weight"], state["0.bias"]
        self.w2, self.b2 = state["3.weight"], state["3.bias"]
        self.temperature = float(temperature)
        self.trees = TreeEnsemble(state) if "trees.root" in state else None
        self.mlp_weight = float(mlp_weight) if self.trees is not None else 1.0

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean) / self.scale @ self.w1.T + self.b1
        # tanh-approximated GELU, as trained (torch.nn.GELU(approximate="tanh")): numpy has no erf.
        h = 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))
        return h @ self.w2.T + self.b2

    def mlp_probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x), self.temperature)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(n, 4) level probabilities: the MLP's, or its blend with the trees' band probabilities (mlp_weight on
        the MLP), the "less" band split between moderately and weakly as the MLP splits it."""
        mlp = self.mlp_probabilities(x)
        if self.trees is None or self.mlp_weight >= 1.0:
            return mlp
        return blend(mlp, self.trees.probabilities(x), self.mlp_weight)


def blend(mlp4: np.ndarray, tree_bands: np.ndarray, mlp_weight: float) -> np.ndarray:
    bands = mlp_weight * to_benchmark(mlp4) + (1 - mlp_weight) * tree_bands
    less = np.clip(mlp4[:, 1] + mlp4[:, 2], 1e-12, None)
    return np.stack([bands[:, 0], bands[:, 1] * mlp4[:, 1] / less, bands[:, 1] * mlp4[:, 2] / less, bands[:, 2]],
                    axis=1)


def train(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, train_idx: list[int], tune_idx: list[int], cfg: TrainConfig,
    log: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the MLP; returns (state with feature_mean/scale, training log with the tuning metrics)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    xt = x[train_idx]
    mean = xt.mean(axis=0)
    scale = xt.std(axis=0)
    scale[scale < 1e-6] = 1.0
    xs = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    ys = torch.from_numpy(y.astype(np.float32))
    ws = torch.from_numpy(w.astype(np.float32))
    net = _net(x.shape[1], cfg.hidden, cfg.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    tr = np.asarray(train_idx)
    best: tuple[float, int, dict[str, Any]] | None = None
    history = []
    started = time.perf_counter()
    for epoch in range(cfg.max_epochs):
        net.train()
        order = tr[rng.permutation(len(tr))]
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            b = torch.from_numpy(order[i : i + cfg.batch_size])
            logp = torch.log_softmax(net(xs[b]), dim=1)
            loss = -(ws[b] * (ys[b] * logp).sum(dim=1)).sum() / ws[b].sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        net.eval()
        with torch.no_grad():
            tune_logits = net(xs[tune_idx]).numpy() if tune_idx else np.zeros((0, 4))
        f1 = macro_f1_3(softmax(tune_logits), y[tune_idx]) if tune_idx else 0.0
        history.append({"epoch": epoch, "train_loss": total / len(order), "tune_macro_f1": f1})
        if log:
            log(f"epoch {epoch}: loss {total / len(order):.4f}, tune macro-F1 {f1:.4f}")
        if best is None or f1 > best[0] + 1e-4:
            best = (f1, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
        elif epoch - best[1] >= cfg.patience:
            break
    assert best is not None
    net.load_state_dict(best[2])
    net.eval()
    state = {k: v.numpy().astype(np.float32) for k, v in net.state_dict().items()}
    state["feature_mean"] = mean.astype(np.float32)
    state["feature_scale"] = scale.astype(np.float32)
    return state, {"best_epoch": best[1], "best_tune_macro_f1": best[0], "history": history,
                   "seconds": time.perf_counter() - started, "config": asdict(cfg)}


def save(folder: Path, state: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(folder / ARTEFACT_WEIGHTS))
    (folder / ARTEFACT_META).write_text(json.dumps({"format": FORMAT_VERSION, **meta}, ensure_ascii=False,
                                                   indent=2) + "\n", encoding="utf-8")


def load(folder: Path) -> tuple[StudentNet, dict[str, Any]]:
    from safetensors.numpy import load_file

    meta_path, weights = folder / ARTEFACT_META, folder / ARTEFACT_WEIGHTS
    if not meta_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{folder} is not a student artefact (needs {ARTEFACT_META} and {ARTEFACT_WEIGHTS})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: student format {meta.get('format')!r}, this armed reads {FORMAT_VERSION}")
    state = load_file(str(weights))
    return StudentNet(state, meta["temperature"], meta.get("blend", {}).get("mlp_weight", 1.0)), meta
