"""Kubernetes access for armed-ops: one ApiClient from a kubeconfig (or in-cluster), RayService helpers."""

from __future__ import annotations

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
    """{(app, deployment): autoscaling_config} from a Serve config, ray.serve.llm apps included."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for app in serve_cfg.get("applications") or []:
        for dep in app.get("deployments") or []:
            auto = dep.get("autoscaling_config")
            if auto is None and "num_replicas" in dep:
                auto = {"min_replicas": dep["num_replicas"], "max_replicas": dep["num_replicas"]}
            out[(app["name"], dep["name"])] = auto or {}
        for llm in (app.get("args") or {}).get("llm_configs") or []:
            dc = llm.get("deployment_config") or {}
            model_id = (llm.get("model_loading_config") or {}).get("model_id", app["name"])
            dep = ray_llm_deployment_name(model_id)
            out[(app["name"], dep)] = dc.get("autoscaling_config") or {}
    return out


def autoscaling_ref(serve_cfg: dict[str, Any], app: str, deployment: str) -> dict[str, Any] | None:
    """The (mutable) autoscaling_config dict of one deployment inside `serve_cfg`, or None."""
    for a in serve_cfg.get("applications") or []:
        if a["name"] != app:
            continue
        for dep in a.get("deployments") or []:
            if dep["name"] == deployment:
                return dep.setdefault("autoscaling_config", {})
        for llm in (a.get("args") or {}).get("llm_configs") or []:
            model_id = (llm.get("model_loading_config") or {}).get("model_id", a["name"])
            if deployment == ray_llm_deployment_name(model_id):
                return llm.setdefault("deployment_config", {}).setdefault("autoscaling_config", {})
    return None
