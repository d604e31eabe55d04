"""GPU profiles: the one source of truth for how each model role is served on one kind of hardware.

A profile (`gpu_profiles/<name>.yaml`) says, per model role, which engine serves it and with what engine
arguments, how many replicas may run, when the autoscaler adds or removes them, what each replica reserves,
and on which GPU pool it runs. It also sizes the judge (composition) deployment and its caches.

The Serve config builder (`armed.serving.config`), the Helm chart's worker groups and the SRE tools all read
this model, so a conflict (a tensor-parallel degree that does not fit a pool's nodes, min > max replicas) is
caught once, here, before anything is deployed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from armed.errors import InputError, from_validation_error
from armed.roles import BATCHED_ROLES, IN_PROCESS_KINDS, ROLE_NAMES, ROLES, RoleName, Serving
from armed.serving.limits import InputLimits
from armed.serving.nodes import gke_allocatable
from armed.settings import ArmedSettings, EngineSpec, ModelsSettings, overlay

PROFILE_DIR = Path(__file__).resolve().parents[2] / "gpu_profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuPool(_Strict):
    """A group of identical nodes (a Helm chart worker group); model roles are placed on a pool by name."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Pool (worker group) name, DNS-1123.")
    gpu_type: str | None = Field(
        description="Ray accelerator type of the pool's GPUs (A100-80G, A100-40G, H100, L4); null: CPU-only pool."
    )
    gpus_per_node: int = Field(ge=0, le=16, description="GPUs on each node of the pool; 0 for a CPU-only pool.")
    cpus_per_node: int = Field(default=16, ge=1, description="CPU cores on each node (Ray's num-cpus).")
    memory_gib_per_node: int = Field(default=64, ge=1, description="Memory on each node, GiB.")
    allocatable_cpus: float | None = Field(
        default=None, gt=0,
        description="CPU cores Kubernetes lets pods request on one node (the node's allocatable); null: "
        "cpus_per_node less GKE's documented kubelet reservation (armed/serving/nodes.py).",
    )
    allocatable_memory_gib: float | None = Field(
        default=None, gt=0,
        description="Memory (GiB) pods may request on one node (the node's allocatable); null: memory_gib_per_node "
        "less GKE's documented reservation and eviction threshold (armed/serving/nodes.py).",
    )
    min_nodes: int = Field(default=0, ge=0, description="Nodes the cluster autoscaler keeps in this pool.")
    max_nodes: int = Field(default=1, ge=1, description="Most nodes the cluster autoscaler may add to this pool.")
    cost_per_node_hour: float | None = Field(
        default=None, ge=0,
        description="What one node of the pool costs per hour (USD); `armed-ops capacity` prices the pool with it "
        "(unset: the benchmark file's prices_usd_per_hour).",
    )

    @model_validator(mode="after")
    def _gpu_fields(self) -> GpuPool:
        if (self.gpu_type is None) != (self.gpus_per_node == 0):
            raise ValueError(f"pool {self.name!r}: gpu_type and gpus_per_node must both be set or both be empty")
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"pool {self.name!r}: min_nodes {self.min_nodes} > max_nodes {self.max_nodes}")
        if (self.allocatable_cpus or 0) > self.cpus_per_node:
            raise ValueError(f"pool {self.name!r}: allocatable_cpus > cpus_per_node")
        if (self.allocatable_memory_gib or 0) > self.memory_gib_per_node:
            raise ValueError(f"pool {self.name!r}: allocatable_memory_gib > memory_gib_per_node")
        return self

    def allocatable(self) -> tuple[float, float]:
        """(CPU cores, memory GiB) a pod may request on one node: the profile's figures, else GKE's formula."""
        cpus, mem = gke_allocatable(self.cpus_per_node, self.memory_gib_per_node)
        return (self.allocatable_cpus or cpus, self.allocatable_memory_gib or mem)


class ReplicaBounds(_Strict):
    """How many replicas of a deployment may run; 0 as the minimum lets an idle role scale to zero."""

    min: int = Field(ge=0, description="Fewest replicas (autoscaling floor); 0 allows scale-to-zero.")
    max: int = Field(ge=1, description="Most replicas (autoscaling ceiling).")
    initial: int | None = Field(default=None, ge=0, description="Replicas at deploy time; min when unset.")

    @model_validator(mode="after")
    def _order(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"replicas.min {self.min} > replicas.max {self.max}")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"replicas.initial {self.initial} is outside [{self.min}, {self.max}]")
        return self


