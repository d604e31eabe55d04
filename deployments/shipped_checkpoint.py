"""Builds a `shipped:` checkpoint on the node where ray.serve.llm's LLMServer loads it (cpu-ray-llm's SmolLM2).

The Serve build task of the LLM app (serve_apps.models.build_ray_llm_app) runs on whichever node Ray picks (a
num_cpus=0 task, ray/serve/_private/application_state.py build_serve_application), so it only names the folder
(armed.engines.shipped.shipped_path) and attaches this callback to the LLM config. Ray runs the callback's
`on_before_download_model_files_distributed` on each node of the replica's placement group just before vLLM
loads the folder there (armed/serving/ray_compat.py llm_callback_base): the folder is built where it is loaded,
once per node (build_at's lock + rename), or found already built (the chart's build-shipped init container).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from armed.engines.shipped import build_shipped
from armed.serving.ray_compat import llm_callback_base

CALLBACK_CLASS = f"{__name__}:BuildShippedCheckpoint"


class BuildShippedCheckpoint(llm_callback_base()):  # type: ignore[misc]
    """callback_kwargs: `model` (the `shipped:` name) and `path` (the folder the LLM config's model_source names)."""

    def on_before_download_model_files_distributed(self) -> None:
        build_shipped(self.kwargs["model"], Path(self.kwargs["path"]))


def callback_config(model: str, path: Path) -> dict[str, Any]:
    """The LLMConfig `callback_config` that builds `model` at `path` on the loading node."""
    return {"callback_class": CALLBACK_CLASS, "callback_kwargs": {"model": model, "path": str(path)}}
