"""Network namespaces of the host: which exist, and entering one for a netlink socket.

Every pod has its own network namespace, and sock_diag answers only for the namespace its
socket was created in. A socket keeps the namespace it was made in, so the calling thread
enters the target namespace, opens the socket and comes back at once; the other threads of
the process never change namespace (setns with CLONE_NEWNET is per thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
RUN_NETNS = "/run/netns"  # where `ip netns add` pins namespaces that may have no process


def network_namespaces(proc_root: str, run_netns: str = RUN_NETNS) -> dict[int, str]:
    """Namespace inode -> a path to enter it by: each distinct /proc/<pid>/ns/net, plus the
    namespaces pinned under /run/netns. A process that exits meanwhile is skipped."""
    found: dict[int, str] = {}
    for entry in os.scandir(proc_root):
        if entry.name.isdigit():
            path = os.path.join(entry.path, "ns", "net")
            try:
                found.setdefault(os.stat(path).st_ino, path)
            except OSError:
                continue
    try:
        pinned = os.scandir(run_netns)
    except OSError:
        return found
    with pinned:
        for entry in pinned:
            try:
                found.setdefault(os.stat(entry.path).st_ino, entry.path)
            except OSError:
                continue
    return found


def own_namespace() -> int:
    """The exporter's own namespace: /proc/thread-self, whatever --path.procfs says."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Runs the block in the network namespace at ``path`` (this thread only), then returns
    to the thread's own. Needs CAP_SYS_ADMIN; the namespace may vanish (OSError)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)  # failing here would leave the thread elsewhere: let it raise
    finally:
        os.close(home)