class Autoscaling(_Strict):
    """When Serve's autoscaler adds or removes replicas (Serve's AutoscalingConfig, the fields armed tunes)."""

    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="Requests in flight per replica that the autoscaler aims for."
    )
    upscale_delay_s: float = Field(default=30.0, ge=0, description="Load must stay high this long to add replicas.")
    downscale_delay_s: float = Field(default=600.0, ge=0, description="Load must stay low this long to remove them.")
    metrics_interval_s: float = Field(default=10.0, gt=0, description="How often replicas report their load.")
    look_back_period_s: float = Field(default=30.0, gt=0, description="Window the load is averaged over.")


class Resources(_Strict):
    """What one replica reserves from Ray's scheduler."""

    num_cpus: float = Field(default=1.0, ge=0, description="CPU cores reserved per replica.")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs reserved per replica (fractions share a GPU).")
    accelerator_type: str | None = Field(default=None, description="Ray accelerator type the replica must land on.")
    memory_gib: float | None = Field(default=None, gt=0, description="Memory reserved per replica, GiB.")


class Batching(_Strict):
    """Dynamic batching of roles whose engines take one request at a time (armed/engines/batching.py)."""

    max_batch_size: int = Field(default=32, ge=1, le=1024, description="Most requests merged into one engine call.")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, le=1,
        description="Longest a request waits for others to join its batch while the engine is idle (a backlog that "
                    "queued during the previous engine call leaves at once).",
    )


class RoleProfile(_Strict):
    """How one model role is served: engine, placement, replicas, autoscaling, admission limits."""

    engine: EngineSpec = Field(description="Engine and engine arguments (armed.settings.EngineSpec).")
    serving: Serving = Field(
        default="armed",
        description=(
            "armed: armed's own deployment class for the role (any engine kind); ray-llm: Ray's own vLLM "
            "deployment (ray.serve.llm LLMServer + OpenAI ingress), engine kind vllm only, for the roles whose "
            "entry in armed/roles.py allows it (the llm)."
        ),
    )
    pool: str = Field(description="Name of the pool (in `pools`) the role's replicas run on.")
    weights_gib: float | None = Field(
        default=None, gt=0,
        description="Size on disk, GiB (rounded up), of the checkpoint folder engine.model names (a /models path or "
        "a `shipped:` name). The one place a model's size is written: the Helm chart sizes its weight cache (the "
        "claim, or the emptyDir and the pod's ephemeral-storage request) from it (ops/profile_values.py). Needed "
        "for every folder the chart provides; a folder baked into the image needs none.",
    )
    replicas: ReplicaBounds = Field(description="Replica bounds.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Autoscaling targets.")
    max_ongoing_requests: int = Field(default=16, ge=1, description="Requests one replica runs at once.")
    max_queued_requests: int = Field(
        default=256, ge=-1, description="Requests a caller's handle queues before rejecting (-1: unbounded)."
    )
    resources: Resources = Field(default_factory=Resources, description="Per-replica reservation.")
    batching: Batching | None = Field(
        default=None, description="Dynamic batching, for the roles armed/roles.py marks batched."
    )
    call_timeout_s: float | None = Field(
        default=None, gt=0,
        description="Deadline of one request inside the replica (its wait for the engine included): past it the "
        "caller gets a timeout error (504 on the model's route; the judge degrades or answers 503) instead of "
        "waiting. At most judge.model_timeout_s; unset: half of it, so the replica's reason arrives first.",
    )
    wedged_after_s: float | None = Field(
        default=None, gt=0,
        description="A blocking engine call still running this long marks the replica unhealthy, so Serve replaces "
        "it (a thread cannot be interrupted; only a new replica frees the engine). At least call_timeout_s; "
        "unset: three times it.",
    )
    health_check_period_s: float = Field(
        default=10.0, gt=0, description="How often Serve calls the replica's check_health (wedge check, probe)."
    )
    health_check_timeout_s: float = Field(
        default=30.0, gt=0,
        description="A health check slower than this fails; Serve replaces a replica after 3 failures in a row. The "
        "engine probe's own deadline is 80% of it, so the failure carries the replica's reason.",
    )


