"""Sockets that already exist, read through sock_diag (pyroute2) and /proc."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

TCP_LISTEN = 10


@dataclass(frozen=True)
class ListeningSocket:
    family: int
    port: int
    uid: int
    inode: int
    accept_queue: int  # idiag_rqueue: connections waiting for accept()
    backlog: int  # idiag_wqueue: the listen() backlog


def listening_sockets() -> list[ListeningSocket]:
    """TCP listeners of this network namespace, IPv4 and IPv6."""
    from pyroute2 import DiagSocket

    found = []
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for message in diag.get_sock_stats(family=family, states=1 << TCP_LISTEN):
                found.append(
                    ListeningSocket(
                        family=family,
                        port=message["idiag_sport"],
                        uid=message["idiag_uid"],
                        inode=message["idiag_inode"],
                        accept_queue=message["idiag_rqueue"],
                        backlog=message["idiag_wqueue"],
                    )
                )
    return found


def socket_inode_pids(inodes: set[int], proc_root: str = "/proc") -> dict[int, int]:
    """Which process holds each socket inode, from the ``socket:[N]`` links in /proc/*/fd."""
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


def process_comm(pid: int, proc_root: str = "/proc") -> str | None:
    try:
        return Path(proc_root, str(pid), "comm").read_text().rstrip("\n")
    except OSError:
        return None


def listening_socket_owners(proc_root: str = "/proc") -> dict[int, tuple[int, str]]:
    """Local port -> (uid, comm) of the process holding a listener on it."""
    listeners = listening_sockets()
    pids = socket_inode_pids({s.inode for s in listeners}, proc_root)
    owners: dict[int, tuple[int, str]] = {}
    for listener in listeners:
        pid = pids.get(listener.inode)
        comm = process_comm(pid, proc_root) if pid is not None else None
        if comm is not None:
            owners[listener.port] = (listener.uid, comm)
    return owners
