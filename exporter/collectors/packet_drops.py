"""netsnoop_packet_drops_total: packets the kernel dropped, by drop reason, kernel function and
L3 protocol, counted in BPF (bpf/packet_drops.c) at skb:kfree_skb.

The reason numbers are decoded with the running kernel's own table (the ``__print_symbolic``
of the tracepoint's format file): the enum is renumbered between releases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from exporter.collectors.base import BpfCollector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.metrics import MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.kallsyms import KernelSymbols
from exporter.kernel.tracefs import Tracefs, TracepointFormat
from exporter.settings import MapSize, StrictModel

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.services import SharedServices

TRACEPOINT = "skb:kfree_skb"
NOT_DROPPED = ("NOT_DROPPED_YET", "CONSUMED")  # table entries that are not drops
UNKNOWN_REASON = "UNKNOWN"  # kernels before 5.17 give no reason
SUBSYSTEM_SHIFT = 16  # reasons with upper bits set belong to a subsystem's own table
ETHERTYPES = {0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp"}


class PacketDropsSettings(StrictModel):
    map_size: MapSize = Field(
        4096,
        description="Distinct {kernel location, reason, protocol} counters; a full map counts "
        'its losses in netsnoop_bpf_map_update_failures_total{map="drops"}.',
    )


DROPS = MetricSpec(
    "netsnoop_packet_drops",
    "counter",
    "Packets the kernel dropped (skb:kfree_skb), by drop reason, the kernel function that "
    "dropped them and L3 protocol.",
    ("reason", "symbol", "protocol"),
    OtlpMetric("netsnoop.packet.drops", "{packet}", protocol="network.type"),
    bounded_labels=("reason",),
)


@dataclass(frozen=True)
class DropReasons:
    """This kernel's drop-reason table, read from the kfree_skb format."""

    has_field: bool
    names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_format(cls, fmt: TracepointFormat | None) -> DropReasons:
        if fmt is None or fmt.field("reason") is None:
            return cls(False)
        return cls(True, fmt.symbols("reason"))

    def not_dropped(self) -> dict[str, int]:
        """The numbers of NOT_DROPPED_YET and CONSUMED where this kernel's table has them."""
        numbers = {name: number for number, name in self.names.items()}
        return {name: numbers[name] for name in NOT_DROPPED if name in numbers}

    def label(self, reason: int) -> str:
        """The kernel's name; a subsystem-coded or unlisted reason keeps its number."""
        if not self.has_field:
            return UNKNOWN_REASON
        if reason >> SUBSYSTEM_SHIFT:
            return str(reason)
        return self.names.get(reason, str(reason))


def protocol_label(ethertype: int) -> str:
    return ETHERTYPES.get(ethertype, f"0x{ethertype:04x}")


def drops_family(
    counts: Iterable[tuple[int, int, int, int]],
    reasons: DropReasons,
    symbols: dict[int, str],
) -> MetricFamily:
    """(location, reason, protocol, increment) into the counter; call sites in one function
    add up."""
    family = DROPS.family(increments=True)
    for location, reason, protocol, value in counts:
        family.add((reasons.label(reason), symbols[location], protocol_label(protocol)), value)
    return family


class PacketDropsCollector(BpfCollector):
    name: ClassVar[str] = "packet_drops"
    source_file: ClassVar[str] = "packet_drops.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec(TRACEPOINT, ("location", "protocol")),
    )
    counters_map: ClassVar[str] = "drops"
    map_names: ClassVar[tuple[str, ...]] = ("drops",)

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
        symbols: KernelSymbols | None = None,
    ) -> None:
        super().__init__(tracefs)
        self.settings = collector_settings(config, self.name, PacketDropsSettings)
        self.symbols = symbols if symbols is not None else KernelSymbols()
        self.reasons = DropReasons(False)

    def defines(self) -> dict[str, int | str]:
        self.reasons = DropReasons.from_format(self.tracefs.format(TRACEPOINT))
        defines: dict[str, int | str] = {"DROPS_MAP_SIZE": self.settings.map_size}
        if self.reasons.has_field:
            defines["KFREE_SKB_HAS_REASON"] = 1
        for name, number in self.reasons.not_dropped().items():
            defines[f"REASON_{name}"] = number
        return defines

    def collect(self) -> Iterable[MetricFamily]:
        if self.counters is None:
            return []
        counts = [(k.location, k.reason, k.protocol, v) for k, v in self.read_counters()]
        symbols = self.symbols.resolve(location for location, *_ in counts)
        return [drops_family(counts, self.reasons, symbols)]


register_collector(
    CollectorSpec(
        name="packet_drops",
        summary="Packets the kernel dropped, by reason, kernel function and protocol "
        "(skb:kfree_skb).",
        settings=PacketDropsSettings,
        factory=PacketDropsCollector,
        metrics=(DROPS,),
    )
)
