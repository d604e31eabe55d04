#!/usr/bin/env bash
# Install the KubeRay operator from its own Helm chart, pinned. The chart's CRDs (RayCluster, RayJob, RayService)
# are the ones armed's manifests are validated against (KubeRay v1.7.x, see ../README.md).
#   k8s/kuberay/install.sh            # install or upgrade into kuberay-system
set -euo pipefail
KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"
NAMESPACE="${KUBERAY_NAMESPACE:-kuberay-system}"
HELM="${HELM:-helm}"
here="$(cd "$(dirname "$0")" && pwd)"
"$HELM" repo add kuberay https://ray-project.github.io/kuberay-helm/ >/dev/null
"$HELM" repo update kuberay >/dev/null
"$HELM" upgrade --install kuberay-operator kuberay/kuberay-operator \
  --version "$KUBERAY_VERSION" --namespace "$NAMESPACE" --create-namespace \
  -f "$here/values.yaml" --wait
kubectl get crd rayservices.ray.io rayjobs.ray.io rayclusters.ray.io
