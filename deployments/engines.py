"""Building one role's engine inside a model replica.

The factory (`armed.engines.factory.build_clients`) builds every configured role from a ModelsSettings; a model
replica needs one role only, so it asks for that role with every other role set to `none`. The import is lazy:
this module (and every deployment module) imports on a machine without any engine installed, e.g. in the
Serve controller, the gateway or the Helm chart's CI.

Engines are injected the way ray.serve.llm's `LLMServer` takes `engine_cls`: a model deployment's constructor
takes an optional `engine_cls` (bound in Python by the app builder) and calls `engine_cls(role, spec)`; without
one it calls `build_role_engine`, the factory. Nothing in a Serve config, a profile or a CLI flag can name
another engine class, so a production deployment always runs the profile's real engines; the test doubles live
in `armed_testing/`, which the wheel does not ship.
"""

from __future__ import annotations

from typing import Any

from armed.roles import ROLE_NAMES, get_role
from armed.settings import EngineClass, EngineSpec, ModelsSettings

__all__ = ["EngineClass", "build_role_engine", "spec_model_id"]


def build_role_engine(role: str, spec: EngineSpec) -> Any:
    """The engine serving `role`, from the engine factory: the default `engine_cls` of every model deployment."""
    get_role(role)  # ValueError for a name the role table (armed/roles.py) does not have
    from armed.engines.factory import build_clients  # lazy: the engines are heavy and optional

    models = ModelsSettings(**{r: (spec if r == role else EngineSpec(kind="none")) for r in ROLE_NAMES})
    engine = getattr(build_clients(models), role)
    if engine is None:
        raise RuntimeError(f"engine kind {spec.kind!r} built no model for role {role!r}")
    return engine


def spec_model_id(spec: EngineSpec) -> str:
    """A model id known without contacting the replica: engine kind and checkpoint. Part of every cache key.

    The embedded default's student is named by its artefact's content digest (the same id the engine reports), so
    judgments and caches change when the artefact does, even though its path does not."""
    if spec.kind == "mlp":
        from pathlib import Path

        from armed.student.engine import PACKAGED, artefact_digest

        return f"armed-student-mlp@{artefact_digest(Path(spec.model) if spec.model else PACKAGED)}"
    return spec.identity()
