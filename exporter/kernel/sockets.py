"""Sockets that already exist, read through sock_diag (pyroute2) and /proc."""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from exporter.kernel import hostfs, procfs

TCP_SYN_RECV = 3
TCP_LISTEN = 10
INET_DIAG_SKMEMINFO = 7  # its extension bit is 1 << (7 - 1)
SK_MEMINFO_DROPS = 8  # index of the drop counter in the SKMEMINFO u32 array


@dataclass(frozen=True)
class ListeningSocket:
    family: int
    port: int
    uid: int
    inode: int
    accept_queue: int  # idiag_rqueue: connections waiting for accept()
    backlog: int  # idiag_wqueue: the listen() backlog
    drops: int = 0  # SKMEMINFO drops: SYNs and handshakes refused, e.g. on a full queue


def listening_sockets() -> list[ListeningSocket]:
    """TCP listeners of this network namespace, IPv4 and IPv6."""
    from pyroute2 import DiagSocket

    found = []
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for message in diag.get_sock_stats(
                family=family,
                states=1 << TCP_LISTEN,
                extensions=1 << (INET_DIAG_SKMEMINFO - 1),
            ):
                found.append(
                    ListeningSocket(
                        family=family,
                        port=message["idiag_sport"],
                        uid=message["idiag_uid"],
                        inode=message["idiag_inode"],
                        accept_queue=message["idiag_rqueue"],
                        backlog=message["idiag_wqueue"],
                        drops=skmeminfo_drops(message.get_attr("INET_DIAG_SKMEMINFO")),
                    )
                )
    return found


def skmeminfo_drops(hex_text: str | None) -> int:
    """The drop counter of an INET_DIAG_SKMEMINFO attribute, which pyroute2 leaves as
    colon-separated hex bytes (an array of native-endian u32); 0 when absent."""
    if not hex_text:
        return 0
    raw = bytes.fromhex(hex_text.replace(":", ""))
    if len(raw) < 4 * (SK_MEMINFO_DROPS + 1):
        return 0
    return struct.unpack_from("=I", raw, 4 * SK_MEMINFO_DROPS)[0]


def half_open_connections() -> Counter[int]:
    """Local port -> request sockets in SYN_RECV (handshakes not yet complete), IPv4 and
    IPv6, of this network namespace."""
    from pyroute2 import DiagSocket

    ports: Counter[int] = Counter()
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for message in diag.get_sock_stats(family=family, states=1 << TCP_SYN_RECV):
                ports[message["idiag_sport"]] += 1
    return ports


def socket_inode_pids(inodes: set[int], proc_root: str | None = None) -> dict[int, int]:
    """Which process holds each socket inode, from the ``socket:[N]`` links in /proc/*/fd."""
    proc_root = proc_root or str(hostfs.procfs())
    owners: dict[int, int] = {}
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        fd_dir = os.path.join(entry.path, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # exited, or not ours to read
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    owners.setdefault(inode, int(entry.name))
        if len(owners) == len(inodes):
            break
    return owners


def listening_socket_owners(proc_root: str | None = None) -> dict[int, tuple[int, str, int]]:
    """Local port -> (uid, comm, pid) of the process holding a listener on it."""
    proc_root = proc_root or str(hostfs.procfs())
    listeners = listening_sockets()
    pids = socket_inode_pids({s.inode for s in listeners}, proc_root)
    owners: dict[int, tuple[int, str, int]] = {}
    for listener in listeners:
        pid = pids.get(listener.inode)
        comm = procfs.comm(pid, Path(proc_root)) if pid is not None else None
        if pid is not None and comm is not None:
            owners[listener.port] = (listener.uid, comm, pid)
    return owners
