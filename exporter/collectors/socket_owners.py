"""The common part of collectors whose events fire outside the owner's process context
(retransmits, resets): bpf/socket_owners.h remembers each TCP socket's owner, direction and
port in process context, and these collectors label their counts with it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from exporter.collectors.base import PodLabelledCollector
from exporter.collectors.registry import collector_settings
from exporter.collectors.tcp_connections import (
    DIRECTIONS,
    NETNS_MEMBERS,
    fill_kernel_owner,
    seed_listener_table,
)
from exporter.core.cardinality import kernel_port_label
from exporter.core.metrics import MetricSpec
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf import BpfProgram, ProgramSpec, enum_defines
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import NO_UID, decode_comm
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES
from exporter.services import SharedServices
from exporter.settings import LabelsConfig, MapSize, StrictModel

if TYPE_CHECKING:
    from exporter.config import Config

OWNER_LABEL_NAMES = ("direction", "port", "comm", "uid")
# The two handlers socket_owners.h brings into every owner-tracking program, ahead of its own.
OWNER_PROGRAMS = (
    ProgramSpec(
        "sock:inet_sock_set_state",
        ("skaddr", "oldstate", "newstate", "protocol"),
        source="socket_owners.h",
    ),
    ProgramSpec("tcp:tcp_destroy_sock", ("skaddr",), source="socket_owners.h"),
)
OWNER_MAPS = ("socket_owners", "listener_owners")  # first in map_names: MAP_* of socket_owners.h


class SocketOwnersSettings(StrictModel):
    """A collector that labels kernel events with each TCP socket's owner (socket_owners.h)."""

    map_size: MapSize = Field(8192, description="Distinct counters per drain interval.")
    socket_owners_map_size: MapSize = Field(
        65536, description="Open TCP sockets whose owner is remembered; past it, unlabeled."
    )
    listeners_map_size: MapSize = Field(
        4096, description="Listening (network namespace, port) pairs with a known owner."
    )


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


class SocketOwnerCollector(PodLabelledCollector):
    """A BPF collector whose source pastes socket_owners.h and counts into ``counters_map``
    keyed by struct owned_key_t: the owner (uid, comm, cgroup_id), the connection's direction
    and port, and one field of its own (``extra``)."""

    shared_sources: ClassVar[tuple[str, ...]] = ("socket_owners.h",)
    folds_ports: ClassVar[bool] = True
    kernel_members = NETNS_MEMBERS
    extra_values: ClassVar[tuple[str, ...]]  # its label value; index = the field's value
    extra_prefix: ClassVar[str]  # the BPF source numbers extra_values as <PREFIX>_<VALUE>
    metric: ClassVar[MetricSpec]

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(config, services, tracefs)
        self.settings = collector_settings(config, self.name, SocketOwnersSettings)
        self.labels = config.labels

    def defines(self) -> dict[str, int | str]:
        """socket_owners.h's values, then the counters map's size as <MAP>_MAP_SIZE."""
        return {
            "SOCKET_OWNERS_MAP_SIZE": self.settings.socket_owners_map_size,
            "LISTENER_OWNERS_MAP_SIZE": self.settings.listeners_map_size,
            **enum_defines("DIR", DIRECTIONS),
            f"{self.counters_map.upper()}_MAP_SIZE": self.settings.map_size,
            **enum_defines(self.extra_prefix, self.extra_values),
        }

    def loaded(self, program: BpfProgram) -> None:
        super().loaded(program)
        seed_listener_table(
            program.table("listener_owners"),
            self.services.listeners,
            keyed_by_netns="SKC_NET_OFF" in self.kernel_offsets(),
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
        """The series of a key, in the order of ``metric.labels``."""
        raise NotImplementedError

    def family(self, counts: Iterable[tuple[OwnedKey, int]]) -> MetricFamily:
        """With pod labels on, every series also has namespace, pod and container."""
        family = self.metric.family(
            self.metric.labels + WORKLOAD_LABEL_NAMES
            if self.workloads is not None
            else self.metric.labels,
            increments=True,  # read from a drained map (EpochCounters)
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
