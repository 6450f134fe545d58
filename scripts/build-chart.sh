#!/usr/bin/env bash
# Fills helm/netsnoop-exporter/files/ with copies of what the chart ships, and nothing else:
# the dashboards (dashboards/*.json), the Prometheus rules (dashboards/alerts/*.yaml) and the
# Grafana-managed alerts (dashboards/grafana-alerts/*.yaml). files/ is not in git: copies, not
# symlinks, so `helm package` and `helm install` carry no generator script and no second copy.
# Usage: scripts/build-chart.sh [--package DIR]   (--package: also `helm package` into DIR)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHART=$ROOT/helm/netsnoop-exporter
PACKAGE_DIR=""
case "${1:-}" in
  --package) PACKAGE_DIR=${2:?usage: $0 [--package DIR]} ;;
  "") ;;
  *) echo "usage: $0 [--package DIR]" >&2; exit 2 ;;
esac

rm -rf "$CHART/files"
mkdir -p "$CHART/files/dashboards" "$CHART/files/alerts" "$CHART/files/grafana-alerts"
cp "$ROOT"/dashboards/*.json "$CHART/files/dashboards/"
cp "$ROOT"/dashboards/alerts/*.yaml "$CHART/files/alerts/"
cp "$ROOT"/dashboards/grafana-alerts/*.yaml "$CHART/files/grafana-alerts/"
echo "chart files: $CHART/files"

if [ -n "$PACKAGE_DIR" ]; then
  HELM=$(command -v helm || echo "$ROOT/.tools/bin/helm")
  "$HELM" package "$CHART" --destination "$PACKAGE_DIR"
fi
