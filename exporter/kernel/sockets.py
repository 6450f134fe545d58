"""Sockets that already exist, read through sock_diag (pyroute2) and /proc."""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass

from exporter.kernel.netns import entered

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
    netns: int = 0  # inode of the network namespace it listens in


@dataclass(frozen=True)
class NamespaceSockets:
    """What sock_diag shows of one network namespace."""

    listeners: list[ListeningSocket]
    half_open: Counter[int]  # local port -> request sockets in SYN_RECV


def namespace_sockets(netns: int = 0, enter: str | None = None) -> NamespaceSockets:
    """TCP listeners (IPv4 and IPv6) and half-open handshakes of one network namespace: the
    thread's own, or the one at path ``enter`` (entered only to open the netlink socket)."""
    from pyroute2 import DiagSocket  # type: ignore[import-untyped]
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    try:
        return _read_namespace(DiagSocket, netns, enter)
    except NetlinkError as error:  # e.g. a namespace torn down while read
        raise OSError(error.code, f"sock_diag: {error}") from error


def _read_namespace(diag_socket: type, netns: int, enter: str | None) -> NamespaceSockets:
    if enter is None:
        diag = diag_socket()
    else:
        with entered(enter):
            diag = diag_socket()
    listeners = []
    half_open: Counter[int] = Counter()
    with diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for message in diag.get_sock_stats(
                family=family,
                states=1 << TCP_LISTEN,
                extensions=1 << (INET_DIAG_SKMEMINFO - 1),
            ):
                listeners.append(
                    ListeningSocket(
                        family=family,
                        port=message["idiag_sport"],
                        uid=message["idiag_uid"],
                        inode=message["idiag_inode"],
                        accept_queue=message["idiag_rqueue"],
                        backlog=message["idiag_wqueue"],
                        drops=skmeminfo_drops(message.get_attr("INET_DIAG_SKMEMINFO")),
                        netns=netns,
                    )
                )
        # Request sockets sit in the established hash, which the kernel walks whole for each
        # dump (262144 buckets here, ~2 ms): only for a family that has a listener, whose
        # handshakes take its family.
        for listening_family in sorted({listener.family for listener in listeners}):
            for message in diag.get_sock_stats(family=listening_family, states=1 << TCP_SYN_RECV):
                half_open[message["idiag_sport"]] += 1
    return NamespaceSockets(listeners, half_open)


def skmeminfo_drops(hex_text: str | None) -> int:
    """The drop counter of an INET_DIAG_SKMEMINFO attribute, which pyroute2 leaves as
    colon-separated hex bytes (an array of native-endian u32); 0 when absent."""
    if not hex_text:
        return 0
    raw = bytes.fromhex(hex_text.replace(":", ""))
    if len(raw) < 4 * (SK_MEMINFO_DROPS + 1):
        return 0
    return struct.unpack_from("=I", raw, 4 * SK_MEMINFO_DROPS)[0]


def socket_holders(inodes: set[int], proc_root: str) -> dict[int, list[int]]:
    """Every process holding each socket inode, from the ``socket:[N]`` links in /proc/*/fd
    (socket inodes are unique across network namespaces)."""
    holders: dict[int, list[int]] = {}
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        fd_dir = os.path.join(entry.path, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # exited, or not ours to read
        pid = int(entry.name)
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    pids = holders.setdefault(inode, [])
                    if pid not in pids:
                        pids.append(pid)
    return holders
