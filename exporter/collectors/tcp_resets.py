"""netsnoop_tcp_resets_total: TCP resets on existing connections, sent and received, by port,
process and uid, counted in BPF (bpf/tcp_resets.c).

Refused attempts are left out: an RST answering a SYN (a closed port) is already
netsnoop_tcp_connections_total{result="refused"}, outbound for the client and inbound for the
port. ``port`` is the connection's remote port if it was opened by connect(), its local port if
it was accepted, as in netsnoop_tcp_connections_total; the process is the socket's owner
(bpf/socket_owners.h), never the task that happened to run the softirq."""

from __future__ import annotations

from typing import ClassVar

from exporter.collectors.registry import CollectorSpec, register_collector
from exporter.collectors.socket_owners import (
    OWNER_LABEL_NAMES,
    OWNER_MAPS,
    OWNER_PROGRAMS,
    OwnedKey,
    SocketOwnerCollector,
    SocketOwnersSettings,
    owner_labels,
)
from exporter.core.metrics import TCP, MetricSpec, OtlpMetric
from exporter.kernel.bpf import ProgramSpec
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES

SIDES = ("sent", "received")  # index = SIDE_* in the BPF source

# direction is sent or received here; the connection's direction only places the port, so
# over OTLP the port is netsnoop.port (neither peer nor local for every series)
RESETS = MetricSpec(
    "netsnoop_tcp_resets",
    "counter",
    "TCP resets on existing connections, sent or received, by port, process and uid.",
    OWNER_LABEL_NAMES,
    OtlpMetric("netsnoop.tcp.resets", "{reset}", TCP, port="mixed"),
    bounded_labels=("direction",),
    optional_labels=WORKLOAD_LABEL_NAMES,
)


class TcpResetsCollector(SocketOwnerCollector):
    name: ClassVar[str] = "tcp_resets"
    source_file: ClassVar[str] = "tcp_resets.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        *OWNER_PROGRAMS,
        # 6.10+ has the socket's sockaddrs (28 bytes each): the ports come from them.
        ProgramSpec(
            "tcp:tcp_send_reset",
            ("skaddr", "state", "saddr", "daddr"),
            (("saddr", 28), ("daddr", 28)),
        ),
        ProgramSpec("tcp:tcp_receive_reset", ("skaddr", "sport", "dport")),
    )
    counters_map: ClassVar[str] = "resets"
    map_names: ClassVar[tuple[str, ...]] = (*OWNER_MAPS, "resets")
    extra_values: ClassVar[tuple[str, ...]] = SIDES
    extra_prefix: ClassVar[str] = "SIDE"
    metric: ClassVar[MetricSpec] = RESETS

    def label_values(self, key: OwnedKey) -> tuple[str, ...]:
        return (SIDES[key.extra], *owner_labels(key, self.labels)[1:])


register_collector(
    CollectorSpec(
        name="tcp_resets",
        summary="TCP resets on existing connections, sent and received, by port, process and "
        "uid (tcp:tcp_send_reset, tcp:tcp_receive_reset).",
        settings=SocketOwnersSettings,
        factory=TcpResetsCollector,
        metrics=(RESETS,),
    )
)
