"""Where the kernel's procfs and sysfs are mounted: /proc and /sys, or where --path.procfs and
--path.sysfs say (a container given the host's as /host/proc and /host/sys). The exporter's own
process (/proc/self) is always read at /proc."""

from __future__ import annotations

from pathlib import Path

_roots = {"procfs": Path("/proc"), "sysfs": Path("/sys")}


def configure(procfs: str, sysfs: str) -> None:
    _roots["procfs"], _roots["sysfs"] = Path(procfs), Path(sysfs)


def procfs(*parts: str) -> Path:
    return _roots["procfs"].joinpath(*parts)


def sysfs(*parts: str) -> Path:
    return _roots["sysfs"].joinpath(*parts)
