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

# Kernel headers for bcc. The exact linux-headers-$(uname -r) package when the archive has it
# (on a distribution kernel its image is the running one, so nothing new is installed).
# Otherwise the nearest older headers of the same architecture, unpacked with dpkg-deb into
# $HEADERS_ROOT (under /usr/src, which the container image mounts from the host) and linked
# where bcc looks: Debian's linux-headers-* packages depend on
# their linux-image-*, and a monitoring agent must never install a kernel, an initramfs or a
# bootloader change. Tracepoint argument structs and struct offsets come from the running
# kernel (tracefs, BTF), so headers of a nearby version are enough.
HEADERS_ROOT=${NETSNOOP_HEADERS_ROOT:-/usr/src/netsnoop-exporter}
release=$(uname -r)
modules_dir=/lib/modules/$release
nearest_headers_package() {
  local arch running candidates pkg version nearest=""
  arch=$(dpkg --print-architecture)
  running=$(echo "$release" | grep -oE '^[0-9]+\.[0-9]+(\.[0-9]+)?')
  candidates=$(apt-cache search --names-only "^linux-headers-[0-9].*-${arch}\$" | awk '{print $1}' \
    | grep -vE -- '-(rt|cloud)-' | sort -V)
  for pkg in $candidates; do
    version=$(echo "${pkg#linux-headers-}" | grep -oE '^[0-9]+\.[0-9]+(\.[0-9]+)?')
    if [ "$(printf '%s\n%s\n' "$version" "$running" | sort -V | head -1)" = "$version" ]; then
      nearest=$pkg  # the last one not newer than the running kernel
    fi
  done
  [ -n "$nearest" ] || nearest=$(echo "$candidates" | tail -1)
  echo "$nearest"
}
unpack_headers() {  # $1: a linux-headers-<version>-<arch> package; unpacked, never installed
  local pkg=$1 arch flavourless common work
  arch=$(dpkg --print-architecture)
  flavourless=${pkg%-"$arch"}
  common=${flavourless}-common
  mkdir -p "$HEADERS_ROOT"
  if [ ! -d "$HEADERS_ROOT/$pkg" ] || [ ! -d "$HEADERS_ROOT/$common" ]; then
    work=$(mktemp -d)
    (cd "$work" && apt-get download "$pkg" "$common" 2>/dev/null) || {
      echo "cannot download $pkg and $common" >&2; rm -rf "$work"; exit 1; }
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
    rm -rf "${HEADERS_ROOT:?}/$pkg" "${HEADERS_ROOT:?}/$common"
    mv "$work/root/usr/src/$pkg" "$work/root/usr/src/$common" "$HEADERS_ROOT/"
    rm -rf "$work"
  fi
  mkdir -p "$modules_dir"
  ln -sfn "$HEADERS_ROOT/$pkg" "$modules_dir/build"
  ln -sfn "$HEADERS_ROOT/$common" "$modules_dir/source"
}
if [ -z "$KERNEL_HEADERS" ]; then
  echo "kernel headers: not installed (--no-kernel-headers); mount the host's at run time"
elif [ -d "$modules_dir/build/include" ] || [ -e /sys/kernel/kheaders.tar.xz ]; then
  echo "kernel headers for $release: present"
elif apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
  apt_install "linux-headers-$release"
else
  nearest=$(nearest_headers_package)
  if [ -z "$nearest" ]; then
    echo "no kernel headers for $release: install linux-headers-$release (or your" \
         "distribution's headers for this kernel) and run $0 again" >&2
    exit 1
  fi
  echo "linux-headers-$release is not in the archive: unpacking $nearest into $HEADERS_ROOT" \
       "(not installed as a package, so no linux-image comes with it)"
  unpack_headers "$nearest"
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
