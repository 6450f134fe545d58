#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: lint, unit tests, and the end-to-end
# tests that load the real BPF programs (they need root; elsewhere they skip with the reason).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Tools the tests drive for real: network namespaces and veth (iproute2), firewall rules
# (nftables, iptables), bpftool to see loaded programs, setpriv (util-linux) for other uids,
# capsh (libcap2-bin) for capability tests.
TEST_APT_PACKAGES=(iproute2 nftables iptables bpftool util-linux libcap2-bin)

if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${TEST_APT_PACKAGES[@]}"
  NETSNOOP_SKIP_APT_UPDATE=1 "$ROOT/scripts/install.sh" --editable --extras test
else
  echo "scripts/test.sh: not root: installing nothing; BPF tests will be skipped" >&2
fi

VENV=${NETSNOOP_VENV:-$ROOT/.venv}
"$VENV/bin/ruff" check exporter tests
"$VENV/bin/ruff" format --check exporter tests
exec "$VENV/bin/python" -m pytest "$@"
