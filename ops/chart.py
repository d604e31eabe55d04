"""Render the Helm chart with the helm binary and validate every rendered object offline.

Built-in kinds are checked with `kubernetes-validate` (the Kubernetes OpenAPI schemas, strict: unknown fields
fail); custom resources (RayService, RayJob, ServiceMonitor, PodMonitor, PrometheusRule) with the CRD validator
over the shared CRD schemas; KubeRay objects also with KubeRay's own Go-side rules (ops/kuberay_rules.py), under
the feature gates of the operator this repo installs (k8s/kuberay/values.yaml). `helm` is found at
.cache/bin/helm (ops/fetch_helm.sh puts it there), $HELM, or PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ops import kuberay_rules
from ops.crdvalidate import CrdValidator
from ops.profile_values import CHART_DIR, REPO_ROOT

KUBE_VERSION = "1.32.0"
API_VERSIONS = ("ray.io/v1", "monitoring.coreos.com/v1")
# The kuberay-operator values k8s/kuberay/install.sh installs with: its featureGates decide gate-dependent rules.
OPERATOR_VALUES = REPO_ROOT / "k8s" / "kuberay" / "values.yaml"


def operator_feature_gates() -> dict[str, bool]:
    return kuberay_rules.operator_feature_gates(OPERATOR_VALUES)


def find_helm() -> str | None:
    for cand in (os.environ.get("HELM"), str(REPO_ROOT / ".cache" / "bin" / "helm"), shutil.which("helm")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _helm(args: list[str]) -> str:
    helm = find_helm()
    if helm is None:
        raise FileNotFoundError("helm not found: run ops/fetch_helm.sh (installs .cache/bin/helm) or put it on PATH")
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:2])} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def helm_args(
    profile: str | None = None, values_files: tuple[Path, ...] = (), sets: dict[str, str] | None = None
) -> list[str]:
    args = []
    if profile:
        args += ["--set", f"profile={profile}"]
    for f in values_files:
        args += ["-f", str(f)]
    for k, v in (sets or {}).items():
        args += ["--set", f"{k}={v}"]
    return args


def lint(chart: Path = CHART_DIR, **kw: Any) -> str:
    return _helm(["lint", "--strict", str(chart), *helm_args(**kw)])


def template(
    chart: Path = CHART_DIR, release: str = "armed", namespace: str = "armed", **kw: Any
) -> list[dict[str, Any]]:
    """`helm template` → the rendered objects (empty documents dropped)."""
    api = [a for v in API_VERSIONS for a in ("--api-versions", v)]
    out = _helm(
        ["template", release, str(chart), "--namespace", namespace, "--kube-version", KUBE_VERSION, *api,
         *helm_args(**kw)]
    )
    return [d for d in yaml.safe_load_all(out) if d]


def validate_objects(
    objects: list[dict[str, Any]], crds: CrdValidator | None, kube_version: str = KUBE_VERSION,
    feature_gates: Mapping[str, bool] | None = None,
) -> dict[str, list[str]]:
    """`{"Kind/name": [errors]}` for every object that is invalid (empty when all are valid).

    A custom resource without a CRD validator (crds None) or without a known CRD is reported, never passed.
    KubeRay objects are also checked against KubeRay's own rules (errors `kuberay[rule-id]: ...`), with
    `feature_gates` or, by default, the gates of this repo's operator install.
    """
    import kubernetes_validate

    bad: dict[str, list[str]] = {}
    for obj in objects:
        key = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        if crds is not None and crds.knows(api, kind):
            errs = crds.errors(obj)
        elif "." in api.split("/")[0] and not api.startswith(("networking.k8s.io", "policy", "apps", "batch",
                                                                 "rbac.authorization.k8s.io", "scheduling.k8s.io",
                                                                 "autoscaling", "storage.k8s.io")):
            errs = [f"custom resource {api} {kind}: no CRD schema to validate it against"]
        else:
            try:
                kubernetes_validate.validate(obj, kube_version, strict=True)
                errs = []
            except kubernetes_validate.ValidationError as exc:
                errs = [f"{'.'.join(str(p) for p in exc.path)}: {exc.message[:300]}"]
            except kubernetes_validate.SchemaNotFoundError as exc:
                errs = [str(exc)]
        if errs:
            bad[key] = errs
    gates = operator_feature_gates() if feature_gates is None else feature_gates
    for v in kuberay_rules.check(objects, gates):
        bad.setdefault(v.obj, []).append(f"kuberay[{v.rule}]: {v.message}")
    return bad
