"""netsnoop_tcp_retransmits_total: TCP segments retransmitted, by direction, port, process, uid
and kind (``data``, or ``syn`` for the handshake), counted in BPF (bpf/tcp_retransmits.c).

Retransmits fire in timer and softirq context; the process is the socket's owner, remembered
when the socket was opened (bpf/socket_owners.h). Each retransmit counts its segments, so a
socket's total equals the kernel's tcpi_total_retrans (``ss -ti``: retrans:x/TOTAL)."""

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
from exporter.collectors.tcp_connections import NETNS_MEMBERS
from exporter.core.metrics import TCP, MetricSpec, OtlpMetric
from exporter.kernel.bpf import ProgramSpec
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES

KINDS = ("data", "syn")  # index = KIND_* in the BPF source
# tcp_skb_pcount(skb): the segments one retransmitted skb carries.
SEGMENTS_MEMBERS = {
    "SKB_CB_OFF": ("sk_buff", "cb"),
    "TCP_SKB_CB_SEGS_OFF": ("tcp_skb_cb", "tcp_gso_segs"),
}
OWNER_AND_SEGMENTS_MEMBERS = {**NETNS_MEMBERS, **SEGMENTS_MEMBERS}  # socket_owners.h's and ours

RETRANSMITS = MetricSpec(
    "netsnoop_tcp_retransmits",
    "counter",
    "TCP segments retransmitted, by direction, port, process, uid and kind (data, syn).",
    (*OWNER_LABEL_NAMES, "kind"),
    OtlpMetric("netsnoop.tcp.retransmits", "{segment}", TCP),
    bounded_labels=("direction", "kind"),
    optional_labels=WORKLOAD_LABEL_NAMES,
)


class TcpRetransmitsCollector(SocketOwnerCollector):
    name: ClassVar[str] = "tcp_retransmits"
    source_file: ClassVar[str] = "tcp_retransmits.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        *OWNER_PROGRAMS,
        ProgramSpec("tcp:tcp_retransmit_skb", ("skbaddr", "skaddr", "state", "err")),
        ProgramSpec("tcp:tcp_retransmit_synack", ("skaddr", "sport")),
    )
    counters_map: ClassVar[str] = "retransmits"
    kernel_members = OWNER_AND_SEGMENTS_MEMBERS
    map_names: ClassVar[tuple[str, ...]] = (*OWNER_MAPS, "retransmits")
    extra_values: ClassVar[tuple[str, ...]] = KINDS
    extra_prefix: ClassVar[str] = "KIND"
    metric: ClassVar[MetricSpec] = RETRANSMITS

    def label_values(self, key: OwnedKey) -> tuple[str, ...]:
        return (*owner_labels(key, self.labels), KINDS[key.extra])


register_collector(
    CollectorSpec(
        name="tcp_retransmits",
        summary="TCP retransmitted segments by direction, port, process, uid and kind "
        "(tcp:tcp_retransmit_skb, tcp:tcp_retransmit_synack).",
        settings=SocketOwnersSettings,
        factory=TcpRetransmitsCollector,
        metrics=(RETRANSMITS,),
    )
)
