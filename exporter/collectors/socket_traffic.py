"""netsnoop_socket_sent_bytes_total / netsnoop_socket_received_bytes_total: bytes processes pass
through TCP and UDP sockets, counted in BPF (bpf/socket_traffic.c) per protocol, comm and uid."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import PodLabelledCollector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.metrics import MetricSpec, OtlpMetric
from exporter.core.snapshot import LabelValues, MetricFamily
from exporter.kernel.bpf import ProgramSpec, enum_defines
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import IP_PROTOCOL_NAMES, decode_comm
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES, WorkloadLabeler
from exporter.services import SharedServices
from exporter.settings import MapSize, StrictModel

if TYPE_CHECKING:
    from exporter.config import Config

DIRECTIONS = ("sent", "received")  # passed to the BPF source as DIR_*
LABEL_NAMES = ("protocol", "comm", "uid")


class SocketTrafficSettings(StrictModel):
    map_size: MapSize = Field(
        4096, description="Distinct {direction, protocol, comm, uid} counters."
    )


BYTES = {
    direction: MetricSpec(
        f"netsnoop_socket_{direction}_bytes",
        "counter",
        f"Bytes {direction} through TCP and UDP sockets, by protocol, process name and uid.",
        LABEL_NAMES,
        OtlpMetric("netsnoop.socket.io", "By", (("network.io.direction", io_direction),)),
        unit="bytes",
        bounded_labels=("protocol",),
        optional_labels=WORKLOAD_LABEL_NAMES,
    )
    for direction, io_direction in zip(DIRECTIONS, ("transmit", "receive"), strict=True)
}


def byte_families(
    counts: Iterable[tuple[int, int, bytes, int, int, int]],
    comm_label: bool,
    uid_label: bool,
    workloads: WorkloadLabeler | None = None,
) -> list[MetricFamily]:
    """(direction, protocol, comm, uid, cgroup id, bytes) increments into the two byte
    counters; with ``workloads`` (kubernetes.enabled) they also have namespace, pod, container."""
    label_names = LABEL_NAMES + WORKLOAD_LABEL_NAMES if workloads is not None else LABEL_NAMES
    families = [BYTES[direction].family(label_names, increments=True) for direction in DIRECTIONS]
    counts = list(counts)
    if workloads is not None:
        workloads.resolve(count[4] for count in counts)
    for direction, protocol, comm, uid, cgroup_id, value in counts:
        if direction >= len(DIRECTIONS) or protocol not in IP_PROTOCOL_NAMES:
            continue
        labels: LabelValues = (
            IP_PROTOCOL_NAMES[protocol],
            decode_comm(comm) if comm_label else "",
            str(uid) if uid_label else "",
        )
        if workloads is not None:
            labels += workloads.labels(cgroup_id)
        families[direction].add(labels, value)
    return families


class SocketTrafficCollector(PodLabelledCollector):
    name: ClassVar[str] = "socket_traffic"
    source_file: ClassVar[str] = "socket_traffic.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("sock:sock_send_length", ("family", "protocol", "ret")),
        ProgramSpec("sock:sock_recv_length", ("family", "protocol", "ret", "flags")),
    )
    counters_map: ClassVar[str] = "socket_bytes"
    map_names: ClassVar[tuple[str, ...]] = ("socket_bytes",)

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(config, services, tracefs)
        self.settings = collector_settings(config, self.name, SocketTrafficSettings)
        self.labels = config.labels

    def defines(self) -> dict[str, int | str]:
        return {
            "SOCKET_BYTES_MAP_SIZE": self.settings.map_size,
            **enum_defines("DIR", DIRECTIONS),
        }

    def collect(self) -> Iterable[MetricFamily]:
        if self.counters is None:
            return []
        counts = [
            (k.direction, k.protocol, bytes(k.comm), k.uid, k.cgroup_id, value)
            for k, value in self.read_counters()
        ]
        return byte_families(counts, self.labels.comm, self.labels.uid, self.workloads)


register_collector(
    CollectorSpec(
        name="socket_traffic",
        summary="Bytes through TCP and UDP sockets per process (sock_send_length/"
        "sock_recv_length, 6.3+).",
        settings=SocketTrafficSettings,
        factory=SocketTrafficCollector,
        metrics=tuple(BYTES.values()),
    )
)
