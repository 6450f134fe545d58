"""netsnoop_tcp_connect_duration_seconds: a histogram of outbound TCP connect time (connect()
to ESTABLISHED) per remote port and process, bucketed in BPF (bpf/tcp_connect_latency.c).

The bounds are fixed, 50 us to 30 s; the kernel gets them as one comparison chain
(BUCKET_OF), so an observation costs a few compares and two map updates. Labels cost
``port`` x ``comm`` x 21 series (19 buckets, sum, count): only ``port`` is on by default,
``comm`` is one config line away (``labels: [port, comm]``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from prometheus_client.utils import floatToGoString
from pydantic import Field

from exporter.collectors.base import PodLabelledCollector
from exporter.collectors.registry import CollectorSpec, collector_settings, register_collector
from exporter.core.cardinality import kernel_port_label
from exporter.core.metrics import MetricSpec
from exporter.core.snapshot import HISTOGRAM_SUM, MetricFamily
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import decode_comm
from exporter.kubernetes.workloads import WORKLOAD_LABEL_NAMES, WorkloadLabeler
from exporter.services import SharedServices
from exporter.settings import MapSize, StrictModel

if TYPE_CHECKING:
    from exporter.config import Config

BOUNDS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
SUM_SLOT = 0xFFFF  # bpf/tcp_connect_latency.c: the key of the sum, in nanoseconds
LABEL_NAMES = ("port", "comm", "le")


class TcpConnectLatencySettings(StrictModel):
    map_size: MapSize = Field(
        8192, description="Distinct {port, comm, bucket} counters per drain interval."
    )
    pending_map_size: MapSize = Field(
        65536, description="Connects in flight whose start time is kept."
    )
    labels: list[Literal["port", "comm"]] = Field(
        ["port"],  # copied per instance by pydantic
        description="Labels with values; the others stay empty. Each (port, comm) pair costs "
        "21 series (19 buckets, sum, count).",
    )


def bucket_of(bounds_s: Sequence[float]) -> str:
    """The C expression of a duration's bucket index: the first bound it does not exceed."""
    expression = str(len(bounds_s))  # +Inf
    for index in reversed(range(len(bounds_s))):
        expression = f"((ns) <= {round(bounds_s[index] * 1e9)}ULL ? {index} : {expression})"
    return expression


def le_label(slot: int) -> str:
    return floatToGoString(BOUNDS_S[slot]) if slot < len(BOUNDS_S) else "+Inf"


CONNECT_DURATION = MetricSpec(
    "netsnoop_tcp_connect_duration_seconds",
    "histogram",
    "Outbound TCP connect time, from connect() to established, by remote port and process.",
    LABEL_NAMES,
    None,  # not exported over OTLP (docs/otlp.md)
    unit="seconds",
    bounded_labels=("le",),
    optional_labels=WORKLOAD_LABEL_NAMES,
    buckets=tuple(le_label(slot) for slot in range(len(BOUNDS_S) + 1)),
)


def duration_family(
    counts: Iterable[tuple[tuple[int, bytes, int, int], int]],
    labels: Sequence[str],
    workloads: WorkloadLabeler | None = None,
) -> MetricFamily:
    """((port, comm, slot, cgroup_id), increment) into the histogram; a label not listed in
    ``labels`` is blank, so every series keeps the same label names."""
    family = CONNECT_DURATION.family(
        (*LABEL_NAMES[:-1], *WORKLOAD_LABEL_NAMES, "le") if workloads else LABEL_NAMES,
        increments=True,  # read from a drained map (EpochCounters)
    )
    counts = list(counts)
    if workloads is not None:
        workloads.resolve(cgroup_id for (_, _, _, cgroup_id), _ in counts)
    for (port, comm, slot, cgroup_id), value in counts:
        if slot == SUM_SLOT:
            le, amount = HISTOGRAM_SUM, value / 1e9
        elif slot <= len(BOUNDS_S):
            le, amount = le_label(slot), float(value)
        else:
            continue
        series: tuple[str, ...] = (
            kernel_port_label(port) if "port" in labels else "",
            decode_comm(comm) if "comm" in labels else "",
        )
        if workloads is not None:
            series += workloads.labels(cgroup_id)
        family.add((*series, le), amount)
    return family


class TcpConnectLatencyCollector(PodLabelledCollector):
    name: ClassVar[str] = "tcp_connect_latency"
    source_file: ClassVar[str] = "tcp_connect_latency.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("sock:inet_sock_set_state", ("skaddr", "oldstate", "newstate", "protocol")),
    )
    counters_map: ClassVar[str] = "durations"
    folds_ports: ClassVar[bool] = True
    map_names: ClassVar[tuple[str, ...]] = ("durations", "connect_starts")

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(config, services, tracefs)
        self.settings = collector_settings(config, self.name, TcpConnectLatencySettings)

    def defines(self) -> dict[str, int | str]:
        return {
            "DURATIONS_MAP_SIZE": self.settings.map_size,
            "PENDING_MAP_SIZE": self.settings.pending_map_size,
            "BUCKET_OF(ns)": bucket_of(BOUNDS_S),
            "SUM_SLOT": f"{SUM_SLOT:#x}",
        }

    def collect(self) -> Iterable[MetricFamily]:
        if self.counters is None:
            return []
        counts = [
            ((k.port, bytes(k.comm), k.slot, k.cgroup_id), int(v)) for k, v in self.read_counters()
        ]
        return [duration_family(counts, self.settings.labels, self.workloads)]


register_collector(
    CollectorSpec(
        name="tcp_connect_latency",
        summary="Outbound TCP connect time as a histogram, by remote port and process "
        "(sock:inet_sock_set_state).",
        settings=TcpConnectLatencySettings,
        factory=TcpConnectLatencyCollector,
        metrics=(CONNECT_DURATION,),
    )
)
