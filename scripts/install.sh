#!/usr/bin/env bash
# Installs what netsnoop-exporter needs on Debian/Ubuntu, as root:
#   - bcc from the distribution (python3-bpfcc; PyPI's "bcc" is an unrelated project),
#   - kernel headers for bcc: linux-headers-$(uname -r), or else the nearest linux-headers
#     package linked as /lib/modules/$(uname -r)/{build,source},
#   - a venv on /usr/bin/python3 that sees the system bcc, with the package installed into it.
# It never installs a kernel image, an initramfs or a bootloader change, and can be run again.
# Usage: scripts/install.sh [--editable] [--extras test,otlp] [--no-kernel-headers] [--systemd]
#   --no-kernel-headers: for container images, which use the host's headers mounted at run time.
#   --systemd: also install deploy/systemd/netsnoop-exporter.service (ExecStart: this venv) and
#              /etc/netsnoop-exporter/netsnoop.yaml (kept when it exists), and enable the service
#              when systemd is running.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${NETSNOOP_VENV:-$ROOT/.venv}
EDITABLE=""
EXTRAS=""
KERNEL_HEADERS=1
SYSTEMD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --editable) EDITABLE="-e" ;;
    --extras) EXTRAS="[$2]"; shift ;;
    --no-kernel-headers) KERNEL_HEADERS="" ;;
    --systemd) SYSTEMD=1 ;;
    *) echo "usage: $0 [--editable] [--extras LIST] [--no-kernel-headers] [--systemd]" >&2
       exit 2 ;;
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
modules_dir=${NETSNOOP_MODULES_ROOT:-/lib/modules}/$release
# bcc includes linux/kconfig.h first, from build/ or (Debian's split) source/; without it bcc
# prints "Unable to find kernel headers" and crashes.
headers_complete() {
  [ -d "$modules_dir/build/include" ] && {
    [ -f "$modules_dir/build/include/linux/kconfig.h" ] ||
      [ -f "$modules_dir/source/include/linux/kconfig.h" ]; }
}
# Whether installing these packages would bring a kernel image (Debian's linux-headers-*
# depend on theirs): apt-get's own simulation says.
brings_kernel_image() {
  apt-get install -s --no-install-recommends "$@" 2>/dev/null | grep -q '^Inst linux-image-'
}
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
  for link in build source; do
    if [ -e "$modules_dir/$link" ] && [ ! -L "$modules_dir/$link" ]; then
      echo "$modules_dir/$link is not a link: move it away and run $0 again" >&2; exit 1
    fi
  done
  ln -sfn "$HEADERS_ROOT/$pkg" "$modules_dir/build"
  ln -sfn "$HEADERS_ROOT/$common" "$modules_dir/source"
}
if [ -z "$KERNEL_HEADERS" ]; then
  echo "kernel headers: not installed (--no-kernel-headers); mount the host's at run time"
elif headers_complete || [ -e /sys/kernel/kheaders.tar.xz ]; then
  echo "kernel headers for $release: present"
elif apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
  if brings_kernel_image "linux-headers-$release"; then
    echo "linux-headers-$release would bring a linux-image package: unpacking it into" \
         "$HEADERS_ROOT instead"
    unpack_headers "linux-headers-$release"
  else
    echo "kernel headers: installing linux-headers-$release (its kernel image is the running one)"
    apt_install "linux-headers-$release"
  fi
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

if [ -n "$SYSTEMD" ]; then
  UNIT_DIR=${NETSNOOP_SYSTEMD_DIR:-/etc/systemd/system}
  CONFIG_DIR=${NETSNOOP_CONFIG_DIR:-/etc/netsnoop-exporter}
  mkdir -p "$UNIT_DIR" "$CONFIG_DIR"
  if [ ! -e "$CONFIG_DIR/netsnoop.yaml" ]; then
    install -m 0644 "$ROOT/config/netsnoop.yaml" "$CONFIG_DIR/netsnoop.yaml"
  fi
  sed -e "s|/opt/netsnoop-exporter/.venv/bin/|$VENV/bin/|" \
      -e "s|file:/opt/netsnoop-exporter/|file:$ROOT/|" \
      -e "s|/etc/netsnoop-exporter/|$CONFIG_DIR/|" \
      "$ROOT/deploy/systemd/netsnoop-exporter.service" > "$UNIT_DIR/netsnoop-exporter.service"
  echo "installed: $UNIT_DIR/netsnoop-exporter.service (config: $CONFIG_DIR/netsnoop.yaml)"
  if [ -d /run/systemd/system ] && [ -z "${NETSNOOP_SYSTEMD_DIR:-}" ]; then
    systemctl daemon-reload
    systemctl enable --now netsnoop-exporter.service
  else
    echo "systemd is not running here: start it later with" \
         "systemctl daemon-reload && systemctl enable --now netsnoop-exporter"
  fi
fi
