"""Kernel settings the exporter reads from /proc/sys."""

from __future__ import annotations

from pathlib import Path

from exporter.kernel import hostfs

LINUX_DEFAULT_LOCAL_PORTS = (32768, 60999)


def local_port_range(path: Path | None = None) -> tuple[int, int]:
    """The ephemeral ports the kernel picks client ports from (Linux's default if unreadable)."""
    path = path or hostfs.procfs("sys/net/ipv4/ip_local_port_range")
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_LOCAL_PORTS
    return low, high
