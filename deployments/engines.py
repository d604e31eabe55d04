"""Building one role's engine inside a model replica.

The factory (`armed.engines.factory.build_clients`) builds every configured role from a ModelsSettings; a model
replica needs one role only, so it asks for that role with every other role set to `none`. The import is lazy:
this module (and every deployment module) imports on a machine without any engine installed, e.g. in the
Serve controller, the gateway or the Helm chart's CI.
"""

from __future__ import annotations

from typing import Any, Literal

from armed.roles import ROLE_NAMES, get_role
from armed.settings import EngineSpec, ModelsSettings

EngineSource = Literal["factory", "zero-work"]


def build_role_engine(
    role: str, spec: EngineSpec, source: EngineSource = "factory", options: dict[str, Any] | None = None
) -> Any:
    """The engine serving `role`: from the engine factory, or a zero-work engine (overhead measurement, tests)."""
    get_role(role)  # ValueError for a name the role table (armed/roles.py) does not have
    if source == "zero-work":
        from deployments.testing import zero_work_engine

        return zero_work_engine(role, **(options or {}))
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
