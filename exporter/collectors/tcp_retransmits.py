"""netsnoop_tcp_retransmits_total: TCP segments retransmitted, by direction, port, process, uid
and kind (``data``, or ``syn`` for the handshake), counted in BPF (bpf/tcp_retransmits.c).

Retransmits fire in timer and softirq context; the process is the socket's owner, remembered
when the socket was opened (bpf/socket_owners.h). Each retransmit counts its segments, so a
socket's total equals the kernel's tcpi_total_retrans (``ss -ti``: retrans:x/TOTAL)."""

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
from exporter.kernel import btf
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.tracefs import Tracefs

KINDS = ("data", "syn")  # index = KIND_* in the BPF source
# tcp_skb_pcount(skb): the segments one retransmitted skb carries.
SEGMENTS_MEMBERS = {
    "SKB_CB_OFF": ("sk_buff", "cb"),
    "TCP_SKB_CB_SEGS_OFF": ("tcp_skb_cb", "tcp_gso_segs"),
}


class TcpRetransmitsCollector(SocketOwnerCollector):
    name: ClassVar[str] = "tcp_retransmits"
    source_file: ClassVar[str] = "tcp_retransmits.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        *OWNER_PROGRAMS,
        ProgramSpec("tcp:tcp_retransmit_skb", ("skbaddr", "skaddr", "state", "err")),
        ProgramSpec("tcp:tcp_retransmit_synack", ("skaddr", "sport")),
    )
    counters_map: ClassVar[str] = "retransmits"
    map_names: ClassVar[tuple[str, ...]] = (*OWNER_MAPS, "retransmits")
    extra_values: ClassVar[tuple[str, ...]] = KINDS
    label_names: ClassVar[tuple[str, ...]] = (*OWNER_LABEL_NAMES, "kind")
    bounded_labels: ClassVar[tuple[str, ...]] = ("direction", "kind")
    metric: ClassVar[str] = "netsnoop_tcp_retransmits"
    documentation: ClassVar[str] = (
        "TCP segments retransmitted, by direction, port, process, uid and kind (data, syn)."
    )

    def __init__(self, config: Config, tracefs: Tracefs | None = None) -> None:
        super().__init__(config, config.collectors.tcp_retransmits, tracefs)

    def label_values(self, key: OwnedKey) -> tuple[str, ...]:
        return (*owner_labels(key, self.labels), KINDS[key.extra])

    def defines(self) -> dict[str, int | str]:
        return {
            **super().defines(),
            "RETRANSMITS_MAP_SIZE": self.settings.map_size,
            **btf.offset_defines(SEGMENTS_MEMBERS),
        }
