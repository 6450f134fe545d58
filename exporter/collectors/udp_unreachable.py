"""netsnoop_udp_unreachable_total: ICMP port-unreachable replies to UDP datagrams per closed
local port, counted in BPF (bpf/udp_unreachable.c) at icmp:icmp_send: the UDP twin of an
inbound TCP ``refused``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import BpfCollector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.cardinality import kernel_port_label
from exporter.core.metrics import UDP, MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.tracefs import Tracefs
from exporter.settings import MapSize, StrictModel

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.services import SharedServices


class UdpUnreachableSettings(StrictModel):
    map_size: MapSize = Field(4096, description="Distinct closed UDP ports counted.")


UNREACHABLE = MetricSpec(
    "netsnoop_udp_unreachable",
    "counter",
    "ICMP port-unreachable replies sent for UDP datagrams to a closed local port (IPv4).",
    ("port",),
    OtlpMetric("netsnoop.udp.unreachable", "{reply}", UDP, port="local"),
)


def unreachable_family(counts: Iterable[tuple[int, int]]) -> MetricFamily:
    """(port, increment) into the counter; port 0 is the kernel's fold of unkept ports."""
    family = UNREACHABLE.family(increments=True)
    for port, value in counts:
        family.add((kernel_port_label(port),), value)
    return family


class UdpUnreachableCollector(BpfCollector):
    name: ClassVar[str] = "udp_unreachable"
    source_file: ClassVar[str] = "udp_unreachable.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("icmp:icmp_send", ("type", "code", "dport")),
    )
    counters_map: ClassVar[str] = "unreachable"
    folds_ports: ClassVar[bool] = True
    map_names: ClassVar[tuple[str, ...]] = ("unreachable",)

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(tracefs)
        self.settings = collector_settings(config, self.name, UdpUnreachableSettings)

    def defines(self) -> dict[str, int | str]:
        return {"UNREACHABLE_MAP_SIZE": self.settings.map_size}

    def collect(self) -> Iterable[MetricFamily]:
        if self.counters is None:
            return []
        counts = [(k.port, v) for k, v in self.read_counters()]
        return [unreachable_family(counts)]


register_collector(
    CollectorSpec(
        name="udp_unreachable",
        summary="ICMP port-unreachable replies to UDP datagrams, by closed port (icmp:icmp_send, "
        "6.13+).",
        settings=UdpUnreachableSettings,
        factory=UdpUnreachableCollector,
        metrics=(UNREACHABLE,),
    )
)
