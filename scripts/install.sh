#!/usr/bin/env bash
# Installs what netsnoop-exporter needs on Debian/Ubuntu, as root:
#   - bcc from the distribution (python3-bpfcc; PyPI's "bcc" is an unrelated project),
#   - kernel headers for bcc: linux-headers-$(uname -r), or else the nearest linux-headers
#     package linked as /lib/modules/$(uname -r)/{build,source},
#   - a venv on /usr/bin/python3 that sees the system bcc, with the package installed into it.
# Usage: scripts/install.sh [--editable] [--extras test,otlp] [--no-kernel-headers]
#   --no-kernel-headers: for container images, which use the host's headers mounted at run time.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${NETSNOOP_VENV:-$ROOT/.venv}
EDITABLE=""
EXTRAS=""
KERNEL_HEADERS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --editable) EDITABLE="-e" ;;
    --extras) EXTRAS="[$2]"; shift ;;
    --no-kernel-headers) KERNEL_HEADERS="" ;;
    *) echo "usage: $0 [--editable] [--extras LIST] [--no-kernel-headers]" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/install.sh: run as root (it installs Debian packages and kernel headers)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y --no-install-recommends "$@"; }

if [ -z "${NETSNOOP_SKIP_APT_UPDATE:-}" ]; then
  apt-get update
fi
apt_install python3 python3-venv python3-pip python3-bpfcc ca-certificates

# Kernel headers: the exact package if the archive has it, else the nearest older one of the
# same architecture (never a -rt or -cloud flavour), linked where bcc looks for them.
release=$(uname -r)
modules_dir=/lib/modules/$release
if [ -z "$KERNEL_HEADERS" ]; then
  echo "kernel headers: not installed (--no-kernel-headers); mount the host's at run time"
elif [ -d "$modules_dir/build/include" ] || [ -e /sys/kernel/kheaders.tar.xz ]; then
  echo "kernel headers for $release: present"
elif apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
  apt_install "linux-headers-$release"
else
  arch=$(dpkg --print-architecture)
  running=$(echo "$release" | grep -oE '^[0-9]+\.[0-9]+(\.[0-9]+)?')
  candidates=$(apt-cache search --names-only "^linux-headers-[0-9].*-${arch}\$" | awk '{print $1}' \
    | grep -vE -- '-(rt|cloud)-' | sort -V)
  nearest=""
  for pkg in $candidates; do
    version=$(echo "${pkg#linux-headers-}" | grep -oE '^[0-9]+\.[0-9]+(\.[0-9]+)?')
    if [ "$(printf '%s\n%s\n' "$version" "$running" | sort -V | head -1)" = "$version" ]; then
      nearest=$pkg  # the last one not newer than the running kernel
    fi
  done
  [ -n "$nearest" ] || nearest=$(echo "$candidates" | tail -1)
  if [ -z "$nearest" ]; then
    echo "no linux-headers package found for $release: install the headers of the running" \
         "kernel and link them as $modules_dir/build" >&2
    exit 1
  fi
  echo "linux-headers-$release is not in the archive; using $nearest"
  apt_install "$nearest"
  headers_dir=/usr/src/linux-headers-${nearest#linux-headers-}
  common_dir=/usr/src/linux-headers-$(echo "${nearest#linux-headers-}" | sed "s/-${arch}\$//")-common
  [ -d "$common_dir" ] || common_dir=$headers_dir
  mkdir -p "$modules_dir"
  ln -sfn "$headers_dir" "$modules_dir/build"
  ln -sfn "$common_dir" "$modules_dir/source"
fi

if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet $EDITABLE "$ROOT$EXTRAS"
"$VENV/bin/python" -c 'import bcc' || {
  echo "bcc is not importable from $VENV: is python3-bpfcc installed for /usr/bin/python3?" >&2
  exit 1
}
echo "installed: $VENV/bin/netsnoop-exporter"
