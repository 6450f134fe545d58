"""Listen-queue pressure per local port, read through sock_diag in every network namespace of
the node at each snapshot (no BPF): the accept queue and its backlog (Q and Qmax of
``ss -lnt``), the half-open handshakes (Q0) and the listener's drop counter (the ``d`` of
``ss -m``).

Every listening socket on a port adds into that port's series: IPv4 and IPv6 listeners, and
the sockets of an SO_REUSEPORT group, as one service. ``comm`` is the process serving the
listening socket (exporter/listeners.py, shared with the accepted-connection counts), and
with kubernetes.enabled its namespace, pod and container tell apart the pods that listen on
one port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import Collector
from exporter.collectors.registry import CollectorSpec, register_collector
from exporter.core.metrics import TCP, Kind, MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel import cgroups
from exporter.kernel.sockets import ListeningSocket
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES, WorkloadLabeler
from exporter.listeners import ListenerView
from exporter.services import SharedServices
from exporter.settings import StrictModel

if TYPE_CHECKING:
    from exporter.config import Config

LABEL_NAMES = ("port", "comm")


class ListenQueueSettings(StrictModel):
    max_namespaces: int = Field(
        1024,
        ge=1,
        le=65536,
        description="Network namespaces read per scrape (the exporter's own first, then by "
        "inode); the same bound applies to finding listener owners for tcp_connections.",
    )


def _listen_metric(name: str, kind: Kind, help_text: str, otlp: str, unit: str) -> MetricSpec:
    return MetricSpec(
        name,
        kind,
        help_text,
        LABEL_NAMES,
        OtlpMetric(otlp, unit, TCP, port="local"),
        optional_labels=WORKLOAD_LABEL_NAMES,
    )


QUEUE_LENGTH = _listen_metric(
    "netsnoop_listen_queue_length",
    "gauge",
    "Connections waiting in a listener's accept queue (Recv-Q of ss -lnt).",
    "netsnoop.listen.queue.length",
    "{connection}",
)
QUEUE_CAPACITY = _listen_metric(
    "netsnoop_listen_queue_capacity",
    "gauge",
    "The listen() backlog (Send-Q of ss -lnt); a full queue holds one more.",
    "netsnoop.listen.queue.capacity",
    "{connection}",
)
SYN_QUEUE_LENGTH = _listen_metric(
    "netsnoop_listen_syn_queue_length",
    "gauge",
    "Half-open handshakes (SYN_RECV request sockets) on a listening port.",
    "netsnoop.listen.syn_queue.length",
    "{handshake}",
)
LISTEN_DROPS = _listen_metric(
    "netsnoop_listen_drops",
    "counter",
    "Drops counted by listening sockets (sock_diag SKMEMINFO): SYNs and handshakes "
    "refused, for example on a full accept queue.",
    "netsnoop.listen.drops",
    "{packet}",
)
NAMESPACES = MetricSpec(
    "netsnoop_listen_namespaces",
    "gauge",
    "Network namespaces whose listeners were read (state=read), left out over "
    "collectors.listen_queue.max_namespaces (skipped), or that could not be entered "
    "without CAP_SYS_ADMIN (denied).",
    ("state",),
    OtlpMetric("netsnoop.listen_namespaces"),
    bounded_labels=("state",),
)


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
    half_open: Mapping[tuple[int, int], int],
    owners: Mapping[int, tuple[str, ...]],
    drop_increments: Mapping[int, int],
    label_names: tuple[str, ...] = LABEL_NAMES,
) -> list[MetricFamily]:
    """Per (port, comm[, namespace, pod, container]): queue length, backlog, half-open count
    and new drops. ``owners`` gives each socket inode its labels after the port. Half-open
    handshakes, keyed by (network namespace, port), belong to no socket yet: they take the
    labels of the listeners there when those agree, else empty ones."""
    length, capacity, syn_queue, drops = (
        spec.family(label_names, increments=spec.kind == "counter")
        for spec in (QUEUE_LENGTH, QUEUE_CAPACITY, SYN_QUEUE_LENGTH, LISTEN_DROPS)
    )
    unknown = ("",) * (len(label_names) - 1)
    place_owners: dict[tuple[int, int], set[tuple[str, ...]]] = {}
    for listener in listeners:
        labels = (str(listener.port), *owners.get(listener.inode, unknown))
        place_owners.setdefault((listener.netns, listener.port), set()).add(labels[1:])
        length.add(labels, listener.accept_queue)
        capacity.add(labels, listener.backlog)
        drops.add(labels, drop_increments.get(listener.inode, 0))
    for (netns, port), count in half_open.items():
        known = place_owners.get((netns, port), set())
        syn_queue.add((str(port), *(next(iter(known)) if len(known) == 1 else unknown)), count)
    return [length, capacity, syn_queue, drops]


class ListenQueueCollector(Collector):
    name: ClassVar[str] = "listen_queue"

    def __init__(self, config: Config, services: SharedServices | None = None) -> None:
        services = services if services is not None else SharedServices(config)
        self.comm_label = config.labels.comm
        self.kubernetes = config.kubernetes
        self.services = services
        self.listeners = services.listeners
        self.workloads: WorkloadLabeler | None = None
        self.drop_counts = DropCounts()

    def start(self) -> None:
        """Fails here, not at the first scrape, when sock_diag is unavailable."""
        if self.kubernetes.enabled:
            self.workloads = self.services.workloads()
        self.listeners.view()

    def _owner_labels(self, view: ListenerView) -> dict[int, tuple[str, ...]]:
        comms = {
            inode: owner.comm if self.comm_label else "" for inode, owner in view.owners.items()
        }
        if self.workloads is None:
            return {inode: (comm,) for inode, comm in comms.items()}
        cgroup_ids = {}
        if self.workloads.root is not None:
            cgroup_ids = {
                inode: cgroups.process_cgroup_id(owner.pid, self.workloads.root)
                for inode, owner in view.owners.items()
            }
        self.workloads.resolve(cgroup_ids.values())
        return {
            inode: (comm, *self.workloads.labels(cgroup_ids.get(inode, 0)))
            for inode, comm in comms.items()
        }

    def collect(self) -> Iterable[MetricFamily]:
        view = self.listeners.view()
        label_names = (
            LABEL_NAMES + WORKLOAD_LABEL_NAMES if self.workloads is not None else LABEL_NAMES
        )  # a labeler with nothing cached yet is falsy (len 0)
        families = listen_families(
            view.listeners,
            view.half_open,
            self._owner_labels(view),
            self.drop_counts.increments(view.listeners),
            label_names,
        )
        namespaces = NAMESPACES.family()
        namespaces.set(("read",), view.namespaces)
        namespaces.set(("skipped",), view.namespaces_skipped)
        namespaces.set(("denied",), view.namespaces_denied)
        return [*families, namespaces]


register_collector(
    CollectorSpec(
        name="listen_queue",
        summary="Accept-queue length and backlog, half-open handshakes and drops per listening "
        "port, read through sock_diag in every network namespace of the node at each scrape.",
        settings=ListenQueueSettings,
        factory=ListenQueueCollector,
        metrics=(QUEUE_LENGTH, QUEUE_CAPACITY, SYN_QUEUE_LENGTH, LISTEN_DROPS, NAMESPACES),
    )
)
