"""The cgroup v2 tree: a cgroup's id (what bpf_get_current_cgroup_id() returns) is the inode
number of its directory, so the tree is walked to turn ids back into paths."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from exporter.kernel import hostfs


class CgroupTreeMissing(Exception):
    """No cgroup v2 hierarchy where the configuration says."""


def cgroup2_root(configured: str) -> Path:
    """The cgroup v2 mount: ``configured`` itself, or its ``unified/`` on hybrid hosts
    (cgroup v1 controllers at /sys/fs/cgroup, v2 at /sys/fs/cgroup/unified)."""
    for candidate in (Path(configured), Path(configured, "unified")):
        if (candidate / "cgroup.controllers").exists():
            return candidate
    raise CgroupTreeMissing(
        f"no cgroup v2 hierarchy at {configured} or {configured}/unified: set "
        "kubernetes.cgroup_root to the cgroup2 mount (mount -t cgroup2 none <dir>)"
    )


def cgroup_paths(root: Path, wanted: Iterable[int]) -> dict[int, str]:
    """id -> path relative to the root ("/kubepods.slice/...") for the ``wanted`` ids that
    exist now; stops walking once all are found."""
    missing = set(wanted)
    found: dict[int, str] = {}
    if not missing:
        return found
    for directory, subdirectories, _files in os.walk(root):
        for name in subdirectories:
            try:
                inode = os.stat(os.path.join(directory, name), follow_symlinks=False).st_ino
            except OSError:
                continue  # removed while we walk
            if inode in missing:
                relative = os.path.relpath(os.path.join(directory, name), root)
                found[inode] = "/" + relative
                missing.discard(inode)
        if not missing:
            break
    try:
        root_inode = os.stat(root).st_ino
    except OSError:
        return found
    if root_inode in missing:
        found[root_inode] = "/"
    return found


def process_cgroup_id(pid: int, root: Path, proc_root: str | None = None) -> int:
    """The cgroup v2 id of a process (0 when unknown), from its ``0::<path>`` line."""
    try:
        lines = Path(proc_root or hostfs.procfs(), str(pid), "cgroup").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("0::"):
            try:
                return os.stat(str(root) + line[3:].rstrip("/")).st_ino
            except OSError:
                return 0
    return 0
