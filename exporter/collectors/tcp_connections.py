"""netsnoop_tcp_connections_total: TCP connections and attempts by direction, port, process,
uid and result, counted in BPF (bpf/tcp_connections.c) and read on each snapshot.

Accepted connections are counted in the kernel with their listener's network namespace; at
each read they are credited to the process serving that listener now (exporter/listeners.py,
the same lookup the listen-queue gauges use), and to the listen() caller the kernel
remembered only when the listener is gone by then."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from exporter.collectors.base import PodLabelledCollector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.cardinality import kernel_port_label
from exporter.core.metrics import TCP, MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel import cgroups, netns
from exporter.kernel.bpf import BpfProgram, ProgramSpec, enum_defines
from exporter.kernel.maps import BpfMap, claim_closed_entries, claim_stale_entries
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import NO_UID, decode_comm
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES, WorkloadLabeler
from exporter.listeners import ListenerDirectory, ListenerOwner, ListenerView
from exporter.services import SharedServices
from exporter.settings import LabelsConfig, MapSize, StrictModel
from exporter.watch import watch_defines

if TYPE_CHECKING:
    from exporter.config import Config

log = logging.getLogger(__name__)

DIRECTIONS = ("outbound", "inbound")  # passed to the BPF source as DIR_*
RESULTS = ("established", "refused", "timeout", "error", "accepted")  # as RESULT_*
RESULT_ERROR = RESULTS.index("error")
RESULT_ACCEPTED = RESULTS.index("accepted")
DIRECTION_OUTBOUND = DIRECTIONS.index("outbound")
# The socket's network namespace, read in BPF (SKC_NET_OFF is a pointer to struct net).
NETNS_MEMBERS = {
    "SKC_NET_OFF": ("sock_common", "skc_net"),
    "NET_NS_INUM_OFF": ("net", "ns.inum"),
}

# An attempt whose socket closed without an error report (connect() failed at once, or the
# caller closed it while SYN_SENT) is counted as an error once it is this old.
UNREPORTED_CLOSE_AFTER_S = 5.0
# A connect still in SYN_SENT after this long missed its close (no SYN timeout is near it:
# the default gives up after 127 s); its entry is swept and counted as lost.
STALE_CONNECTING_AFTER_S = 600.0
# An errno report no CLOSE claimed within this long belonged to a socket that was not
# connecting (an established one reset); bpf/tcp_connections.c ERROR_MAX_AGE_NS ignores it.
STALE_ERROR_AFTER_S = 2.0

LABEL_NAMES = ("direction", "port", "comm", "uid", "result")


class TcpConnectionsSettings(StrictModel):
    map_size: MapSize = Field(
        65536,
        description="Distinct {direction, port, comm, uid, result} counters within one drain "
        "interval (1 s); a full map counts its losses in "
        'netsnoop_bpf_map_update_failures_total{map="connections"}. Entries are allocated on '
        "use.",
    )
    pending_map_size: MapSize = Field(
        65536,
        description="Connect attempts waiting for their outcome (connecting, closing, "
        "socket_errors); a full map counts the attempts it could not track in "
        "netsnoop_bpf_map_update_failures_total.",
    )
    listeners_map_size: MapSize = Field(
        4096,
        description="Listening (network namespace, port) pairs whose owning process is known.",
    )


CONNECTIONS = MetricSpec(
    "netsnoop_tcp_connections",
    "counter",
    "TCP connections and connection attempts by direction, port, process, uid and result.",
    LABEL_NAMES,
    OtlpMetric("netsnoop.tcp.connections", "{connection}", TCP),
    bounded_labels=("direction", "result"),
    optional_labels=WORKLOAD_LABEL_NAMES,
)


@dataclass(frozen=True)
class ConnectionKey:
    """A decoded key of the BPF ``connections`` map."""

    direction: int
    result: int
    port: int
    uid: int
    comm: bytes
    cgroup_id: int = 0  # recorded only when the pod/container labels are on
    netns: int = 0  # inbound accepted: the listener's network namespace inode


def connection_labels(key: ConnectionKey, labels: LabelsConfig) -> tuple[str, ...]:
    has_process = key.uid != NO_UID
    comm = decode_comm(key.comm) if has_process and labels.comm else ""
    uid = str(key.uid) if has_process and labels.uid else ""
    port = kernel_port_label(key.port)
    return (DIRECTIONS[key.direction], port, comm, uid, RESULTS[key.result])


def connections_family(
    counts: Iterable[tuple[ConnectionKey, int]],
    labels: LabelsConfig,
    workloads: WorkloadLabeler | None = None,
) -> MetricFamily:
    """With ``workloads`` (kubernetes.enabled) every series also has namespace, pod and
    container; without, those labels do not exist."""
    family = CONNECTIONS.family(
        LABEL_NAMES + WORKLOAD_LABEL_NAMES if workloads is not None else LABEL_NAMES,
        increments=True,
    )
    counts = list(counts)
    if workloads is not None:
        workloads.resolve(key.cgroup_id for key, _ in counts)
    for key, value in counts:
        if key.direction < len(DIRECTIONS) and key.result < len(RESULTS):
            label_values = connection_labels(key, labels)
            if workloads is not None:
                label_values += workloads.labels(key.cgroup_id)
            family.add(label_values, value)
    return family


def owner_cgroup_id(owner: ListenerOwner, workloads: WorkloadLabeler | None) -> int:
    """The cgroup of the process serving a listener, when the pod labels are on."""
    if workloads is None or workloads.root is None:
        return 0
    return cgroups.process_cgroup_id(owner.pid, workloads.root)


def fill_kernel_owner(
    kernel_owner: Any, owner: ListenerOwner, workloads: WorkloadLabeler | None
) -> None:
    """Writes a struct owner_t (a bcc ctypes struct)."""
    kernel_owner.uid = owner.uid
    kernel_owner.comm = owner.comm.encode()[:15]
    kernel_owner.cgroup_id = owner_cgroup_id(owner, workloads)


def seed_listener_table(
    table: BpfMap,
    directory: ListenerDirectory,
    keyed_by_netns: bool,
    fill_owner: Callable[[Any, ListenerOwner], None],
) -> None:
    """Listeners opened before we started never pass CLOSE->LISTEN: learn them, in every
    network namespace, so their accepted connections carry the owner even if they close
    before a read. ``table`` is keyed by (netns, port) with a leaf of an owner_t and a socket
    count (tcp_connections' listeners, socket_owners.h's listener_owners). Without BTF the
    kernel keys them by port alone (namespace 0), which only the exporter's own namespace can
    fill."""
    try:
        view = directory.view()
        own = netns.own_namespace()
    except OSError as error:
        log.warning("could not seed listening sockets: %s", error)
        return
    sockets: Counter[tuple[int, int]] = Counter(
        (s.netns, s.port) for s in view.listeners if keyed_by_netns or s.netns == own
    )
    for (netns_inode, port), count in sockets.items():
        owner = view.owner_at(netns_inode, port)
        if owner is None:
            continue
        leaf = table.value()
        fill_owner(leaf.owner, owner)
        leaf.sockets = count
        table.put(table.key(netns_inode if keyed_by_netns else 0, port), leaf)


class TcpConnectionsCollector(PodLabelledCollector):
    name: ClassVar[str] = "tcp_connections"
    source_file: ClassVar[str] = "tcp_connections.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("sock:inet_sock_set_state", ("skaddr", "oldstate", "newstate", "protocol")),
        ProgramSpec("tcp:tcp_receive_reset", ("skaddr",)),
        ProgramSpec("sock:inet_sk_error_report", ("error", "protocol", "sport", "dport")),
        # Only 6.10+ traces RSTs sent without a socket, with both sockaddrs (28 bytes).
        ProgramSpec("tcp:tcp_send_reset", ("skaddr", "saddr"), (("saddr", 28),)),
    )
    counters_map: ClassVar[str] = "connections"
    emits_watch_events: ClassVar[bool] = True
    folds_ports: ClassVar[bool] = True
    kernel_members = NETNS_MEMBERS
    swept_maps: ClassVar[tuple[str, ...]] = ("connecting",)
    map_names: ClassVar[tuple[str, ...]] = (
        "connections",
        "connecting",
        "closing",
        "socket_errors",
        "listeners",
    )
    shared_sources: ClassVar[tuple[str, ...]] = ("watch.h", "watch_tcp.h")  # watch events

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(config, services, tracefs)
        self.settings = collector_settings(config, self.name, TcpConnectionsSettings)
        self.labels = config.labels
        self.watch_defines = watch_defines(config.watch, config.event_log.pending_map_size)
        self.listeners: ListenerDirectory = self.services.listeners
        self._unreported: Counter[ConnectionKey] = Counter()  # since the last read
        self._sweep_lock = threading.Lock()  # the drain timer and a snapshot both sweep

    def defines(self) -> dict[str, int | str]:
        defines: dict[str, int | str] = {
            "CONNECTIONS_MAP_SIZE": self.settings.map_size,
            "PENDING_MAP_SIZE": self.settings.pending_map_size,
            "LISTENERS_MAP_SIZE": self.settings.listeners_map_size,
            **enum_defines("DIR", DIRECTIONS),
            **enum_defines("RESULT", RESULTS),
            **self.watch_defines,
        }
        reset = self.tracefs.format("tcp:tcp_send_reset")
        if reset is not None:
            no_socket = {name: n for n, name in reset.symbols("reason").items()}.get("NO_SOCKET")
            if no_socket is not None:
                defines["RST_REASON_NO_SOCKET"] = no_socket
        return defines

    def loaded(self, program: BpfProgram) -> None:
        super().loaded(program)
        self._seed_listeners()

    def _cgroup_id(self, owner: ListenerOwner) -> int:
        return owner_cgroup_id(owner, self.workloads)

    def _seed_listeners(self) -> None:
        assert self.bpf is not None
        seed_listener_table(
            self.bpf.table("listeners"),
            self.listeners,
            keyed_by_netns="SKC_NET_OFF" in self.kernel_offsets(),
            fill_owner=self._fill_owner,
        )

    def _fill_owner(self, kernel_owner: Any, owner: ListenerOwner) -> None:
        fill_kernel_owner(kernel_owner, owner, self.workloads)

    def _refresh_kernel_owners(self, view: ListenerView) -> None:
        """The kernel's listener entries take the serving owner too, so the watch events of
        accepted connections name it from now on (the socket count stays the kernel's)."""
        assert self.bpf is not None
        table = self.bpf.table("listeners")
        for key, leaf in table.items():
            owner = view.owner_at(key.netns, key.port)
            if owner is None:
                continue
            if leaf.owner.uid == owner.uid and decode_comm(bytes(leaf.owner.comm)) == owner.comm:
                continue
            self._fill_owner(leaf.owner, owner)
            table.put(key, leaf)

    def _credit_serving_owners(
        self, counts: list[tuple[ConnectionKey, int]]
    ) -> list[tuple[ConnectionKey, int]]:
        """Accepted connections go to whoever serves the listener now (after an exec or a
        socket handover); a listener gone by now keeps the owner the kernel recorded."""
        accepted = {k for k, _ in counts if k.result == RESULT_ACCEPTED and k.netns}
        if not accepted:
            return counts
        try:
            view = self.listeners.view()
        except OSError as error:  # the counts are drained already: keep the kernel's owners
            log.warning(
                "listener owners not read, accepted connections keep the kernel's: %s", error
            )
            return counts
        self._refresh_kernel_owners(view)
        credited = []
        for key, value in counts:
            owner = view.owner_at(key.netns, key.port) if key in accepted else None
            if owner is not None:
                key = replace(
                    key,
                    uid=owner.uid,
                    comm=owner.comm.encode()[:15],
                    cgroup_id=self._cgroup_id(owner),
                )
            credited.append((key, value))
        return credited

    def drain(self) -> None:
        super().drain()
        self._sweep()

    def _sweep(self) -> None:
        """Plain hashes keep what the BPF side never deletes: claim it here."""
        if self.bpf is None:
            return
        with self._sweep_lock:
            self._sweep_unreported()
            connecting = self.bpf.table("connecting")
            for _ in claim_stale_entries(connecting, "started_ns", STALE_CONNECTING_AFTER_S):
                self.swept["connecting"] += 1
            errors = self.bpf.table("socket_errors")
            for _ in claim_stale_entries(errors, "reported_ns", STALE_ERROR_AFTER_S):
                pass  # an errno of a socket that was not connecting: nothing was lost

    def _sweep_unreported(self) -> None:
        assert self.bpf is not None
        closing = self.bpf.table("closing")
        for attempt in claim_closed_entries(closing, UNREPORTED_CLOSE_AFTER_S):
            key = ConnectionKey(
                DIRECTION_OUTBOUND,
                RESULT_ERROR,
                attempt.port,
                attempt.owner.uid,
                bytes(attempt.owner.comm),
                attempt.owner.cgroup_id,
            )
            self._unreported[key] += 1

    def read_counts(self) -> list[tuple[ConnectionKey, int]]:
        """Increments since the previous read."""
        counts = [
            (
                ConnectionKey(
                    k.direction, k.result, k.port, k.uid, bytes(k.comm), k.cgroup_id, k.netns
                ),
                int(v),
            )
            for k, v in self.read_counters()
        ]
        counts = self._credit_serving_owners(counts)
        with self._sweep_lock:
            counts += self._unreported.items()
            self._unreported.clear()
        return counts

    def collect(self) -> Iterable[MetricFamily]:
        if self.bpf is None:
            return []
        self._sweep()
        return [connections_family(self.read_counts(), self.labels, self.workloads)]


register_collector(
    CollectorSpec(
        name="tcp_connections",
        summary="TCP connections and attempts by direction, port, process, uid and result.",
        settings=TcpConnectionsSettings,
        factory=TcpConnectionsCollector,
        metrics=(CONNECTIONS,),
    )
)
