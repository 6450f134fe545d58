"""Every TCP listener on the node, in every network namespace, and the process serving it.

One lookup feeds both the accepted-connection counts (tcp_connections) and the listen-queue
gauges (listen_queue), so the two always name the same owner. The owner is the process that
holds the listening socket now, not the one that called listen(): after an exec it is the new
program, and when a socket was handed over (systemd socket activation, inetd, a wrapper that
binds then forks or execs) it is the process it was handed to. Among several holders, pid 1
(the init system keeps activated sockets open) and any holder whose descendant also holds the
socket (it passed the socket down) are passed over; of the rest the lowest pid is taken, so
pre-forked workers of one server give one stable name.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from exporter.kernel import hostfs, netns, procfs, sockets
from exporter.kernel.sockets import ListeningSocket

log = logging.getLogger(__name__)

MAX_ANCESTRY = 64


@dataclass(frozen=True)
class ListenerOwner:
    pid: int
    uid: int  # effective uid of the holder
    comm: str


def serving_holder(holders: Iterable[int], parent_of: Callable[[int], int | None]) -> int | None:
    """Which of the processes holding a listening socket serves it (see the module doc)."""
    candidates = sorted(set(holders))
    if len(candidates) > 1:
        candidates = [pid for pid in candidates if pid != 1]
    held = set(candidates)
    passed_down: set[int] = set()
    for pid in candidates:
        ancestor = parent_of(pid)
        for _ in range(MAX_ANCESTRY):
            if not ancestor or ancestor == 1:
                break
            if ancestor in held:
                passed_down.add(ancestor)
            ancestor = parent_of(ancestor)
    serving = [pid for pid in candidates if pid not in passed_down]
    return serving[0] if serving else None


@dataclass
class ListenerView:
    """One reading of all namespaces."""

    listeners: list[ListeningSocket] = field(default_factory=list)
    half_open: Counter[tuple[int, int]] = field(default_factory=Counter)  # (netns, port)
    owners: dict[int, ListenerOwner] = field(default_factory=dict)  # by socket inode
    namespaces: int = 0  # read
    namespaces_skipped: int = 0  # over the limit
    namespaces_denied: int = 0  # setns refused: no CAP_SYS_ADMIN
    _by_place: dict[tuple[int, int], ListenerOwner] | None = field(default=None, repr=False)

    def owner_at(self, netns_inode: int, port: int) -> ListenerOwner | None:
        """The owner of a socket listening on ``port`` in that namespace (the lowest socket
        inode when several are, e.g. IPv4 and IPv6 of one server)."""
        if self._by_place is None:
            self._by_place = {}
            for listener in sorted(self.listeners, key=lambda s: s.inode, reverse=True):
                owner = self.owners.get(listener.inode)
                if owner is not None:
                    self._by_place[(listener.netns, listener.port)] = owner
        return self._by_place.get((netns_inode, port))


def read_view(proc_root: str, run_netns: str, max_namespaces: int) -> ListenerView:
    """Listeners and half-open handshakes of every network namespace, with their owners."""
    view = ListenerView()
    own = netns.own_namespace()
    found = netns.network_namespaces(proc_root, run_netns)
    found.setdefault(own, "")
    # own namespace first, then by inode, so a limit always drops the same ones
    ordered = sorted(found.items(), key=lambda item: (item[0] != own, item[0]))
    view.namespaces_skipped = max(0, len(ordered) - max_namespaces)
    for inode, path in ordered[:max_namespaces]:
        try:
            read = sockets.namespace_sockets(inode, None if inode == own else path)
        except PermissionError:
            if inode == own:
                raise
            view.namespaces_denied += 1
        except OSError:
            if inode == own:
                raise  # sock_diag itself fails: say so, at start already
            continue  # the namespace went away meanwhile
        view.namespaces += 1
        view.listeners += read.listeners
        for port, count in read.half_open.items():
            view.half_open[(inode, port)] += count
    holders = sockets.socket_holders({s.inode for s in view.listeners}, proc_root)
    proc = Path(proc_root)
    parents: dict[int, int | None] = {}

    def parent_of(pid: int) -> int | None:
        if pid not in parents:
            parents[pid] = procfs.parent_pid(pid, proc)
        return parents[pid]

    for inode, pids in holders.items():
        pid = serving_holder(pids, parent_of)
        if pid is None:
            continue
        comm, uid = procfs.comm(pid, proc), procfs.effective_uid(pid, proc)
        if comm is not None and uid is not None:
            view.owners[inode] = ListenerOwner(pid, uid, comm)
    return view


class ListenerDirectory:
    """The current view, read again at the first ask after ``expire()``: the exporter expires
    it at the start of every snapshot, so both collectors of one snapshot share one read."""

    def __init__(
        self, max_namespaces: int, proc_root: str | None = None, run_netns: str = netns.RUN_NETNS
    ) -> None:
        self.max_namespaces = max_namespaces
        self.proc_root = proc_root or str(hostfs.procfs())  # --path.procfs: the host's
        self.run_netns = run_netns
        self._lock = threading.Lock()
        self._view: ListenerView | None = None
        self._warned: set[str] = set()

    def expire(self) -> None:
        with self._lock:
            self._view = None

    def view(self) -> ListenerView:
        with self._lock:
            if self._view is None:
                self._view = read_view(self.proc_root, self.run_netns, self.max_namespaces)
                self._warn_once(self._view)
            return self._view

    def _warn_once(self, view: ListenerView) -> None:
        if view.namespaces_skipped and "skipped" not in self._warned:
            self._warned.add("skipped")
            log.warning(
                "listeners: %d network namespaces not read (limit %d, "
                "collectors.listen_queue.max_namespaces)",
                view.namespaces_skipped,
                self.max_namespaces,
            )
        if view.namespaces_denied and "denied" not in self._warned:
            self._warned.add("denied")
            log.warning(
                "listeners: %d other network namespaces cannot be entered (setns needs "
                "CAP_SYS_ADMIN): their listen queues are not read, and their listeners are "
                "credited to the process that called listen() (none for those opened before "
                "the exporter started)",
                view.namespaces_denied,
            )
