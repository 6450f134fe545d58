#!/usr/bin/env bash
# The benchmarks in one command: installs what they need (gcc for the workload, Debian's
# bpfcc-tools and bpftrace for the peers, matplotlib for the plots), then measures and writes
# docs/benchmarks.md with its plots. Needs root. Arguments go to `python -m bench` (--help).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BENCH_APT_PACKAGES=(gcc libc6-dev bpfcc-tools bpftrace iproute2 util-linux bpftool)

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: needs root (loads BPF programs, sets kernel.bpf_stats_enabled)" >&2
  exit 1
fi
missing=()
for package in "${BENCH_APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian's bcc 0.26 tools (the peers) do not compile against headers newer than Debian 12's own
# 6.1 kernel: keep one 6.1 header tree beside whatever the exporter uses.
if ! ls -d /usr/src/linux-headers-6.1.*-"$(dpkg --print-architecture)" >/dev/null 2>&1; then
  peer_headers=$(apt-cache search --names-only "^linux-headers-6\.1\.[0-9.-]*-$(dpkg --print-architecture)\$" \
    | awk '{print $1}' | sort -V | tail -1)
  [ -z "$peer_headers" ] || apt-get install -y --no-install-recommends "$peer_headers"
fi
if [ ! -x .venv/bin/python ]; then
  scripts/install.sh --editable --extras bench
fi
.venv/bin/python -c "import matplotlib" 2>/dev/null || .venv/bin/pip install --quiet -e ".[bench]"
exec .venv/bin/python -m bench "$@"