class CacheBounds(_Strict):
    """One TTL-LRU cache of the judge."""

    size: int = Field(ge=0, description="Most entries kept (0 turns the cache off).")
    ttl_s: float = Field(gt=0, description="Seconds an entry stays valid.")


class JudgeCaches(_Strict):
    query: CacheBounds = Field(
        default_factory=lambda: CacheBounds(size=50_000, ttl_s=3600),
        description="Query understanding, by normalised query.",
    )
    product: CacheBounds = Field(
        default_factory=lambda: CacheBounds(size=50_000, ttl_s=3600),
        description="Product understanding, by product id + content hash.",
    )
    judgment: CacheBounds = Field(
        default_factory=lambda: CacheBounds(size=100_000, ttl_s=900),
        description="Whole judgments, by (query, product hash).",
    )


# The library settings a profile sets, under its judge section: profile key → (ArmedSettings section, field). The
# profile re-declares none of them: each field below is the library's own (type, bounds, default, description), and
# `Profile.to_settings` lays them over the environment's settings through armed.settings.overlay, so they are
# checked by ArmedSettings itself. To let profiles set another library setting, add it here.
LIBRARY_SETTINGS: dict[str, tuple[str, str]] = {
    "llm_weight": ("judge", "llm_weight"),
    "llm_text": ("stages", "llm_text"),
    "escalate_below": ("judge", "escalate_below"),
    "knowledge_artefact": ("knowledge", "artefact"),
}
# Library settings a profile overlays only when it gives a value other than their default ("auto"): a replica's
# environment names where the chart put the knowledge-base artefact (ARMED_KNOWLEDGE__ARTEFACT), and a profile that
# says nothing must not reset it (serveConfigV2 carries the whole dumped profile, so "unset" cannot be told apart).
ENV_UNLESS_SET = {"knowledge_artefact"}


def _library_field(section: str, name: str) -> tuple[Any, FieldInfo]:
    info = ArmedSettings.model_fields[section].annotation.model_fields[name]  # e.g. JudgeSettings.llm_weight
    return info.annotation, copy.deepcopy(info)


_LibrarySettings = create_model(
    "_LibrarySettings", __base__=_Strict, __doc__="The library settings a profile sets (LIBRARY_SETTINGS).",
    **{key: _library_field(*where) for key, where in LIBRARY_SETTINGS.items()},
)


class JudgeProfile(_LibrarySettings):
    """The composition deployment: runs the DAG with handle-backed model clients. Besides its Serve sizing, it
    carries the library settings of LIBRARY_SETTINGS (llm_weight, llm_text, escalate_below), as the library
    defines them."""

    replicas: ReplicaBounds = Field(description="Replica bounds of the judge deployment.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Autoscaling targets.")
    max_ongoing_requests: int = Field(default=64, ge=1, description="Judgments one replica runs at once.")
    max_queued_requests: int = Field(default=1024, ge=-1, description="Queued judgments before rejecting.")
    resources: Resources = Field(default_factory=lambda: Resources(num_cpus=1.0), description="Per replica.")
    pool: str = Field(description="Pool the judge runs on (usually the CPU pool).")
    caches: JudgeCaches = Field(default_factory=JudgeCaches, description="Cache sizes and TTLs.")
    required_roles: list[RoleName] = Field(
        default_factory=lambda: ["student"],
        description="Roles without which the judge answers 503 (others only degrade the judgment).",
    )
    model_timeout_s: float = Field(
        default=60.0, gt=0, description="A model call from the judge slower than this fails (the role counts as "
        "unavailable: a required one answers 503, an optional one degrades the judgment)."
    )
    health_check_period_s: float = Field(
        default=10.0, gt=0, description="How often Serve calls check_health on the judge and gateway replicas."
    )
    health_check_timeout_s: float = Field(
        default=30.0, gt=0,
        description="A judge or gateway health check slower than this fails (a blocked event loop never answers); "
        "Serve replaces a replica after 3 failures in a row. The judge's probe judgment has 80% of it.",
    )
    wedged_after_s: float = Field(
        default=60.0, gt=0,
        description="A blocking read in the judge (opening or decoding an image) still running this long marks the "
        "replica unhealthy: the read's request already failed at its deadline, but its thread stays stuck.",
    )
    retry_after_s: int = Field(default=10, ge=1, description="Retry-After of a 503 while a required model is down.")
    max_batch_pairs: int = Field(default=64, ge=1, description="Most pairs one /v1/judge/batch request may carry.")


