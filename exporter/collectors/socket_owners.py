"""The common part of collectors whose events fire outside the owner's process context
(retransmits, resets): bpf/socket_owners.h remembers each TCP socket's owner, direction and
port in process context, and these collectors label their counts with it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from exporter.cardinality import kernel_port_label
from exporter.collectors.base import BpfCollector
from exporter.collectors.tcp_connections import (
    DIRECTIONS,
    NETNS_MEMBERS,
    NO_UID,
    decode_comm,
    fill_kernel_owner,
    seed_listener_table,
)
from exporter.config import Config, LabelsConfig, SocketOwnersConfig
from exporter.kernel import btf
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.tracefs import Tracefs
from exporter.listeners import shared_directory
from exporter.snapshot import MetricFamily
from exporter.workloads import WORKLOAD_LABEL_NAMES, WorkloadLabeler, workload_labeler

OWNER_LABEL_NAMES = ("direction", "port", "comm", "uid")
# The two handlers socket_owners.h brings into every owner-tracking program, ahead of its own.
OWNER_PROGRAMS = (
    ProgramSpec("sock:inet_sock_set_state", ("skaddr", "oldstate", "newstate", "protocol")),
    ProgramSpec("tcp:tcp_destroy_sock", ("skaddr",)),
)
OWNER_MAPS = ("socket_owners", "listener_owners")  # MAP_* 0 and 1 of socket_owners.h


@dataclass(frozen=True)
class OwnedKey:
    """A decoded counter key: the socket's owner and the collector's own label (``extra``)."""

    direction: int
    port: int
    uid: int
    comm: bytes
    extra: int
    cgroup_id: int = 0


def owner_labels(key: OwnedKey, labels: LabelsConfig) -> tuple[str, ...]:
    """direction, port, comm, uid as netsnoop_tcp_connections_total has them; a socket whose
    owner is unknown (opened before the exporter started) has empty comm and uid."""
    known = key.uid != NO_UID
    comm = decode_comm(key.comm) if known and labels.comm else ""
    uid = str(key.uid) if known and labels.uid else ""
    return (DIRECTIONS[key.direction], kernel_port_label(key.port), comm, uid)


class SocketOwnerCollector(BpfCollector):
    """A BPF collector whose source pastes socket_owners.h and counts into ``counters_map``
    keyed by struct owned_key_t: the owner (uid, comm, cgroup_id), the connection's direction
    and port, and one field of its own (``extra``)."""

    shared_sources: ClassVar[tuple[str, ...]] = ("socket_owners.h",)
    folds_ports: ClassVar[bool] = True
    extra_values: ClassVar[tuple[str, ...]]  # its label value; index = the field's value
    metric: ClassVar[str]
    documentation: ClassVar[str]
    label_names: ClassVar[tuple[str, ...]]
    bounded_labels: ClassVar[tuple[str, ...]]

    def __init__(
        self, config: Config, settings: SocketOwnersConfig, tracefs: Tracefs | None = None
    ) -> None:
        super().__init__(tracefs)
        self.settings = settings
        self.labels = config.labels
        self.kubernetes = config.kubernetes
        self.max_namespaces = config.collectors.listen_queue.max_namespaces
        self.workloads: WorkloadLabeler | None = None

    def defines(self) -> dict[str, int | str]:
        defines: dict[str, int | str] = {
            "SOCKET_OWNERS_MAP_SIZE": self.settings.socket_owners_map_size,
            "LISTENER_OWNERS_MAP_SIZE": self.settings.listeners_map_size,
            **btf.offset_defines(NETNS_MEMBERS),
        }
        if self.kubernetes.enabled:
            defines["NS_CGROUP_LABELS"] = 1
        return defines

    def start(self) -> None:
        if self.kubernetes.enabled:
            self.workloads = workload_labeler(self.kubernetes)
        super().start()
        assert self.bpf is not None
        seed_listener_table(
            self.bpf.table("listener_owners"),
            shared_directory(self.max_namespaces),
            keyed_by_netns="SKC_NET_OFF" in self.defines(),
            fill_owner=lambda kernel_owner, owner: fill_kernel_owner(
                kernel_owner, owner, self.workloads
            ),
        )

    def decode(self, key: Any) -> OwnedKey:
        return OwnedKey(
            key.direction,
            key.port,
            key.uid,
            bytes(key.comm),
            key.extra,
            key.cgroup_id,
        )

    def label_values(self, key: OwnedKey) -> tuple[str, ...]:
        """The series of a key, in ``label_names`` order."""
        raise NotImplementedError

    def family(self, counts: Iterable[tuple[OwnedKey, int]]) -> MetricFamily:
        """With pod labels on, every series also has namespace, pod and container."""
        family = MetricFamily(
            self.metric,
            "counter",
            self.documentation,
            self.label_names + WORKLOAD_LABEL_NAMES
            if self.workloads is not None
            else self.label_names,
            increments=True,  # read from a drained map (EpochCounters)
            bounded_labels=self.bounded_labels,
        )
        counts = list(counts)
        if self.workloads is not None:
            self.workloads.resolve(key.cgroup_id for key, _ in counts)
        for key, value in counts:
            if key.direction >= len(DIRECTIONS) or key.extra >= len(self.extra_values):
                continue
            label_values = self.label_values(key)
            if self.workloads is not None:
                label_values += self.workloads.labels(key.cgroup_id)
            family.add(label_values, value)
        return family

    def collect(self) -> Iterable[MetricFamily]:
        if self.counters is None:
            return []
        return [self.family((self.decode(k), int(v)) for k, v in self.read_counters())]
