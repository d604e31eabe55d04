"""Kubernetes access for armed-ops: one ApiClient from a kubeconfig (or in-cluster), RayService helpers."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from kubernetes import client, config

from armed.serving.config import ray_llm_deployment_name

RAY_GROUP, RAY_VERSION, RAYSERVICES = "ray.io", "v1", "rayservices"


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """From --kubeconfig / $KUBECONFIG / ~/.kube/config, else the in-cluster service account."""
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except config.ConfigException:
        if kubeconfig:
            raise
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
    return client.ApiClient(cfg)


def get_rayservice(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAYSERVICES,
                                                                     name)


def patch_serve_config(api: client.ApiClient, namespace: str, name: str, serve_cfg: dict[str, Any],
                       resource_version: str | None = None) -> dict[str, Any]:
    """Merge-patch spec.serveConfigV2 (KubeRay applies a Serve-config-only change in place). With
    `resource_version`, the server refuses (409) if the RayService changed since it was read."""
    body: dict[str, Any] = {"spec": {"serveConfigV2": dump_serve_config(serve_cfg)}}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return client.CustomObjectsApi(api).patch_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace,
                                                                       RAYSERVICES, name, body)


def dump_serve_config(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000)


def list_pods(api: client.ApiClient, namespace: str, selector: str) -> list[Any]:
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items


def deployment_bounds(serve_cfg: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(app, deployment): autoscaling_config} from a Serve config, ray.serve.llm apps included. For a
    ray.serve.llm model, the application's per-deployment override (`deployments[].autoscaling_config`) is what
    Serve runs (application_state.override_deployment_info lays it over the builder's options), so it wins over
    the copy inside `args.llm_configs[].deployment_config`."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for app in serve_cfg.get("applications") or []:
        for llm in (app.get("args") or {}).get("llm_configs") or []:
            dc = llm.get("deployment_config") or {}
            model_id = (llm.get("model_loading_config") or {}).get("model_id", app["name"])
            out[(app["name"], ray_llm_deployment_name(model_id))] = dc.get("autoscaling_config") or {}
        for dep in app.get("deployments") or []:
            auto = dep.get("autoscaling_config")
            if auto is None and "num_replicas" in dep:
                auto = {"min_replicas": dep["num_replicas"], "max_replicas": dep["num_replicas"]}
            if auto is not None or (app["name"], dep["name"]) not in out:
                out[(app["name"], dep["name"])] = auto or {}
    return out


def ray_llm_deployments(serve_cfg: dict[str, Any]) -> dict[tuple[str, str], str]:
    """{(app, LLMServer deployment): model id} of every ray.serve.llm model in a Serve config."""
    out = {}
    for app in serve_cfg.get("applications") or []:
        for llm in (app.get("args") or {}).get("llm_configs") or []:
            model_id = (llm.get("model_loading_config") or {}).get("model_id", app["name"])
            out[(app["name"], ray_llm_deployment_name(model_id))] = model_id
    return out


def autoscaling_ref(serve_cfg: dict[str, Any], app: str, deployment: str) -> dict[str, Any] | None:
    """The (mutable) autoscaling_config dict of one deployment inside `serve_cfg`, or None.

    For a ray.serve.llm LLMServer it is the application's per-deployment override, created from the builder
    args' copy when absent; the args are never edited: Ray hashes an application's `args` into its code version
    (ray/serve/_private/deploy_utils.py, get_app_code_version), and a new code version restarts every replica of
    the app (every vLLM engine), while a changed override only reconfigures them (autoscaling_config is a
    NeedsActorReconfigure option of ray/serve/_private/config.py DeploymentConfig)."""
    for a in serve_cfg.get("applications") or []:
        if a["name"] != app:
            continue
        for dep in a.get("deployments") or []:
            if dep["name"] == deployment:
                return dep.setdefault("autoscaling_config", {})
        for llm in (a.get("args") or {}).get("llm_configs") or []:
            model_id = (llm.get("model_loading_config") or {}).get("model_id", a["name"])
            if deployment == ray_llm_deployment_name(model_id):
                seed = copy.deepcopy((llm.get("deployment_config") or {}).get("autoscaling_config") or {})
                override = {"name": deployment, "autoscaling_config": seed}
                a.setdefault("deployments", []).append(override)
                return override["autoscaling_config"]
    return None
