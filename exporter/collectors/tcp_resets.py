"""netsnoop_tcp_resets_total: TCP resets on existing connections, sent and received, by port,
process and uid, counted in BPF (bpf/tcp_resets.c).

Refused attempts are left out: an RST answering a SYN (a closed port) is already
netsnoop_tcp_connections_total{result="refused"}, outbound for the client and inbound for the
port. ``port`` is the connection's remote port if it was opened by connect(), its local port if
it was accepted, as in netsnoop_tcp_connections_total; the process is the socket's owner
(bpf/socket_owners.h), never the task that happened to run the softirq."""

from __future__ import annotations

from typing import ClassVar

from exporter.collectors.socket_owners import (
    OWNER_LABEL_NAMES,
    OWNER_MAPS,
    OWNER_PROGRAMS,
    OwnedKey,
    SocketOwnerCollector,
    owner_labels,
)
from exporter.config import Config
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.tracefs import Tracefs

SIDES = ("sent", "received")  # index = SIDE_* in the BPF source


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
    # direction is sent or received here; the connection's direction only places the port
    label_names: ClassVar[tuple[str, ...]] = OWNER_LABEL_NAMES
    bounded_labels: ClassVar[tuple[str, ...]] = ("direction",)
    metric: ClassVar[str] = "netsnoop_tcp_resets"
    documentation: ClassVar[str] = (
        "TCP resets on existing connections, sent or received, by port, process and uid."
    )

    def __init__(self, config: Config, tracefs: Tracefs | None = None) -> None:
        super().__init__(config, config.collectors.tcp_resets, tracefs)

    def label_values(self, key: OwnedKey) -> tuple[str, ...]:
        return (SIDES[key.extra], *owner_labels(key, self.labels)[1:])

    def defines(self) -> dict[str, int | str]:
        return {**super().defines(), "RESETS_MAP_SIZE": self.settings.map_size}