class Profile(_Strict):
    """One serving target (cpu, a100-80g, ...): pools, the judge, and every model role."""

    name: str = Field(pattern=r"^[a-z0-9][-a-z0-9]*$", description="Profile name; the file is <name>.yaml.")
    description: str = Field(description="What hardware this is for and why it is sized this way.")
    pools: list[GpuPool] = Field(min_length=1, description="Node pools (Helm worker groups).")
    judge: JudgeProfile = Field(description="The judge (composition) deployment.")
    models: dict[RoleName, RoleProfile] = Field(
        description="Every model role; a role whose engine kind is none is not deployed."
    )
    limits: InputLimits = Field(
        default_factory=InputLimits,
        description="Bounds on every HTTP request (armed.serving.limits); the defaults suit every profile.",
    )

    @model_validator(mode="after")
    def _conflicts(self) -> Profile:
        pools = {p.name: p for p in self.pools}
        if len(pools) != len(self.pools):
            raise ValueError("pool names must be unique")
        missing = [r for r in ROLE_NAMES if r not in self.models]
        if missing:
            raise ValueError(f"models is missing roles {missing}; set engine.kind: none to turn a role off")
        try:  # the library's own role/kind rules (e.g. ocr is rapidocr or none)
            checked = ModelsSettings(**{r: self.models[r].engine for r in ROLE_NAMES})
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
        for r in ROLE_NAMES:  # what the library fills in (the student's level labels) is what the profile carries
            self.models[r].engine = getattr(checked, r)
        if self.judge.pool not in pools:
            raise ValueError(f"judge.pool {self.judge.pool!r} is not one of the pools {sorted(pools)}")
        for role, rp in self.models.items():
            where = f"models.{role}"
            pool = pools.get(rp.pool)
            if pool is None:
                raise ValueError(f"{where}.pool {rp.pool!r} is not one of the pools {sorted(pools)}")
            eng, res = rp.engine, rp.resources
            if eng.tensor_parallel_size > max(pool.gpus_per_node, 1):
                raise ValueError(
                    f"{where}.engine.tensor_parallel_size {eng.tensor_parallel_size} > GPUs per node "
                    f"({pool.gpus_per_node}) of pool {pool.name!r}"
                )
            if res.num_gpus > pool.gpus_per_node:
                raise ValueError(f"{where}.resources.num_gpus {res.num_gpus} > GPUs per node of pool {pool.name!r}")
            if res.num_gpus and res.accelerator_type not in (None, pool.gpu_type):
                raise ValueError(
                    f"{where}.resources.accelerator_type {res.accelerator_type!r} is not the GPU of pool "
                    f"{pool.name!r} ({pool.gpu_type!r})"
                )
            if res.num_cpus > pool.cpus_per_node:
                raise ValueError(f"{where}.resources.num_cpus {res.num_cpus} > CPUs per node of pool {pool.name!r}")
            if rp.serving == "armed" and eng.tensor_parallel_size > 1 and res.num_gpus < eng.tensor_parallel_size:
                raise ValueError(
                    f"{where}: tensor_parallel_size {eng.tensor_parallel_size} needs resources.num_gpus >= it"
                )
            if rp.serving == "armed" and eng.kind == "vllm" and "ray-llm" in ROLES[role].serving:
                # One vLLM serving path: a role LLMServer can answer is served by it; armed's in-process vLLM
                # engines serve only what LLMServer cannot (classify), and stay a library engine for local runs.
                raise ValueError(f"{where}: engine.kind vllm is served with serving: ray-llm for the {role} role "
                                 "(ray.serve.llm's LLMServer; armed/roles.py)")
            if rp.serving == "ray-llm" and eng.kind != "vllm":
                raise ValueError(f"{where}.serving ray-llm needs engine.kind vllm (got {eng.kind!r})")
            if rp.serving not in ROLES[role].serving:
                raise ValueError(f"{where}.serving {rp.serving}: the {role} role is served by "
                                 f"{' or '.join(ROLES[role].serving)} (armed/roles.py says why)")
            if rp.batching is not None and rp.serving == "ray-llm":
                raise ValueError(f"{where}.batching: ray.serve.llm's LLMServer batches inside vLLM; batching "
                                 "belongs to armed's deployment, so it would be ignored here")
            if rp.batching is not None and role not in BATCHED_ROLES:
                raise ValueError(f"{where}.batching: only {sorted(BATCHED_ROLES)} are batched by the deployment")
        for role, rp in self.models.items():  # the deadlines inside model replicas, filled in from the judge's
            if rp.call_timeout_s is None:
                rp.call_timeout_s = self.judge.model_timeout_s / 2
            elif rp.call_timeout_s > self.judge.model_timeout_s:
                raise ValueError(f"models.{role}.call_timeout_s {rp.call_timeout_s} > judge.model_timeout_s "
                                 f"{self.judge.model_timeout_s}: the judge would give up before the replica says why")
            if rp.wedged_after_s is None:
                rp.wedged_after_s = 3 * rp.call_timeout_s
            elif rp.wedged_after_s < rp.call_timeout_s:
                raise ValueError(f"models.{role}.wedged_after_s {rp.wedged_after_s} < call_timeout_s "
                                 f"{rp.call_timeout_s}: a call within its deadline is not wedged")
        for role in self.judge.required_roles:
            if self.models[role].engine.kind in IN_PROCESS_KINDS:
                raise ValueError(
                    f"judge.required_roles names {role!r} but its engine kind "
                    f"{self.models[role].engine.kind!r} has no deployment"
                )
        return self

    def deployed_roles(self) -> list[str]:
        """Roles served by a model: each gets its own Serve application (kb / ocr-kb / none run in the judge)."""
        return [r for r in ROLE_NAMES if self.models[r].engine.kind not in IN_PROCESS_KINDS]

    def pool(self, name: str) -> GpuPool:
        return next(p for p in self.pools if p.name == name)

    def settings_overlay(self) -> dict[str, Any]:
        """The library settings this profile sets, as a partial ArmedSettings document: every role's engine and
        the judge section's LIBRARY_SETTINGS."""
        changes: dict[str, Any] = {"models": {r: self.models[r].engine.model_dump() for r in ROLE_NAMES}}
        for key, (section, name) in LIBRARY_SETTINGS.items():
            if key in ENV_UNLESS_SET and getattr(self.judge, key) == "auto":
                continue
            changes.setdefault(section, {})[name] = getattr(self.judge, key)
        return changes

    def to_settings(self, base: ArmedSettings | None = None) -> ArmedSettings:
        """The library settings this profile implies: its overlay over `base` (the environment's by default),
        validated by ArmedSettings."""
        return overlay(base or ArmedSettings(), self.settings_overlay())


