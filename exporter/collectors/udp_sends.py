"""netsnoop_udp_sends_total: UDP datagrams sent, by remote port, process and uid, counted in
BPF (bpf/udp_sends.c), which also emits the watch events of `protocol: udp` rules.

The destination comes from the send syscall's address when it names one, else from the
connected socket itself (offsets from the kernel's BTF), so write(), writev(), dup'd and
inherited descriptors all count. A separate program from socket_traffic although both use
sock_send_length: this one needs the send syscalls' tracepoints and per-thread state that
byte counting does not, and either can be turned off alone; the price is a second (cheap)
program on each send.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import BpfCollector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.cardinality import kernel_port_label
from exporter.core.metrics import UDP, MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf import ProgramSpec, enum_defines
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import decode_comm
from exporter.settings import MapSize, StrictModel
from exporter.watch import watch_defines

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.services import SharedServices

RESULTS = ("sent",)  # watch event results, passed to the BPF source as UDP_RESULT_*
# A connected socket's peer, read in BPF from the socket sock_send_length hands over.
PEER_MEMBERS = {
    "SKC_STATE_OFF": ("sock_common", "skc_state"),
    "SKC_DPORT_OFF": ("sock_common", "skc_dport"),
    "SKC_DADDR_OFF": ("sock_common", "skc_daddr"),
    "SKC_V6_DADDR_OFF": ("sock_common", "skc_v6_daddr"),
}


class UdpSendsSettings(StrictModel):
    map_size: MapSize = Field(8192, description="Distinct {port, comm, uid} counters.")


SENDS = MetricSpec(
    "netsnoop_udp_sends",
    "counter",
    "UDP datagrams sent, by remote port, process name and uid.",
    ("port", "comm", "uid"),
    OtlpMetric("netsnoop.udp.sends", "{datagram}", UDP, port="peer"),
)


def sends_family(
    counts: Iterable[tuple[int, bytes, int, int]], comm_label: bool, uid_label: bool
) -> MetricFamily:
    """(port, comm, uid, datagrams) increments into the counter; port 0 is the kernel's fold
    of ports the policy does not keep."""
    family = SENDS.family(increments=True)
    for port, comm, uid, value in counts:
        labels = (
            kernel_port_label(port),
            decode_comm(comm) if comm_label else "",
            str(uid) if uid_label else "",
        )
        family.add(labels, value)
    return family


class UdpSendsCollector(BpfCollector):
    name: ClassVar[str] = "udp_sends"
    source_file: ClassVar[str] = "udp_sends.c"
    shared_sources: ClassVar[tuple[str, ...]] = ("watch.h",)
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("syscalls:sys_enter_sendto", ("fd", "addr")),
        ProgramSpec("syscalls:sys_enter_sendmsg", ("fd", "msg")),
        ProgramSpec("syscalls:sys_enter_sendmmsg", ("fd", "mmsg")),
        ProgramSpec("syscalls:sys_exit_sendto"),
        ProgramSpec("syscalls:sys_exit_sendmsg"),
        ProgramSpec("syscalls:sys_exit_sendmmsg"),
        ProgramSpec("sock:sock_send_length", ("sk", "family", "protocol", "ret")),
    )
    counters_map: ClassVar[str] = "udp_sends"
    emits_watch_events: ClassVar[bool] = True
    map_names: ClassVar[tuple[str, ...]] = ("udp_sends", "sending")
    folds_ports: ClassVar[bool] = True
    kernel_members = PEER_MEMBERS

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(tracefs)
        self.settings = collector_settings(config, self.name, UdpSendsSettings)
        self.labels = config.labels
        self.watch_rules = config.watch
        self.event_log = config.event_log

    def defines(self) -> dict[str, int | str]:
        return {
            "UDP_SENDS_MAP_SIZE": self.settings.map_size,
            "SENDING_MAP_SIZE": 4096,  # threads inside a send syscall at once
            **enum_defines("UDP_RESULT", RESULTS),
            **watch_defines(self.watch_rules, self.event_log.pending_map_size),
        }

    def collect(self) -> Iterable[MetricFamily]:
        if self.counters is None:
            return []
        counts = [(k.port, bytes(k.comm), k.uid, value) for k, value in self.read_counters()]
        return [sends_family(counts, self.labels.comm, self.labels.uid)]


register_collector(
    CollectorSpec(
        name="udp_sends",
        summary="UDP datagrams sent, by remote port, process and uid.",
        settings=UdpSendsSettings,
        factory=UdpSendsCollector,
        metrics=(SENDS,),
    )
)
