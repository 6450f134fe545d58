"""Listen-queue pressure per local port, read through sock_diag at each snapshot (no BPF):
the accept queue and its backlog (Q and Qmax of ``ss -lnt``), the half-open handshakes (Q0)
and the listener's drop counter (the ``d`` of ``ss -m``).

Every listening socket on a port adds into that port's series: IPv4 and IPv6 listeners, and
the sockets of an SO_REUSEPORT group, as one service. ``comm`` is the process that holds the
listening socket, found once per socket through /proc/*/fd and cached by inode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

from exporter.collectors.base import Collector
from exporter.config import Config
from exporter.kernel import hostfs, procfs, sockets
from exporter.kernel.sockets import ListeningSocket
from exporter.snapshot import MetricFamily

LABEL_NAMES = ("port", "comm")


class ListenerOwners:
    """Socket inode -> comm of the process holding it; a /proc scan only for new inodes, and
    a socket whose owner was not found keeps an empty comm rather than rescanning."""

    def __init__(self, proc_root: str | None = None) -> None:
        self.proc_root = proc_root or str(hostfs.procfs())
        self._comms: dict[int, str] = {}

    def comms(self, inodes: Iterable[int]) -> dict[int, str]:
        current = set(inodes)
        self._comms = {i: c for i, c in self._comms.items() if i in current}
        new = current - self._comms.keys()
        if new:
            pids = sockets.socket_inode_pids(new, self.proc_root)
            for inode in new:
                pid = pids.get(inode)
                comm = procfs.comm(pid, Path(self.proc_root)) if pid is not None else None
                self._comms[inode] = comm or ""
        return dict(self._comms)


class DropCounts:
    """Increments of each listener's drop counter since the previous read, by socket (a socket
    seen for the first time brings its whole count), so a listener that closes never makes its
    port's total go backwards."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def increments(self, listeners: Iterable[ListeningSocket]) -> dict[int, int]:
        seen = {listener.inode: listener.drops for listener in listeners}
        grown = {
            inode: drops - self._seen.get(inode, 0)
            for inode, drops in seen.items()
            if drops > self._seen.get(inode, 0)
        }
        self._seen = seen
        return grown


def listen_families(
    listeners: Iterable[ListeningSocket],
    half_open: Mapping[int, int],
    comms: Mapping[int, str],
    drop_increments: Mapping[int, int],
) -> list[MetricFamily]:
    """Per (port, comm): queue length, backlog, half-open count and new drops. Half-open
    handshakes belong to no socket yet: they take the comm of the port's listener when exactly
    one process name listens there, else an empty one."""
    length, capacity, syn_queue, drops = (
        MetricFamily(name, kind, help_text, LABEL_NAMES, increments=kind == "counter")
        for name, kind, help_text in (
            (
                "netsnoop_listen_queue_length",
                "gauge",
                "Connections waiting in a listener's accept queue (Recv-Q of ss -lnt).",
            ),
            (
                "netsnoop_listen_queue_capacity",
                "gauge",
                "The listen() backlog (Send-Q of ss -lnt); a full queue holds one more.",
            ),
            (
                "netsnoop_listen_syn_queue_length",
                "gauge",
                "Half-open handshakes (SYN_RECV request sockets) on a listening port.",
            ),
            (
                "netsnoop_listen_drops",
                "counter",
                "Drops counted by listening sockets (sock_diag SKMEMINFO): SYNs and handshakes "
                "refused, for example on a full accept queue.",
            ),
        )
    )
    port_comms: dict[int, set[str]] = {}
    for listener in listeners:
        labels = (str(listener.port), comms.get(listener.inode, ""))
        port_comms.setdefault(listener.port, set()).add(labels[1])
        length.add(labels, listener.accept_queue)
        capacity.add(labels, listener.backlog)
        drops.add(labels, drop_increments.get(listener.inode, 0))
    for port, count in half_open.items():
        owners = port_comms.get(port, set())
        syn_queue.add((str(port), next(iter(owners)) if len(owners) == 1 else ""), count)
    return [length, capacity, syn_queue, drops]


class ListenQueueCollector(Collector):
    name: ClassVar[str] = "listen_queue"

    def __init__(self, config: Config, proc_root: str | None = None) -> None:
        self.comm_label = config.labels.comm
        self.owners = ListenerOwners(proc_root)
        self.drop_counts = DropCounts()

    def start(self) -> None:
        """Fails here, not at the first scrape, when sock_diag is unavailable."""
        sockets.listening_sockets()

    def collect(self) -> Iterable[MetricFamily]:
        listeners = sockets.listening_sockets()
        half_open: Counter[int] = sockets.half_open_connections()
        comms = self.owners.comms(s.inode for s in listeners) if self.comm_label else {}
        return listen_families(listeners, half_open, comms, self.drop_counts.increments(listeners))