ProfileRef = str | dict[str, Any]
"""How Serve app args name a profile: a name / YAML path (local use, tests), or the whole validated profile as a dict
(what `armed.serving.config.serve_config` puts in serveConfigV2, so a replica needs no profile file)."""


def resolve_profile(ref: ProfileRef, directory: Path = PROFILE_DIR) -> Profile:
    """The Profile an app's `profile` arg names: a dict is validated as it is; a string is loaded by load_profile."""
    if isinstance(ref, dict):
        try:
            return Profile.model_validate(ref)
        except ValidationError as exc:
            raise from_validation_error(exc, f"profile[{ref.get('name', '?')}]") from None
    return load_profile(ref, directory)


def profile_names(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_profile(name_or_path: str | Path, directory: Path = PROFILE_DIR) -> Profile:
    """Load and validate a profile by name (`cpu`) or path; raises InputError naming the bad field."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = directory / f"{name_or_path}.yaml"
    if not path.is_file():
        raise InputError("profile", f"no profile {str(name_or_path)!r}; known: {', '.join(profile_names(directory))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError("profile", f"{path}: not valid YAML: {exc}") from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, f"profile[{path.stem}]") from None
    if profile.name != path.stem:
        raise InputError("profile.name", f"{profile.name!r} does not match its file name {path.name!r}")
    return profile
